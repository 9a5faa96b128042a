"""Adaptive attacks on f + D: D's gradient through the saliency map, Metzen et al.'s attack, C&W on D.

f and D are tiny Keras nets on 4x4 or 8x8 images, with smooth activations (softplus, tanh) so that
the saliency map has a non-zero derivative: a ReLU f is piecewise linear, its saliency piecewise
constant, and the second-order term vanishes (test_relu_saliency_has_no_second_order_term; the remedy,
models.surrogate.softplus_surrogate, is tested at the end).
"""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks import make_detector_fn
from advsal_bench.attacks.cw_detector import cw_detector, cw_detector_success
from advsal_bench.attacks.ifgsm import ifgsm, ifgsm_linf
from advsal_bench.attacks.metzen import metzen_adaptive
from advsal_bench.detectors import detector_input
from advsal_bench.models.metzen_detector import build_metzen_detector
from advsal_bench.saliency import gradient_saliency, normalize_saliency

K = 3


def _f(side: int, *, seed: int, activation: str = "softplus") -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((side, side, 1)), keras.layers.Flatten(), keras.layers.Dense(8, activation=activation),
         keras.layers.Dense(K)],
        name="tiny_f",
    )


def _d(side: int, channels: int, *, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input((side, side, channels)), keras.layers.Conv2D(3, 3, padding="same", activation="tanh"),
         keras.layers.Flatten(), keras.layers.Dense(1)],
        name="tiny_d",
    )


def _images(n: int, side: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.2, 0.8, size=(n, side, side, 1)).astype(np.float32)


def _grad(fn, x: np.ndarray) -> np.ndarray:
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tf.reduce_sum(fn(x))
    # ZERO, not None, for a function that does not depend on x (a saliency-only D, saliency frozen).
    return tape.gradient(out, x, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()


def _central_difference(fn, x: np.ndarray, h: float = 1e-2) -> np.ndarray:
    """d fn(x)_i / dx_i per image: every +-h pixel perturbation of every image, in one batch."""
    n, p = len(x), x[0].size
    steps = h * np.eye(p, dtype=np.float32)  # [p, p]: one perturbed pixel per row
    flat = x.reshape(n, 1, p)
    batch = np.concatenate([flat + steps, flat - steps], axis=1).reshape((n * 2 * p,) + x.shape[1:])
    out = np.asarray(fn(tf.constant(batch))).reshape(n, 2, p)
    return ((out[:, 0] - out[:, 1]) / (2 * h)).reshape(x.shape)


# --- the gradient flows through the saliency map ----------------------------------------------------

SALIENCY_CASES = [
    pytest.param({}, id="none"),
    pytest.param({"saliency_normalize": "global", "saliency_scale": 0.3}, id="global"),
    pytest.param({"saliency_normalize": "per_image"}, id="per_image"),
    pytest.param({"saliency_abs": True}, id="abs"),
]


@pytest.mark.parametrize("options", SALIENCY_CASES)
@pytest.mark.parametrize("inputs", [("image", "saliency"), ("saliency",)], ids=["image_saliency", "saliency_only"])
def test_detector_gradient_matches_finite_differences(options, inputs):
    f, d = _f(4, seed=0), _d(4, len(inputs), seed=1)
    x = _images(3, 4)
    detector_fn = make_detector_fn(d, f, inputs=inputs, **options)
    nested = _grad(detector_fn, x)
    numeric = _central_difference(detector_fn, x)
    scale = np.abs(numeric).max()
    np.testing.assert_allclose(nested, numeric, atol=1e-3 * scale)

    # The same D with the saliency map held constant: the first-order-only gradient an attack gets
    # when it computes the saliency outside its tape. It must be measurably wrong, or this test
    # could not catch a stop_gradient slipped into make_detector_fn.
    def frozen_saliency_fn(t):
        sal = tf.stop_gradient(detector_fn_saliency(f, t, options))
        parts = [t if name == "image" else sal for name in inputs]
        return tf.reshape(d(tf.concat(parts, axis=-1), training=False), [-1])

    first_order = _grad(frozen_saliency_fn, x)
    np.testing.assert_allclose(frozen_saliency_fn(tf.constant(x)).numpy(), detector_fn(x).numpy(), rtol=1e-5)
    assert np.abs(first_order - numeric).max() > 0.05 * scale


def detector_fn_saliency(f, x, options):
    """The saliency exactly as make_detector_fn builds it (via the pipeline's NumPy normalization)."""
    sal = gradient_saliency(f, x, abs=options.get("saliency_abs", False)).numpy()
    method = options.get("saliency_normalize", "none")
    return tf.constant(normalize_saliency(sal, method, scale=options.get("saliency_scale")))


@pytest.mark.parametrize("options", SALIENCY_CASES)
@pytest.mark.parametrize("inputs", [("image", "saliency"), ("saliency", "image"), ("saliency",), ("image",)])
def test_detector_fn_matches_the_pipeline_input(options, inputs):
    # D sees in the attack what it was trained on: detectors.detector_input on NumPy saliency maps.
    f, d = _f(4, seed=0), _d(4, len(inputs), seed=1)
    x = _images(5, 4)
    sal = detector_fn_saliency(f, x, options).numpy()
    expected = d(detector_input(inputs, x, sal), training=False).numpy().ravel()
    got = make_detector_fn(d, f, inputs=inputs, **options)(x).numpy()
    assert got.shape == (5,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_relu_saliency_has_no_second_order_term():
    # A documented limit, not a wish: with a ReLU f the saliency is piecewise constant in x, so its
    # derivative is zero almost everywhere and a saliency-only D gives an attack no gradient at all.
    f, d = _f(4, seed=0, activation="relu"), _d(4, 1, seed=1)
    x = _images(3, 4)
    np.testing.assert_array_equal(_grad(make_detector_fn(d, f, inputs=("saliency",)), x), 0.0)


# --- Metzen et al.'s attack ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def f_and_d():
    f, d = _f(8, seed=2), _d(8, 2, seed=3)
    return f, make_detector_fn(d, f), _images(16, 8, seed=4)


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 0.5)])
def test_metzen_sigma_zero_is_ifgsm(f_and_d, norm, eps):
    f, detector_fn, x = f_and_d
    got = metzen_adaptive(f, detector_fn, x, eps=eps, sigma=0.0, steps=5, norm=norm).numpy()
    np.testing.assert_array_equal(got, ifgsm(f, x, eps=eps, steps=5, norm=norm).numpy())
    if norm == np.inf:
        np.testing.assert_array_equal(got, ifgsm_linf(f, x, eps=eps, steps=5).numpy())
    # A tensor sigma of 0 takes D's gradient too (then weighs it by 0) and still matches exactly.
    got_t = metzen_adaptive(f, detector_fn, x, eps=eps, sigma=tf.constant(0.0), steps=5, norm=norm).numpy()
    np.testing.assert_array_equal(got_t, got)


def test_metzen_sigma_one_lowers_the_detector_logit(f_and_d):
    f, detector_fn, x = f_and_d
    clean = detector_fn(x).numpy()
    only_f = detector_fn(metzen_adaptive(f, detector_fn, x, eps=0.1, sigma=0.0)).numpy()
    only_d = detector_fn(metzen_adaptive(f, detector_fn, x, eps=0.1, sigma=1.0)).numpy()
    assert only_d.mean() < clean.mean() - 0.1, (clean.mean(), only_d.mean())
    assert only_d.mean() < only_f.mean() - 0.1, (only_f.mean(), only_d.mean())
    assert np.mean(only_d < clean) >= 0.9


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.05), (np.inf, 0.3), (2, 0.4)])
def test_metzen_stays_in_ball_and_box(f_and_d, norm, eps):
    f, detector_fn, _ = f_and_d
    x = np.random.default_rng(5).uniform(0.0, 1.0, size=(8, 8, 8, 1)).astype(np.float32)
    x_adv = metzen_adaptive(f, detector_fn, x, eps=eps, sigma=0.5, steps=4, alpha=eps, norm=norm).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    d = (x_adv - x).reshape(len(x), -1)
    size = np.abs(d).max(axis=1) if norm == np.inf else np.sqrt(np.sum(d.astype(np.float64) ** 2, axis=1))
    assert np.all(size <= eps * (1 + 1e-5)), size
    x_box = metzen_adaptive(f, detector_fn, x, eps=eps, sigma=0.5, steps=2, norm=norm, clip_min=0.3, clip_max=0.6)
    assert x_box.numpy().min() >= 0.3 and x_box.numpy().max() <= 0.6


def test_metzen_inside_tf_function_with_tensor_sigma(f_and_d):
    f, detector_fn, x = f_and_d

    @tf.function
    def attack(batch, sigma):
        return metzen_adaptive(f, detector_fn, batch, eps=0.1, sigma=sigma, steps=3)

    for sigma in (0.0, 0.5):
        np.testing.assert_allclose(
            attack(tf.constant(x), tf.constant(sigma)).numpy(),
            metzen_adaptive(f, detector_fn, x, eps=0.1, sigma=sigma, steps=3).numpy(),
            atol=1e-6,
        )


def test_metzen_detector_model_as_detector_fn():
    # Metzen et al.'s D reads the image through f's frozen layers: inputs=("image",), no saliency.
    keras.utils.set_random_seed(6)
    f = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="tanh", name="conv1"),
         keras.layers.Flatten(), keras.layers.Dense(K)],
        name="tiny_conv_f",
    )
    d = build_metzen_detector(f, "conv1", filters=(4, 4, 4))
    detector_fn = make_detector_fn(d, f, inputs=("image",))
    x = _images(8, 8, seed=7)
    np.testing.assert_allclose(detector_fn(x).numpy(), d(x).numpy().ravel(), rtol=1e-6)
    x_adv = metzen_adaptive(f, detector_fn, x, eps=0.1, sigma=1.0)
    assert detector_fn(x_adv).numpy().mean() < detector_fn(x).numpy().mean()


# --- C&W on f and D at once ------------------------------------------------------------------------------


def test_cw_detector_fools_f_and_passes_d(f_and_d):
    f, detector_fn, x = f_and_d
    y0 = tf.argmax(f(x), axis=-1, output_type=tf.int32)
    clean = detector_fn(x).numpy()
    # A threshold below every clean score: D raises the alarm on all inputs until the attack works.
    threshold = float(clean.min()) - 0.5
    x_adv = cw_detector(f, detector_fn, x, threshold_logit=threshold, kappa=0.1, c=10.0, steps=60)
    ok = cw_detector_success(f(x_adv), detector_fn(x_adv), y0, threshold).numpy()
    assert ok.mean() >= 0.8, ok.mean()
    assert np.all(detector_fn(x_adv).numpy()[ok] < threshold)
    x_adv = x_adv.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    # Every clean image raised the alarm, so each pass is the attack's doing.
    assert np.all(clean > threshold)


def test_cw_detector_falls_back_to_the_last_iterate(f_and_d):
    f, detector_fn, x = f_and_d
    # An unreachable threshold: no example succeeds, so each row is the last Adam iterate (moved, not x).
    x_adv = cw_detector(f, detector_fn, x[:4], threshold_logit=-1e6, steps=5).numpy()
    assert np.all(np.any((x_adv != x[:4]).reshape(4, -1), axis=1))


# --- Metzen et al.'s detector model ------------------------------------------------------------------


def test_metzen_detector_default_layers():
    from advsal_bench.models import build_model

    shapes = {"mnist_net_f": ((28, 28, 1), (13, 13, 32)), "cifar10_net_f": ((32, 32, 3), (16, 16, 32))}
    for name, (shape, feature_shape) in shapes.items():
        d = build_metzen_detector(build_model(name, shape, 10))
        assert d.layers[1].output.shape[1:] == feature_shape and d.output_shape == (None, 1)


def test_metzen_detector_frozen_f_and_safe_mode_roundtrip(tmp_path):
    from advsal_bench.models import build_model
    from advsal_bench.models.metzen_detector import DEFAULT_METZEN_LAYER

    name, shape = "mnist_net_f", (28, 28, 1)
    keras.utils.set_random_seed(8)
    f = build_model(name, shape, 10)
    f_weights = [w.copy() for w in f.get_weights()]
    d = build_model("metzen_d", shape, 1, f=f)  # the registry form, default layer
    assert d.get_layer(f"{name}_to_{DEFAULT_METZEN_LAYER[name]}").trainable is False
    assert d.output_shape == (None, 1)

    # Training D moves only the head: f (and D's frozen copy of it) keep their weights.
    rng = np.random.default_rng(9)
    x = rng.uniform(0, 1, size=(16,) + shape).astype(np.float32)
    labels = (np.arange(16) % 2).astype(np.float32)
    frozen_before = [w.copy() for w in d.get_layer(f"{name}_to_{DEFAULT_METZEN_LAYER[name]}").get_weights()]
    head_before = d.get_layer("metzen_conv1").get_weights()[0].copy()
    d.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    d.fit(x, labels, epochs=1, batch_size=8, verbose=0)
    for before, after in zip(f_weights, f.get_weights()):
        np.testing.assert_array_equal(before, after)
    for before, after in zip(frozen_before, d.get_layer(f"{name}_to_{DEFAULT_METZEN_LAYER[name]}").get_weights()):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(head_before, d.get_layer("metzen_conv1").get_weights()[0])

    path = tmp_path / "metzen.keras"
    d.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x).numpy(), d(x).numpy(), rtol=1e-5, atol=1e-6)
    assert len(loaded.trainable_weights) == len(d.trainable_weights) == 8  # the head's 4 convs only


# --- ReLU f: a smooth copy supplies the saliency's gradient ----------------------------------------


def test_softplus_surrogate_gives_relu_f_a_saliency_gradient():
    from advsal_bench.models import build_model
    from advsal_bench.models.surrogate import softplus_surrogate

    keras.utils.set_random_seed(10)
    f = build_model("mnist_net_f", (28, 28, 1), 10)  # ReLU and max-pooling
    smooth = softplus_surrogate(f)
    for a, b in zip(f.get_weights(), smooth.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not any(getattr(layer, "activation", None) is keras.activations.relu for layer in smooth.layers)

    d = _d(28, 1, seed=11)
    x = np.random.default_rng(12).uniform(0, 1, size=(8, 28, 28, 1)).astype(np.float32)
    plain = make_detector_fn(d, f, inputs=("saliency",))
    straight_through = make_detector_fn(d, f, inputs=("saliency",), saliency_model_fn=smooth)
    # The value is f's saliency exactly; only the gradient changes.
    np.testing.assert_array_equal(straight_through(x).numpy(), plain(x).numpy())
    assert np.all(_grad(plain, x) == 0)
    assert np.all(np.abs(_grad(straight_through, x)).reshape(8, -1).max(axis=1) > 0)
    # And that gradient is useful: hiding from D now works, where the plain one cannot move at all.
    np.testing.assert_array_equal(metzen_adaptive(f, plain, x, eps=0.1, sigma=1.0).numpy(), x)
    moved = plain(metzen_adaptive(f, straight_through, x, eps=0.1, sigma=1.0)).numpy()
    assert moved.mean() < plain(x).numpy().mean()

"""Orthogonal and selective PGD on f + D: the orthogonal direction, selective = PGD while f is not yet
fooled, norm bounds and clipping, and evasion of trained detectors that plain PGD cannot evade."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks import make_detector_fn
from advsal_bench.attacks.ifgsm import ifgsm
from advsal_bench.attacks.orthogonal_pgd import _gradients, orthogonal_pgd, update_direction
from advsal_bench.attacks.utils import remove_component
from advsal_bench.models.surrogate import softplus_surrogate
from advsal_bench.saliency import fit_global_scale, gradient_saliency

N, H, W, C, K = 16, 8, 8, 1, 3


def _linear_model(seed: int = 0):
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(H * W * C, K)).astype(np.float32))
    b = tf.constant(rng.normal(size=(K,)).astype(np.float32))
    return lambda x: tf.reshape(x, [-1, H * W * C]) @ w + b


def _linear_detector(seed: int = 5):
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(H * W * C, 1)).astype(np.float32))
    return lambda x: tf.reshape(tf.reshape(x, [-1, H * W * C]) @ w, [-1]) - 0.5


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.2, 0.8, size=(N, H, W, C)).astype(np.float32)


def _dots(a: tf.Tensor, b: tf.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-example a.b and |a| |b|."""
    a, b = a.numpy().reshape(len(a), -1).astype(np.float64), b.numpy().reshape(len(b), -1).astype(np.float64)
    return np.sum(a * b, axis=1), np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)


# --- the update direction ------------------------------------------------------------------------------

FOOLED = tf.constant([True, False] * 3)


def _correlated_gradients(seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    # Strongly correlated, so that removing the component changes the direction substantially.
    rng = np.random.default_rng(seed)
    grad_f = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    grad_d = (0.8 * grad_f + 0.3 * rng.normal(size=grad_f.shape)).astype(np.float32)
    return tf.constant(grad_f), tf.constant(grad_d)


def test_orthogonal_direction_is_orthogonal_to_the_other_gradient():
    grad_f, grad_d = _correlated_gradients()
    direction = update_direction(grad_f, grad_d, FOOLED, mode="orthogonal")
    other = tf.where(FOOLED[:, None, None, None], grad_f, grad_d)
    dot, scale = _dots(direction, other)
    assert np.all(np.abs(dot) <= 1e-5 * scale)
    # Still a descent direction on D (fooled) and an ascent direction on f (not fooled).
    own, _ = _dots(direction, tf.where(FOOLED[:, None, None, None], -grad_d, grad_f))
    assert np.all(own > 0)


def test_orthogonal_direction_on_real_gradients_through_the_saliency():
    keras.utils.set_random_seed(0)
    f = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(8, activation="softplus"),
                          keras.layers.Dense(K)])
    d = keras.Sequential([keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, activation="tanh"), keras.layers.Flatten(),
                          keras.layers.Dense(1)])
    x = tf.constant(np.random.default_rng(2).uniform(0.2, 0.8, size=(6, 8, 8, 1)).astype(np.float32))
    y = tf.argmax(f(x), axis=1, output_type=tf.int32)
    _, _, grad_f, grad_d = _gradients(f, make_detector_fn(d, f), x, y)
    direction = update_direction(grad_f, grad_d, FOOLED, mode="orthogonal")
    dot, scale = _dots(direction, tf.where(FOOLED[:, None, None, None], grad_f, grad_d))
    assert np.all(scale > 0) and np.all(np.abs(dot) <= 1e-5 * scale)


def test_selective_direction_is_the_raw_gradient():
    grad_f, grad_d = _correlated_gradients(1)
    direction = update_direction(grad_f, grad_d, FOOLED, mode="selective").numpy()
    fooled = FOOLED.numpy()
    np.testing.assert_array_equal(direction[fooled], -grad_d.numpy()[fooled])
    np.testing.assert_array_equal(direction[~fooled], grad_f.numpy()[~fooled])


def test_remove_component_of_a_zero_vector_leaves_the_gradient():
    grad_f, _ = _correlated_gradients()
    np.testing.assert_array_equal(remove_component(grad_f, tf.zeros_like(grad_f)).numpy(), grad_f.numpy())


# --- selective PGD is PGD until f is fooled ----------------------------------------------------------------


@pytest.mark.parametrize("norm,eps", [(np.inf, 0.04), (2, 0.3)])
def test_selective_takes_pgds_steps_while_f_is_not_fooled(images, norm, eps):
    f, detector_fn, steps, alpha = _linear_model(), _linear_detector(), 6, eps / 4
    y = np.argmax(f(tf.constant(images)).numpy(), axis=1)
    got = orthogonal_pgd(f, detector_fn, images, eps=eps, norm=norm, steps=steps, alpha=alpha, mode="selective").numpy()
    trajectory = [ifgsm(f, images, eps=eps, norm=norm, steps=k, alpha=alpha).numpy() for k in range(1, steps + 1)]
    never_fooled = np.all([np.argmax(f(tf.constant(t)).numpy(), axis=1) == y for t in trajectory], axis=0)
    assert 0 < never_fooled.sum() < N  # both kinds of image present
    # Never fooled, never a success: the attack returns its last iterate, which is I-FGSM's.
    np.testing.assert_allclose(got[never_fooled], trajectory[-1][never_fooled], rtol=0, atol=1e-6)


# --- bounds and clipping ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["orthogonal", "selective"])
@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 0.5)])
def test_norm_bound_and_clip_range(images, mode, norm, eps):
    f, detector_fn = _linear_model(), _linear_detector()
    x_adv = orthogonal_pgd(f, detector_fn, images, eps=eps, norm=norm, steps=15, mode=mode).numpy()
    assert x_adv.dtype == np.float32 and x_adv.shape == images.shape
    delta = (x_adv - images).reshape(N, -1).astype(np.float64)
    size = np.abs(delta).max(axis=1) if norm == np.inf else np.linalg.norm(delta, axis=1)
    assert np.all(size <= eps * (1 + 1e-5)) and np.any(size > 0)
    narrow = orthogonal_pgd(f, detector_fn, images, eps=5.0, norm=norm, steps=5, alpha=1.0, mode=mode,
                            clip_min=0.25, clip_max=0.75).numpy()
    assert narrow.min() >= 0.25 and narrow.max() <= 0.75


def test_one_trace_serves_an_eps_grid(images):
    from advsal_bench.distribute import Runner

    f, detector_fn, traces = _linear_model(seed=4), _linear_detector(), []

    def counted(x):  # its Python body runs only while TF traces
        traces.append(1)
        return f(x)

    runner = Runner(tf.distribute.get_strategy())
    step = lambda x, eps: orthogonal_pgd(counted, detector_fn, x, eps=eps, steps=3)  # noqa: E731
    runner.run(step, [images], batch_size=len(images), constants=(0.01,))
    first = len(traces)
    for eps in (0.02, 0.05):
        runner.run(step, [images], batch_size=len(images), constants=(eps,))
    assert first > 0 and len(traces) == first


# --- end to end: a trained f and a trained D ---------------------------------------------------------------------

EPS = 0.2


def _train_detector(inputs: np.ndarray, labels: np.ndarray, seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    d = keras.Sequential([keras.Input(inputs.shape[1:]), keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1)])
    d.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    d.fit(inputs, labels, batch_size=64, epochs=3, verbose=0, shuffle=True)
    return d


@pytest.fixture(scope="module")
def detectors(tiny_mnist_model, mnist_sample):
    """D trained to tell clean training digits from I-FGSM ones, on the image and on [image, saliency]."""
    f = tiny_mnist_model[0]
    clean = mnist_sample[0][:1000]
    adv = ifgsm(f, clean, eps=EPS, steps=10).numpy()
    labels = np.concatenate([np.zeros(len(clean)), np.ones(len(adv))]).astype(np.float32)
    image_d = _train_detector(np.concatenate([clean, adv]), labels, seed=1)
    scale = fit_global_scale(gradient_saliency(f, clean).numpy())
    with_saliency = lambda x: np.concatenate([x, gradient_saliency(f, x).numpy() / scale], axis=-1)  # noqa: E731
    saliency_d = _train_detector(np.concatenate([with_saliency(clean), with_saliency(adv)]), labels, seed=2)
    return {
        "image": make_detector_fn(image_d, f, inputs=("image",)),
        # D's gradient through f's saliency, by way of the smooth copy of the ReLU f.
        "image_saliency": make_detector_fn(saliency_d, f, saliency_normalize="global", saliency_scale=scale,
                                           saliency_model_fn=softplus_surrogate(f)),
    }


@pytest.mark.parametrize("mode", ["orthogonal", "selective"])
@pytest.mark.parametrize("inputs", ["image", "image_saliency"])
def test_evades_a_trained_detector_that_catches_plain_pgd(tiny_mnist_model, detectors, inputs, mode):
    f, x_test, _, _ = tiny_mnist_model
    detector_fn, x = detectors[inputs], x_test[:100]
    y = np.argmax(f(tf.constant(x)).numpy(), axis=1)

    def evaded(x_adv) -> float:
        fooled = np.argmax(f(tf.constant(x_adv)).numpy(), axis=1) != y
        return float(np.mean(fooled & (detector_fn(x_adv).numpy() < 0.0)))

    assert np.mean(detector_fn(x).numpy() >= 0.0) <= 0.05  # D passes clean digits
    plain = evaded(ifgsm(f, x, eps=EPS, steps=50).numpy())
    ours = evaded(orthogonal_pgd(f, detector_fn, x, eps=EPS, steps=50, mode=mode).numpy())
    assert plain <= 0.05 and ours >= 0.6, (plain, ours)

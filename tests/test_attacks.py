"""FGSM / iterative FGSM: norm bounds, clipping, label handling, and real success on a trained net."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks import ATTACKS
from advsal_bench.attacks.fgsm import fgsm
from advsal_bench.attacks.ifgsm import ifgsm, ifgsm_l2, ifgsm_linf
from advsal_bench.attacks.ifgsm import default_alpha
from advsal_bench.attacks.utils import clip_eta, normalize
from advsal_bench.errors import ConfigError

N, H, W, C, K = 6, 8, 8, 1, 3


def _linear_model(seed: int = 0, *, scale: float = 1.0):
    """A fixed linear classifier on 8x8x1 images: logits = flatten(x) @ W + b."""
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(H * W * C, K)).astype(np.float32))
    b = tf.constant(rng.normal(size=(K,)).astype(np.float32))

    def model_fn(x):
        return scale * (tf.reshape(x, [-1, H * W * C]) @ w + b)

    return model_fn


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    # Strictly inside (0.2, 0.8) so that small steps are never clipped at [0, 1].
    return np.random.default_rng(1).uniform(0.2, 0.8, size=(N, H, W, C)).astype(np.float32)


def _linf(d: np.ndarray) -> np.ndarray:
    return np.abs(d).reshape(len(d), -1).max(axis=1)


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(d.astype(np.float64)).reshape(len(d), -1), axis=1))


ALL_ATTACKS = [
    pytest.param(lambda m, x, **kw: fgsm(m, x, norm=np.inf, **kw), id="fgsm_linf"),
    pytest.param(lambda m, x, **kw: fgsm(m, x, norm=2, **kw), id="fgsm_l2"),
    pytest.param(ifgsm_linf, id="ifgsm_linf"),
    pytest.param(ifgsm_l2, id="ifgsm_l2"),
]


# --- eps = 0, clipping, norm bounds ------------------------------------------------------------


@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_eps_zero_returns_input_exactly(attack, images):
    x_adv = attack(_linear_model(), images, eps=0.0).numpy()
    assert x_adv.dtype == np.float32 and x_adv.shape == images.shape
    np.testing.assert_array_equal(x_adv, images)


@pytest.mark.parametrize("attack", ALL_ATTACKS)
def test_output_stays_in_clip_range(attack):
    x = np.random.default_rng(2).uniform(0.0, 1.0, size=(N, H, W, C)).astype(np.float32)
    x_adv = attack(_linear_model(), x, eps=5.0).numpy()  # huge step: clipping does all the work
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    x_adv = attack(_linear_model(), x, eps=5.0, clip_min=0.25, clip_max=0.75).numpy()
    assert x_adv.min() >= 0.25 and x_adv.max() <= 0.75
    # The step really went to the bounds (the attack did something).
    assert np.mean((x_adv == 0.25) | (x_adv == 0.75)) > 0.5


@pytest.mark.parametrize("eps", [0.03, 0.1, 0.3])
def test_linf_bound(images, eps):
    model = _linear_model()
    x_fgsm = fgsm(model, images, eps=eps).numpy()
    # A step size twice eps forces the projection every iteration.
    x_ifgsm = ifgsm_linf(model, images, eps=eps, steps=4, alpha=2 * eps).numpy()
    x_default = ifgsm_linf(model, images, eps=eps).numpy()
    for x_adv in (x_fgsm, x_ifgsm, x_default):
        assert np.all(_linf(x_adv - images) <= eps + 1e-6)
    # FGSM moves every pixel by exactly eps (no clipping inside (0.2, 0.8) for eps <= 0.2).
    if eps <= 0.2:
        np.testing.assert_allclose(np.abs(x_fgsm - images), eps, rtol=1e-5)
    # The projected iterate sits on the boundary of the ball.
    np.testing.assert_allclose(_linf(x_ifgsm - images), eps, rtol=1e-5)


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_l2_bound_per_example(images, eps):
    model = _linear_model()
    x_fgsm = fgsm(model, images, eps=eps, norm=2).numpy()
    x_ifgsm = ifgsm_l2(model, images, eps=eps, steps=5, alpha=3 * eps).numpy()
    x_default = ifgsm_l2(model, images, eps=eps).numpy()
    for x_adv in (x_fgsm, x_ifgsm, x_default):
        norms = _l2(x_adv - images)
        assert np.all(norms <= eps * (1 + 1e-5)), norms
    # Without clipping (small eps), the l2 FGSM step has norm exactly eps, and projection lands on
    # the sphere; with clipping at [0, 1] the norm can only shrink.
    if eps <= 0.5:
        np.testing.assert_allclose(_l2(x_fgsm - images), eps, rtol=1e-4)
        np.testing.assert_allclose(_l2(x_ifgsm - images), eps, rtol=1e-4)
    else:
        assert np.all(_l2(x_fgsm - images) > 0.9 * eps)


def test_l2_bound_per_example_not_per_batch():
    # One example with a much larger gradient must not borrow budget from the others.
    x = np.full((2, H, W, C), 0.5, np.float32)

    def model_fn(t):
        flat = tf.reshape(t, [2, -1])
        scale = tf.constant([[1.0], [1000.0]])  # row 1's gradient is 1000x row 0's
        logit = scale * (tf.reduce_mean(flat, axis=1, keepdims=True) - 0.5) + 0.1  # unsaturated at x=0.5
        return tf.concat([logit, tf.zeros([2, 1])], axis=1)

    x_fgsm = fgsm(model_fn, x, eps=0.5, norm=2).numpy()
    np.testing.assert_allclose(_l2(x_fgsm - x), [0.5, 0.5], rtol=1e-4)
    norms = _l2(ifgsm_l2(model_fn, x, eps=0.5, steps=3).numpy() - x)
    assert np.all(norms <= 0.5 * (1 + 1e-5)) and np.all(norms > 0.4), norms


def test_ifgsm_linf_stronger_than_step_size():
    # With the default alpha (2.5 eps / steps) the iterate reaches the boundary of the ball.
    assert default_alpha(0.2, 10) == pytest.approx(0.05)
    x = np.full((N, H, W, C), 0.5, np.float32)
    x_adv = ifgsm_linf(_linear_model(), x, eps=0.2).numpy()
    np.testing.assert_allclose(_linf(x_adv - x), 0.2, rtol=1e-5)


# --- labels ----------------------------------------------------------------------------------


def test_fgsm_without_y_uses_predicted_label(images):
    model = _linear_model()
    pred = np.argmax(model(images).numpy(), axis=-1).astype(np.int32)
    for norm in (np.inf, 2):
        implicit = fgsm(model, images, eps=0.1, norm=norm).numpy()
        explicit = fgsm(model, images, eps=0.1, norm=norm, y=pred).numpy()
        np.testing.assert_array_equal(implicit, explicit)
        # A label that differs from the prediction (e.g. the true label of a misclassified image)
        # gives a different gradient, hence a different adversarial example, in every row.
        other = (pred + 1) % K
        different = fgsm(model, images, eps=0.1, norm=norm, y=other).numpy()
        assert np.all(np.any((different != implicit).reshape(N, -1), axis=1))


def test_fgsm_true_label_vs_prediction_on_trained_model(tiny_mnist_model):
    model, x, y, _ = tiny_mnist_model
    x, y = x[:200], y[:200]
    pred = np.argmax(model(x).numpy(), axis=-1)
    wrong = pred != y
    assert wrong.any(), "the tiny model should misclassify some test digits"
    implicit = fgsm(model, x, eps=0.1).numpy()
    with_pred = fgsm(model, x, eps=0.1, y=pred).numpy()
    with_true = fgsm(model, x, eps=0.1, y=y).numpy()
    np.testing.assert_array_equal(implicit, with_pred)
    diff_rows = np.any((with_true != implicit).reshape(len(x), -1), axis=1)
    assert np.all(diff_rows[wrong])  # true label differs -> the attack differs
    assert not np.any(diff_rows[~wrong])  # same label -> identical


def test_ifgsm_without_y_fixes_the_initial_prediction(images):
    model = _linear_model()
    pred = np.argmax(model(images).numpy(), axis=-1).astype(np.int32)
    np.testing.assert_array_equal(
        ifgsm_linf(model, images, eps=0.2).numpy(), ifgsm_linf(model, images, eps=0.2, y=pred).numpy()
    )


# --- degenerate gradients, tensors, errors -----------------------------------------------------


def test_zero_gradient_gives_no_nan(images):
    model = _linear_model(scale=0.0)  # logits constant in x: the loss gradient is exactly zero
    for x_adv in (
        fgsm(model, images, eps=0.3, norm=2),
        ifgsm_l2(model, images, eps=1.0, steps=3),
        fgsm(model, images, eps=0.3),
        ifgsm_linf(model, images, eps=0.3, steps=3),
    ):
        x_adv = x_adv.numpy()
        assert np.all(np.isfinite(x_adv))
        np.testing.assert_array_equal(x_adv, images)


def test_norm_helpers_zero_inputs_are_finite():
    z = tf.zeros([2, 4, 4, 1])
    assert np.all(np.isfinite(normalize(z, 2).numpy()))
    assert np.all(clip_eta(z, 2, 1.0).numpy() == 0)


def test_tensor_eps_inside_tf_function_matches_python_float(images):
    model = _linear_model()

    @tf.function
    def step(x, eps):
        return ifgsm_linf(model, x, eps=eps, steps=3), fgsm(model, x, eps=eps, norm=2)

    a, b = step(tf.constant(images), tf.constant(0.1))
    np.testing.assert_allclose(a.numpy(), ifgsm_linf(model, images, eps=0.1, steps=3).numpy(), atol=1e-6)
    np.testing.assert_allclose(b.numpy(), fgsm(model, images, eps=0.1, norm=2).numpy(), atol=1e-6)


@pytest.mark.parametrize("norm", [1, 0, "inf", "2", None])
def test_invalid_norm_raises(images, norm):
    with pytest.raises(ValueError, match="norm: expected np.inf or 2"):
        fgsm(_linear_model(), images, eps=0.1, norm=norm)
    with pytest.raises(ValueError, match="norm: expected np.inf or 2"):
        ifgsm(_linear_model(), images, eps=0.1, norm=norm)


@pytest.mark.parametrize("steps", [0, -1])
def test_ifgsm_steps_must_be_positive(images, steps):
    for attack in (ifgsm_linf, ifgsm_l2):
        with pytest.raises(ValueError, match="steps: expected an integer >= 1"):
            attack(_linear_model(), images, eps=0.1, steps=steps)


def test_unknown_attack_type_lists_the_registered_ones():
    from advsal_bench.config import config_from_dict

    with pytest.raises(ConfigError) as err:
        config_from_dict({"name": "x", "attacks": {"mine": {"type": "pgdd"}}})
    assert "attacks.mine.type" in str(err.value) and "'pgdd'" in str(err.value)
    assert all(name in str(err.value) for name in ATTACKS.names())


# --- real success on a trained classifier --------------------------------------------------------


def _acc(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), axis=-1) == y))


def test_attacks_fool_a_trained_mnist_net(tiny_mnist_model):
    model, x, y, clean = tiny_mnist_model
    assert clean > 0.75, f"tiny model too weak to test attacks against (accuracy {clean:.3f})"
    rng = np.random.default_rng(0)
    noise = np.clip(x + 0.3 * rng.choice([-1.0, 1.0], size=x.shape).astype(np.float32), 0, 1)
    acc_noise = _acc(model, noise, y)

    x_fgsm = fgsm(model, x, eps=0.3).numpy()
    x_ifgsm = ifgsm_linf(model, x, eps=0.2).numpy()
    acc_fgsm, acc_ifgsm = _acc(model, x_fgsm, y), _acc(model, x_ifgsm, y)
    assert np.all(_linf(x_fgsm - x) <= 0.3 + 1e-6) and np.all(_linf(x_ifgsm - x) <= 0.2 + 1e-6)

    assert acc_fgsm < 0.5 * clean, (clean, acc_fgsm)
    assert acc_ifgsm < 0.5 * clean, (clean, acc_ifgsm)
    # The gradient direction matters: random signs of the same size hurt far less.
    assert acc_fgsm < acc_noise - 0.2, (acc_noise, acc_fgsm)


def test_ifgsm_beats_fgsm_at_equal_budget(tiny_mnist_model):
    model, x, y, clean = tiny_mnist_model
    x, y = x[:300], y[:300]
    acc_fgsm = _acc(model, fgsm(model, x, eps=0.1).numpy(), y)
    acc_ifgsm = _acc(model, ifgsm_linf(model, x, eps=0.1).numpy(), y)
    assert acc_ifgsm < acc_fgsm, (acc_fgsm, acc_ifgsm)
    x_l2 = ifgsm_l2(model, x, eps=2.0).numpy()
    assert np.all(_l2(x_l2 - x) <= 2.0 * (1 + 1e-5))
    assert _acc(model, x_l2, y) < 0.5 * clean

"""Carlini & Wagner L2: success with small l2 on a trained net, box constraint, fallback to x."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.cw_l2 import cw_l2, cw_success, from_tanh_space, margin, to_tanh_space
from advsal_bench.attacks.fgsm import fgsm

N_IMAGES = 32


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(d.astype(np.float64)).reshape(len(d), -1), axis=1))


def _pred(model_fn, x: np.ndarray) -> np.ndarray:
    return np.argmax(np.asarray(model_fn(tf.constant(x))), axis=-1)


@pytest.fixture(scope="module")
def cw_run(tiny_mnist_model):
    """One default cw_l2 run on 32 test digits (about 5 s with tracing), shared by the tests below."""
    model, x, _, _ = tiny_mnist_model
    x = x[:N_IMAGES]
    return model, x, cw_l2(model, x).numpy()


def test_cw_l2_fools_most_with_smaller_l2_than_fgsm(cw_run):
    model, x, x_adv = cw_run
    y0 = _pred(model, x)
    fooled = _pred(model, x_adv) != y0
    assert fooled.mean() >= 0.9, fooled.mean()
    cw_l2_mean = _l2(x_adv - x)[fooled].mean()
    # The smallest FGSM step reaching at least C&W's success rate, and its l2 on the fooled images.
    for eps in (0.05, 0.1, 0.15, 0.2, 0.3, 0.5):
        x_f = fgsm(model, x, eps=eps).numpy()
        fooled_f = _pred(model, x_f) != y0
        if fooled_f.mean() >= fooled.mean():
            break
    else:
        pytest.fail("FGSM never reached C&W's success rate")
    fgsm_l2_mean = _l2(x_f - x)[fooled_f].mean()
    assert cw_l2_mean < 0.5 * fgsm_l2_mean, (cw_l2_mean, eps, fgsm_l2_mean)


def test_cw_l2_respects_clip_range(cw_run):
    model, x, x_adv = cw_run
    assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    x_mid = np.clip(x, 0.2, 0.7)
    x_adv = cw_l2(model, x_mid[:8], steps=20, binary_search_steps=2, clip_min=0.2, clip_max=0.7).numpy()
    assert x_adv.min() >= 0.2 and x_adv.max() <= 0.7


def test_cw_l2_returns_x_where_never_successful(tiny_mnist_model):
    model, x, _, _ = tiny_mnist_model
    x = x[:8]
    # A confidence no 20-step run can reach: every row must come back unchanged, bit for bit.
    np.testing.assert_array_equal(cw_l2(model, x, kappa=1e6, steps=20, binary_search_steps=2).numpy(), x)

    def constant_model(t):  # logits that ignore x: nothing to attack, zero gradient
        return tf.zeros([tf.shape(t)[0], 1]) + tf.constant([[5.0, 0.0, 0.0]])

    np.testing.assert_array_equal(cw_l2(constant_model, x, steps=5, binary_search_steps=2).numpy(), x)


def test_cw_l2_each_row_is_x_or_an_adversarial(tiny_mnist_model):
    model, x, _, _ = tiny_mnist_model
    x = x[:16]
    y0 = _pred(model, x)
    # A small budget leaves some rows unsolved; kappa keeps solved rows off the decision boundary.
    x_adv = cw_l2(model, x, kappa=0.5, steps=10, binary_search_steps=1).numpy()
    unchanged = np.all((x_adv == x).reshape(len(x), -1), axis=1)
    fooled = _pred(model, x_adv) != y0
    assert unchanged.any() and (~unchanged).any(), "budget should leave a mix of solved and unsolved rows"
    np.testing.assert_array_equal(fooled, ~unchanged)


def test_cw_l2_more_confidence_costs_more_distortion(tiny_mnist_model):
    model, x, _, _ = tiny_mnist_model
    x = x[:16]
    y0 = _pred(model, x)
    low = cw_l2(model, x, kappa=0.0, steps=50, binary_search_steps=3).numpy()
    high = cw_l2(model, x, kappa=3.0, steps=50, binary_search_steps=3).numpy()
    both = (_pred(model, low) != y0) & (_pred(model, high) != y0)
    assert both.sum() >= 8
    assert _l2(high - x)[both].mean() > _l2(low - x)[both].mean()
    margins = margin(model(high[both]), tf.constant(y0[both], tf.int32)).numpy()
    assert np.all(margins < -2.5), margins  # kappa = 3 past the boundary, up to re-evaluation noise


def test_cw_l2_inside_tf_function_and_explicit_y(tiny_mnist_model):
    model, x, _, _ = tiny_mnist_model
    x = tf.constant(x[:8])
    y0 = tf.constant(_pred(model, x.numpy()), tf.int32)

    @tf.function
    def attack(batch):
        return cw_l2(model, batch, steps=10, binary_search_steps=2)

    np.testing.assert_allclose(
        attack(x).numpy(), cw_l2(model, x, y=y0, steps=10, binary_search_steps=2).numpy(), atol=1e-5
    )


def test_tanh_space_roundtrip_and_success_helper():
    x = tf.constant(np.linspace(0.0, 1.0, 11, dtype=np.float32).reshape(1, 11, 1, 1))
    back = from_tanh_space(to_tanh_space(x, 0.0, 1.0), 0.0, 1.0).numpy()
    np.testing.assert_allclose(back, x.numpy(), atol=1e-6)
    logits = tf.constant([[3.0, 1.0, 0.0], [1.0, 3.0, 0.0], [1.0, 1.5, 0.0]])
    y = tf.constant([0, 0, 0])
    np.testing.assert_array_equal(cw_success(logits, y).numpy(), [False, True, True])
    np.testing.assert_array_equal(cw_success(logits, y, kappa=1.0).numpy(), [False, True, False])

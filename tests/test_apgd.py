"""APGD: the paper's checkpoints and halvings, the DLR loss, norm bounds and clipping, graph use,
and real success (at least PGD's) on a trained net."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.apgd import apgd, apgd_checkpoints, apgd_run, dlr_loss, halving_condition
from advsal_bench.attacks.fgsm import fgsm
from advsal_bench.attacks.utils import project, random_start

N, H, W, C, K = 6, 8, 8, 1, 4


def _linear_model(seed: int = 0, *, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    w = tf.constant(rng.normal(size=(H * W * C, K)).astype(np.float32))
    b = tf.constant(rng.normal(size=(K,)).astype(np.float32))
    return lambda x: scale * (tf.reshape(x, [-1, H * W * C]) @ w + b)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.0, 1.0, size=(N, H, W, C)).astype(np.float32)


def _linf(d: np.ndarray) -> np.ndarray:
    return np.abs(d).reshape(len(d), -1).max(axis=1)


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(d.astype(np.float64)).reshape(len(d), -1), axis=1))


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model(tf.constant(x)).numpy(), axis=1) == y))


# --- the step-size schedule ------------------------------------------------------------------------


def _paper_checkpoints(steps: int) -> list[int]:
    """w_j = ceil(p_j * steps) in exact rationals, straight from the paper's recursion."""
    p = [Fraction(0), Fraction(22, 100)]
    while p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - Fraction(3, 100), Fraction(6, 100)))
    return sorted({math.ceil(pj * steps) for pj in p if math.ceil(pj * steps) < steps})


def test_checkpoints_are_the_papers():
    assert apgd_checkpoints(100) == (0, 22, 41, 57, 70, 80, 87, 93, 99)
    assert apgd_checkpoints(1000) == (0, 220, 410, 570, 700, 800, 870, 930, 990)
    assert apgd_checkpoints(10) == (0, 3, 5, 6, 7, 8, 9)
    assert apgd_checkpoints(1) == (0,)
    for steps in range(1, 400):
        assert list(apgd_checkpoints(steps)) == _paper_checkpoints(steps), steps


@pytest.mark.parametrize(
    "successes,halved_last,loss_max,loss_max_last,expected",
    [
        (16.0, False, 2.0, 1.0, False),  # 16 >= 0.75 * 20 and the best loss rose
        (14.0, False, 2.0, 1.0, True),  # Condition 1: 14 < 15
        (16.0, False, 1.0, 1.0, True),  # Condition 2: same step size, same best loss
        (16.0, True, 1.0, 1.0, False),  # Condition 2 needs an unchanged step size
        (14.0, True, 1.0, 1.0, True),  # Condition 1 alone
    ],
)
def test_halving_condition(successes, halved_last, loss_max, loss_max_last, expected):
    got = halving_condition(tf.constant([successes]), 20.0, 0.75, tf.constant([halved_last]),
                            tf.constant([loss_max]), tf.constant([loss_max_last]))
    assert bool(got.numpy()[0]) is expected


def _step_changes(step_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Iterations k after which the step size changed (k -> k + 1), and the ratios new / old."""
    changed = step_sizes[1:] != step_sizes[:-1]
    k, image = np.nonzero(changed)
    return k, step_sizes[k + 1, image] / step_sizes[k, image]


def test_halving_happens_only_at_checkpoints(tiny_mnist_model):
    model, x_test, y_test, _ = tiny_mnist_model
    x, y = x_test[:64], y_test[:64]
    eps = 0.1
    run = apgd_run(model, x, x, y, eps=eps, steps=100)
    step_sizes = run.step_sizes.numpy()
    assert step_sizes.shape == (100, 64)
    np.testing.assert_allclose(step_sizes[0], 2 * eps, rtol=1e-6)
    k, ratio = _step_changes(step_sizes)
    assert set(k.tolist()) <= set(apgd_checkpoints(100)[1:])
    np.testing.assert_allclose(ratio, 0.5, rtol=1e-6)
    assert len(k) > 64  # the schedule really acted (a few halvings per image)


def test_a_flat_loss_halves_at_every_checkpoint(images):
    # No step ever raises a constant loss: Condition 1 holds at every checkpoint.
    constant = lambda x: tf.zeros([tf.shape(x)[0], K]) + tf.range(K, dtype=tf.float32)  # noqa: E731
    y = tf.zeros([N], tf.int32)
    step_sizes = apgd_run(constant, images, images, y, eps=0.1, steps=50).step_sizes.numpy()
    halvings = np.array([sum(w < k for w in apgd_checkpoints(50)[1:]) for k in range(50)])
    np.testing.assert_allclose(step_sizes, (0.2 * 0.5**halvings)[:, None].repeat(N, axis=1), rtol=1e-6)


# --- the loss ---------------------------------------------------------------------------------------


def test_dlr_loss_values():
    logits = tf.constant([[3.0, 1.0, 0.0, -1.0], [3.0, 1.0, 0.0, -1.0]])
    y = tf.constant([0, 2])
    # y = 0: -(3 - 1) / (3 - 0); y = 2: -(0 - 3) / (3 - 0).
    np.testing.assert_allclose(dlr_loss(logits, y).numpy(), [-2 / 3, 1.0], rtol=1e-6)
    # Invariant to a positive affine map of the logits.
    np.testing.assert_allclose(dlr_loss(5.0 * logits - 7.0, y).numpy(), [-2 / 3, 1.0], rtol=1e-5)


# --- bounds, clipping, labels, determinism -------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm,eps", [(np.inf, 0.1), (2, 0.5)])
def test_norm_bound_and_clip_range(images, loss, norm, eps):
    model = _linear_model(scale=3.0)
    x_adv = apgd(model, images, eps=eps, norm=norm, steps=20, loss=loss, restarts=2).numpy()
    assert x_adv.dtype == np.float32 and x_adv.shape == images.shape
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    size = _linf(x_adv - images) if norm == np.inf else _l2(x_adv - images)
    assert np.all(size <= eps * (1 + 1e-5))
    narrow = apgd(model, images, eps=5.0, norm=norm, steps=5, loss=loss, clip_min=0.25, clip_max=0.75).numpy()
    assert narrow.min() >= 0.25 and narrow.max() <= 0.75


def test_y_defaults_to_the_prediction_and_seed_fixes_the_start(images):
    model = _linear_model()
    predicted = np.argmax(model(tf.constant(images)).numpy(), axis=1)
    a = apgd(model, images, eps=0.05, steps=10).numpy()
    np.testing.assert_array_equal(a, apgd(model, images, eps=0.05, steps=10, y=predicted).numpy())
    np.testing.assert_array_equal(a, apgd(model, images, eps=0.05, steps=10, seed=0).numpy())
    assert not np.array_equal(a, apgd(model, images, eps=0.05, steps=10, seed=1).numpy())


def test_one_trace_serves_an_eps_grid_and_it_runs_inside_tf_function(images):
    from advsal_bench.distribute import Runner

    model, traces = _linear_model(seed=3), []

    def counted(x):  # its Python body runs only while TF traces
        traces.append(1)
        return model(x)

    runner = Runner(tf.distribute.get_strategy())
    step = lambda x, eps: apgd(counted, x, eps=eps, steps=7)  # noqa: E731 - as the pipeline's crafter holds it
    for eps in (0.01, 0.02, 0.05, 0.1):
        runner.run(step, [images], batch_size=len(images), constants=(eps,))
    first = len(traces)
    runner.run(step, [images], batch_size=len(images), constants=(0.2,))
    assert first > 0 and len(traces) == first  # no new trace for another eps

    graph = tf.function(lambda x, eps: apgd(model, x, eps=eps, steps=7, restarts=2))
    eager = apgd(model, images, eps=0.05, steps=7, restarts=2).numpy()
    np.testing.assert_allclose(graph(tf.constant(images), tf.constant(0.05)).numpy(), eager, atol=1e-6)


# --- success on a trained net ----------------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "dlr"])
@pytest.mark.parametrize("norm,eps", [(np.inf, 0.2), (2, 2.0)])
def test_success_on_a_trained_net(tiny_mnist_model, loss, norm, eps):
    model, x_test, y_test, clean = tiny_mnist_model
    x, y = x_test[:200], y_test[:200]
    x_adv = apgd(model, x, eps=eps, norm=norm, steps=25, loss=loss, y=y).numpy()
    assert clean > 0.8
    assert _accuracy(model, x_adv, y) <= 0.05


def _pgd(model, x, y, *, eps, steps, alpha, seed=0):
    """PGD with a uniform random start: I-FGSM's step (fgsm, then ball and box) from a random point."""
    x = tf.constant(x)
    x_adv = random_start(x, np.inf, eps, tf.constant([seed, 0], tf.int64), 0.0, 1.0)
    for _ in range(steps):
        x_adv = project(fgsm(model, x_adv, eps=alpha, y=tf.constant(y, tf.int32)), x, np.inf, eps, 0.0, 1.0)
    return x_adv.numpy()


def test_at_least_as_strong_as_pgd_with_a_random_start(tiny_mnist_model):
    # A budget where neither attack reaches 0% accuracy, so the comparison means something.
    model, x_test, y_test, _ = tiny_mnist_model
    x, y = x_test[:300], y_test[:300]
    eps, steps = 0.06, 20
    acc_apgd = _accuracy(model, apgd(model, x, eps=eps, steps=steps, y=y).numpy(), y)
    for alpha in (2.5 * eps / steps, eps / 4):
        acc_pgd = _accuracy(model, _pgd(model, x, y, eps=eps, steps=steps, alpha=alpha), y)
        # On this near-linear net both find the same images; one image of slack absorbs a digit
        # that flips either way with the float order of another CPU.
        assert acc_apgd <= acc_pgd + 1 / len(y), (alpha, acc_apgd, acc_pgd)

"""PGD (Madry et al. 2018): the ball, the random start, restarts keeping each image's best, and success."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.ifgsm import ifgsm
from advsal_bench.attacks.pgd import pgd
from advsal_bench.attacks.utils import margin

N, H, W, C, K = 8, 6, 6, 1, 4


def _model(seed: int = 0):
    rng = np.random.default_rng(seed)
    w1 = tf.constant(rng.normal(size=(H * W * C, 16)).astype(np.float32))
    w2 = tf.constant(rng.normal(size=(16, K)).astype(np.float32))

    def model_fn(x):
        return tf.nn.relu(tf.reshape(x, [-1, H * W * C]) @ w1) @ w2

    return model_fn


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(1).uniform(0.2, 0.8, size=(N, H, W, C)).astype(np.float32)


def _norms(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flat = d.reshape(len(d), -1).astype(np.float64)
    return np.abs(flat).max(axis=1), np.linalg.norm(flat, axis=1)


@pytest.mark.parametrize("norm, eps", [(np.inf, 0.1), (2, 0.8)])
def test_pgd_stays_in_the_ball_and_the_box(images, norm, eps):
    x_adv = pgd(_model(), images, eps=eps, norm=norm, steps=5, restarts=2).numpy()
    linf, l2 = _norms(x_adv - images)
    assert ((linf if norm == np.inf else l2) <= eps * (1 + 1e-5)).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


@pytest.mark.parametrize("norm", [np.inf, 2])
def test_eps_zero_returns_the_images(images, norm):
    np.testing.assert_array_equal(pgd(_model(), images, eps=0.0, norm=norm, steps=3).numpy(), images)


def test_the_random_start_moves_pgd_off_ifgsm(images):
    model = _model()
    a = pgd(model, images, eps=0.1, steps=3).numpy()
    b = ifgsm(model, images, eps=0.1, steps=3).numpy()
    assert not np.array_equal(a, b)


def test_each_image_draws_its_own_start_whatever_its_batch(images):
    model, seeds = _model(), tf.constant(np.arange(N, dtype=np.int32) + 100)
    whole = pgd(model, images, eps=0.1, steps=2, seeds=seeds).numpy()
    parts = np.concatenate([pgd(model, images[i : i + 3], eps=0.1, steps=2, seeds=seeds[i : i + 3]).numpy()
                            for i in range(0, N, 3)])
    np.testing.assert_allclose(parts, whole, atol=1e-6)


def test_restarts_keep_each_images_lowest_margin(images):
    model = _model()
    y = tf.argmax(model(images), axis=-1, output_type=tf.int32)
    seeds = tf.constant(np.arange(N, dtype=np.int32))
    one = pgd(model, images, eps=0.05, steps=2, restarts=1, y=y, seeds=seeds)
    four = pgd(model, images, eps=0.05, steps=2, restarts=4, y=y, seeds=seeds)
    m1, m4 = margin(model(one), y).numpy(), margin(model(four), y).numpy()
    # restart 0 of the four is the single run (same seeds), so the best of four is never worse
    assert (m4 <= m1 + 1e-6).all() and (m4 < m1 - 1e-6).any()


def test_pgd_fools_a_trained_classifier_at_least_as_often_as_ifgsm():
    import keras

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(400, H, W, C)).astype(np.float32)
    y = (x.reshape(400, -1)[:, :18].mean(axis=1) > x.reshape(400, -1)[:, 18:].mean(axis=1)).astype(np.int64)
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((H, W, C)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
                            keras.layers.Dense(2)])
    net.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=20, batch_size=64, verbose=0)
    fn = lambda t: net(t, training=False)  # noqa: E731
    clean = float(np.mean(np.argmax(fn(x), -1) == y))
    acc_pgd = float(np.mean(np.argmax(fn(pgd(fn, x, eps=0.05, steps=10, restarts=2)), -1) == y))
    acc_ifgsm = float(np.mean(np.argmax(fn(ifgsm(fn, x, eps=0.05, steps=10)), -1) == y))
    assert clean > 0.9 and acc_pgd < clean - 0.3 and acc_pgd <= acc_ifgsm + 0.02

"""Gradient saliency against a per-image reference, and the three normalizations."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.saliency import NORMALIZATIONS, fit_global_scale, gradient_saliency, normalize_saliency


@pytest.fixture(scope="module")
def conv_model():
    keras.utils.set_random_seed(7)
    return keras.Sequential(
        [
            keras.Input(shape=(12, 12, 2)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="tanh"),
            keras.layers.Dense(5),
        ]
    )


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, size=(7, 12, 12, 2)).astype(np.float32)


def _reference(model_fn, x: np.ndarray) -> np.ndarray:
    """d logit_{argmax} / d x, one image at a time."""
    maps = []
    for i in range(len(x)):
        xi = tf.constant(x[i : i + 1])
        with tf.GradientTape() as tape:
            tape.watch(xi)
            logits = model_fn(xi)
            c = int(tf.argmax(logits[0]))
            score = logits[0, c]
        maps.append(tape.gradient(score, xi).numpy()[0])
    return np.stack(maps)


def test_gradient_saliency_matches_per_image_gradient(conv_model, images):
    sal = gradient_saliency(conv_model, images).numpy()
    ref = _reference(conv_model, images)
    assert sal.shape == images.shape and sal.dtype == np.float32
    assert np.abs(ref).max() > 0  # a non-trivial check
    np.testing.assert_allclose(sal, ref, rtol=1e-4, atol=1e-6)


def test_gradient_saliency_uses_each_images_own_predicted_class(images):
    # Linear model: the saliency of class c is column c of W, so the map identifies the class.
    rng = np.random.default_rng(3)
    w = rng.normal(size=(12 * 12 * 2, 4)).astype(np.float32)

    def model_fn(x):
        return tf.reshape(x, [-1, 12 * 12 * 2]) @ w

    pred = np.argmax(model_fn(images).numpy(), axis=-1)
    assert len(set(pred.tolist())) > 1, "test needs images predicted as different classes"
    sal = gradient_saliency(model_fn, images).numpy().reshape(len(images), -1)
    np.testing.assert_allclose(sal, w[:, pred].T, rtol=1e-6)


def test_gradient_saliency_trained_model(tiny_mnist_model):
    model, x, _, _ = tiny_mnist_model
    x = x[:5]
    sal = gradient_saliency(model, x).numpy()
    assert sal.shape == x.shape
    np.testing.assert_allclose(sal, _reference(model, x), rtol=1e-4, atol=1e-6)


def test_gradient_saliency_abs_is_nonnegative_and_magnitude(conv_model, images):
    raw = gradient_saliency(conv_model, images).numpy()
    sal = gradient_saliency(conv_model, images, abs=True).numpy()
    assert sal.shape == images.shape
    assert np.all(sal >= 0)
    assert np.any(raw < 0)  # so abs did something
    np.testing.assert_allclose(sal, np.abs(raw), rtol=1e-6)


def test_gradient_saliency_accepts_numpy_and_tensor(conv_model, images):
    a = gradient_saliency(conv_model, images).numpy()
    b = gradient_saliency(conv_model, tf.constant(images)).numpy()
    np.testing.assert_array_equal(a, b)


# --- normalization -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sal_maps() -> np.ndarray:
    rng = np.random.default_rng(5)
    s = rng.normal(size=(4, 6, 6, 1)) * np.array([1e-3, 1.0, 50.0, 1e-6]).reshape(4, 1, 1, 1)
    return s.astype(np.float32)


def test_normalize_global_divides_by_scale(sal_maps):
    out = normalize_saliency(sal_maps, "global", scale=0.25)
    assert out.dtype == np.float32 and out.shape == sal_maps.shape
    np.testing.assert_allclose(out, sal_maps / 0.25, rtol=1e-6)


def test_normalize_global_requires_scale(sal_maps):
    with pytest.raises(ValueError, match="scale"):
        normalize_saliency(sal_maps, "global")


def test_normalize_per_image_peak_is_one(sal_maps):
    out = normalize_saliency(sal_maps, "per_image")
    peaks = np.abs(out).reshape(len(out), -1).max(axis=1)
    np.testing.assert_allclose(peaks, 1.0, rtol=1e-6)
    # Signs and within-image ratios are kept.
    np.testing.assert_array_equal(np.sign(out), np.sign(sal_maps))
    ratio = out[1] / sal_maps[1]
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)


def test_normalize_per_image_all_zero_map_stays_finite():
    s = np.zeros((2, 3, 3, 1), np.float32)
    s[1, 0, 0, 0] = -4.0
    out = normalize_saliency(s, "per_image")
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[0], 0.0)
    assert out[1, 0, 0, 0] == -1.0


def test_normalize_none_is_identity(sal_maps):
    out = normalize_saliency(sal_maps, "none")
    np.testing.assert_array_equal(out, sal_maps)


@pytest.mark.parametrize("method", ["", "l2", "Global", "per-image"])
def test_normalize_unknown_method_raises(sal_maps, method):
    with pytest.raises(ValueError, match=r"normalize: expected one of none, per_image, global"):
        normalize_saliency(sal_maps, method)


def test_normalization_names_match_config_choices():
    from advsal_bench.config import SaliencyConfig
    import dataclasses

    choices = {f.name: f.metadata for f in dataclasses.fields(SaliencyConfig)}["normalize"]["choices"]
    assert set(choices) == set(NORMALIZATIONS)


def test_fit_global_scale():
    assert fit_global_scale(np.zeros((3, 4, 4, 1), np.float32)) == 1.0
    assert fit_global_scale(np.full((10,), 5.0)) == 1.0  # constant: std 0
    rng = np.random.default_rng(0)
    s = rng.normal(scale=3e-4, size=(50, 8, 8, 1)).astype(np.float32)
    scale = fit_global_scale(s)
    assert scale == pytest.approx(float(np.std(s.astype(np.float64))))
    assert np.std(normalize_saliency(s, "global", scale=scale)) == pytest.approx(1.0, rel=1e-4)

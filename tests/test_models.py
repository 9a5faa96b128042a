"""Every registered CIFAR-10 model builds, has the right output shape and round-trips through
``.keras`` with ``safe_mode=True`` (same outputs after loading)."""
from __future__ import annotations

import keras
import numpy as np
import pytest

from advsal_bench.models import build_model


@pytest.mark.parametrize(
    "name, input_shape, outputs",
    [
        ("cifar10_net_f", (32, 32, 3), 10),
        ("cifar10_net_d", (32, 32, 6), 1),
        ("cifar10_small_f", (32, 32, 3), 10),
        ("cifar10_small_d", (32, 32, 6), 1),  # [image, saliency]: two streams
        ("cifar10_small_d", (32, 32, 3), 1),  # [image] or [saliency]: one stream
    ],
)
def test_model_builds_and_survives_safe_mode(tmp_path, name, input_shape, outputs):
    model = build_model(name, input_shape, outputs)
    x = np.random.default_rng(0).random((2, *input_shape), dtype=np.float32)
    y = model(x, training=False)
    assert tuple(y.shape) == (2, outputs)
    assert model.output_shape == (None, outputs)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    np.testing.assert_allclose(np.asarray(loaded(x, training=False)), np.asarray(y), rtol=1e-5, atol=1e-6)


def test_small_d_streams_follow_the_inputs():
    two = build_model("cifar10_small_d", (32, 32, 6), 1)
    one = build_model("cifar10_small_d", (32, 32, 3), 1)
    assert [l.name for l in two.layers if l.name.endswith("_slice")] == ["s1_slice", "s2_slice"]
    assert not [l for l in one.layers if l.name.endswith("_slice")]


def test_small_f_augmentation_is_inactive_in_inference():
    model = build_model("cifar10_small_f", (32, 32, 3), 10)
    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(model(x, training=False)), np.asarray(model(x, training=False)))
    plain = build_model("cifar10_small_f", (32, 32, 3), 10, augment=False)
    assert not [l for l in plain.layers if l.name.startswith("aug_")]


def test_high_pass_residual_removes_content_keeps_other_channels_and_round_trips(tmp_path):
    import keras
    import tensorflow as tf

    from advsal_bench.models.residual import HighPassResidual, with_image_residual

    yy, xx = np.meshgrid(np.linspace(0, 1, 32), np.linspace(0, 1, 32), indexing="ij")
    ramp = (0.2 + 0.3 * xx + 0.1 * yy).astype(np.float32)  # a linear patch: no residual at all
    noise = np.random.default_rng(0).normal(0, 0.01, (32, 32)).astype(np.float32)
    x = np.stack([ramp, ramp + noise, ramp], -1)[None]  # channels: image (0..2), then one other channel
    x = np.concatenate([x, ramp[None, :, :, None]], -1)
    out = HighPassResidual(0, 3)(x).numpy()
    assert out.shape == x.shape
    assert np.abs(out[..., 0]).max() < 1e-5  # the content is gone ...
    assert np.abs(out[..., 1]).std() > 0.5 * noise.std()  # ... the faint noise stays
    np.testing.assert_array_equal(out[..., 3], x[..., 3])  # the channel outside [start, stop) passes
    d = with_image_residual(build_model("cifar10_small_d", (32, 32, 4), 1, group_channels=4), 0, 3)
    path = tmp_path / "d.keras"
    d.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    np.testing.assert_allclose(loaded(x, training=False), d(x, training=False), atol=1e-6)
    xt = tf.constant(x)
    with tf.GradientTape() as tape:  # adaptive attacks differentiate through it
        tape.watch(xt)
        y = tf.reduce_sum(d(xt, training=False))
    assert float(tf.reduce_sum(tf.abs(tape.gradient(y, xt)))) > 0

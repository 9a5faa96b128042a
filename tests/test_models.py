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

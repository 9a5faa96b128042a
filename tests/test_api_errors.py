"""Bad input to the Python API: one-line errors naming the parameter."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import advsal_bench

X = np.full((3, 4, 4, 1), 0.5, np.float32)


def _model(x):
    return tf.reshape(x, [-1, 16])[:, :3]


@pytest.mark.parametrize("call, match", [
    (lambda: advsal_bench.attacks.fgsm(_model, X), r"fgsm: eps: expected one radius >= 0, got None"),
    (lambda: advsal_bench.attacks.fgsm(_model, X, eps=[0.1, 0.2]), r"fgsm: eps: expected one radius >= 0, got \[0.1, 0.2\]"),
    (lambda: advsal_bench.attacks.fgsm(_model, X, eps=-0.1), r"'fgsm.eps\[0\]': expected a value >= 0, got -0.1"),
    (lambda: advsal_bench.attacks.jsma(_model, X, eps=0.1), r"jsma: eps: expected none \(jsma has no eps\)"),
    (lambda: advsal_bench.attacks.pgd(_model, X, eps=0.1, stepz=3), r"'pgd.stepz': unknown key; did you mean 'steps'"),
    (lambda: advsal_bench.attacks.pgd(_model, X, eps=0.1, steps=0), r"'pgd.steps': expected a value > 0, got 0"),
    (lambda: advsal_bench.attacks.fgsm(_model, X.reshape(-1), eps=0.1), r"x: expected a non-empty batch of images"),
    (lambda: advsal_bench.attacks.fgsm(_model, X, y=[0, 1], eps=0.1), r"y: expected one label per image \(3\), got shape \(2,\)"),
    (lambda: advsal_bench.attacks.fgsm("not a model", X, eps=0.1), r"model: expected a keras.Model or a callable"),
    (lambda: advsal_bench.saliency_map(_model, X, batch_size=0), r"batch_size: expected an integer >= 1, got 0"),
])
def test_bad_api_calls(call, match):
    with pytest.raises((ValueError, TypeError), match=match) as err:
        call()
    assert "\n" not in str(err.value)

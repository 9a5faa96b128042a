"""Bad hyperparameters of orthogonal / selective PGD: one clear ValueError each, naming the parameter."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.orthogonal_pgd import orthogonal_pgd

X = np.full((2, 4, 4, 1), 0.5, np.float32)


def _f(x):
    return tf.reshape(x, [tf.shape(x)[0], -1])[:, :3]


def _detector_fn(x):
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


@pytest.mark.parametrize("norm", [1, 0, "inf", None])
def test_unknown_norm(norm):
    with pytest.raises(ValueError, match=r"^norm: expected np.inf or 2, got"):
        orthogonal_pgd(_f, _detector_fn, X, eps=0.1, norm=norm)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), tf.constant(0.0)])
def test_eps_not_positive(eps):
    with pytest.raises(ValueError, match=r"^eps: expected > 0, got"):
        orthogonal_pgd(_f, _detector_fn, X, eps=eps)


def test_eps_message_quotes_the_value():
    with pytest.raises(ValueError, match=r"^eps: expected > 0, got -0.1$"):
        orthogonal_pgd(_f, _detector_fn, X, eps=-0.1)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True])
def test_steps_below_one_or_not_an_integer(steps):
    with pytest.raises(ValueError, match=r"^steps: expected an integer >= 1, got"):
        orthogonal_pgd(_f, _detector_fn, X, eps=0.1, steps=steps)


@pytest.mark.parametrize("mode", ["orthogonal_pgd", "Selective", "", None])
def test_unknown_mode(mode):
    with pytest.raises(ValueError, match=r"^mode: expected one of 'orthogonal', 'selective', got"):
        orthogonal_pgd(_f, _detector_fn, X, eps=0.1, mode=mode)


@pytest.mark.parametrize("alpha", [0.0, -0.01, float("nan")])
def test_alpha_not_positive(alpha):
    with pytest.raises(ValueError, match=r"^alpha: expected > 0, got"):
        orthogonal_pgd(_f, _detector_fn, X, eps=0.1, alpha=alpha)


def test_empty_box():
    with pytest.raises(ValueError, match=r"^clip_min < clip_max: expected true, got clip_min=1.0, clip_max=0.0$"):
        orthogonal_pgd(_f, _detector_fn, X, eps=0.1, clip_min=1.0, clip_max=0.0)

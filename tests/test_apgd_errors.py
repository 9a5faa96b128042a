"""Bad hyperparameters of APGD: one clear ValueError each, naming the parameter."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.apgd import apgd, apgd_checkpoints, apgd_run

X = np.full((2, 4, 4, 1), 0.5, np.float32)


def _f(x, classes: int = 3):
    return tf.reshape(x, [tf.shape(x)[0], -1])[:, :classes] * tf.range(1.0, classes + 1.0)


@pytest.mark.parametrize("norm", [1, 0, "inf", None])
def test_unknown_norm(norm):
    with pytest.raises(ValueError, match=r"^norm: expected np.inf or 2, got"):
        apgd(_f, X, eps=0.1, norm=norm)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), np.float32(0.0), tf.constant(-0.1)])
def test_eps_not_positive(eps):
    with pytest.raises(ValueError, match=r"^eps: expected > 0, got"):
        apgd(_f, X, eps=eps)


def test_eps_message_quotes_the_value():
    with pytest.raises(ValueError, match=r"^eps: expected > 0, got -0.1$"):
        apgd(_f, X, eps=-0.1)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "10"])
def test_steps_below_one_or_not_an_integer(steps):
    with pytest.raises(ValueError, match=r"^steps: expected an integer >= 1, got"):
        apgd(_f, X, eps=0.1, steps=steps)
    with pytest.raises(ValueError, match=r"^steps: expected an integer >= 1, got"):
        apgd_checkpoints(steps)


@pytest.mark.parametrize("restarts", [0, -1, 1.0])
def test_restarts_below_one(restarts):
    with pytest.raises(ValueError, match=r"^restarts: expected an integer >= 1, got"):
        apgd(_f, X, eps=0.1, restarts=restarts)


@pytest.mark.parametrize("loss", ["CE", "cw", "", None])
def test_unknown_loss(loss):
    with pytest.raises(ValueError, match=r"^loss: expected one of 'ce', 'dlr', got"):
        apgd(_f, X, eps=0.1, loss=loss)
    with pytest.raises(ValueError, match=r"^loss: expected one of 'ce', 'dlr', got"):
        apgd_run(_f, X, X, np.zeros(2, np.int32), eps=0.1, loss=loss)


def test_dlr_needs_three_classes():
    with pytest.raises(ValueError, match=r"^loss='dlr': expected a model with at least 3 classes, got 2$"):
        apgd(lambda x: _f(x, 2), X, eps=0.1, loss="dlr")
    apgd(lambda x: _f(x, 2), X, eps=0.1, loss="ce", steps=2)  # cross-entropy is fine with two


@pytest.mark.parametrize("rho", [-0.1, 1.5, float("nan")])
def test_rho_outside_unit_interval(rho):
    with pytest.raises(ValueError, match=r"^rho: expected 0 <= rho <= 1, got"):
        apgd(_f, X, eps=0.1, rho=rho)


@pytest.mark.parametrize("seed", [1.5, "0", None, True])
def test_seed_not_an_integer(seed):
    with pytest.raises(ValueError, match=r"^seed: expected an integer, got"):
        apgd(_f, X, eps=0.1, seed=seed)


def test_empty_box():
    with pytest.raises(ValueError, match=r"^clip_min < clip_max: expected true, got clip_min=1.0, clip_max=0.0$"):
        apgd(_f, X, eps=0.1, clip_min=1.0, clip_max=0.0)

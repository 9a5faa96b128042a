"""PGD's bad hyperparameters: one-line errors naming the parameter or the YAML key."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.attacks.pgd import pgd
from advsal_bench.config import config_from_dict
from advsal_bench.errors import ConfigError

X = np.full((2, 4, 4, 1), 0.5, np.float32)


def _model(x):
    return tf.reshape(x, [-1, 16])[:, :3]


@pytest.mark.parametrize("restarts", [0, -1, 1.5, True])
def test_restarts_must_be_a_positive_integer(restarts):
    with pytest.raises(ValueError, match=r"restarts: expected an integer >= 1, got"):
        pgd(_model, X, eps=0.1, restarts=restarts)


def test_norm_must_be_linf_or_l2():
    with pytest.raises(ValueError, match=r"norm: expected np.inf or 2, got 1"):
        pgd(_model, X, eps=0.1, norm=1)


def test_steps_must_be_positive():
    with pytest.raises(ValueError, match=r"steps: expected an integer >= 1, got 0"):
        pgd(_model, X, eps=0.1, steps=0)


@pytest.mark.parametrize("body, match", [
    ({"norm": "l1"}, r"'attacks.pgd.norm': expected one of linf, l2, got 'l1'"),
    ({"eps": [0.1, -0.1]}, r"'attacks.pgd.eps\[1\]': expected a value >= 0, got -0.1"),
    ({"restarts": 0}, r"'attacks.pgd.restarts': expected a value > 0, got 0"),
    ({"steps": 0}, r"'attacks.pgd.steps': expected a value > 0, got 0"),
])
def test_bad_pgd_settings_in_a_suite(body, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"name": "x", "attacks": {"pgd": body}})

"""Users' plug-ins as a suite names them (``type: plugin_examples:NAME``); the tests put this folder on the path.

Each follows the protocol of docs/configuration.md; the broken ones break it in one way each.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from advsal_bench.attacks.fgsm import fgsm

TRACES: list[tuple] = []  # one entry each time the plug-in's Python body runs (TF traces it)


def noisy_fgsm(model_fn, x, *, y, eps, strength: float = 1.0):
    """FGSM at ``strength * eps``, recording each trace."""
    TRACES.append(tuple(x.shape))
    return fgsm(model_fn, x, eps=strength * eps, y=y)


def no_eps_attack(model_fn, x, *, y):
    return tf.clip_by_value(x + 0.0 * tf.cast(tf.reshape(y, [-1, 1, 1, 1]), tf.float32), 0.0, 1.0)


def missing_y(model_fn, x, *, eps):  # cannot take the labels the harness passes
    return x


def flattened(model_fn, x, *, y, eps):  # returns the wrong shape
    return tf.reshape(x, [tf.shape(x)[0], -1])


class MeanShift:
    """A training-free detector: how far an image's mean pixel is from the clean mean."""

    needs_adversarial = False

    def __init__(self, *, quantile: float = 0.95) -> None:
        self.quantile = quantile

    def fit(self, x_clean, x_adv, *, model):
        self.mean = float(np.mean(x_clean))
        self.threshold = float(np.quantile(self.score(x_clean), self.quantile))
        return self

    def score(self, x):
        return np.abs(np.asarray(x).reshape(len(x), -1).mean(axis=1) - self.mean)


class WrongScore(MeanShift):
    def score(self, x):
        return np.zeros((len(x), 2))


class NoScore:
    def __init__(self) -> None:
        pass

    def fit(self, x_clean, x_adv, *, model):
        return self

"""Iterative FGSM (Kurakin et al. 2017): repeated fast-gradient steps projected to the eps-ball."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .fgsm import fgsm
from .utils import check_norm, clip_eta, predicted_labels


def default_alpha(eps: float, steps: int) -> float:
    """Step size 2.5 * eps / steps: enough to reach the ball's boundary and move along it."""
    return 2.5 * eps / steps


def ifgsm(
    model_fn,
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    steps: int = 10,
    alpha: float | tf.Tensor | None = None,
    norm: float = np.inf,
    y: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    check_norm(norm)
    if steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps}")
    x = tf.convert_to_tensor(x, tf.float32)
    if alpha is None:
        alpha = default_alpha(eps, steps)
    if y is None:
        y = predicted_labels(model_fn(x))
    x_adv = x
    for _ in range(steps):
        x_adv = fgsm(model_fn, x_adv, eps=alpha, norm=norm, y=y, clip_min=clip_min, clip_max=clip_max)
        x_adv = tf.clip_by_value(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)
    return x_adv


def ifgsm_linf(model_fn, x, *, eps, steps=10, alpha=None, y=None, clip_min=0.0, clip_max=1.0):
    return ifgsm(model_fn, x, eps=eps, steps=steps, alpha=alpha, norm=np.inf, y=y, clip_min=clip_min, clip_max=clip_max)


def ifgsm_l2(model_fn, x, *, eps, steps=10, alpha=None, y=None, clip_min=0.0, clip_max=1.0):
    return ifgsm(model_fn, x, eps=eps, steps=steps, alpha=alpha, norm=2, y=y, clip_min=clip_min, clip_max=clip_max)

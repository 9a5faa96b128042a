"""Projected gradient descent (Madry et al. 2018): I-FGSM from a random start in the ball, with restarts.

Each restart draws a start uniformly from the l_inf or l_2 ball of radius eps, then runs I-FGSM's
projected steps from there; each image keeps the restart whose end point has the lowest margin
Z_y - max_{j != y} Z_j at the label it moves away from (the most adversarial one).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..schema import param
from .ifgsm import ifgsm, step_constants
from .spec import ATTACKS, AttackSpec
from .utils import check_norm, margin, predicted_labels, random_in_ball

NORMS = {"linf": np.inf, "l2": 2}


def pgd(
    model_fn,
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    norm: float = np.inf,
    steps: int = 40,
    alpha: float | tf.Tensor | None = None,
    restarts: int = 1,
    y: tf.Tensor | None = None,
    seeds: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """PGD at ``y`` (default: f's predicted label, so no label leaks into the attack).

    ``seeds`` (int32 [B]) make each image's random starts its own, whatever batch it is in.
    ``alpha`` defaults to I-FGSM's 2.5 * eps / steps.
    """
    check_norm(norm)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts: expected an integer >= 1, got {restarts!r}")
    x = tf.convert_to_tensor(x, tf.float32)
    if y is None:
        y = predicted_labels(model_fn(x))
    best, best_margin = x, tf.fill([tf.shape(x)[0]], float("inf"))
    for r in range(restarts):
        start = tf.clip_by_value(x + random_in_ball(x, norm, eps, seeds, salt=r), clip_min, clip_max)
        x_adv = ifgsm(model_fn, x, eps=eps, steps=steps, alpha=alpha, norm=norm, y=y, start=start,
                      clip_min=clip_min, clip_max=clip_max)
        m = margin(model_fn(x_adv), y)
        better = m < best_margin
        best = tf.where(tf.reshape(better, [-1] + [1] * (len(x.shape) - 1)), x_adv, best)
        best_margin = tf.where(better, m, best_margin)
    return best


@dataclass(frozen=True)
class PGDConfig:
    type: str = "pgd"
    norm: str = param("linf", choices=tuple(NORMS))
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), ge=0, nonempty=True)
    steps: int = param(40, gt=0)  # Madry et al.'s MNIST training attack
    alpha: float | None = param(None, gt=0)  # null: 2.5 * eps / steps, as for I-FGSM
    restarts: int = param(1, gt=0)
    batch_size: int = param(256, gt=0)


def _step(cfg: PGDConfig, model_fn):
    def step(x, y, seeds, eps, alpha):
        return pgd(model_fn, x, eps=eps, norm=NORMS[cfg.norm], steps=cfg.steps, alpha=alpha, restarts=cfg.restarts,
                   y=y, seeds=seeds)

    return step


ATTACKS.add("pgd", AttackSpec("pgd", PGDConfig, norm=lambda cfg: cfg.norm, step=_step, seeded=True,
                              constants=step_constants))

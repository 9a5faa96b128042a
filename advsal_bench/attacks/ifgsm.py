"""Iterative FGSM (Kurakin et al. 2017): repeated fast-gradient steps projected to the eps-ball."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..schema import param
from .fgsm import fgsm
from .spec import ATTACKS, AttackSpec
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
    start: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """``steps`` fast-gradient steps of size ``alpha`` at ``y`` (default: f's prediction on x), each
    projected back to the ``norm`` ball of radius ``eps`` around x and to the box; the iterate
    begins at ``start`` (a point in the ball; default x itself)."""
    check_norm(norm)
    if steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps}")
    x = tf.convert_to_tensor(x, tf.float32)
    if alpha is None:
        alpha = default_alpha(eps, steps)
    if y is None:
        y = predicted_labels(model_fn(x))
    x_adv = x if start is None else start
    for _ in range(steps):
        x_adv = fgsm(model_fn, x_adv, eps=alpha, norm=norm, y=y, clip_min=clip_min, clip_max=clip_max)
        x_adv = tf.clip_by_value(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)
    return x_adv


def ifgsm_linf(model_fn, x, *, eps, steps=10, alpha=None, y=None, clip_min=0.0, clip_max=1.0):
    return ifgsm(model_fn, x, eps=eps, steps=steps, alpha=alpha, norm=np.inf, y=y, clip_min=clip_min, clip_max=clip_max)


def ifgsm_l2(model_fn, x, *, eps, steps=10, alpha=None, y=None, clip_min=0.0, clip_max=1.0):
    return ifgsm(model_fn, x, eps=eps, steps=steps, alpha=alpha, norm=2, y=y, clip_min=clip_min, clip_max=clip_max)


@dataclass(frozen=True)
class IFGSMLinfConfig:
    type: str = "ifgsm_linf"
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), ge=0, nonempty=True)
    steps: int = param(10, gt=0)
    alpha: float | None = param(None, gt=0)  # null: default_alpha(eps, steps)
    batch_size: int = param(256, gt=0)


@dataclass(frozen=True)
class IFGSML2Config:
    type: str = "ifgsm_l2"
    eps: tuple[float, ...] = param((1.0, 2.0, 3.0), ge=0, nonempty=True)
    steps: int = param(10, gt=0)
    alpha: float | None = param(None, gt=0)
    batch_size: int = param(256, gt=0)


def step_constants(cfg, eps: float) -> tuple[float, float]:
    """(eps, alpha) as tensors of the compiled step: one trace serves every eps of the grid."""
    return eps, cfg.alpha if cfg.alpha is not None else default_alpha(eps, cfg.steps)


def _register(name: str, config: type, norm: float) -> None:
    def step(cfg, model_fn):
        return lambda x, y, seeds, eps, alpha: ifgsm(model_fn, x, eps=eps, steps=cfg.steps, alpha=alpha, norm=norm, y=y)

    ATTACKS.add(name, AttackSpec(name, config, norm=lambda cfg: "linf" if norm == np.inf else "l2", step=step,
                                 constants=step_constants))


_register("ifgsm_linf", IFGSMLinfConfig, np.inf)
_register("ifgsm_l2", IFGSML2Config, 2)

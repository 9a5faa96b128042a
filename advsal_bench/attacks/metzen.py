"""Metzen et al. (2017)'s attack on a classifier f and its detector D together.

x_{n+1} = clip_eps(x_n + alpha * [(1 - sigma) * dir(grad J_f) + sigma * dir(-grad J_d)])

J_f is f's cross-entropy at y, J_d is D's binary cross-entropy for the label 'clean', and dir is
the steepest-ascent direction of the norm (sign for l_inf). sigma = 0 is I-FGSM on f alone;
sigma = 1 only hides from D.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from ..schema import param
from .ifgsm import default_alpha
from .spec import ADAPTIVE_ATTACKS, AdaptiveSpec, AdaptiveTask
from .utils import check_norm, clip_eta, loss_gradient, normalize, predicted_labels

__all__ = ["metzen_adaptive", "detector_loss_gradient"]


def detector_loss_gradient(detector_fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
    """Gradient of D's loss for the label 'clean', softplus(logit), w.r.t. x.

    Descending this loss rather than ascending the loss for 'adversarial' (softplus(-logit)): both
    point the same way, but this one's weight sigmoid(logit) is largest where D still raises the
    alarm, and only underflows once D is already fooled by a wide margin.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        # detector_fn's own tape (the saliency) runs inside this one, so the gradient is second order.
        loss = tf.reduce_sum(tf.nn.softplus(detector_fn(x)))
    return tape.gradient(loss, x)


def metzen_adaptive(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    detector_fn: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    sigma: float | tf.Tensor,
    steps: int = 10,
    alpha: float | tf.Tensor | None = None,
    norm: float = np.inf,
    y: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """Iterative attack on f + D, projected to the ``norm`` ball of radius ``eps`` around x.

    Args:
        model_fn: f, x -> logits [B, K].
        detector_fn: x -> D's logit [B] (see :func:`make_detector_fn`).
        eps: radius of the ball (> 0).
        sigma: weight of the detector's direction, in [0, 1].
        steps, alpha: as for :func:`ifgsm`; alpha defaults to 2.5 * eps / steps.
        y: labels to move away from; defaults to f's predicted labels on the clean x.
    """
    check_norm(norm)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: expected an integer >= 1, got {steps!r}")
    if isinstance(eps, (int, float)) and not eps > 0:
        raise ValueError(f"eps: expected > 0, got {eps}")
    if isinstance(sigma, (int, float)) and not 0 <= sigma <= 1:
        raise ValueError(f"sigma: expected 0 <= sigma <= 1, got {sigma}")
    x = tf.convert_to_tensor(x, tf.float32)
    if alpha is None:
        alpha = default_alpha(eps, steps)
    if y is None:
        y = predicted_labels(model_fn(x))
    # A Python sigma of 0 skips D's (second-order, costly) gradient; the step is then bit-for-bit
    # I-FGSM's, since 1.0 * d == d.
    use_detector = not (isinstance(sigma, (int, float)) and sigma == 0)
    x_adv = x
    for _ in range(steps):
        direction = (1.0 - sigma) * normalize(loss_gradient(model_fn, x_adv, y), norm)
        if use_detector:
            direction = direction + sigma * normalize(-detector_loss_gradient(detector_fn, x_adv), norm)
        # Same two clips as ifgsm (step, then projection), in the same order, so sigma = 0 matches it.
        x_adv = tf.clip_by_value(x_adv + alpha * direction, clip_min, clip_max)
        x_adv = tf.clip_by_value(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)
    return x_adv


@dataclass(frozen=True)
class MetzenAdaptiveConfig:
    """Metzen et al.'s attack on f + D; sigma weighs D's gradient against f's."""

    sigma: tuple[float, ...] = param((0.0, 0.5, 1.0), ge=0, le=1, nonempty=True, unique=True)
    steps: int = param(10, gt=0)
    # null: the selected eps and norm of the attack D was fit on (an l_inf attack's for jsma and cw_l2).
    eps: float | None = param(None, gt=0)
    norm: str = param("auto", choices=("auto", "linf", "l2"))


_NORMS = {"linf": np.inf, "l2": 2}


def _craft(cfg: MetzenAdaptiveConfig, task: AdaptiveTask) -> list[tuple[dict, np.ndarray]]:
    norm, eps = task.ball

    def step(xb, eps_t, sigma_t):
        return metzen_adaptive(task.model_fn, task.detector_fn, xb, eps=eps_t, sigma=sigma_t, steps=cfg.steps,
                               norm=_NORMS[norm])

    # eps and sigma enter as tensors: one trace of the (second-order) graph serves the whole sigma grid.
    return [({"sigma": s, "norm": norm, "eps_adaptive": eps},
             task.runner.run(step, [task.x], batch_size=task.batch_size, constants=(eps, s))[0])
            for s in cfg.sigma]


ADAPTIVE_ATTACKS.add("metzen", AdaptiveSpec(
    "metzen", MetzenAdaptiveConfig, _craft,
    describe=lambda r: f"metzen sigma={r['sigma']:g} ({r['norm']} {r['eps_adaptive']:g})",
))

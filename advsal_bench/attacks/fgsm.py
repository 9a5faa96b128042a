"""Fast gradient method (Goodfellow et al. 2015) under l_inf (FGSM) or l_2."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from ..schema import param
from .spec import ATTACKS, AttackSpec
from .utils import check_norm, loss_gradient, normalize


def fgsm(
    model_fn,
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    norm: float = np.inf,
    y: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """One gradient step of size ``eps`` that increases the loss at ``y``.

    ``y`` defaults to f's *predicted* label, so the true label never leaks into the attack
    (Kurakin et al. 2017).
    """
    check_norm(norm)
    x = tf.convert_to_tensor(x, tf.float32)
    grad = loss_gradient(model_fn, x, y)
    return tf.clip_by_value(x + eps * normalize(grad, norm), clip_min, clip_max)


@dataclass(frozen=True)
class FGSMConfig:
    type: str = "fgsm"
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), ge=0, nonempty=True)
    batch_size: int = param(256, gt=0)


ATTACKS.add("fgsm", AttackSpec(
    "fgsm", FGSMConfig, norm=lambda cfg: "linf",
    step=lambda cfg, model_fn: lambda x, y, seeds, eps: fgsm(model_fn, x, eps=eps, y=y),
))

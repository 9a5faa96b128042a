"""Fast gradient method (Goodfellow et al. 2015) under l_inf (FGSM) or l_2."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

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

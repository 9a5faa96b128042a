"""Norm math shared by all attacks: clipping, projection, normalization, labels."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

NORMS = (np.inf, 2)
_TINY = 1e-12


def check_norm(norm: float) -> float:
    if norm not in NORMS:
        raise ValueError(f"norm: expected np.inf or 2, got {norm!r}")
    return norm


def _reduce_axes(x: tf.Tensor) -> list[int]:
    return list(range(1, len(x.shape)))


def l2_norm(x: tf.Tensor) -> tf.Tensor:
    """Per-example l2 norm, broadcastable against x."""
    return tf.sqrt(tf.reduce_sum(tf.square(x), axis=_reduce_axes(x), keepdims=True))


def normalize(grad: tf.Tensor, norm: float) -> tf.Tensor:
    """The steepest-ascent direction of unit ``norm`` for a gradient (sign for l_inf)."""
    if norm == np.inf:
        return tf.sign(grad)
    # Avoid division by zero: a zero gradient gives a zero step, not NaN.
    return grad / tf.maximum(l2_norm(grad), _TINY)


def clip_eta(eta: tf.Tensor, norm: float, eps: tf.Tensor | float) -> tf.Tensor:
    """Project a perturbation onto the ``norm`` ball of radius ``eps``."""
    if norm == np.inf:
        return tf.clip_by_value(eta, -eps, eps)
    factor = tf.minimum(1.0, eps / tf.maximum(l2_norm(eta), _TINY))
    return eta * factor


def predicted_labels(logits: tf.Tensor) -> tf.Tensor:
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def loss_gradient(model_fn, x: tf.Tensor, y: tf.Tensor | None = None) -> tf.Tensor:
    """Gradient of the cross-entropy at labels ``y`` w.r.t. ``x`` (one forward, one backward).

    ``y=None`` uses the predicted labels of the same forward pass, so no second forward is needed.
    """
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        if y is None:
            y = predicted_labels(tf.stop_gradient(logits))
        loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    return tape.gradient(loss, x)

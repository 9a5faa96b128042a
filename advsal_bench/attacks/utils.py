"""Norm math shared by all attacks: clipping, projection, normalization, random points, labels, margins."""
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


def margin(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Z_y - max_{j != y} Z_j per example: negative iff f does not predict y."""
    onehot = tf.one_hot(y, tf.shape(logits)[-1], on_value=True, off_value=False, dtype=tf.bool)
    real = tf.reduce_sum(tf.where(onehot, logits, tf.zeros_like(logits)), axis=-1)
    # A finite floor (not -inf) keeps the gradient of the masked entries exactly zero.
    other = tf.reduce_max(tf.where(onehot, tf.fill(tf.shape(logits), logits.dtype.min), logits), axis=-1)
    return real - other


def random_in_ball(x: tf.Tensor, norm: float, eps: tf.Tensor | float, seeds: tf.Tensor | None, salt: int) -> tf.Tensor:
    """A point drawn uniformly from each image's ``norm`` ball of radius ``eps`` (as a perturbation).

    ``seeds``: int32 [B], one per image, so each image's draw does not depend on its batch (None:
    the images' positions in the batch). ``salt`` tells draws for the same image apart.
    """
    check_norm(norm)
    shape = tf.shape(x)
    dims = tf.reduce_prod(shape[1:])

    def draw(seed: tf.Tensor) -> tf.Tensor:
        pair = tf.stack([tf.cast(seed, tf.int32), tf.constant(salt, tf.int32)])
        if norm == np.inf:
            return tf.random.stateless_uniform([dims], pair, minval=-1.0, maxval=1.0)
        # Uniform in the l2 ball: a uniform direction, radius distributed as u^(1/d).
        direction = tf.random.stateless_normal([dims], pair)
        radius = tf.random.stateless_uniform([], pair + 1) ** (1.0 / tf.cast(dims, tf.float32))
        return direction / tf.maximum(tf.norm(direction), _TINY) * radius

    seeds = tf.range(shape[0]) if seeds is None else tf.cast(seeds, tf.int32)
    return eps * tf.reshape(tf.map_fn(draw, seeds, fn_output_signature=tf.float32), shape)

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


def project(x_adv: tf.Tensor, x: tf.Tensor, norm: float, eps: tf.Tensor | float,
            clip_min: tf.Tensor | float, clip_max: tf.Tensor | float) -> tf.Tensor:
    """A point of both the ``norm`` ball of radius ``eps`` around x and the box.

    Ball first, box second: clipping to the box moves every coordinate towards x's (which lies in
    the box), so it never leaves the ball. Exact projection onto the intersection for l_inf; for
    l_2 a feasible point, as in the reference codes of PGD and APGD.
    """
    return tf.clip_by_value(x + clip_eta(x_adv - x, norm, eps), clip_min, clip_max)


def random_start(x: tf.Tensor, norm: float, eps: tf.Tensor | float, seed: tf.Tensor,
                 clip_min: tf.Tensor | float, clip_max: tf.Tensor | float) -> tf.Tensor:
    """A random start in the ball, clipped to the box: uniform in the l_inf cube, or on the l_2 sphere.

    ``seed`` is a shape-[2] integer tensor (stateless RNG), so the start is reproducible inside a
    ``tf.function`` and does not touch the global generator.
    """
    if norm == np.inf:
        eta = tf.random.stateless_uniform(tf.shape(x), seed, minval=-1.0, maxval=1.0) * eps
    else:
        eta = eps * normalize(tf.random.stateless_normal(tf.shape(x), seed), 2)
    return tf.clip_by_value(x + eta, clip_min, clip_max)


def remove_component(g: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
    """Per example, g minus its projection onto h: the part of g orthogonal to h.

    A zero h leaves g unchanged (there is no direction to remove); no small floor on h.h, which
    would leave part of the component in place when the gradients are tiny.
    """
    axes = _reduce_axes(g)
    dot = tf.reduce_sum(g * h, axis=axes, keepdims=True)
    hh = tf.reduce_sum(h * h, axis=axes, keepdims=True)
    coef = tf.math.divide_no_nan(dot, hh)
    return g - coef * h


def check_eps(eps: object) -> None:
    """eps > 0 for Python/NumPy numbers and eager tensors; a symbolic tensor is the caller's duty."""
    if isinstance(eps, (int, float, np.number)) and not isinstance(eps, bool):
        value = float(eps)
    elif tf.is_tensor(eps) and tf.executing_eagerly():
        value = float(tf.reduce_min(eps).numpy())
    else:
        return
    if not value > 0:
        raise ValueError(f"eps: expected > 0, got {value}")


def check_steps(steps: object, name: str = "steps") -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {steps!r}")
    return int(steps)


def check_box(clip_min: float, clip_max: float) -> None:
    if not clip_min < clip_max:
        raise ValueError(f"clip_min < clip_max: expected true, got clip_min={clip_min}, clip_max={clip_max}")


def per_example(mask: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """Reshape a [B] tensor so that it broadcasts over an image batch like ``like``."""
    return tf.reshape(mask, tf.concat([tf.shape(mask), tf.ones([tf.rank(like) - 1], tf.int32)], 0))

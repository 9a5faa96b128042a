"""A C&W-style L2 attack on f and its detector D at once (Carlini & Wagner 2017, "Adversarial
examples are not easily detected"): one loss that misclassifies f and keeps D's logit below its
decision threshold, plus the squared l2 distance, over tanh variables with Adam.

minimize ||x' - x||^2 + c * [max(Z_y - max_{j != y} Z_j + kappa, 0) + max(D(x') - t + kappa, 0)]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from ..schema import param
from .cw_l2 import _check_common, _per_example, _sq_l2, adam_step, from_tanh_space, margin, to_tanh_space
from .spec import ADAPTIVE_ATTACKS, AdaptiveSpec, AdaptiveTask
from .utils import predicted_labels

__all__ = ["cw_detector", "cw_detector_success"]


def cw_detector_success(
    logits: tf.Tensor, detector_logits: tf.Tensor, y: tf.Tensor, threshold_logit: float | tf.Tensor = 0.0
) -> tf.Tensor:
    """Per example: f no longer predicts y and D stays below its threshold (no alarm)."""
    return (margin(logits, tf.cast(y, tf.int32)) < 0.0) & (detector_logits < threshold_logit)


def _cw_detector_graph(model_fn, detector_fn, x, y, threshold_logit, kappa, c, steps, learning_rate, clip_min, clip_max):
    batch = tf.shape(x)[0]

    def body(i, w, m, v, t, best_l2, best_adv, last):
        with tf.GradientTape() as tape:
            tape.watch(w)
            x_new = from_tanh_space(w, clip_min, clip_max)
            logits = model_fn(x_new)
            d_logit = detector_fn(x_new)  # second order in f when D reads the saliency
            dist = _sq_l2(x_new - x)
            loss_f = tf.maximum(margin(logits, y) + kappa, 0.0)
            loss_d = tf.maximum(d_logit - threshold_logit + kappa, 0.0)
            loss = tf.reduce_sum(dist + c * (loss_f + loss_d))
        grad = tape.gradient(loss, w)
        ok = cw_detector_success(logits, d_logit, y, threshold_logit)
        better = ok & (dist < best_l2)
        best_l2 = tf.where(better, dist, best_l2)
        best_adv = tf.where(_per_example(better, x), x_new, best_adv)
        w, m, v, t = adam_step(w, grad, m, v, t, learning_rate)
        return i + 1, w, m, v, t, best_l2, best_adv, from_tanh_space(w, clip_min, clip_max)

    w0 = to_tanh_space(x, clip_min, clip_max)
    zeros = tf.zeros_like(x)
    init = (tf.constant(0), w0, zeros, zeros, tf.constant(0.0),
            tf.fill([batch], tf.constant(float("inf"), tf.float32)), x, x)
    _, w, _, _, _, best_l2, best_adv, last = tf.while_loop(lambda i, *_: i < steps, body, init)
    # The final iterate was never scored inside the loop: score it too.
    logits, d_logit = model_fn(last), detector_fn(last)
    dist = _sq_l2(last - x)
    better = cw_detector_success(logits, d_logit, y, threshold_logit) & (dist < best_l2)
    best_l2 = tf.where(better, dist, best_l2)
    best_adv = tf.where(_per_example(better, x), last, best_adv)
    found = tf.math.is_finite(best_l2)
    return tf.where(_per_example(found, x), best_adv, last)


def cw_detector(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    detector_fn: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    *,
    threshold_logit: float = 0.0,
    kappa: float = 0.0,
    c: float = 1.0,
    steps: int = 100,
    learning_rate: float = 5e-2,
    y: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """Per example, the x' with the smallest l2 that fools f and passes D; else the last iterate.

    Args:
        model_fn: f, x -> logits [B, K].
        detector_fn: x -> D's logit [B] (see :func:`make_detector_fn`).
        threshold_logit: D's decision threshold as a logit (0.0: probability 0.5; use the logit of
            the threshold chosen on clean validation data, e.g. for TPR at 5% FPR).
        kappa: margin demanded past both boundaries, so success survives re-evaluation.
        c: weight of the two hinge terms against the squared distance (no binary search: each
            step costs a second-order pass through D's saliency).
        learning_rate: 5e-2 for the reason given in :func:`cw_l2`.
        y: labels to move away from; defaults to f's predicted labels on x.
    """
    _check_common(kappa=kappa, steps=steps, learning_rate=learning_rate, clip_min=clip_min, clip_max=clip_max)
    if isinstance(c, (int, float)) and not c > 0:
        raise ValueError(f"c: expected > 0, got {c}")
    x = tf.convert_to_tensor(x, tf.float32)
    y = predicted_labels(model_fn(x)) if y is None else tf.cast(y, tf.int32)
    f32 = lambda v: tf.cast(v, tf.float32)  # noqa: E731 - tensors, so one trace serves all values
    # Compiled per call (see cw_l2): nothing module-level keeps f or D alive.
    return tf.function(_cw_detector_graph, reduce_retracing=True)(
        model_fn, detector_fn, x, y, f32(threshold_logit), f32(kappa), f32(c), tf.constant(steps),
        f32(learning_rate), f32(clip_min), f32(clip_max),
    )


@dataclass(frozen=True)
class CWDetectorAdaptiveConfig:
    kappa: float = param(0.0, ge=0)
    c: float = param(1.0, gt=0)
    steps: int = param(100, gt=0)
    learning_rate: float = param(5e-2, gt=0)


def _craft(cfg: CWDetectorAdaptiveConfig, task: AdaptiveTask) -> list[tuple[dict, np.ndarray]]:
    def step(xb):
        return cw_detector(task.model_fn, task.detector_fn, xb, threshold_logit=0.0, kappa=cfg.kappa, c=cfg.c,
                           steps=cfg.steps, learning_rate=cfg.learning_rate)

    return [({}, task.runner.run(step, [task.x], batch_size=task.batch_size)[0])]


ADAPTIVE_ATTACKS.add("cw_detector", AdaptiveSpec("cw_detector", CWDetectorAdaptiveConfig, _craft, uses_ball=False))

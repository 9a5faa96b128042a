"""Orthogonal and selective PGD on a classifier f and its detector D together (Bryniarski, Hingun,
Pachuca, Wang & Carlini, ICLR 2022, "Evading adversarial example detection defenses with orthogonal
projected gradient descent").

Each step works on one constraint per image: f's loss while f still predicts y, else D's logit.

  orthogonal: the step on f has its component along D's gradient removed, and the step on D its
              component along f's gradient, so that (to first order) satisfying one constraint
              does not undo the other;
  selective:  the plain gradient of whichever constraint is not yet met.

The removal acts on the raw gradients; the sign (l_inf) or l_2 normalization comes after, as in
the authors' code. Then the step is projected to the eps-ball and the box.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tensorflow as tf

from ..schema import param
from .cw_detector import cw_detector_success
from .spec import ADAPTIVE_ATTACKS, AdaptiveSpec, AdaptiveTask
from .utils import (
    check_box, check_eps, check_norm, check_steps, margin, normalize, per_example, predicted_labels, project,
    remove_component,
)

__all__ = ["MODES", "OrthogonalPGDConfig", "default_alpha", "orthogonal_pgd", "update_direction"]

MODES = ("orthogonal", "selective")


def default_alpha(eps: float | tf.Tensor) -> float | tf.Tensor:
    """eps / 8, the authors' ratio (1/255 at eps 8/255, 100 steps): the iterate can cross the ball
    several times, which the second phase (along D's level set of f) needs."""
    return eps / 8.0


def update_direction(grad_f: tf.Tensor, grad_d: tf.Tensor, fooled: tf.Tensor, *, mode: str) -> tf.Tensor:
    """Per image, the step direction before the sign (l_inf) or the l_2 normalization.

    Args:
        grad_f: gradient of f's cross-entropy at y (ascending it makes f misclassify).
        grad_d: gradient of D's logit (descending it makes D stop flagging).
        fooled: [B] bool, f no longer predicts y: the step then works on D.
        mode: 'orthogonal' removes from each gradient its component along the other;
            'selective' takes the gradients as they are.
    """
    if mode == "orthogonal":
        on_f, on_d = remove_component(grad_f, grad_d), -remove_component(grad_d, grad_f)
    else:
        on_f, on_d = grad_f, -grad_d
    return tf.where(per_example(fooled, grad_f), on_d, on_f)


def _gradients(model_fn, detector_fn, x: tf.Tensor, y: tf.Tensor):
    """f's logits, D's logit, and the gradients of f's cross-entropy at y and of D's logit.

    D's logit rather than its loss for 'clean' (the authors descend that loss on D's probability):
    the two gradients differ per image by the positive factor sigmoid(logit), which neither the
    removal of a component nor the normalization sees, and the logit's never underflows.
    """
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = model_fn(x)
        loss_f = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        score = detector_fn(x)  # second order in f when D reads the saliency
        total_score = tf.reduce_sum(score)
    grad_f = tape.gradient(loss_f, x)
    grad_d = tape.gradient(total_score, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    del tape
    return logits, score, grad_f, grad_d


def _keep_best(ok, score, x_new, best, best_score):
    """Among the points that fool f and pass D, the one with the lowest D logit (the authors' choice)."""
    better = ok & (score < best_score)
    return tf.where(per_example(better, x_new), x_new, best), tf.where(better, score, best_score)


def _orthogonal_graph(model_fn, detector_fn, mode, norm, x, y, eps, alpha, steps, threshold, clip_min, clip_max):
    def body(i, x_adv, best, best_score):
        logits, score, grad_f, grad_d = _gradients(model_fn, detector_fn, x_adv, y)
        best, best_score = _keep_best(cw_detector_success(logits, score, y, threshold), score, x_adv, best, best_score)
        fooled = margin(logits, y) < 0.0
        direction = update_direction(grad_f, grad_d, fooled, mode=mode)
        # The same two clips as ifgsm (step into the box, then into ball and box), so that a
        # selective run on an f it never fools retraces I-FGSM's steps.
        x_adv = tf.clip_by_value(x_adv + alpha * normalize(direction, norm), clip_min, clip_max)
        return i + 1, project(x_adv, x, norm, eps, clip_min, clip_max), best, best_score

    inf = tf.fill(tf.shape(y), tf.constant(np.inf, tf.float32))
    _, last, best, best_score = tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), x, x, inf))
    # The final iterate was never scored inside the loop.
    logits, score = model_fn(last), detector_fn(last)
    best, best_score = _keep_best(cw_detector_success(logits, score, y, threshold), score, last, best, best_score)
    return tf.where(per_example(tf.math.is_finite(best_score), x), best, last)


def orthogonal_pgd(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    detector_fn: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    norm: float = np.inf,
    steps: int = 100,
    alpha: float | tf.Tensor | None = None,
    mode: str = "orthogonal",
    threshold_logit: float = 0.0,
    y: tf.Tensor | None = None,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """Per image, the point with the lowest D logit that fools f and passes D; else the last iterate.

    Args:
        model_fn: f, x -> logits [B, K].
        detector_fn: x -> D's logit [B], positive = flagged (see :func:`make_detector_fn`; D's
            gradient flows through the saliency map, and through ``saliency_model_fn`` if given).
        eps: radius of the ``norm`` ball (> 0).
        steps: iterations; each costs one pass through f and one (second-order) through D.
        alpha: step size; defaults to :func:`default_alpha` (eps / 8).
        mode: 'orthogonal' or 'selective' (see the module docstring).
        threshold_logit: D flags a point when its logit is >= this (0.0: probability 0.5), as
            for :func:`cw_detector`.
        y: labels to move away from; defaults to f's predicted labels on x.
    """
    check_norm(norm)
    check_eps(eps)
    steps = check_steps(steps)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(repr(name) for name in MODES)}, got {mode!r}")
    if alpha is None:
        alpha = default_alpha(eps)
    elif isinstance(alpha, (int, float, np.number)) and not alpha > 0:
        raise ValueError(f"alpha: expected > 0, got {alpha}")
    check_box(clip_min, clip_max)
    x = tf.convert_to_tensor(x, tf.float32)
    y = predicted_labels(model_fn(x)) if y is None else tf.cast(y, tf.int32)
    f32 = lambda v: tf.cast(v, tf.float32)  # noqa: E731 - tensors, so one trace serves all values
    # Compiled per call (see cw_l2): traced once inside a compiled step, nothing module-level keeps f or D.
    return tf.function(_orthogonal_graph, reduce_retracing=True)(
        model_fn, detector_fn, mode, float(norm), x, y, f32(eps), f32(alpha), tf.constant(steps),
        f32(threshold_logit), f32(clip_min), f32(clip_max),
    )


@dataclass(frozen=True)
class OrthogonalPGDConfig:
    """Bryniarski et al.'s attack on f + D; the ball is the fit attack's unless ``eps`` is given."""

    steps: int = param(100, gt=0)  # the authors' budget
    alpha: float | None = param(None, gt=0)  # null: eps / 8, the authors' 1/255 at 8/255
    eps: float | None = param(None, gt=0)  # null: the selected eps and norm of the attack D was fit on
    norm: str = param("auto", choices=("auto", "linf", "l2"))


_NORMS = {"linf": np.inf, "l2": 2}


def _register(mode: str) -> None:
    def craft(cfg: OrthogonalPGDConfig, task: AdaptiveTask) -> list[tuple[dict, np.ndarray]]:
        norm, eps = task.ball

        def step(xb, eps_t):
            alpha = default_alpha(eps_t) if cfg.alpha is None else cfg.alpha
            return orthogonal_pgd(task.model_fn, task.detector_fn, xb, eps=eps_t, norm=_NORMS[norm], steps=cfg.steps,
                                  alpha=alpha, mode=mode)

        x_adv = task.runner.run(step, [task.x], batch_size=task.batch_size, constants=(eps,))[0]
        return [({"norm": norm, "eps_adaptive": eps}, x_adv)]

    name = f"{mode}_pgd"
    ADAPTIVE_ATTACKS.add(name, AdaptiveSpec(name, OrthogonalPGDConfig, craft,
                                            describe=lambda r: f"{name} ({r['norm']} {r['eps_adaptive']:g})"))


_register("orthogonal")
_register("selective")

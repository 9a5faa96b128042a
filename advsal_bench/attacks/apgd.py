"""Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks"): APGD-CE and APGD-DLR, untargeted, under l_inf or l_2.

PGD with momentum 0.75 whose step size starts at 2 * eps and is halved, per image, at the
checkpoints w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03,
0.06), when

  Condition 1: fewer than rho * (w_j - w_{j-1}) of the steps since the last checkpoint raised the
               loss (f(x_{i+1}) > f(x_i) for i = w_{j-1}, ..., w_j - 1), or
  Condition 2: neither the step size nor the best loss changed since the last checkpoint;

a halving restarts the image from its best (highest-loss) point so far.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from ..schema import param
from .spec import ATTACKS, AttackSpec
from .utils import (
    check_box, check_eps, check_norm, check_steps, margin, normalize, per_example, predicted_labels, project,
    random_start,
)

__all__ = ["LOSSES", "APGDConfig", "APGDRun", "apgd", "apgd_checkpoints", "apgd_loss", "apgd_run", "dlr_loss", "halving_condition"]

LOSSES = ("ce", "dlr")
MOMENTUM = 0.75
_DLR_TINY = 1e-12


def apgd_checkpoints(steps: int) -> tuple[int, ...]:
    """The iterations w_0 = 0 < w_1 < ... (all below ``steps``) at which APGD may halve its step size.

    Exact arithmetic in hundredths: with floats, p_2 = 0.22 + 0.19 = 0.41000000000000003 and
    ceil(p_2 * 100) = 42, one iteration late. Iteration k (0-based) takes the step x_k -> x_{k+1};
    a halving decided at k = w_j applies from iteration w_j + 1 on. Small ``steps`` merge
    checkpoints that round to the same iteration.
    """
    steps = check_steps(steps)
    hundredths = [0, 22]
    while True:
        following = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if following > 100:
            break
        hundredths.append(following)
    iterations = sorted({(p * steps + 99) // 100 for p in hundredths})
    return tuple(w for w in iterations if w < steps)


def dlr_loss(logits: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12) per example (pi: classes by falling logit).

    Invariant to shifting and scaling the logits, so a saturated softmax does not flatten it.
    """
    top = tf.math.top_k(logits, k=3).values
    return -margin(logits, y) / (top[:, 0] - top[:, 2] + _DLR_TINY)


def apgd_loss(logits: tf.Tensor, y: tf.Tensor, loss: str) -> tf.Tensor:
    """APGD's per-example objective (to be maximized): cross-entropy at y, or DLR."""
    if loss == "ce":
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    return dlr_loss(logits, y)


def halving_condition(
    successes: tf.Tensor, window: tf.Tensor | float, rho: tf.Tensor | float, halved_last: tf.Tensor,
    loss_max: tf.Tensor, loss_max_last: tf.Tensor,
) -> tf.Tensor:
    """Per image, whether to halve at a checkpoint: Condition 1 or Condition 2 of the module docstring.

    successes: steps of the last window that raised the loss; window: w_j - w_{j-1};
    halved_last: halved at w_{j-1}; loss_max, loss_max_last: the best loss now and at w_{j-1}.
    """
    condition_1 = successes < rho * window
    condition_2 = tf.logical_not(halved_last) & (loss_max <= loss_max_last)
    return condition_1 | condition_2


class APGDRun(NamedTuple):
    """One APGD run from one start."""

    x_max: tf.Tensor  # [B, ...] the highest-loss point
    loss_max: tf.Tensor  # [B]
    x_adv: tf.Tensor  # [B, ...] the highest-loss point that f misclassifies, else x_max
    fooled: tf.Tensor  # [B] bool: some iterate was misclassified
    step_sizes: tf.Tensor  # [steps, B] the step size of iteration k (x_k -> x_{k+1})


class _State(NamedTuple):
    x: tf.Tensor  # x_k
    x_prev: tf.Tensor  # x_{k-1}, for the momentum term
    loss: tf.Tensor
    grad: tf.Tensor
    eta: tf.Tensor  # [B] step size
    x_max: tf.Tensor
    loss_max: tf.Tensor
    grad_max: tf.Tensor  # so a restart from x_max needs no new gradient
    x_adv: tf.Tensor
    loss_adv: tf.Tensor  # -inf until an iterate is misclassified
    successes: tf.Tensor  # [B] float: loss-raising steps since the last checkpoint
    halved_last: tf.Tensor  # [B] bool
    loss_max_last: tf.Tensor  # loss_max at the last checkpoint


def _evaluate(model_fn, loss: str, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-example loss, its gradient (examples are independent, so the sum's gradient) and 'fooled'."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        values = apgd_loss(logits, y, loss)
        total = tf.reduce_sum(values)
    # ZERO, not None, where the loss ignores some input (a constant model gives a zero step).
    grad = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return values, grad, predicted_labels(logits) != y


def _where(mask: tf.Tensor, new: tf.Tensor, old: tf.Tensor) -> tf.Tensor:
    return tf.where(per_example(mask, old), new, old)


def _step(model_fn, loss: str, norm: float, s: _State, first, x, y, eps, clip_min, clip_max):
    """x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})), z = P(x_k + eta dir(grad)); a = 1 at k = 0.

    Returns the state at x_{k+1} and, per image, 1.0 where the step raised the loss.
    """
    a = tf.where(first, 1.0, MOMENTUM)
    z = project(s.x + per_example(s.eta, x) * normalize(s.grad, norm), x, norm, eps, clip_min, clip_max)
    x_new = project(s.x + a * (z - s.x) + (1.0 - a) * (s.x - s.x_prev), x, norm, eps, clip_min, clip_max)
    values, grad, fooled = _evaluate(model_fn, loss, x_new, y)
    up = values > s.loss_max
    adv = fooled & (values > s.loss_adv)
    succeeded = tf.cast(values > s.loss, tf.float32)
    s = s._replace(
        x=x_new, x_prev=s.x, loss=values, grad=grad,
        x_max=_where(up, x_new, s.x_max), loss_max=tf.where(up, values, s.loss_max),
        grad_max=_where(up, grad, s.grad_max),
        x_adv=_where(adv, x_new, s.x_adv), loss_adv=tf.where(adv, values, s.loss_adv),
    )
    return s, succeeded


def _checkpoint(s: _State, succeeded: tf.Tensor, window: tf.Tensor, rho: tf.Tensor) -> _State:
    # s.successes covers steps w_{j-1} .. w_j - 1; this iteration's step opens the next window.
    halve = halving_condition(s.successes, window, rho, s.halved_last, s.loss_max, s.loss_max_last)
    return s._replace(
        eta=tf.where(halve, s.eta / 2.0, s.eta),
        x=_where(halve, s.x_max, s.x), loss=tf.where(halve, s.loss_max, s.loss),
        grad=_where(halve, s.grad_max, s.grad),
        successes=succeeded, halved_last=halve, loss_max_last=s.loss_max,
    )


def _apgd_graph(model_fn, loss, norm, x, x_start, y, eps, rho, is_check, window, clip_min, clip_max):
    values, grad, fooled = _evaluate(model_fn, loss, x_start, y)
    zeros = tf.zeros_like(values)
    s = _State(
        x=x_start, x_prev=x_start, loss=values, grad=grad, eta=zeros + 2.0 * eps,
        x_max=x_start, loss_max=values, grad_max=grad,
        x_adv=x_start, loss_adv=tf.where(fooled, values, zeros - np.inf),
        successes=zeros, halved_last=tf.zeros_like(fooled), loss_max_last=values,
    )
    steps = tf.shape(is_check)[0]

    def body(k, s, trace):
        trace = trace.write(k, s.eta)
        s, succeeded = _step(model_fn, loss, norm, s, k == 0, x, y, eps, clip_min, clip_max)
        s = tf.cond(
            is_check[k],
            lambda: _checkpoint(s, succeeded, window[k], rho),
            # k = 0 is w_0: f_max(w_0) = max(f(x_0), f(x_1)), as in the paper's Algorithm 1.
            lambda: s._replace(successes=s.successes + succeeded,
                               loss_max_last=tf.where(k == 0, s.loss_max, s.loss_max_last)),
        )
        return k + 1, s, trace

    trace = tf.TensorArray(tf.float32, size=steps)
    _, s, trace = tf.while_loop(lambda k, *_: k < steps, body, (tf.constant(0), s, trace))
    found = s.loss_adv > -np.inf
    return APGDRun(s.x_max, s.loss_max, _where(found, s.x_adv, s.x_max), found, trace.stack())


def _check_hyperparameters(*, eps, norm, steps, loss, rho, clip_min, clip_max) -> int:
    check_norm(norm)
    check_eps(eps)
    steps = check_steps(steps)
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(repr(name) for name in LOSSES)}, got {loss!r}")
    if isinstance(rho, (int, float, np.number)) and not 0 <= rho <= 1:
        raise ValueError(f"rho: expected 0 <= rho <= 1, got {rho}")
    check_box(clip_min, clip_max)
    return steps


def _check_classes(loss: str, logits: tf.Tensor) -> None:
    classes = logits.shape[-1]
    if loss == "dlr" and classes is not None and classes < 3:
        raise ValueError(f"loss='dlr': expected a model with at least 3 classes, got {classes}")


def apgd_run(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    x_start: tf.Tensor,
    y: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    norm: float = np.inf,
    steps: int = 100,
    loss: str = "ce",
    rho: float = 0.75,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> APGDRun:
    """One APGD run from ``x_start`` (in the ball around ``x``), with the per-iteration step sizes."""
    steps = _check_hyperparameters(eps=eps, norm=norm, steps=steps, loss=loss, rho=rho, clip_min=clip_min,
                                   clip_max=clip_max)
    x = tf.convert_to_tensor(x, tf.float32)
    checkpoints = apgd_checkpoints(steps)
    is_check, window = np.zeros(steps, bool), np.zeros(steps, np.float32)
    for previous, w in zip(checkpoints, checkpoints[1:]):
        is_check[w], window[w] = True, w - previous
    f32 = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    # One function over all the iterations, every hyperparameter but the loss and the norm a tensor,
    # so one trace serves a whole eps grid; compiled per call (traced once inside a compiled step),
    # so that nothing module-level keeps the model alive.
    return tf.function(_apgd_graph, reduce_retracing=True)(
        model_fn, loss, float(norm), x, f32(x_start), tf.cast(y, tf.int32), f32(eps), f32(rho),
        tf.constant(is_check), tf.constant(window), f32(clip_min), f32(clip_max),
    )


def apgd(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    *,
    eps: float | tf.Tensor,
    norm: float = np.inf,
    steps: int = 100,
    loss: str = "ce",
    y: tf.Tensor | None = None,
    restarts: int = 1,
    rho: float = 0.75,
    seed: int = 0,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
) -> tf.Tensor:
    """APGD-CE (``loss='ce'``) or APGD-DLR (``loss='dlr'``, needs >= 3 classes), untargeted.

    Args:
        model_fn: f, x -> logits [B, K].
        eps: radius of the ``norm`` ball (> 0); a tensor serves a grid of values with one trace.
        steps: iterations per restart (one forward and backward each, plus one at the start).
        y: labels to move away from; defaults to f's predicted labels on x (no label leaking).
        restarts: random starts; each after the first runs only on the images not yet fooled.
        rho: Condition 1's threshold on the fraction of loss-raising steps.
        seed: seeds the random starts (stateless: no global RNG state is read or changed).

    Returns, per image, its highest-loss misclassified iterate over all restarts, else its
    highest-loss iterate.
    """
    steps = _check_hyperparameters(eps=eps, norm=norm, steps=steps, loss=loss, rho=rho, clip_min=clip_min,
                                   clip_max=clip_max)
    restarts = check_steps(restarts, "restarts")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    x = tf.convert_to_tensor(x, tf.float32)
    logits = model_fn(x)
    _check_classes(loss, logits)
    y = predicted_labels(logits) if y is None else tf.cast(y, tf.int32)
    best, best_loss = x, tf.fill(tf.shape(y), tf.constant(-np.inf, tf.float32))
    done = tf.zeros(tf.shape(y), tf.bool)
    for restart in range(restarts):
        index = tf.where(tf.logical_not(done))
        sub_x, sub_y = tf.gather_nd(x, index), tf.gather_nd(y, index)
        start = random_start(sub_x, norm, eps, tf.constant([seed, restart], tf.int64), clip_min, clip_max)
        run = apgd_run(model_fn, sub_x, start, sub_y, eps=eps, norm=norm, steps=steps, loss=loss, rho=rho,
                       clip_min=clip_min, clip_max=clip_max)
        old_x, old_loss = tf.gather_nd(best, index), tf.gather_nd(best_loss, index)
        take = run.fooled | (run.loss_max > old_loss)
        best = tf.tensor_scatter_nd_update(best, index, _where(take, run.x_adv, old_x))
        best_loss = tf.tensor_scatter_nd_update(best_loss, index, tf.where(take, run.loss_max, old_loss))
        done = tf.tensor_scatter_nd_update(done, index, run.fooled)
    return best


@dataclass(frozen=True)
class APGDConfig:
    type: str = "apgd"
    loss: str = param("ce", choices=LOSSES)  # dlr needs >= 3 classes
    norm: str = param("linf", choices=("linf", "l2"))
    eps: tuple[float, ...] = param((0.1, 0.2, 0.3), gt=0, nonempty=True)
    steps: int = param(100, gt=0)  # Croce & Hein's budget
    restarts: int = param(1, gt=0)
    rho: float = param(0.75, ge=0, le=1)
    batch_size: int = param(256, gt=0)


_NORMS = {"linf": np.inf, "l2": 2}


def _spec_step(cfg: APGDConfig, model_fn):
    def step(x, y, seeds, eps):
        return apgd(model_fn, x, eps=eps, norm=_NORMS[cfg.norm], steps=cfg.steps, loss=cfg.loss, y=y,
                    restarts=cfg.restarts, rho=cfg.rho)

    return step


ATTACKS.add("apgd", AttackSpec("apgd", APGDConfig, norm=lambda cfg: cfg.norm, step=_spec_step))

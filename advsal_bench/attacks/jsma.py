"""Jacobian-based Saliency Map Attack (Papernot et al. 2016), exact pair search.

Each iteration takes one batched Jacobian pass (target logit and sum of logits)
over the still-active images, then picks the best admissible feature pair per
image with ``advsal_bench.pairsearch.best_pairs``.
"""
from __future__ import annotations

import functools
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Union

import numpy as np
import tensorflow as tf

from ..errors import ConfigError
from ..pairsearch import best_pairs, resolve_backend
from ..schema import param
from .spec import ATTACKS, AttackSpec, Crafted

__all__ = ["jsma", "JSMAConfig", "JSMAResult"]

Target = Union[str, int]


@dataclass
class JSMAResult:
    x_adv: np.ndarray  # float32, same shape as x
    target: np.ndarray  # int64 [B]
    success: np.ndarray  # bool [B]: model predicts target on x_adv
    changed_fraction: np.ndarray  # float64 [B]: changed features / n
    iterations: int  # pair steps taken by the longest-running image
    seconds_jacobian: float  # batched Jacobian passes, host copy (device sync) included
    seconds_pairsearch: float  # pair search plus the domain and step bookkeeping around it
    pairsearch_backend: str = ""


# One traced gradient function per model: retracing on every call would cost
# more than a whole small attack.  Weak keys so models can be freed.
_GRAD_FNS: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def _grad_fn(model_fn: Callable, feature_shape: tuple[int, ...]):
    try:
        cache = _GRAD_FNS.setdefault(model_fn, {})
    except TypeError:  # not weak-referenceable: trace per call
        cache = {}
    if feature_shape in cache:
        return cache[feature_shape]

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, *feature_shape], tf.float32),
            tf.TensorSpec([None], tf.int32),
        ],
        reduce_retracing=True,
    )
    def grads(x, target):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model_fn(x)
            t_logit = tf.gather(logits, target, batch_dims=1)
            # Both rows in one batched Jacobian: s_o = grad(sum) - grad(target).
            outs = tf.stack([t_logit, tf.reduce_sum(logits, axis=1)], axis=1)
        jac = tape.batch_jacobian(outs, x)
        jac = tf.reshape(jac, [tf.shape(x)[0], 2, -1])
        # The stopping test in the graph: on the host, right after TF's pass
        # has evicted the caches, an argmax over the logits cost ~40 us per step.
        done = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), target)
        return done, jac[:, 0], jac[:, 1] - jac[:, 0]

    cache[feature_shape] = grads
    return grads


def _predict(model_fn: Callable, x: np.ndarray, batch: int = 256) -> np.ndarray:
    out = [np.asarray(model_fn(tf.constant(x[i : i + batch]))) for i in range(0, len(x), batch)]
    return np.concatenate(out, axis=0)


def _targets(y: np.ndarray, k: int, target: Target, seed: int) -> np.ndarray:
    """Per image a class other than ``y``: drawn ('random'), ``y + 1`` ('next') or a fixed index."""
    if isinstance(target, str):
        if target == "random":
            rng = np.random.default_rng(seed)
            return (y + rng.integers(1, k, size=y.shape)) % k  # uniform over classes != y
        if target == "next":
            return (y + 1) % k
        raise ValueError(f"target: expected 'random', 'next' or a class index, got {target!r}")
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        if not 0 <= int(target) < k:
            raise ValueError(f"target: expected a class index in [0, {k}), got {target}")
        t = np.full(y.shape, int(target), dtype=np.int64)
        same = y == t
        t[same] = (t[same] + 1) % k  # already that class: aim for the next one
        return t
    raise TypeError(f"target: expected 'random', 'next' or an int, got {type(target).__name__}")


def _step_numpy(
    backend: str,
    s_t: np.ndarray,
    s_o: np.ndarray,
    domain: np.ndarray,
    done: np.ndarray,
    x_adv: np.ndarray,
    active: np.ndarray,
    steps: np.ndarray,
    it: int,
    last: bool,
    *,
    delta: np.float32,
    clip_min: float,
    clip_max: float,
    increase: bool,
) -> np.ndarray:
    """Iteration ``it`` of the active images in place: the best pair of each
    image not ``done`` moves both features of ``x_adv`` by ``delta`` (clipped)
    and leaves the domain.  ``steps[active]`` becomes each image's step count;
    returns the images still active (those that took a step, none after the
    ``last`` iteration)."""
    if done.all():
        steps[active] = it
        return active[:0]
    everyone = active.size == domain.shape[0]
    if done.any():
        # Rather than gathering the other rows of both gradients (two [B, n]
        # float copies: ~80 ms a step at 224x224x3, batch 64), the finished
        # images get an empty domain: they find no pair and leave.
        domain[active[done]] = False
    p, q, _ = best_pairs(s_t, s_o, domain if everyone else domain[active], increase=increase, backend=backend)
    stepped = p >= 0
    rows = active[stepped]
    n = domain.shape[1]
    at = np.concatenate((rows * n + p[stepped], rows * n + q[stepped]))  # both features, flat
    x_flat, domain_flat = x_adv.reshape(-1), domain.reshape(-1)  # views: both are C-contiguous
    x_flat[at] = np.clip(x_flat[at] + delta, clip_min, clip_max)
    domain_flat[at] = False
    steps[active] = it + stepped
    return rows[:0] if last else rows


def _check(x, *, theta: float, gamma: float, clip_min: float, clip_max: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError(f"x: expected a batch [B, ...] with at least 2 dims, got shape {x.shape}")
    if not theta > 0:
        raise ValueError(f"theta: expected > 0, got {theta}")
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma: expected 0 < gamma <= 1, got {gamma}")
    if not clip_min < clip_max:
        raise ValueError(f"clip_min < clip_max: expected true, got clip_min={clip_min}, clip_max={clip_max}")
    return x


def _labels(model_fn: Callable, x: np.ndarray, y, num_classes: int | None) -> tuple[np.ndarray, int]:
    """(the labels to move away from, the number of classes): the model's predictions where not given."""
    if y is None or num_classes is None:
        logits0 = _predict(model_fn, x)
        k = int(num_classes or logits0.shape[1])
        y = np.argmax(logits0, axis=1) if y is None else y
    else:
        k = int(num_classes)
    y = np.asarray(y, dtype=np.int64).reshape(-1)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y: expected shape ({x.shape[0]},), got {y.shape}")
    return y, k


def _iterate(grads, step, x_adv: np.ndarray, domain: np.ndarray, steps: np.ndarray, tgt: np.ndarray,
             feature_shape: tuple[int, ...], *, max_steps: int) -> tuple[float, float]:
    """JSMA's iterations in place: one batched Jacobian pass over the active images, then their steps.

    Returns the seconds of the Jacobian passes and of the pair search with its bookkeeping.
    """
    b, t_jac, t_pair, it = x_adv.shape[0], 0.0, 0.0, 0
    # Every active image takes one step per iteration: the step writes each
    # image's count, and the images that leave drop out of `active`.
    active = np.arange(b) if max_steps > 0 else np.arange(0)
    while active.size:
        t0 = time.perf_counter()
        x_in = x_adv if active.size == b else x_adv[active]  # active is sorted: all of it is arange(b)
        done, s_t, s_o = grads(
            tf.constant(x_in.reshape((-1,) + feature_shape)), tf.constant(tgt[active], dtype=tf.int32)
        )
        # .numpy() waits for the device: the Jacobian's time includes its sync.
        done, s_t, s_o = done.numpy(), s_t.numpy(), s_o.numpy()
        t1 = time.perf_counter()
        t_jac += t1 - t0
        # Images the model already classifies as their target, or with no
        # admissible pair left, take no step and leave; after max_steps, all.
        active = step(s_t, s_o, domain, done, x_adv, active, steps, it, it + 1 == max_steps)
        it += 1
        # Everything after the Jacobian's host copy counts as pair search: the
        # search itself, the domain it needs and the step that updates both.
        t_pair += time.perf_counter() - t1
    return t_jac, t_pair


def jsma(
    model_fn: Callable,
    x,
    *,
    y=None,
    target: Target = "random",
    theta: float = 1.0,
    gamma: float = 0.1,
    increase: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    backend: str = "auto",
    seed: int = 0,
    num_classes: int | None = None,
) -> JSMAResult:
    """Targeted JSMA; changes at most floor(gamma * n / 2) feature pairs per image.

    Args:
        model_fn: x float32 [B, ...] -> logits [B, K].
        x: inputs in [clip_min, clip_max].
        y: true labels [B]; defaults to the model's predictions.
        target: 'random' (seeded, != y), 'next' ((y + 1) % K) or a class index.
        theta: per-step change of each picked feature (> 0; sign from `increase`).
        gamma: maximum fraction of features changed, in (0, 1].
        increase: raise features (domain: x < clip_max) or lower them (x > clip_min).
        backend: pair-search backend, see advsal_bench.pairsearch.
    """
    x = _check(x, theta=theta, gamma=gamma, clip_min=clip_min, clip_max=clip_max)
    backend_used = resolve_backend(backend)
    b, feature_shape = x.shape[0], tuple(x.shape[1:])
    n = int(np.prod(feature_shape))
    tgt = _targets(*_labels(model_fn, x, y, num_classes), target, seed).astype(np.int64)
    x_adv = x.reshape(b, n).copy()
    # The search domain, kept up to date in place: features that can still move
    # and have not been changed yet.  Only picked features change, and they
    # leave the domain, so this equals (x_adv can move) & ~changed at every step
    # without recomputing it over all b * n features per iteration.
    domain = x_adv < clip_max if increase else x_adv > clip_min
    steps = np.zeros(b, dtype=np.int64)
    step = functools.partial(_step_numpy, backend_used, delta=np.float32(theta if increase else -theta),
                             clip_min=clip_min, clip_max=clip_max, increase=increase)
    t_jac, t_pair = _iterate(_grad_fn(model_fn, feature_shape), step, x_adv, domain, steps, tgt, feature_shape,
                             max_steps=int(np.floor(gamma * n / 2)))
    x_out = x_adv.reshape(x.shape)
    success = np.argmax(_predict(model_fn, x_out), axis=1) == tgt
    return JSMAResult(
        x_adv=x_out,
        target=tgt,
        success=success,
        changed_fraction=2.0 * steps / float(n),  # each step changes two features outside the domain
        iterations=int(steps.max()) if b else 0,
        seconds_jacobian=t_jac,
        seconds_pairsearch=t_pair,
        pairsearch_backend=backend_used,
    )


# ---- registration: config, crafter, metrics ---------------------------------------------------------


def _check_target(value: Any, key: str) -> None:
    if isinstance(value, str) and value not in ("random", "next"):
        raise ConfigError(f"config key '{key}': expected 'random', 'next' or a class index, got {value!r}")
    if isinstance(value, int) and value < 0:
        raise ConfigError(f"config key '{key}': expected a class index >= 0, got {value}")
    if isinstance(value, int) and value >= 1000:  # more classes than any dataset here has
        raise ConfigError(f"config key '{key}': expected a class index, got {value}")


@dataclass(frozen=True)
class JSMAConfig:
    type: str = "jsma"
    theta: float = param(1.0, gt=0, le=1)
    gamma: float = param(0.1, gt=0, le=1)
    target: Union[int, str] = param("random", check=_check_target)
    increase: bool = True
    backend: str = param("auto", choices=("auto", "numpy", "native", "cupy", "reference"))
    batch_size: int = param(64, gt=0)


def _craft(cfg: JSMAConfig, model_fn: Callable, runner: Any) -> Callable[..., Crafted]:
    """JSMA runs its own host loop (the pair search is NumPy/C++), a sub-batch of ``batch_size`` at a time."""
    classes: list[int] = []

    def crafter(x, y, *, eps=None, seed_at=lambda i: i, progress=None) -> Crafted:
        if not classes:
            classes.append(int(model_fn(tf.constant(x[:1])).shape[-1]))
        parts: dict[str, list] = {"x": [], "success": [], "changed": [], "target": []}
        t_jac = t_pair = 0.0
        for b in range(0, len(x), cfg.batch_size):
            res = jsma(model_fn, x[b : b + cfg.batch_size], y=y[b : b + cfg.batch_size], target=cfg.target,
                       theta=cfg.theta, gamma=cfg.gamma, increase=cfg.increase, backend=cfg.backend,
                       seed=seed_at(b), num_classes=classes[0])
            for k, v in (("x", res.x_adv), ("success", res.success), ("changed", res.changed_fraction),
                         ("target", res.target)):
                parts[k].append(v)
            t_jac += res.seconds_jacobian
            t_pair += res.seconds_pairsearch
            if progress:
                progress(len(res.x_adv))
        arrays = {k: np.concatenate(v) for k, v in parts.items()}
        return Crafted(arrays.pop("x"), arrays, {"jacobian": t_jac, "pairsearch": t_pair})

    return crafter


ATTACKS.add("jsma", AttackSpec(
    "jsma", JSMAConfig, eps_grid=False, uses_true_label=True, craft=_craft,
    metrics=lambda s: {"success_rate": float(np.mean(s.arrays["success"])),
                       "changed_fraction": float(np.mean(s.arrays["changed"]))},
    notes=lambda a: f"success {100 * a['success_rate']:.1f}%, changed {100 * a['changed_fraction']:.2f}% of features",
    environment=lambda cfg: {"pairsearch_backend": resolve_backend(cfg.backend)},
))

"""The Python API of the attacks: ``advsal_bench.attacks.<name>(model, x, *, y=None, **params)``.

Every registered attack is called the same way and returns an :class:`AttackResult`:

    >>> r = advsal_bench.attacks.pgd(model, x, eps=0.3, steps=40)
    >>> r.x_adv, r.success, r.info["params"]

``model`` is a ``keras.Model`` or any callable from an image batch to logits; ``x`` a NumPy batch
in [0, 1]; ``y`` the labels to move away from (default: the model's predictions, so no label
leaks). JSMA draws its target from the classes other than ``y``. The hyperparameters are the
attack's YAML keys, with ``eps`` a single radius for the attacks that take a grid in a suite, and
``seed`` for those that draw random numbers. One call traces the attack once for all its batches.
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np
import tensorflow as tf

from ..detectors.base import as_model_fn
from ..distribute import Runner
from ..schema import build
from .spec import ATTACKS, AttackResult, AttackSpec

_PREDICT_BATCH = 256


def _predict(runner: Runner, model_fn, x: np.ndarray) -> np.ndarray:
    out = runner.run(model_fn, [x], batch_size=_PREDICT_BATCH)
    return out[0].argmax(-1) if out else np.zeros(0, np.int64)


def _config(spec: AttackSpec, name: str, eps: Any, params: dict[str, Any]) -> Any:
    if spec.eps_grid:
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name}: eps: expected one radius >= 0, got {eps!r}")
        params = {**params, "eps": [float(eps)]}
    elif eps is not None:
        raise ValueError(f"{name}: eps: expected none ({name} has no eps), got {eps!r}")
    return build(spec.config, params, name)


def run_attack(name: str, model: Any, x: Any, *, y: Any = None, eps: Any = None, seed: int = 0,
               **params: Any) -> AttackResult:
    """Attack ``model`` on ``x`` with the registered attack ``name`` (see the module docstring)."""
    spec = ATTACKS.get(name)
    cfg = _config(spec, name, eps, params)
    x = np.asarray(x, np.float32)
    if x.ndim < 2 or not len(x):
        raise ValueError(f"x: expected a non-empty batch of images [N, ...], got shape {x.shape}")
    model_fn = as_model_fn(model)
    runner = Runner(tf.distribute.get_strategy())
    if y is None:
        y = _predict(runner, model_fn, x)
    y = np.asarray(y).astype(np.int64).reshape(-1)
    if y.shape != (len(x),):
        raise ValueError(f"y: expected one label per image ({len(x)}), got shape {y.shape}")
    crafter = spec.crafter(cfg, model_fn, runner, labeled=True)
    out = crafter(x, y, eps=None if eps is None else float(eps), seed_at=lambda i: int(seed) + i)
    pred = _predict(runner, model_fn, out.x_adv)
    arrays = dict(out.arrays)
    success = np.asarray(arrays.pop("success", pred != y), bool)
    info = {"attack": name, "params": {**({"eps": float(eps)} if eps is not None else {}), **spec.params(cfg)},
            "y": y, "prediction": pred, **arrays, **out.values}
    return AttackResult(np.asarray(out.x_adv, np.float32).reshape(x.shape), success, info)


def api_function(name: str):
    """``advsal_bench.attacks.<name>``: :func:`run_attack` with the name bound."""

    @functools.wraps(run_attack)
    def attack(model: Any, x: Any, *, y: Any = None, **params: Any) -> AttackResult:
        return run_attack(name, model, x, y=y, **params)

    attack.__name__ = attack.__qualname__ = name
    attack.__doc__ = (f"The {name!r} attack through the Python API: see advsal_bench.attacks.api. "
                      f"Hyperparameters: the fields of {ATTACKS.get(name).config.__name__}.")
    return attack

"""Users' own attacks: ``attacks: {NAME: {type: package.module:function, ...}}`` in a suite.

The protocol (also in docs/configuration.md)::

    def my_attack(model_fn, x, *, y, eps, **params) -> x_adv

- ``model_fn``: f, a function from an image batch (tf.Tensor, float32 NHWC in [0, 1]) to logits;
- ``x``: a batch of images (tf.Tensor); ``y``: int32 labels to move away from (f's predictions);
- ``eps``: a float32 scalar tensor, passed only when the suite gives ``eps: [...]`` (an eps grid);
- every other key of the YAML section is passed as a keyword argument;
- it returns the adversarial batch, a tensor of the shape of ``x``.

It runs inside a compiled TF function over the suite's batches, like the built-in attacks, so it
must be written with TF ops. A signature that cannot take these arguments, or a result of another
shape, is a one-line config error naming the key.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import tensorflow as tf

from ..errors import ConfigError
from ..registry import load_plugin
from ..schema import param
from .spec import AttackSpec
from .utils import predicted_labels

_OWN_KEYS = ("type", "eps", "norm", "batch_size")


@dataclass(frozen=True)
class PluginAttackConfig:
    type: str
    eps: tuple[float, ...] | None = param(None, ge=0, nonempty=True)
    norm: str | None = param(None, choices=("linf", "l2"))  # the ball adaptive attacks on D reuse
    batch_size: int = param(256, gt=0)
    params: Mapping[str, Any] = field(default_factory=dict)

    def __plain__(self) -> dict[str, Any]:
        own = {"type": self.type, "eps": None if self.eps is None else list(self.eps), "norm": self.norm,
               "batch_size": self.batch_size}
        return {**own, **dict(self.params)}


def split_body(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The YAML section as (the harness's own keys, the function's keyword arguments)."""
    own = {k: v for k, v in body.items() if k in _OWN_KEYS}
    return own, {k: v for k, v in body.items() if k not in _OWN_KEYS}


def check_signature(fn: Any, cfg: PluginAttackConfig, key: str) -> None:
    """A one-line ConfigError naming ``key`` unless ``fn(model_fn, x, *, y, [eps,] **params)`` can be called."""
    if not callable(fn):
        raise ConfigError(f"config key '{key}.type': expected a function (model_fn, x, *, y, eps, ...) -> x_adv, "
                          f"got {type(fn).__name__}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # builtins without a signature: checked when called
    ps = sig.parameters
    kinds = [p.kind for p in ps.values()]
    positional = [p for p in ps.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and inspect.Parameter.VAR_POSITIONAL not in kinds:
        raise ConfigError(f"config key '{key}.type': {cfg.type} must take (model_fn, x) first, got {sig}")
    open_kwargs = inspect.Parameter.VAR_KEYWORD in kinds
    given = ["y"] + (["eps"] if cfg.eps is not None else []) + list(cfg.params)
    for name in given:
        if name not in ps and not open_kwargs:
            where = f"{key}.{name}" if name in cfg.params else (f"{key}.eps" if name == "eps" else f"{key}.type")
            raise ConfigError(f"config key '{where}': {cfg.type} takes no argument {name!r}; its signature is {sig}")
    for name, p in list(ps.items())[2:]:
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in given:
            raise ConfigError(f"config key '{key}.{name}': required by {cfg.type}, expected a value")


def plugin_spec(cfg: PluginAttackConfig, key: str) -> AttackSpec:
    fn = load_plugin(cfg.type, f"{key}.type")
    check_signature(fn, cfg, key)
    return AttackSpec(cfg.type, PluginAttackConfig, eps_grid=cfg.eps is not None, norm=lambda c: c.norm,
                      step=lambda c, model_fn: _step(fn, c, model_fn, key),
                      constants=lambda c, eps: () if eps is None else (eps,))


def _step(fn: Callable, cfg: PluginAttackConfig, model_fn: Callable, key: str) -> Callable:
    def step(x, y, seeds, *consts):
        labels = predicted_labels(model_fn(x)) if y is None else y
        kwargs = {"y": labels, **({"eps": consts[0]} if consts else {}), **dict(cfg.params)}
        # The attack stage checks the shape of what comes back (an error raised here, inside TF's
        # trace, would reach the user wrapped in TF's staging error).
        return tf.cast(fn(model_fn, x, **kwargs), tf.float32)

    return step

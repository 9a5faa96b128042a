"""Attacks: one module each, a plain TF function of the model plus its config and one registration.

``advsal_bench.attacks.<name>(model, x, *, y=None, **params)`` runs any registered attack on NumPy
images and returns an :class:`AttackResult` (see :mod:`advsal_bench.attacks.api`); the TF functions
themselves are in the modules (``advsal_bench.attacks.ifgsm.ifgsm`` and so on).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .api import api_function, run_attack
from .detector_fn import make_detector_fn
from .plugin import PluginAttackConfig, plugin_spec, split_body
from .spec import ADAPTIVE_ATTACKS, ATTACKS, AdaptiveSpec, AdaptiveTask, AttackResult, AttackSpec

__all__ = ["ADAPTIVE_ATTACKS", "ATTACKS", "AdaptiveSpec", "AdaptiveTask", "AttackResult", "AttackSpec",
           "attack_spec", "build_attack_config", "make_detector_fn", "run_attack"]

# Every module of this package registers its attack on import: a new attack is one new file.
_MACHINERY = {"api", "spec", "plugin", "utils", "detector_fn"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _MACHINERY:
        importlib.import_module(f"{__name__}.{_module.name}")
for _name in ATTACKS.names():
    globals()[_name] = api_function(_name)
__all__ += ATTACKS.names()


def build_attack_config(name: str, body: dict[str, Any], key: str) -> Any:
    """One ``attacks.NAME`` section: ``type`` defaults to the name; ``package.module:fn`` is a plug-in."""
    from ..schema import build

    kind = body.get("type", name)
    if isinstance(kind, str) and ":" in kind:
        own, params = split_body(body)
        cfg = build(PluginAttackConfig, own, key)
        cfg = PluginAttackConfig(**{**cfg.__dict__, "params": params})
        plugin_spec(cfg, key)  # import it and check its signature now, before any work
        return cfg
    spec = ATTACKS.get(kind, f"{key}.type" if "type" in body else key)
    return build(spec.config, {**body, "type": kind}, key)


def attack_spec(cfg: Any, key: str) -> AttackSpec:
    """The spec that runs ``cfg`` (a built-in attack's config, or a plug-in's)."""
    if isinstance(cfg, PluginAttackConfig):
        return plugin_spec(cfg, key)
    return ATTACKS.get(cfg.type, f"{key}.type")

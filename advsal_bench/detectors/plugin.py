"""Users' own detectors: ``detectors: {NAME: {type: package.module:Class, ...}}`` in a suite.

The protocol (also in docs/configuration.md): ``Class(**params)`` (every other key of the YAML
section is a keyword argument) builds an object with

- ``fit(x_clean, x_adv, *, model)``: NumPy images (float32 NHWC in [0, 1]) and f, a
  ``keras.Model``; ``x_adv`` is None when the object says ``needs_adversarial = False``;
- ``score(x) -> array [N]``: finite, higher means adversarial;
- optionally ``threshold`` (default 0.5: ``score >= threshold`` raises the alarm) and
  ``margin(x, threshold)`` (a differentiable TF function, > 0 where flagged) for the adaptive
  attacks, which skip a detector without it.

A constructor that does not take the keys, a missing method or a score of another shape is a
one-line config error naming the key. Plug-in detectors are not stored: they are fit on each run
(their evaluations are stored as usual).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import ConfigError
from ..registry import load_plugin
from .base import Detector
from .spec import DetectorSpec


@dataclass(frozen=True)
class PluginDetectorConfig:
    type: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __plain__(self) -> dict[str, Any]:
        return {"type": self.type, **dict(self.params)}


def _make(cfg: PluginDetectorConfig, key: str) -> Any:
    cls = load_plugin(cfg.type, f"{key}.type")
    if not callable(cls):
        raise ConfigError(f"config key '{key}.type': expected a class or factory, got {type(cls).__name__}")
    try:
        inspect.signature(cls).bind(**cfg.params)
    except TypeError as exc:
        raise ConfigError(f"config key '{key}': {cfg.type} cannot take {sorted(cfg.params)} ({exc})") from None
    except ValueError:
        pass  # no signature to check: the call below says
    obj = cls(**cfg.params)
    for method in ("fit", "score"):
        if not callable(getattr(obj, method, None)):
            raise ConfigError(f"config key '{key}.type': {cfg.type} has no {method}() method; expected fit(x_clean, "
                              "x_adv, *, model) and score(x)")
    return obj


class PluginDetector(Detector):
    """A user's detector object behind the checks the pipeline relies on."""

    def __init__(self, obj: Any, key: str) -> None:
        self.obj, self.key = obj, key
        self.needs_adversarial = bool(getattr(obj, "needs_adversarial", True))

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        return callable(getattr(self.obj, "margin", None))

    @property
    def threshold(self) -> float:  # type: ignore[override]
        return float(getattr(self.obj, "threshold", 0.5))

    def fit(self, x_clean, x_adv, *, model, y_clean=None) -> "PluginDetector":
        self.obj.fit(x_clean, x_adv, model=model)
        return self

    def score(self, x) -> np.ndarray:
        scores = np.asarray(self.obj.score(x), np.float64)
        if scores.shape != (len(x),) or not np.isfinite(scores).all():
            raise ConfigError(f"config key '{self.key}.type': score() returned "
                              f"{'non-finite values' if scores.shape == (len(x),) else f'shape {scores.shape}'}, "
                              f"expected {len(x)} finite scores")
        return scores

    def margin(self, x, threshold: float | None = None):
        if not callable(getattr(self.obj, "margin", None)):
            raise NotImplementedError(f"{type(self.obj).__name__} has no margin(x, threshold)")
        return self.obj.margin(x, self.threshold if threshold is None else threshold)


def plugin_spec(cfg: PluginDetectorConfig, key: str) -> DetectorSpec:
    _make(cfg, key)  # import and construct once now, so a bad plug-in fails before any work
    return DetectorSpec(cfg.type, PluginDetectorConfig, build=lambda c, ctx: PluginDetector(_make(c, key), key))

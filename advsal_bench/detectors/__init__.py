"""Detectors: the paper's learned D and the baselines, one module each, behind one protocol (base.py).

From Python, a detector is an object: ``fit(x_clean, x_adv, *, model)``, then ``score(x)`` (higher
means adversarial) and ``threshold``. In a suite, ``detectors: {NAME: {type: KIND, ...}}`` names a
registered kind (``DETECTORS``; a name that is a kind is its own type, any other name without a
type is the paper's ``learned`` D) or a plug-in ``package.module:Class``.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import Detector
from .learned import (DETECTOR_INPUTS, LearnedDetector, LearnedDetectorConfig, balanced_set, detector_input,
                      detector_scores, scorer)
from .plugin import PluginDetector, PluginDetectorConfig, plugin_spec
from .spec import DETECTORS, DetectorContext, DetectorSpec, FitData

# The field's baselines, for use from Python (in a suite: type lid, kd_bu, mahalanobis, feature_squeezing).
from .feature_squeezing import FeatureSqueezingConfig, FeatureSqueezingDetector  # noqa: E402
from .kd_bu import DROPOUT_ARCHS, KDBUConfig, KDBUDetector, arch_has_dropout, has_dropout  # noqa: E402
from .lid import LIDConfig, LIDDetector  # noqa: E402
from .mahalanobis import MahalanobisConfig, MahalanobisDetector  # noqa: E402

__all__ = ["DETECTORS", "DETECTOR_INPUTS", "DROPOUT_ARCHS", "Detector", "DetectorContext", "DetectorSpec",
           "FeatureSqueezingConfig", "FeatureSqueezingDetector", "FitData", "KDBUConfig", "KDBUDetector", "LIDConfig",
           "LIDDetector", "LearnedDetector", "LearnedDetectorConfig", "MahalanobisConfig", "MahalanobisDetector",
           "PluginDetector", "arch_has_dropout", "balanced_set", "build_detector_config", "detector_input",
           "detector_scores", "detector_spec", "has_dropout", "scorer"]


# Every other module of this package registers its detector kind on import: a new kind is one new file.
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in {"base", "spec", "plugin", "features"}:
        importlib.import_module(f"{__name__}.{_module.name}")


def build_detector_config(name: str, body: dict[str, Any], key: str) -> Any:
    """One ``detectors.NAME`` section; ``type`` defaults to the name if it is a kind, else ``learned``."""
    from ..schema import build

    kind = body.get("type", name if name in DETECTORS else "learned")
    if isinstance(kind, str) and ":" in kind:
        cfg = PluginDetectorConfig(kind, {k: v for k, v in body.items() if k != "type"})
        plugin_spec(cfg, key)
        return cfg
    spec = DETECTORS.get(kind, f"{key}.type" if "type" in body else key)
    return build(spec.config, {**body, "type": kind}, key)


def detector_spec(cfg: Any, key: str) -> DetectorSpec:
    if isinstance(cfg, PluginDetectorConfig):
        return plugin_spec(cfg, key)
    return DETECTORS.get(cfg.type, f"{key}.type")

"""Detectors: the paper's learned D and the baselines, one module each, behind one protocol (base.py)."""
from __future__ import annotations

from .base import Detector
from .feature_squeezing import FeatureSqueezingConfig, FeatureSqueezingDetector
from .kd_bu import DROPOUT_ARCHS, KDBUConfig, KDBUDetector, arch_has_dropout, has_dropout
from .learned import balanced_set, detector_input, detector_scores, scorer, train_detector
from .lid import LIDConfig, LIDDetector
from .mahalanobis import MahalanobisConfig, MahalanobisDetector

#: YAML ``type`` -> (config dataclass, detector class) of the baselines; ``cls.from_config(cfg, key=...)``.
BASELINES: dict[str, tuple[type, type[Detector]]] = {
    "lid": (LIDConfig, LIDDetector),
    "kd_bu": (KDBUConfig, KDBUDetector),
    "mahalanobis": (MahalanobisConfig, MahalanobisDetector),
    "feature_squeezing": (FeatureSqueezingConfig, FeatureSqueezingDetector),
}

__all__ = [
    "BASELINES", "DROPOUT_ARCHS", "Detector", "FeatureSqueezingConfig", "FeatureSqueezingDetector", "KDBUConfig",
    "KDBUDetector", "LIDConfig", "LIDDetector", "MahalanobisConfig", "MahalanobisDetector", "arch_has_dropout",
    "balanced_set", "detector_input", "detector_scores", "has_dropout", "scorer", "train_detector",
]

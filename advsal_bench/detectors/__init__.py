"""Detectors: the paper's learned D and the baselines, one module each, behind one protocol (base.py)."""
from __future__ import annotations

from .base import Detector
from .learned import balanced_set, detector_input, detector_scores, scorer, train_detector

__all__ = ["Detector", "balanced_set", "detector_input", "detector_scores", "scorer", "train_detector"]

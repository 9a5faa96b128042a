"""The pipeline's stages: each a function of typed artifacts that returns one artifact (artifacts.py).

Every stage takes the :class:`~advsal_bench.stages.run.Run` first, derives its store key from the
artifacts it is given and its own slice of the config, and prints one line when it ends.
"""
from __future__ import annotations

from .adaptive import adaptive
from .artifacts import AdaptiveRows, AdvSet, Classifier, Evaluation, FittedDetector, Images, Pool, Saliency, Splits
from .attack import attack
from .classifier import classifier
from .data import load as load_data
from .data import splits
from .detector import detector
from .evaluate import evaluate
from .run import Run
from .saliency import saliency

__all__ = ["AdaptiveRows", "AdvSet", "Classifier", "Evaluation", "FittedDetector", "Images", "Pool", "Run", "Saliency",
           "Splits", "adaptive", "attack", "classifier", "detector", "evaluate", "load_data", "saliency", "splits"]

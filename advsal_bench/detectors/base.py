"""The detector protocol: an object fit on f's clean (and adversarial) images that scores new ones.

Every detector of the harness, learned (a Keras network trained on adversarial images),
statistical (features of f plus a logistic regression: LID, KD+BU, Mahalanobis) or training-free
(feature squeezing: a threshold from clean images alone), has the same four members, so the
pipeline, the experiments and the adaptive attacks treat them alike (ART's detector estimators
are the model for this shape):

- ``fit(x_clean, x_adv, *, model, y_clean=None) -> self``: ``model`` is f (a ``keras.Model`` or any
  callable from images to logits); ``x_adv`` may be ``None`` for detectors that do not learn from
  adversarial images (``needs_adversarial = False``); ``y_clean`` defaults to f's predictions.
- ``score(x) -> np.ndarray``: float64 ``[N]``, higher means more likely adversarial.
- ``threshold``: the alarm threshold set by ``fit``: ``score(x) >= threshold`` flags ``x``.
- ``margin(x, threshold=None) -> tf.Tensor``: ``[B]``, differentiable in the images ``x``, positive
  exactly where the score is at or above ``threshold`` (``self.threshold`` when None), up to float
  error. White-box attacks descend it. A detector whose score is not differentiable (a k-NN
  selection, a median filter) implements it with the standard surrogate or BPDA and says so.

``margin_fn(threshold)`` returns ``margin`` as a function of the images alone, built once (outside
any trace) for white-box attacks. ``save(directory)`` / ``restore(directory, *, model)`` keep a
fitted detector in the stage store (``load``, a classmethod, is the alternative to ``restore``); a
detector without them is refit on every run.
"""
from __future__ import annotations

import abc
import math
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

__all__ = ["Detector", "as_model_fn", "check_images", "logit"]


class Detector(abc.ABC):
    """Base class of the harness's detectors (see the module docstring for the protocol)."""

    #: False for training-free detectors: ``fit`` then ignores ``x_adv`` and the pipeline passes None.
    needs_adversarial: ClassVar[bool] = True
    #: score(x) >= threshold raises the alarm; fit sets it.
    threshold: float = 0.5
    #: False where ``margin`` is not available: white-box attacks then skip the detector.
    differentiable: ClassVar[bool] = True

    @abc.abstractmethod
    def fit(self, x_clean: np.ndarray, x_adv: np.ndarray | None, *, model: Any,
            y_clean: np.ndarray | None = None) -> "Detector":
        """Fit on clean images (and adversarial ones where ``needs_adversarial``) of f = ``model``."""

    @abc.abstractmethod
    def score(self, x: np.ndarray) -> np.ndarray:
        """float64 [N]; higher means adversarial."""

    @abc.abstractmethod
    def margin(self, x: Any, threshold: float | None = None) -> Any:
        """tf.Tensor [B], differentiable in x, > 0 where ``score(x) >= threshold``."""

    def margin_fn(self, threshold: float | None = None) -> Callable[[Any], Any]:
        """``margin`` with the threshold bound: images -> tf.Tensor [B]."""
        return lambda x: self.margin(x, threshold)

    def save(self, directory: Path) -> list[str] | None:  # pragma: no cover - overridden by storable detectors
        """Write the fitted state into ``directory``; returns the file names (None: every file there)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be stored")

    def restore(self, directory: Path, *, model: Any) -> "Detector":
        """The fitted detector :meth:`save` wrote (``load`` builds it where a subclass defines one)."""
        load = getattr(type(self), "load", None)
        if load is None:  # pragma: no cover
            raise NotImplementedError(f"{type(self).__name__} cannot be loaded")
        return load(directory, model=model)


def as_model_fn(model: Any) -> Callable[[Any], Any]:
    """f as a function from an image batch (tf.Tensor) to logits: Keras models run with training=False."""
    import keras

    if isinstance(model, keras.Model):
        return lambda x: model(x, training=False)
    if not callable(model):
        raise TypeError(f"model: expected a keras.Model or a callable from images to logits, got {type(model).__name__}")
    return model


def check_images(x: Any, name: str = "x", *, ndim: int = 4) -> np.ndarray:
    """float32 image batch [N, H, W, C] with finite values, or a ValueError naming ``name``."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected an image batch of {ndim} dims [N, H, W, C], got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or Inf")
    return arr


def logit(p: float) -> float:
    """The logit of a probability threshold (±inf at 0 and 1), for sigmoid detectors' ``margin``."""
    if p <= 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    return math.log(p / (1.0 - p))

"""Mahalanobis confidence scores (Lee et al. 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks").

At each chosen layer of f, the features (conv maps averaged over space, as in the paper) get
class-conditional Gaussians with one covariance shared by all classes (a "tied" covariance,
``sklearn.covariance.EmpiricalCovariance`` of the class-centred features, as in their code). The
layer's confidence score is

    M(x) = max_c -(f(x) - mu_c)^T Sigma^-1 (f(x) - mu_c),

computed at the preprocessed input x' = x - eps * sign(grad_x (f(x) - mu_c*)^T Sigma^-1 (f(x) - mu_c*))
(c*: the closest class; per layer, as their code does), which moves x towards its closest class;
Lee et al. find it raises clean images' scores more than adversarial ones'. A logistic regression on the z-scored
per-layer scores detects adversarial images.

Lee et al. fit the Gaussians on the training set and the regression on other (validation) images.
With one set of clean fit images here, the Gaussians that score a fit image at fit time come from
the other folds of a 5-fold split (cross-fitting): the regression then sees scores of images the
Gaussians never saw, as a new image gets them from the Gaussians of all clean fit images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..schema import param
from .base import Detector, logit
from .features import (
    LinearHead, block_outputs, check_float, check_input, check_int, check_labels, check_names, config_errors,
    config_kwargs, feature_model, load_state, predicted_labels, require_keras_model, resolve_layers, run_batched,
    save_state,
)
from .spec import register_baseline

__all__ = ["MahalanobisConfig", "MahalanobisDetector", "NOISE_GRID", "TiedGaussians", "closest_distance", "pooled_features"]

#: Lee et al.'s grid for the input-preprocessing magnitude.
NOISE_GRID = (0.0, 0.0005, 0.001, 0.0014, 0.002, 0.005, 0.01)
FOLDS = 5
_IMAGES_PER_PASS = 128


@dataclass(frozen=True)
class MahalanobisConfig:
    """YAML ``detectors.NAME`` of a Mahalanobis detector."""

    type: str = "mahalanobis"
    # Lee et al. pick it from NOISE_GRID on validation data; 0.001 is the grid's middle, a quarter of one
    # 8-bit grey level, far below every attack budget (0: no preprocessing).
    noise_magnitude: float = param(0.001, ge=0)
    # null: the end of every conv/dense/pool block of f except the logits (the paper reads each stage).
    layers: tuple[str, ...] | None = param(None, nonempty=True, unique=True)
    seed: int = param(0, ge=0)


def pooled_features(activation: tf.Tensor) -> tf.Tensor:
    """[B, C]: a conv map averaged over its spatial axes (global average pooling); 2-D features as they are."""
    if len(activation.shape) > 2:
        return tf.reduce_mean(activation, axis=list(range(1, len(activation.shape) - 1)))
    return activation


def _default_layers(model: keras.Model) -> list[str]:
    return [name for name in block_outputs(model) if name != model.layers[-1].name]


@dataclass(frozen=True, eq=False)
class TiedGaussians:
    """Class means [C', D] (classes present at fit) and the shared precision matrix [D, D]."""

    classes: np.ndarray
    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> "TiedGaussians":
        from sklearn.covariance import EmpiricalCovariance

        features = np.asarray(features, np.float64)
        classes = np.unique(labels)
        means = np.stack([features[labels == c].mean(axis=0) for c in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        precision = EmpiricalCovariance(assume_centered=False).fit(centred).precision_
        return cls(classes=classes.astype(np.int64), means=means, precision=precision)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """[N, C']: -(f - mu_c)^T Sigma^-1 (f - mu_c) per class."""
        diff = np.asarray(features, np.float64)[:, None, :] - self.means[None]
        return -np.einsum("ncd,de,nce->nc", diff, self.precision, diff)

    def tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """(means, precision) as float64 tensors: arguments, so that one traced graph serves every fit."""
        return tf.constant(self.means, tf.float64), tf.constant(self.precision, tf.float64)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}classes": self.classes, f"{prefix}means": self.means, f"{prefix}precision": self.precision}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> "TiedGaussians":
        return cls(classes=arrays[f"{prefix}classes"], means=arrays[f"{prefix}means"],
                   precision=arrays[f"{prefix}precision"])


def closest_distance(features: tf.Tensor, means: tf.Tensor, precision: tf.Tensor) -> tf.Tensor:
    """[B]: the squared Mahalanobis distance to the closest class mean, differentiable in ``features``."""
    diff = tf.cast(features, tf.float64)[:, None, :] - means[None]
    return tf.reduce_min(tf.einsum("bcd,de,bce->bc", diff, precision, diff), axis=1)


class MahalanobisDetector(Detector):
    """Per-layer Mahalanobis confidence scores + logistic regression (Lee et al. 2018).

    Args:
        noise_magnitude: eps of the input preprocessing (0: none); Lee et al.'s grid is NOISE_GRID.
        layers: f's layers to read; None: every conv/dense/pool block's output except the logits.
        seed: the cross-fitting folds.

    ``margin`` differentiates the score at the preprocessed input x' = x - eps * sign(g(x)): the sign
    of the gradient (and the closest class) is piecewise constant in x and held fixed, so
    dx'/dx = I, the exact derivative almost everywhere; the max over classes is differentiated as is.
    """

    needs_adversarial = True

    def __init__(self, *, noise_magnitude: float = 0.001, layers: Sequence[str] | None = None, seed: int = 0) -> None:
        self.noise_magnitude = check_float("noise_magnitude", noise_magnitude, ge=0)
        self.layers = check_names("layers", layers)
        self.seed = check_int("seed", seed, low=0)
        self.threshold = 0.5
        self._model: keras.Model | None = None

    @classmethod
    def from_config(cls, cfg: MahalanobisConfig, *, key: str | None = None) -> "MahalanobisDetector":
        with config_errors(key):
            return cls(**config_kwargs(cfg, MahalanobisConfig))

    def _bind(self, model: keras.Model, layer_names: tuple[str, ...]) -> None:
        self._model = model
        self.layer_names = layer_names
        self._features = feature_model(model, layer_names)
        # Traced once per bound model: eager scoring re-runs the layer loop op by op, ~10x slower.
        self._compiled = tf.function(self._confidences_tf, reduce_retracing=True)

    def _pooled(self, x: tf.Tensor) -> list[tf.Tensor]:
        outs = self._features(x)
        return [pooled_features(a) for a in (outs if isinstance(outs, (list, tuple)) else [outs])]

    # -- the per-layer confidence scores ---------------------------------------------------------

    def _confidences_tf(self, x: tf.Tensor, params: Sequence[tuple[tf.Tensor, tf.Tensor]]) -> tf.Tensor:
        """[B, L] float64 confidence scores at each layer's preprocessed input (params: per-layer tensors)."""
        if self.noise_magnitude == 0:
            feats = self._pooled(x)
            return tf.stack([-closest_distance(f, *p) for p, f in zip(params, feats)], axis=1)
        scores = []
        for layer, p in enumerate(params):
            with tf.GradientTape() as tape:
                tape.watch(x)
                closest = tf.reduce_sum(closest_distance(self._pooled(x)[layer], *p))
            step = tf.stop_gradient(tf.sign(tape.gradient(closest, x)))
            x_pre = x - self.noise_magnitude * step
            scores.append(-closest_distance(self._pooled(x_pre)[layer], *p))
        return tf.stack(scores, axis=1)

    def _confidences(self, x: np.ndarray, gaussians: Sequence[TiedGaussians]) -> np.ndarray:
        params = [g.tensors() for g in gaussians]
        parts = [np.asarray(self._compiled(tf.constant(x[s:s + _IMAGES_PER_PASS]), params))
                 for s in range(0, len(x), _IMAGES_PER_PASS)]
        return np.concatenate(parts, axis=0)

    def _fit_gaussians(self, pooled: list[np.ndarray], labels: np.ndarray, rows: np.ndarray) -> list[TiedGaussians]:
        return [TiedGaussians.fit(p[rows], labels[rows]) for p in pooled]

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, x_clean: np.ndarray, x_adv: np.ndarray | None, *, model: Any,
            y_clean: np.ndarray | None = None) -> "MahalanobisDetector":
        """Gaussians on the clean images' features (classes: ``y_clean``, default f's predictions),
        cross-fitted confidence scores of clean and adversarial images, then the regression."""
        model = require_keras_model(model)
        x_clean = check_input(x_clean, model, "x_clean")
        if x_adv is None:
            raise ValueError("x_adv: expected adversarial images (the regression learns from them), got None")
        x_adv = check_input(x_adv, model, "x_adv")
        if len(x_clean) < 2 * FOLDS:
            raise ValueError(f"x_clean: expected at least {2 * FOLDS} clean images (cross-fitting in {FOLDS} folds), "
                             f"got {len(x_clean)}")
        self._bind(model, resolve_layers(model, self.layers, _default_layers))
        num_classes = int(model.output_shape[-1])
        labels = (predicted_labels(model, x_clean) if y_clean is None
                  else check_labels(y_clean, len(x_clean), num_classes))
        pooled = run_batched(self._pooled, x_clean)
        fold = np.random.default_rng(self.seed).permutation(len(x_clean)) % FOLDS
        rows = np.arange(len(x_adv))
        adv_fold = np.where(rows < len(x_clean), fold[np.minimum(rows, len(x_clean) - 1)], rows % FOLDS)
        clean = np.empty((len(x_clean), len(self.layer_names)))
        adv = np.empty((len(x_adv), len(self.layer_names)))
        for k in range(FOLDS):
            held_out = self._fit_gaussians(pooled, labels, np.flatnonzero(fold != k))
            clean[fold == k] = self._confidences(x_clean[fold == k], held_out)
            if np.any(adv_fold == k):
                adv[adv_fold == k] = self._confidences(x_adv[adv_fold == k], held_out)
        self._gaussians = self._fit_gaussians(pooled, labels, np.arange(len(x_clean)))
        self._head = LinearHead.fit(clean, adv)
        self.threshold = 0.5
        return self

    # -- protocol --------------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self._model is None:
            raise RuntimeError("MahalanobisDetector: call fit (or load) before score or margin")

    def features(self, x: np.ndarray) -> np.ndarray:
        """[N, L] float64: the Mahalanobis confidence score of each image at each layer."""
        self._require_fitted()
        return self._confidences(check_input(x, self._model, "x"), self._gaussians)

    def score(self, x: np.ndarray) -> np.ndarray:
        features = self.features(x)
        return self._head.proba(features)

    def margin(self, x: Any, threshold: float | None = None) -> tf.Tensor:
        """LR logit of the TF confidence scores minus logit(threshold) (see the class doc)."""
        self._require_fitted()
        t = self.threshold if threshold is None else float(threshold)
        params = [g.tensors() for g in self._gaussians]
        confidences = self._confidences_tf(tf.convert_to_tensor(x, tf.float32), params)
        return self._head.logit_tf(confidences) - logit(t)

    def save(self, directory: Path) -> None:
        self._require_fitted()
        meta = {"params": {"noise_magnitude": self.noise_magnitude, "layers": self.layers, "seed": self.seed},
                "layer_names": list(self.layer_names), "threshold": self.threshold}
        arrays = dict(self._head.arrays())
        for i, g in enumerate(self._gaussians):
            arrays.update(g.arrays(f"layer{i}_"))
        save_state(directory, "mahalanobis", meta, arrays)

    @classmethod
    def load(cls, directory: Path, *, model: Any) -> "MahalanobisDetector":
        meta, arrays = load_state(directory, "mahalanobis")
        det = cls(**meta["params"])
        model = require_keras_model(model)
        det._bind(model, resolve_layers(model, meta["layer_names"], _default_layers))
        det._gaussians = [TiedGaussians.from_arrays(arrays, f"layer{i}_") for i in range(len(det.layer_names))]
        det._head = LinearHead.from_arrays(arrays)
        det.threshold = float(meta["threshold"])
        return det


register_baseline("mahalanobis", MahalanobisConfig, MahalanobisDetector)

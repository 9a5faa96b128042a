"""Local intrinsic dimensionality (Ma et al. 2018, "Characterizing adversarial subspaces using local
intrinsic dimensionality").

Each image gets, at every chosen layer of f, the maximum-likelihood LID estimate over its k nearest
neighbours among a minibatch of clean images,

    LID(x) = -( (1/k) * sum_{i=1..k} log(r_i(x) / r_k(x)) )^-1,

(r_i: the Euclidean distance of x's activation to its i-th nearest neighbour's), and a logistic
regression on the z-scored per-layer LID vector separates adversarial from clean images.

Fit follows Ma et al.'s minibatch scheme: the clean images are cut into random minibatches of
``minibatch`` images; a clean image's neighbours are the rest of its minibatch, and an adversarial
image ``x_adv[i]`` is compared to the minibatch of ``x_clean[i]`` with ``x_clean[i]`` left out (the
pipeline crafts ``x_adv[i]`` from ``x_clean[i]``; Ma et al.'s code drops the nearest neighbour of an
adversarial image for the same reason, since it is usually its own clean original). Where that pairing
does not hold, leaving one unrelated image out changes nothing of substance. A new image is scored
against a fixed reference set of ``minibatch - 1`` clean fit images, so every image, at fit and at
test, has the same number of candidate neighbours (a reference image scored again finds itself at
distance 0, as fit images would: score images the detector was not fit on).
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
    LinearHead, ParamError, block_outputs, check_input, check_int, check_names, config_errors, config_kwargs,
    feature_model, load_state, require_keras_model, resolve_layers, run_batched, save_state,
)
from .spec import register_baseline

__all__ = ["LIDConfig", "LIDDetector", "knn_distances", "lid_mle", "lid_mle_tf"]

_TINY = 1e-12  # distance floor: duplicate activations would give log(0)


@dataclass(frozen=True)
class LIDConfig:
    """YAML ``detectors.NAME`` of a LID detector (defaults: Ma et al.'s MNIST settings)."""

    type: str = "lid"
    k: int = param(20, gt=0)
    minibatch: int = param(100, gt=1)
    # null: the output of every conv/dense/pool block of f, logits included (Ma et al. read every layer).
    layers: tuple[str, ...] | None = param(None, nonempty=True, unique=True)
    seed: int = param(0, ge=0)


def lid_mle(distances: np.ndarray) -> np.ndarray:
    """MLE of LID per row of ``distances`` [N, k] (ascending: nearest first, r_k last)."""
    r = np.maximum(np.asarray(distances, np.float64), _TINY)
    total = np.sum(np.log(r[:, -1:] / r), axis=1)  # sum of log(r_k / r_i) >= 0
    return r.shape[1] / np.maximum(total, _TINY)


def lid_mle_tf(distances: tf.Tensor) -> tf.Tensor:
    """TF twin of :func:`lid_mle`, differentiable in the distances."""
    r = tf.maximum(distances, _TINY)
    total = tf.reduce_sum(tf.math.log(r[:, -1:] / r), axis=1)
    return tf.cast(tf.shape(r)[1], r.dtype) / tf.maximum(total, _TINY)


def knn_distances(reference: np.ndarray, queries: np.ndarray, k: int,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Distances [N, k] (ascending) from each query to its k nearest rows of ``reference``.

    ``exclude[i] >= 0`` leaves reference row ``exclude[i]`` out of query i's neighbours (the query
    itself, or the clean image it was crafted from); -1 leaves nothing out.
    """
    from sklearn.metrics.pairwise import euclidean_distances

    # All pairwise distances by one matrix product: NearestNeighbors' chunked search is ~5x slower
    # on a minibatch of wide conv activations.
    dist = euclidean_distances(queries.reshape(len(queries), -1).astype(np.float64),
                               reference.reshape(len(reference), -1).astype(np.float64))
    if exclude is not None:
        rows = np.flatnonzero(np.asarray(exclude) >= 0)
        dist[rows, np.asarray(exclude)[rows]] = np.inf
    return np.sort(np.partition(dist, k - 1, axis=1)[:, :k], axis=1)


def _partition(n: int, minibatch: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Random minibatches covering 0..n-1: (members of each, images of each). The last minibatch's
    images are its members topped up to ``minibatch`` with images of the first (neighbours only)."""
    order = rng.permutation(n)
    members = [order[i:i + minibatch] for i in range(0, n, minibatch)]
    batches = list(members)
    short = minibatch - len(members[-1])
    if short > 0:
        batches[-1] = np.concatenate([members[-1], order[:short]])
    return members, batches


class LIDDetector(Detector):
    """LID features of f's layers + logistic regression (Ma et al. 2018).

    Args:
        k: nearest neighbours per estimate (Ma et al.'s MNIST setting: 20).
        minibatch: clean images per minibatch, the image itself included, so each estimate picks
            its k neighbours from ``minibatch - 1`` candidates (Ma et al.: 100); k < minibatch.
        layers: names of f's layers to read; None: the end of every conv/dense/pool block and the
            logits (:func:`~advsal_bench.detectors.features.block_outputs`).
        seed: the random minibatches and the reference set.

    ``margin`` differentiates the LID estimates through the distances to the k selected
    neighbours: the selection itself (which reference images are the k nearest) is piecewise
    constant in x and is held fixed, the usual treatment in white-box attacks on LID (Athalye et al.
    2018 attack it this way); everything after the selection is exact.
    """

    needs_adversarial = True

    def __init__(self, *, k: int = 20, minibatch: int = 100, layers: Sequence[str] | None = None,
                 seed: int = 0) -> None:
        self.k = check_int("k", k, low=1)
        self.minibatch = check_int("minibatch", minibatch, low=2)
        if self.k >= self.minibatch:
            raise ParamError("k", f"expected an integer < minibatch ({self.minibatch}), since the neighbours "
                                  f"come from the minibatch less the image itself, got {k}")
        self.layers = check_names("layers", layers)
        self.seed = check_int("seed", seed, low=0)
        self.threshold = 0.5
        self._model: keras.Model | None = None

    @classmethod
    def from_config(cls, cfg: LIDConfig, *, key: str | None = None) -> "LIDDetector":
        with config_errors(key):
            return cls(**config_kwargs(cfg, LIDConfig))

    # -- fitting ---------------------------------------------------------------------------------

    def fit(self, x_clean: np.ndarray, x_adv: np.ndarray | None, *, model: Any,
            y_clean: np.ndarray | None = None) -> "LIDDetector":
        """LID of every clean and adversarial image in its minibatch, then the regression.

        ``y_clean`` is not used: LID needs no labels."""
        model = require_keras_model(model)
        x_clean = check_input(x_clean, model, "x_clean")
        if x_adv is None:
            raise ValueError("x_adv: expected adversarial images (LID learns from them), got None")
        x_adv = check_input(x_adv, model, "x_adv")
        if len(x_clean) < self.minibatch:
            raise ValueError(f"x_clean: expected at least minibatch ({self.minibatch}) clean images, "
                             f"got {len(x_clean)}")
        self._bind(model, resolve_layers(model, self.layers, block_outputs))
        n = len(x_clean)
        members, batches = _partition(n, self.minibatch, np.random.default_rng(self.seed))
        home, slot = np.empty(n, np.int64), np.empty(n, np.int64)
        for b, mem in enumerate(members):
            home[mem], slot[mem] = b, np.arange(len(mem))
        rows = np.arange(len(x_adv))
        paired = np.minimum(rows, n - 1)
        # x_adv[i] goes with the minibatch of x_clean[i], which it leaves out; unpaired ones leave out the last slot.
        adv_batch = np.where(rows < n, home[paired], rows % len(batches))
        adv_slot = np.where(rows < n, slot[paired], self.minibatch - 1)
        lid_clean = np.empty((n, len(self.layer_names)))
        lid_adv = np.empty((len(x_adv), len(self.layer_names)))
        for b, (mem, batch) in enumerate(zip(members, batches)):
            ref = self._activations(x_clean[batch])
            lid_clean[mem] = self._lids(ref, [r[: len(mem)] for r in ref], np.arange(len(mem)))
            picked = np.flatnonzero(adv_batch == b)
            if len(picked):
                lid_adv[picked] = self._lids(ref, self._activations(x_adv[picked]), adv_slot[picked])
        self._head = LinearHead.fit(lid_clean, lid_adv)
        self.threshold = 0.5
        self._set_reference(x_clean[batches[0][: self.minibatch - 1]])
        return self

    def _bind(self, model: keras.Model, layer_names: tuple[str, ...]) -> None:
        self._model = model
        self.layer_names = layer_names
        self._features = feature_model(model, layer_names)
        # Traced once per bound model: the eager functional call costs more than the layers' math.
        self._flat_compiled = tf.function(self._flat, reduce_retracing=True)

    def _flat(self, x: tf.Tensor) -> list[tf.Tensor]:
        """[B, D_l] per chosen layer: f's activations, each flattened."""
        return [tf.reshape(a, [tf.shape(a)[0], -1]) for a in self._as_list(self._features(x))]

    def _activations(self, x: np.ndarray) -> list[np.ndarray]:
        outs = run_batched(self._flat_compiled, x)
        return [o.astype(np.float32) for o in outs]

    @staticmethod
    def _as_list(outputs: Any) -> list[tf.Tensor]:
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    def _lids(self, reference: list[np.ndarray], acts: list[np.ndarray], exclude: np.ndarray | None) -> np.ndarray:
        return np.stack([lid_mle(knn_distances(ref, a, self.k, exclude)) for ref, a in zip(reference, acts)], axis=1)

    def _set_reference(self, reference: np.ndarray) -> None:
        self._reference = reference.astype(np.float32)
        self._reference_acts = self._activations(self._reference)

    # -- scoring ---------------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self._model is None:
            raise RuntimeError("LIDDetector: call fit (or load) before score or margin")

    def features(self, x: np.ndarray) -> np.ndarray:
        """LID per layer [N, L] of each image against the reference set."""
        self._require_fitted()
        x = check_input(x, self._model, "x")
        return self._lids(self._reference_acts, self._activations(x), None)

    def score(self, x: np.ndarray) -> np.ndarray:
        features = self.features(x)
        return self._head.proba(features)

    def margin(self, x: Any, threshold: float | None = None) -> tf.Tensor:
        """LR logit of the TF LID features minus logit(threshold); k-NN selection held fixed (see class doc)."""
        self._require_fitted()
        t = self.threshold if threshold is None else float(threshold)
        x = tf.convert_to_tensor(x, tf.float32)
        lids = []
        for a, ref in zip(self._flat(x), self._reference_acts):
            ref = tf.constant(ref)
            sq = (tf.reduce_sum(tf.square(a), axis=1, keepdims=True) - 2.0 * tf.matmul(a, ref, transpose_b=True)
                  + tf.reduce_sum(tf.square(ref), axis=1)[None, :])
            dist = tf.sqrt(tf.maximum(sq, _TINY))
            nearest = -tf.math.top_k(-dist, k=self.k, sorted=True).values  # ascending
            lids.append(lid_mle_tf(tf.cast(nearest, tf.float64)))
        return self._head.logit_tf(tf.stack(lids, axis=1)) - logit(t)

    # -- store -----------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        self._require_fitted()
        meta = {"params": {"k": self.k, "minibatch": self.minibatch, "layers": self.layers, "seed": self.seed},
                "layer_names": list(self.layer_names), "threshold": self.threshold}
        save_state(directory, "lid", meta, {"reference": self._reference, **self._head.arrays()})

    @classmethod
    def load(cls, directory: Path, *, model: Any) -> "LIDDetector":
        meta, arrays = load_state(directory, "lid")
        params = meta["params"]
        det = cls(k=params["k"], minibatch=params["minibatch"], layers=params["layers"], seed=params["seed"])
        model = require_keras_model(model)
        det._bind(model, resolve_layers(model, meta["layer_names"], block_outputs))
        det._head = LinearHead.from_arrays(arrays)
        det.threshold = float(meta["threshold"])
        det._set_reference(arrays["reference"])
        return det


register_baseline("lid", LIDConfig, LIDDetector)

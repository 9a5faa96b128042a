"""Kernel density + Bayesian uncertainty (Feinman et al. 2017, "Detecting adversarial samples from
artifacts").

- KD: the Gaussian kernel density of f's last-hidden-layer features at x, against the clean fit
  images of the class f predicts for x:
  ``log p(z | c) = logsumexp_j(-||z - z_j||^2 / (2 h^2)) - log n_c - (d/2) log(2 pi h^2)``
  (what ``sklearn.neighbors.KernelDensity(kernel='gaussian').score_samples`` gives, as in their code).
- BU: the MC-dropout predictive variance of f's softmax over T stochastic passes,
  ``mean_t ||p_t||^2 - ||mean_t p_t||^2`` (the paper's formula; their code divides it by the
  number of classes, a constant that z-scoring removes).
- Both z-scored, then a logistic regression with clean images and, as in the paper, noisy copies of
  them (:mod:`.noisy`: noise as large as the adversarial perturbation) in the negative class.

BU needs dropout in f: :func:`has_dropout` tells for a built model, :func:`arch_has_dropout` for a
registry name before anything is built (``mnist_net_f_dropout`` carries Feinman et al.'s MNIST
dropout; ``mnist_net_f`` has none).

The T dropout masks are drawn once from ``seed`` (one mask per pass, shared by all images), so
``score`` is a deterministic function of the image, whatever batch it comes in, and ``margin`` is
the same function in TF. At fit, a clean image's density leaves the image itself out of the kernel
sum, and ``x_adv[i]`` and its noisy copy leave out ``x_clean[i]`` (which the pipeline crafts them
from), so the regression sees densities as a new image gets them: no reference image at its own
position. Where ``x_adv`` is not paired that way, one unrelated image fewer changes nothing of
substance (the noisy copies need the pairs to size the noise).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from ..schema import param
from ..errors import ConfigError
from .base import Detector, logit
from .noisy import NOISE_KINDS, noisy_copies
from .features import (
    LinearHead, ParamError, check_float, check_input, check_int, check_labels, config_errors, config_kwargs,
    feature_model, load_state, penultimate_layer, predicted_labels, require_keras_model, resolve_layers, run_batched,
    save_state,
)
from .spec import register_baseline

__all__ = ["DROPOUT_ARCHS", "FEINMAN_BANDWIDTHS", "KDBUConfig", "KDBUDetector", "arch_has_dropout",
           "check_dropout", "has_dropout", "kernel_log_density"]

#: Feinman et al.'s bandwidths (their code, tuned by cross-validation on their nets).
FEINMAN_BANDWIDTHS = {"mnist": 1.20, "cifar10": 0.26, "svhn": 1.00}
#: Registry architectures with a Dropout layer (tests/test_detectors_baselines.py checks this against
#: the built models), so a suite can reject kd_bu on the others before building anything.
DROPOUT_ARCHS = frozenset({"mnist_net_f_dropout", "cifar10_net_f"})
_SPATIAL_DROPOUT = (keras.layers.SpatialDropout1D, keras.layers.SpatialDropout2D, keras.layers.SpatialDropout3D)
_MC_IMAGES = 4096  # rows per MC forward pass (T copies of each image)


@dataclass(frozen=True)
class KDBUConfig:
    """YAML ``detectors.NAME`` of a KD+BU detector."""

    type: str = "kd_bu"
    # null: Feinman et al.'s value for `dataset` (mnist 1.20, cifar10 0.26, svhn 1.00), else for f's input shape.
    bandwidth: float | None = param(None, gt=0)
    dataset: str | None = param(None, choices=tuple(FEINMAN_BANDWIDTHS))
    mc_samples: int = param(50, gt=0)
    # null: the input of f's output layer (the last hidden layer's features).
    layer: str | None = param(None)
    # Feinman et al.'s noisy negatives (auto: pixel flips for sparse perturbations, else Gaussian); null: none.
    noise: str | None = param("auto", choices=NOISE_KINDS)
    seed: int = param(0, ge=0)


def has_dropout(model: Any) -> bool:
    """Whether a Keras model (nested models included) has a Dropout layer of rate > 0 (SpatialDropout included)."""
    layers = getattr(model, "layers", None)
    if layers is None:
        return False
    return any((isinstance(layer, keras.layers.Dropout) and layer.rate > 0) or has_dropout(layer) for layer in layers)


def arch_has_dropout(arch: str) -> bool:
    """Whether registry architecture ``arch`` carries dropout, without building it."""
    from ..models import MODELS

    MODELS.get(arch)  # unknown name: ConfigError listing the valid ones
    return arch in DROPOUT_ARCHS


def check_dropout(model: Any, *, key: str = "detectors.kd_bu") -> None:
    """ConfigError naming ``key`` unless f has dropout (BU is MC dropout)."""
    if not has_dropout(model):
        name = getattr(model, "name", type(model).__name__)
        raise ConfigError(
            f"{key}: expected a classifier f with a Dropout layer (Bayesian uncertainty is MC dropout), got "
            f"{name!r} without one; use an arch with dropout ({', '.join(sorted(DROPOUT_ARCHS))})")


def kernel_log_density(z: tf.Tensor, reference: tf.Tensor, ref_labels: tf.Tensor, labels: tf.Tensor,
                       bandwidth: float, exclude: tf.Tensor | None = None) -> tf.Tensor:
    """Gaussian-kernel log density [B] of each row of ``z`` among the ``reference`` rows of its label.

    ``exclude[i] >= 0`` leaves reference row ``exclude[i]`` out of row i's sum (leave-one-out).
    """
    z = tf.cast(z, tf.float64)
    reference = tf.cast(reference, tf.float64)
    sq = (tf.reduce_sum(z * z, axis=1, keepdims=True) - 2.0 * tf.matmul(z, reference, transpose_b=True)
          + tf.reduce_sum(reference * reference, axis=1)[None, :])
    sq = tf.maximum(sq, 0.0)
    mask = tf.equal(tf.cast(ref_labels, tf.int64)[None, :], tf.cast(labels, tf.int64)[:, None])
    if exclude is not None:
        rows = tf.range(tf.shape(reference)[0], dtype=tf.int64)
        mask &= tf.not_equal(rows[None, :], tf.cast(exclude, tf.int64)[:, None])
    log_k = tf.where(mask, -sq / (2.0 * bandwidth ** 2), tf.constant(-np.inf, tf.float64))
    count = tf.reduce_sum(tf.cast(mask, tf.float64), axis=1)
    dim = tf.cast(tf.shape(z)[1], tf.float64)
    return tf.reduce_logsumexp(log_k, axis=1) - tf.math.log(count) - 0.5 * dim * math.log(2 * math.pi * bandwidth ** 2)


class _FixedMaskDropout(keras.layers.Layer):
    """Dropout with T masks drawn once: rows [t*B, (t+1)*B) of a [T*B, ...] batch get mask t."""

    def __init__(self, rate: float, passes: int, seed: int, spatial: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate, self.passes, self.seed, self.spatial = float(rate), int(passes), int(seed), bool(spatial)

    def build(self, input_shape: Any) -> None:
        shape = tuple(int(d) for d in input_shape[1:])
        mask_shape = (*(1,) * (len(shape) - 1), shape[-1]) if self.spatial else shape
        keep = np.random.default_rng(self.seed).random((self.passes, *mask_shape)) >= self.rate
        self._masks = tf.constant(keep.astype(np.float32) / (1.0 - self.rate))

    def call(self, x: tf.Tensor) -> tf.Tensor:
        inner = tf.shape(x)[1:]
        grouped = tf.reshape(x, tf.concat([[self.passes, -1], inner], axis=0))
        return tf.reshape(grouped * self._masks[:, None], tf.shape(x))


def _carries_dropout(layer: keras.layers.Layer) -> bool:
    return (isinstance(layer, keras.layers.Dropout) and layer.rate > 0) or (isinstance(layer, keras.Model)
                                                                           and has_dropout(layer))


def _mc_parts(model: keras.Model, passes: int,
              seed: int) -> tuple[list[keras.layers.Layer], Callable[[tf.Tensor], tf.Tensor]]:
    """(deterministic prefix, stochastic rest) of f, each Dropout of the rest replaced by a fixed-mask one.

    For a Sequential f the prefix is every layer before the first dropout: it runs once per image
    instead of T times (Feinman et al.'s nets carry dropout after the conv stack only). Any other f
    runs whole on the T copies. Every layer but the dropouts is f's own (weights shared).
    """
    counter = iter(range(1 << 30))

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.Dropout) and layer.rate > 0:
            return _FixedMaskDropout(layer.rate, passes, seed * 1000 + next(counter),
                                     isinstance(layer, _SPATIAL_DROPOUT), name=f"{layer.name}_mc")
        if isinstance(layer, keras.Model) and has_dropout(layer):
            return keras.models.clone_model(layer, clone_function=swap)
        return layer

    if not isinstance(model, keras.Sequential):
        clone = keras.models.clone_model(model, clone_function=swap)
        return [], lambda h: clone(h, training=False)
    first = next(i for i, layer in enumerate(model.layers) if _carries_dropout(layer))
    rest = [swap(layer) for layer in model.layers[first:]]

    def run_rest(h: tf.Tensor) -> tf.Tensor:
        for layer in rest:
            h = layer(h, training=False)
        return h

    return list(model.layers[:first]), run_rest


class KDBUDetector(Detector):
    """Kernel density + MC-dropout uncertainty + logistic regression (Feinman et al. 2017).

    Args:
        bandwidth: the Gaussian kernel's h; None: Feinman et al.'s for ``dataset`` (mnist 1.20,
            cifar10 0.26, svhn 1.00), or, without a hint, for f's input shape (28x28x1: mnist,
            32x32x3: cifar10; other shapes need an explicit bandwidth).
        dataset: the hint for the default bandwidth.
        mc_samples: T, the stochastic passes for BU (Feinman et al.: 50).
        layer: the feature layer; None: the input of f's output layer (the last hidden layer).
        noise: the noisy copies of the clean fit images that join the negative class (``auto``,
            ``gaussian``, ``flip``, see :mod:`.noisy`); None: the clean images alone.
        seed: the T dropout masks and the noise.

    ``margin`` is exact for fixed predicted class and masks: the class (argmax of f's logits) is
    piecewise constant in x and held fixed; the kernel density and the MC variance are
    differentiated as they are.
    """

    needs_adversarial = True

    def __init__(self, *, bandwidth: float | None = None, dataset: str | None = None, mc_samples: int = 50,
                 layer: str | None = None, noise: str | None = "auto", seed: int = 0,
                 key: str = "detectors.kd_bu") -> None:
        self.bandwidth = None if bandwidth is None else check_float("bandwidth", bandwidth, gt=0)
        if dataset is not None and dataset not in FEINMAN_BANDWIDTHS:
            raise ParamError("dataset", f"expected one of {', '.join(FEINMAN_BANDWIDTHS)} or null, got {dataset!r}")
        self.dataset = dataset
        self.mc_samples = check_int("mc_samples", mc_samples, low=1)
        if layer is not None and not isinstance(layer, str):
            raise ParamError("layer", f"expected a layer name or null, got {layer!r}")
        self.layer = layer
        if noise is not None and noise not in NOISE_KINDS:
            raise ParamError("noise", f"expected one of {', '.join(NOISE_KINDS)} or null, got {noise!r}")
        self.noise = noise
        self.seed = check_int("seed", seed, low=0)
        self.key = key
        self.threshold = 0.5
        self._model: keras.Model | None = None

    @classmethod
    def from_config(cls, cfg: KDBUConfig, *, key: str | None = None) -> "KDBUDetector":
        with config_errors(key):
            return cls(**config_kwargs(cfg, KDBUConfig), key=key or "detectors.kd_bu")

    def resolve_bandwidth(self, input_shape: tuple[int, ...]) -> float:
        """The bandwidth fit uses for f's input shape (see the class doc)."""
        if self.bandwidth is not None:
            return self.bandwidth
        if self.dataset is not None:
            return FEINMAN_BANDWIDTHS[self.dataset]
        by_shape = {(28, 28, 1): "mnist", (32, 32, 3): "cifar10"}.get(tuple(input_shape))
        if by_shape is None:
            raise ParamError("bandwidth", f"expected a value for f's input shape {tuple(input_shape)} (Feinman et al. "
                                          f"give mnist 1.20, cifar10 0.26, svhn 1.00; or set dataset), got null")
        return FEINMAN_BANDWIDTHS[by_shape]

    # -- fitting ---------------------------------------------------------------------------------

    def _bind(self, model: keras.Model, layer: str, bandwidth: float) -> None:
        self._model = model
        self.layer_name, self.bandwidth_used = layer, float(bandwidth)
        self._features = feature_model(model, [layer, model.layers[-1].name])
        self._mc_prefix, self._mc_rest = _mc_parts(model, self.mc_samples, self.seed)

    def fit(self, x_clean: np.ndarray, x_adv: np.ndarray | None, *, model: Any,
            y_clean: np.ndarray | None = None) -> "KDBUDetector":
        """Reference features of the clean images (classes: ``y_clean``, default f's predictions),
        leave-one-out densities and uncertainties of clean and adversarial images, then the regression."""
        model = require_keras_model(model)
        check_dropout(model, key=self.key)
        x_clean = check_input(x_clean, model, "x_clean")
        if x_adv is None:
            raise ValueError("x_adv: expected adversarial images (KD+BU learns from them), got None")
        x_adv = check_input(x_adv, model, "x_adv")
        if self.noise is not None and len(x_adv) > len(x_clean):
            raise ValueError(f"x_adv: expected at most one adversarial image per clean image (the noisy negatives "
                             f"copy x_adv[i] - x_clean[i]; noise: null fits without them), got {len(x_adv)} "
                             f"for {len(x_clean)}")
        layer = self.layer if self.layer is not None else penultimate_layer(model)
        layer = resolve_layers(model, (layer,), lambda m: [], param="layer")[0]
        self._bind(model, layer, self.resolve_bandwidth(model.input_shape[1:]))
        num_classes = int(model.output_shape[-1])
        labels = (predicted_labels(model, x_clean) if y_clean is None
                  else check_labels(y_clean, len(x_clean), num_classes))
        counts = np.bincount(labels, minlength=num_classes)
        if counts.min() < 2:
            raise ValueError(f"x_clean: expected at least 2 clean images of each of f's {num_classes} classes for the "
                             f"class-conditional densities, got {int(counts.min())} of class {int(counts.argmin())}")
        self._reference = self._deep(x_clean)[0]
        self._ref_labels = labels
        own = np.arange(len(x_clean))
        paired = np.where(np.arange(len(x_adv)) < len(x_clean), np.arange(len(x_adv)), -1)
        negatives = [self._feature_rows(x_clean, own)]
        if self.noise is not None:
            noisy = noisy_copies(x_clean[:len(x_adv)], x_adv, kind=self.noise, seed=self.seed)
            negatives.append(self._feature_rows(noisy, paired))
        self._head = LinearHead.fit(np.concatenate(negatives), self._feature_rows(x_adv, paired))
        self.threshold = 0.5
        return self

    def _deep(self, x: np.ndarray) -> list[np.ndarray]:
        return run_batched(lambda b: [tf.reshape(t, [tf.shape(t)[0], -1]) for t in self._features(b)], x)

    # -- the two features ------------------------------------------------------------------------

    def _kd_bu_tf(self, x: tf.Tensor, exclude: tf.Tensor | None = None) -> tf.Tensor:
        """[B, 2]: (log density, uncertainty), differentiable in x for fixed class and masks."""
        z, logits = self._features(x)
        z = tf.reshape(z, [tf.shape(z)[0], -1])
        pred = tf.argmax(tf.stop_gradient(logits), axis=-1, output_type=tf.int64)
        density = kernel_log_density(z, self._reference, tf.constant(self._ref_labels), pred,
                                     self.bandwidth_used, exclude)
        return tf.stack([density, tf.cast(self._uncertainty_tf(x), tf.float64)], axis=1)

    def _uncertainty_tf(self, x: tf.Tensor) -> tf.Tensor:
        t = self.mc_samples
        for layer in self._mc_prefix:
            x = layer(x, training=False)
        tiled = tf.reshape(tf.tile(x[None], [t] + [1] * len(x.shape)), tf.concat([[-1], tf.shape(x)[1:]], axis=0))
        probs = tf.nn.softmax(self._mc_rest(tiled))
        probs = tf.reshape(probs, [t, -1, probs.shape[-1]])  # pass t holds rows [t*B, (t+1)*B)
        second_moment = tf.reduce_mean(tf.reduce_sum(probs ** 2, axis=-1), axis=0)
        return second_moment - tf.reduce_sum(tf.reduce_mean(probs, axis=0) ** 2, axis=-1)

    def _feature_rows(self, x: np.ndarray, exclude: np.ndarray | None) -> np.ndarray:
        step = max(1, _MC_IMAGES // self.mc_samples)
        rows = []
        for s in range(0, len(x), step):
            ex = None if exclude is None else tf.constant(exclude[s:s + step], tf.int64)
            rows.append(np.asarray(self._kd_bu_tf(tf.constant(x[s:s + step]), ex)))
        return np.concatenate(rows, axis=0)

    # -- protocol --------------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if self._model is None:
            raise RuntimeError("KDBUDetector: call fit (or load) before score or margin")

    def features(self, x: np.ndarray) -> np.ndarray:
        """[N, 2] float64: (log kernel density, Bayesian uncertainty) of each image."""
        self._require_fitted()
        return self._feature_rows(check_input(x, self._model, "x"), None)

    def score(self, x: np.ndarray) -> np.ndarray:
        features = self.features(x)
        return self._head.proba(features)

    def margin(self, x: Any, threshold: float | None = None) -> tf.Tensor:
        """LR logit of the TF features minus logit(threshold) (predicted class held fixed)."""
        self._require_fitted()
        t = self.threshold if threshold is None else float(threshold)
        return self._head.logit_tf(self._kd_bu_tf(tf.convert_to_tensor(x, tf.float32))) - logit(t)

    def save(self, directory: Path) -> None:
        self._require_fitted()
        meta = {"params": {"bandwidth": self.bandwidth, "dataset": self.dataset, "mc_samples": self.mc_samples,
                           "layer": self.layer, "noise": self.noise, "seed": self.seed},
                "layer_name": self.layer_name, "bandwidth_used": self.bandwidth_used, "threshold": self.threshold}
        save_state(directory, "kd_bu", meta, {"reference": self._reference, "ref_labels": self._ref_labels,
                                              **self._head.arrays()})

    @classmethod
    def load(cls, directory: Path, *, model: Any) -> "KDBUDetector":
        meta, arrays = load_state(directory, "kd_bu")
        det = cls(**meta["params"])
        model = require_keras_model(model)
        check_dropout(model, key=det.key)
        layer = resolve_layers(model, (meta["layer_name"],), lambda m: [], param="layer")[0]
        det._bind(model, layer, meta["bandwidth_used"])
        det._reference, det._ref_labels = arrays["reference"], arrays["ref_labels"].astype(np.int64)
        det._head = LinearHead.from_arrays(arrays)
        det.threshold = float(meta["threshold"])
        return det


def _check(cfg: KDBUConfig, suite: Any, key: str) -> None:
    """BU needs MC dropout in f, and KD a bandwidth: both known before any work for a registry f."""
    arch = suite.classifier.arch
    if suite.classifier.path is None and not arch_has_dropout(arch):
        raise ConfigError(f"config key '{key}': Bayesian uncertainty needs MC dropout, and classifier.arch {arch!r} "
                          f"has no Dropout layer; expected one of {', '.join(sorted(DROPOUT_ARCHS))}")
    if cfg.bandwidth is None and cfg.dataset is None and suite.dataset.name not in FEINMAN_BANDWIDTHS:
        raise ConfigError(f"config key '{key}.bandwidth': Feinman et al. give none for {suite.dataset.name}, "
                          "expected a value > 0")


register_baseline("kd_bu", KDBUConfig, KDBUDetector, _check)

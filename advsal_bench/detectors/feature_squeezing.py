"""Feature squeezing (Xu et al. 2018, "Feature squeezing: detecting adversarial examples in deep
neural networks").

The score of x is the largest L1 distance between f's softmax on x and on a squeezed copy of x,
over the squeezers: bit-depth reduction to b bits, ``round(x * (2^b - 1)) / (2^b - 1)``, and k x k
median smoothing. Training-free: the threshold is the clean fit images' score quantile at the
chosen false-positive rate (the paper: 5%).

Default squeezers, the paper's joint detectors: MNIST 1-bit depth + 2x2 median; CIFAR-10 5-bit +
2x2 median + non-local means; ImageNet 5-bit + 2x2 median + non-local means. Non-local means is
left out: the paper's is OpenCV's ``fastNlMeansDenoisingColored`` (not a dependency here), and as a
patch search over the image it has no cheap TF twin for ``margin``; CIFAR-10 and ImageNet therefore
get 5-bit + 2x2 median only.

The median filter follows the paper's code (``scipy.ndimage.median_filter``, mode 'reflect'): the
k x k window at pixel (i, j) spans rows i - k//2 .. i + (k-1)//2 (so a 2x2 window is the pixel and
its neighbours above and to the left), the image is padded by repeating its edge pixels (scipy's
'reflect' = TF's 'SYMMETRIC'), and for an even window the median is the upper of the two middle
values (scipy's rank filter at rank k*k // 2), not their mean.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import tensorflow as tf

from ..schema import param
from .base import Detector, as_model_fn
from .features import (
    ParamError, check_float, check_input, check_int, config_errors, config_kwargs, load_state, run_batched, save_state,
)
from .spec import register_baseline

__all__ = ["FS_DEFAULTS", "FeatureSqueezingConfig", "FeatureSqueezingDetector", "bit_depth", "bit_depth_tf",
           "median_filter", "median_filter_tf"]

#: The paper's joint-detection squeezers per dataset (bit depths, median sizes), non-local means left out.
FS_DEFAULTS = {"mnist": ((1,), (2,)), "cifar10": ((5,), (2,)), "imagenet10": ((5,), (2,))}


@dataclass(frozen=True)
class FeatureSqueezingConfig:
    """YAML ``detectors.NAME`` of a feature-squeezing detector."""

    type: str = "feature_squeezing"
    # null: the paper's for `dataset` (else for f's input: 1 channel -> mnist, 3 -> cifar10/imagenet10); []: none.
    bit_depths: tuple[int, ...] | None = param(None, ge=1, le=8, unique=True)
    median_sizes: tuple[int, ...] | None = param(None, ge=1, unique=True)
    dataset: str | None = param(None, choices=tuple(FS_DEFAULTS))
    fpr: float = param(0.05, gt=0, lt=1)


def bit_depth(x: np.ndarray, bits: int) -> np.ndarray:
    """Round [0, 1] pixels to ``2**bits`` levels (half to even, as np.rint in the paper's code)."""
    levels = 2 ** bits - 1
    return (np.rint(np.asarray(x, np.float32) * levels) / levels).astype(np.float32)


def bit_depth_tf(x: tf.Tensor, bits: int) -> tf.Tensor:
    levels = float(2 ** bits - 1)
    return tf.round(x * levels) / levels


def median_filter(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` median of each channel of NHWC images (scipy's convention, module doc)."""
    from scipy.ndimage import median_filter as scipy_median

    return scipy_median(np.asarray(x, np.float32), size=(1, size, size, 1), mode="reflect")


def median_filter_tf(x: tf.Tensor, size: int) -> tf.Tensor:
    """TF twin of :func:`median_filter` (equal values: the median is one of the window's pixels)."""
    before, after = size // 2, (size - 1) // 2
    padded = tf.pad(x, [[0, 0], [before, after], [before, after], [0, 0]], mode="SYMMETRIC")
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    windows = tf.stack([padded[:, i:i + h, j:j + w, :] for i in range(size) for j in range(size)], axis=-1)
    # Rank size*size // 2 of the ascending sort, read off the descending top-k.
    rank = size * size - (size * size) // 2
    return tf.math.top_k(windows, k=rank, sorted=True).values[..., -1]


def _bpda(x: tf.Tensor, squeezed: tf.Tensor) -> tf.Tensor:
    """The squeezed value on the forward pass, the identity on the backward pass (BPDA)."""
    return x + tf.stop_gradient(squeezed - x)


class FeatureSqueezingDetector(Detector):
    """max over squeezers of ||softmax(f(x)) - softmax(f(squeeze(x)))||_1 (Xu et al. 2018).

    Args:
        bit_depths: bit depths (1-8) to squeeze to; None: the paper's for the dataset; (): none.
        median_sizes: median window sizes (>= 1); None: the paper's for the dataset; (): none.
        dataset: which defaults (mnist, cifar10, imagenet10); None: by f's input channels.
        fpr: the share of clean fit images the threshold may flag (the paper: 0.05).

    ``margin`` is score - threshold with BPDA (Athalye et al. 2018) for both squeezers: the squeezed
    image on the forward pass, the identity on the backward pass (rounding has a zero gradient almost
    everywhere; the median filter's would route each output to one input pixel).
    """

    needs_adversarial = False

    def __init__(self, *, bit_depths: Sequence[int] | None = None, median_sizes: Sequence[int] | None = None,
                 dataset: str | None = None, fpr: float = 0.05) -> None:
        self.bit_depths = self._ints("bit_depths", bit_depths, low=1, high=8)
        self.median_sizes = self._ints("median_sizes", median_sizes, low=1, high=None)
        if dataset is not None and dataset not in FS_DEFAULTS:
            raise ParamError("dataset", f"expected one of {', '.join(FS_DEFAULTS)} or null, got {dataset!r}")
        self.dataset = dataset
        self.fpr = check_float("fpr", fpr, gt=0, lt=1)
        self.threshold = 0.0
        self._model_fn: Any = None

    @staticmethod
    def _ints(param: str, value: Any, *, low: int, high: int | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            value = (value,)
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ParamError(param, f"expected a list of integers or null, got {value!r}")
        out = []
        for v in value:
            try:
                out.append(check_int(param, v, low=low, high=high))
            except ParamError:
                want = f"integers in {low}-{high}" if high is not None else f"integers >= {low}"
                raise ParamError(param, f"expected {want}, got {v!r}") from None
        if len(set(out)) != len(out):
            raise ParamError(param, f"expected no repeated entries, got {list(out)}")
        return tuple(out)

    @classmethod
    def from_config(cls, cfg: FeatureSqueezingConfig, *, key: str | None = None) -> "FeatureSqueezingDetector":
        with config_errors(key):
            return cls(**config_kwargs(cfg, FeatureSqueezingConfig))

    def resolve_squeezers(self, input_shape: tuple[int, ...] | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(bit depths, median sizes) used for f's input shape (the paper's defaults where None)."""
        dataset = self.dataset
        if dataset is None:
            dataset = "mnist" if input_shape is not None and input_shape[-1] == 1 else "cifar10"
        default_bits, default_sizes = FS_DEFAULTS[dataset]
        bits = default_bits if self.bit_depths is None else self.bit_depths
        sizes = default_sizes if self.median_sizes is None else self.median_sizes
        if not bits and not sizes:
            raise ParamError("bit_depths", "expected at least one squeezer (bit_depths or median_sizes), got none")
        return bits, sizes

    # -- scores ----------------------------------------------------------------------------------

    def _score_tf(self, x: tf.Tensor, *, bpda: bool) -> tf.Tensor:
        """[B] float32: the largest L1 distance of f's softmax between x and its squeezed copies."""
        p = tf.nn.softmax(self._model_fn(x))
        squeezed = [bit_depth_tf(x, b) for b in self.bits_used] + [median_filter_tf(x, s) for s in self.sizes_used]
        dists = []
        for sq in squeezed:
            sq = _bpda(x, sq) if bpda else tf.stop_gradient(sq)
            dists.append(tf.reduce_sum(tf.abs(p - tf.nn.softmax(self._model_fn(sq))), axis=-1))
        return tf.reduce_max(tf.stack(dists, axis=1), axis=1)

    def _scores(self, x: np.ndarray) -> np.ndarray:
        (out,) = run_batched(lambda b: [self._score_tf(b, bpda=False)], x)
        return out.astype(np.float64)

    def fit(self, x_clean: np.ndarray, x_adv: np.ndarray | None = None, *, model: Any,
            y_clean: np.ndarray | None = None) -> "FeatureSqueezingDetector":
        """The threshold flags at most ``fpr`` of the clean images; ``x_adv`` and ``y_clean`` are ignored."""
        self._model_fn = as_model_fn(model)
        self._model = model
        x_clean = check_input(x_clean, model, "x_clean")
        self.bits_used, self.sizes_used = self.resolve_squeezers(tuple(x_clean.shape[1:]))
        self.threshold = threshold_at_fpr(self._scores(x_clean), self.fpr)
        return self

    def _require_fitted(self) -> None:
        if self._model_fn is None:
            raise RuntimeError("FeatureSqueezingDetector: call fit (or load) before score or margin")

    def score(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return self._scores(check_input(x, self._model, "x"))

    def margin(self, x: Any, threshold: float | None = None) -> tf.Tensor:
        """score(x) - threshold in TF, squeezers through BPDA (see the class doc)."""
        self._require_fitted()
        t = self.threshold if threshold is None else float(threshold)
        return self._score_tf(tf.convert_to_tensor(x, tf.float32), bpda=True) - t

    def save(self, directory: Path) -> None:
        self._require_fitted()
        meta = {"params": {"bit_depths": self.bit_depths, "median_sizes": self.median_sizes, "dataset": self.dataset,
                           "fpr": self.fpr},
                "bits_used": list(self.bits_used), "sizes_used": list(self.sizes_used), "threshold": self.threshold}
        save_state(directory, "feature_squeezing", meta, {"threshold": np.asarray([self.threshold])})

    @classmethod
    def load(cls, directory: Path, *, model: Any) -> "FeatureSqueezingDetector":
        meta, arrays = load_state(directory, "feature_squeezing")
        det = cls(**meta["params"])
        det._model_fn, det._model = as_model_fn(model), model
        det.bits_used, det.sizes_used = tuple(meta["bits_used"]), tuple(meta["sizes_used"])
        det.threshold = float(arrays["threshold"][0])
        return det


def threshold_at_fpr(clean_scores: np.ndarray, fpr: float) -> float:
    """The smallest threshold t with mean(clean_scores >= t) <= fpr."""
    s = np.sort(np.asarray(clean_scores, np.float64))[::-1]
    allowed = int(math.floor(fpr * len(s) + 1e-9))
    # Flag only what lies strictly above the (allowed+1)-th largest score: ties never push past fpr.
    return float(np.nextafter(s[allowed], np.inf))


register_baseline("feature_squeezing", FeatureSqueezingConfig, FeatureSqueezingDetector)

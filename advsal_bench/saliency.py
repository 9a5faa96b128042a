"""Gradient saliency of a classifier: d logit_{predicted class} / d input, in one backward pass."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

NORMALIZATIONS = ("none", "per_image", "global")
_TINY = 1e-12


def gradient_saliency(model_fn, x: tf.Tensor, *, abs: bool = False) -> tf.Tensor:  # noqa: A002 - mirrors YAML key
    """Saliency map of the predicted class (Simonyan et al. 2014), same shape as ``x``."""
    x = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model_fn(x)
        # Each image's score depends only on its own input, so one summed backward pass gives all maps.
        top = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
    grad = tape.gradient(top, x)
    return tf.abs(grad) if abs else grad


def fit_global_scale(saliency: np.ndarray) -> float:
    """Scale that brings clean training saliency to unit standard deviation (stored with the run).

    D's convolutions see image (0..1) and saliency side by side; raw gradients are orders of
    magnitude smaller, so without a common scale the saliency channels barely move D's activations.
    """
    std = float(np.std(saliency, dtype=np.float64))
    return std if std > _TINY else 1.0


def normalize_saliency(saliency: np.ndarray, method: str, *, scale: float | None = None) -> np.ndarray:
    if method == "none":
        return saliency
    if method == "global":
        if scale is None:
            raise ValueError("normalize='global': expected the scale fitted on clean training saliency, got None")
        return (saliency / scale).astype(np.float32)
    if method == "per_image":
        peak = np.max(np.abs(saliency), axis=tuple(range(1, saliency.ndim)), keepdims=True)
        return (saliency / np.maximum(peak, _TINY)).astype(np.float32)
    raise ValueError(f"normalize: expected one of {', '.join(NORMALIZATIONS)}, got {method!r}")


def saliency_map(model, x, *, abs: bool = False, batch_size: int = 256) -> np.ndarray:  # noqa: A002
    """The gradient saliency of ``model``'s predicted class for NumPy images ``x``, as NumPy.

    ``model``: a ``keras.Model`` or any callable from an image batch to logits. The maps have the
    shape of ``x``; ``abs=True`` gives their absolute values.
    """
    from .detectors.base import as_model_fn
    from .distribute import Runner

    x = np.asarray(x, np.float32)
    if x.ndim < 2 or not len(x):
        raise ValueError(f"x: expected a non-empty batch of images [N, ...], got shape {x.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    model_fn = as_model_fn(model)

    def fn(batch):
        return gradient_saliency(model_fn, batch, abs=abs)

    return Runner(tf.distribute.get_strategy()).run(fn, [x], batch_size=batch_size)[0]

"""D as a differentiable function of the image: x -> D's logit, with f's saliency computed inside.

The saliency map is itself a gradient of f, so an attack on D must differentiate through it: the
inner tape of :func:`gradient_saliency` runs while the attacker's outer tape records, and the outer
gradient is second order in f. Computing the saliency outside (as the pipeline does, in NumPy)
would treat it as a constant and attack D with the saliency gradient missing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import keras
import tensorflow as tf

from ..saliency import NORMALIZATIONS, gradient_saliency

__all__ = ["DETECTOR_INPUTS", "make_detector_fn", "normalize_saliency_tf"]

DETECTOR_INPUTS = ("image", "saliency")
_TINY = 1e-12  # as in saliency.normalize_saliency, so both paths give the same maps


def normalize_saliency_tf(saliency: tf.Tensor, method: str, *, scale: float | None = None) -> tf.Tensor:
    """TF twin of :func:`advsal_bench.saliency.normalize_saliency`, differentiable in ``saliency``."""
    if method == "none":
        return saliency
    if method == "global":
        return saliency / scale
    if method == "per_image":
        axes = list(range(1, len(saliency.shape)))
        peak = tf.reduce_max(tf.abs(saliency), axis=axes, keepdims=True)
        return saliency / tf.maximum(peak, _TINY)
    raise ValueError(f"normalize: expected one of {', '.join(NORMALIZATIONS)}, got {method!r}")


def _check_inputs(inputs: Sequence[str]) -> tuple[str, ...]:
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise ValueError(f"inputs: expected a tuple of names from {DETECTOR_INPUTS}, got {inputs!r}")
    inputs = tuple(inputs)
    if not inputs:
        raise ValueError(f"inputs: expected a non-empty tuple of names from {DETECTOR_INPUTS}, got ()")
    for name in inputs:
        if name not in DETECTOR_INPUTS:
            raise ValueError(f"inputs: expected names from {DETECTOR_INPUTS}, got {name!r}")
    if len(set(inputs)) != len(inputs):
        raise ValueError(f"inputs: expected each name at most once, got {inputs!r}")
    return inputs


def make_detector_fn(
    detector_model: Callable[..., tf.Tensor],
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    *,
    inputs: Sequence[str] = ("image", "saliency"),
    saliency_abs: bool = False,
    saliency_scale: float | None = None,
    saliency_normalize: str = "none",
    saliency_model_fn: Callable[[tf.Tensor], tf.Tensor] | None = None,
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Images [B, ...] -> D's logit [B] (positive: 'adversarial'), built as the pipeline builds D's input.

    Args:
        detector_model: D, [B, H, W, C * len(inputs)] -> [B, 1] logits. A detector on the raw image
            (Metzen et al.'s, which contains f) takes ``inputs=("image",)``.
        model_fn: f, x -> logits; its saliency is recomputed inside, differentiably.
        inputs: D's channels in order, as ``detectors.detector_input`` concatenates them.
        saliency_abs, saliency_normalize, saliency_scale: as the YAML's ``saliency`` block and the
            run's stored ``scale`` (needed for 'global').
        saliency_model_fn: a smooth stand-in for f (e.g. ``models.surrogate.softplus_surrogate(f)``)
            that supplies only the *gradient* of the saliency map; its value stays f's, so D's
            logit is unchanged. Needed when f uses ReLU: f's saliency then has a zero derivative
            almost everywhere, and a saliency-only D would give the attack no gradient at all.
    """
    inputs = _check_inputs(inputs)
    if saliency_normalize not in NORMALIZATIONS:
        raise ValueError(f"saliency_normalize: expected one of {', '.join(NORMALIZATIONS)}, got {saliency_normalize!r}")
    if saliency_normalize == "global":
        if saliency_scale is None or not float(saliency_scale) > 0:
            raise ValueError(
                f"saliency_scale: expected the positive scale fitted on clean training saliency for "
                f"normalize='global', got {saliency_scale!r}"
            )
        saliency_scale = float(saliency_scale)
    use_saliency = "saliency" in inputs
    # Keras models take training=False (dropout off); plain callables get the tensor alone.
    is_keras = isinstance(detector_model, keras.Layer)

    def _saliency(fn: Callable[[tf.Tensor], tf.Tensor], x: tf.Tensor) -> tf.Tensor:
        return normalize_saliency_tf(gradient_saliency(fn, x, abs=saliency_abs), saliency_normalize, scale=saliency_scale)

    def detector_fn(x: tf.Tensor) -> tf.Tensor:
        x = tf.convert_to_tensor(x, tf.float32)
        saliency = None
        if use_saliency:
            saliency = _saliency(model_fn, x)
            if saliency_model_fn is not None:
                # Straight-through: forward value from f, backward pass through the smooth copy.
                smooth = _saliency(saliency_model_fn, x)
                saliency = tf.stop_gradient(saliency) + (smooth - tf.stop_gradient(smooth))
        parts = [x if name == "image" else saliency for name in inputs]
        d_in = parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)
        logits = detector_model(d_in, training=False) if is_keras else detector_model(d_in)
        return tf.reshape(logits, [-1])

    return detector_fn

"""Smooth copies of ReLU classifiers, for gradients through saliency maps (BPDA-style).

A ReLU network is piecewise linear, so its gradient saliency is piecewise constant in the input and
the saliency's own derivative is exactly zero almost everywhere: an attack that differentiates a
detector through the saliency map gets nothing from that path (gradient masking, not robustness).
Replacing ReLU by softplus(beta * z) / beta gives a twice-differentiable copy with the same weights
whose saliency approaches f's as beta grows (Dombrowski et al. 2019, "Explanations can be
manipulated and geometry is to blame"); attacks take the saliency's value from f and its gradient
from this copy.
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

__all__ = ["softplus_surrogate", "softplus_beta"]


def softplus_beta(beta: float) -> Callable[[tf.Tensor], tf.Tensor]:
    def activation(z):
        return keras.ops.softplus(beta * z) / beta

    activation.__name__ = f"softplus_beta_{beta:g}"
    return activation


def _is_relu(activation: object) -> bool:
    return activation == "relu" or activation is keras.activations.relu or getattr(activation, "__name__", "") == "relu"


def softplus_surrogate(model: keras.Model, *, beta: float = 30.0) -> keras.Model:
    """A copy of ``model`` (same weights) with every ReLU replaced by softplus(beta * z) / beta.

    beta = 30 by measurement: on mnist_net_f trained for two epochs, 64 test digits, the median
    per-image correlation between f's saliency and the copy's is 0.96 / 0.98 / 0.99 at beta = 10
    / 30 / 100, and the copy predicts f's class on 75% / 91% / 100% of them (the saliency follows
    the copy's top class). Larger beta tracks f more closely but concentrates the second derivative
    near the ReLU kinks, which gives an attack a spikier signal.

    Not meant to be saved (the activation is a closure); rebuild it from f when needed.
    """
    if not beta > 0:
        raise ValueError(f"beta: expected > 0, got {beta}")
    smooth = softplus_beta(float(beta))

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = layer.get_config()
        if isinstance(layer, keras.layers.ReLU):
            if config.get("max_value") is not None or config.get("negative_slope") or config.get("threshold"):
                raise ValueError(f"layer {layer.name!r}: expected a plain ReLU, got config {config}")
            return keras.layers.Activation(smooth, name=layer.name)
        if "activation" in config and _is_relu(getattr(layer, "activation", None)):
            config["activation"] = smooth
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy

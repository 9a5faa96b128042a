"""VGG16 (keras.applications) for the 224x224 ImageNet-10 suite.

``weights`` is ``imagenet`` (Keras cache/download), a local ``.h5``/``.weights.h5`` path, or None.
Inputs are in [0, 1]; the ImageNet preprocessing (BGR, mean subtraction) is part of the model so
that attacks and saliency operate in pixel space.
"""
from __future__ import annotations

import keras
from keras import layers

from . import MODELS

_BGR_MEAN = (103.939, 116.779, 123.68)


def _backbone(input_shape: tuple[int, ...], weights: str | None, name: str) -> keras.Model:
    if weights not in (None, "none", "imagenet"):
        backbone = keras.applications.VGG16(include_top=False, weights=None, input_shape=input_shape)
        backbone.load_weights(weights)
        return backbone
    return keras.applications.VGG16(
        include_top=False, weights=None if weights in (None, "none") else "imagenet", input_shape=input_shape
    )


@MODELS.register("vgg16_f")
def vgg16_f(input_shape: tuple[int, ...], num_outputs: int = 10, *, weights: str | None = None, **_: object) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(255.0, name="to_255")(inputs)
    x = layers.Lambda(lambda t: t[..., ::-1], name="rgb_to_bgr")(x)
    x = layers.Normalization(mean=_BGR_MEAN, variance=(1.0, 1.0, 1.0), name="bgr_mean")(x)
    x = _backbone(input_shape, weights, "vgg16")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(256, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg16_f")


@MODELS.register("vgg16_d")
def vgg16_d(input_shape: tuple[int, ...], num_outputs: int = 1, **_: object) -> keras.Model:
    # A VGG-style stack, narrower than f: D's input has 6 channels so ImageNet weights do not apply.
    layers_ = [keras.Input(shape=input_shape)]
    for i, filters in enumerate((32, 64, 128, 128)):
        layers_ += [
            layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i + 1}_conv"),
            layers.MaxPooling2D(2, name=f"block{i + 1}_pool"),
        ]
    layers_ += [layers.GlobalAveragePooling2D(name="gap"), layers.Dense(64, activation="relu", name="fc1"),
                layers.Dense(num_outputs, name="logit")]
    return keras.Sequential(layers_, name="vgg16_d")

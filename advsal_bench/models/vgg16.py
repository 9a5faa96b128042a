"""VGG16 (keras.applications) for the 224x224 ImageNet-10 suite.

``weights`` is ``imagenet`` (Keras cache/download), a local ``.h5``/``.weights.h5`` path, or None.
Inputs are in [0, 1]; the ImageNet preprocessing (RGB->BGR, mean subtraction) is a layer of the
model so that attacks and saliency operate in pixel space.
"""
from __future__ import annotations

import keras
from keras import layers, ops

from . import MODELS

_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="advsal_bench")
class VGGPreprocess(layers.Layer):
    """[0, 1] RGB -> caffe-style BGR minus the ImageNet mean (a named layer: loads in safe mode)."""

    def call(self, x):
        x = x[..., ::-1] * 255.0
        return x - ops.convert_to_tensor(_BGR_MEAN, dtype=x.dtype)


def _backbone_layers(input_tensor, weights: str | None):
    if weights in (None, "none", "imagenet"):
        backbone = keras.applications.VGG16(include_top=False, weights=None if weights != "imagenet" else "imagenet",
                                            input_tensor=input_tensor)
    else:
        backbone = keras.applications.VGG16(include_top=False, weights=None, input_tensor=input_tensor)
        backbone.load_weights(weights)
    return backbone.output


@MODELS.register("vgg16_f")
def vgg16_f(input_shape: tuple[int, ...], num_outputs: int = 10, *, weights: str | None = None, **_: object) -> keras.Model:
    inputs = keras.Input(shape=input_shape)
    # Built on the preprocessed tensor (not nested), so Grad-CAM can reach block2_conv1 etc. by name.
    x = _backbone_layers(VGGPreprocess(name="vgg_preprocess")(inputs), weights)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(256, activation="relu", name="fc1")(x)
    outputs = layers.Dense(num_outputs, name="logits")(x)
    return keras.Model(inputs, outputs, name="vgg16_f")


@MODELS.register("vgg16_d")
def vgg16_d(input_shape: tuple[int, ...], num_outputs: int = 1, **_: object) -> keras.Model:
    # A VGG-style stack, narrower than f: D's input has 6 channels so ImageNet weights do not apply.
    stack = [keras.Input(shape=input_shape)]
    for i, filters in enumerate((32, 64, 128, 128)):
        stack += [
            layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{i + 1}_conv"),
            layers.MaxPooling2D(2, name=f"block{i + 1}_pool"),
        ]
    stack += [layers.GlobalAveragePooling2D(name="gap"), layers.Dense(64, activation="relu", name="fc1"),
              layers.Dense(num_outputs, name="logit")]
    return keras.Sequential(stack, name="vgg16_d")

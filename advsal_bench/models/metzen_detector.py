"""Metzen et al. (2017)'s detector: a small conv net on an intermediate feature map of a frozen f.

Their CIFAR-10 head: conv 96 3x3 -> max-pool 2 -> conv 192 3x3 -> max-pool 2 -> conv 192 3x3 ->
conv 2 1x1 -> global average pooling -> softmax. Here the last conv has one filter, so the output is
the single logit the other detectors give (sigmoid = P(adversarial)).
"""
from __future__ import annotations

import keras
from keras import layers

from . import MODELS

__all__ = ["DEFAULT_METZEN_LAYER", "DEFAULT_METZEN_FILTERS", "METZEN_FILTERS", "build_metzen_detector", "spatial_layers"]

# Early layers: Metzen et al. found the detector works best attached early (their AD(0)-AD(2)),
# and an early map leaves the head's two poolings room (13x13 and 16x16 here).
DEFAULT_METZEN_LAYER = {"mnist_net_f": "pool1", "mnist_net_f_dropout": "pool1", "cifar10_net_f": "block1_pool",
                        "vgg16_f": "block4_conv1"}

METZEN_FILTERS = (96, 192, 192)
# The repository's f nets are CPU-sized (32-128 filters per layer); a head three times wider than the
# network it watches would dominate training time and overfit the few thousand adversarial
# examples a quick suite trains it on. Same layout, a third / half the width.
DEFAULT_METZEN_FILTERS = {"mnist_net_f": (32, 64, 64), "mnist_net_f_dropout": (32, 64, 64), "cifar10_net_f": (48, 96, 96),
                          "vgg16_f": METZEN_FILTERS}


def spatial_layers(f: keras.Model) -> list[str]:
    """Names of f's layers with a [B, H, W, C] output: the ones a convolutional head can read."""
    names = []
    for layer in f.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # layers never called in f's graph have no output
            continue
        if len(shape) == 4 and not isinstance(layer, keras.layers.InputLayer):
            names.append(layer.name)
    return names


def build_metzen_detector(
    f: keras.Model,
    layer: str | None = None,
    *,
    filters: tuple[int, int, int] | None = None,
    name: str = "metzen_detector",
) -> keras.Model:
    """Image -> one logit, through f up to ``layer`` (frozen) and Metzen et al.'s head (trainable).

    Args:
        f: the trained classifier (a built functional or Sequential Keras model).
        layer: name of f's layer to attach to; None picks ``DEFAULT_METZEN_LAYER[f.name]``.
        filters: the head's three conv widths; None picks ``DEFAULT_METZEN_FILTERS`` for f.name,
            else Metzen et al.'s (96, 192, 192).
    """
    valid = spatial_layers(f)
    if layer is None:
        if f.name not in DEFAULT_METZEN_LAYER:
            raise ValueError(
                f"layer: expected a layer name for model {f.name!r} (no default; one of {', '.join(valid)}), got None"
            )
        layer = DEFAULT_METZEN_LAYER[f.name]
    if layer not in valid:
        raise ValueError(f"layer: expected one of {', '.join(valid)} (layers of {f.name!r} with a 4-D output), got {layer!r}")
    if filters is None:
        filters = DEFAULT_METZEN_FILTERS.get(f.name, METZEN_FILTERS)
    filters = tuple(int(n) for n in filters)
    if len(filters) != 3 or min(filters) < 1:
        raise ValueError(f"filters: expected three positive conv widths, got {filters!r}")

    # A copy of f's weights, frozen: training D must not change f (the classifier under attack
    # stays the one that was trained), and freezing a model built on f's own layer objects would
    # also freeze f itself.
    f_copy = keras.models.clone_model(f)
    f_copy.set_weights(f.get_weights())
    features = keras.Model(f_copy.inputs, f_copy.get_layer(layer).output, name=f"{f.name}_to_{layer}")
    features.trainable = False
    inputs = keras.Input(shape=f.input_shape[1:], name="image")
    # training=False: f's dropout / batch norm stay in inference mode while D trains.
    h = features(inputs, training=False)
    # 'same' pooling: a 5x5 or 4x4 map still pools to at least 1x1 instead of failing.
    h = layers.Conv2D(filters[0], 3, padding="same", activation="relu", name="metzen_conv1")(h)
    h = layers.MaxPooling2D(2, padding="same", name="metzen_pool1")(h)
    h = layers.Conv2D(filters[1], 3, padding="same", activation="relu", name="metzen_conv2")(h)
    h = layers.MaxPooling2D(2, padding="same", name="metzen_pool2")(h)
    h = layers.Conv2D(filters[2], 3, padding="same", activation="relu", name="metzen_conv3")(h)
    h = layers.Conv2D(1, 1, name="metzen_conv4")(h)
    outputs = layers.GlobalAveragePooling2D(name="logit")(h)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register("metzen_d")
def metzen_d(
    input_shape: tuple[int, ...],
    num_outputs: int = 1,
    *,
    f: keras.Model | None = None,
    layer: str | None = None,
    filters: tuple[int, int, int] | None = None,
    **_: object,
) -> keras.Model:
    """Registry form of :func:`build_metzen_detector` (D's input is the image, f is passed in)."""
    if f is None:
        raise ValueError("f: expected the trained classifier (keras.Model) to attach the detector to, got None")
    if num_outputs != 1:
        raise ValueError(f"num_outputs: expected 1 (one logit), got {num_outputs}")
    if tuple(input_shape) != tuple(f.input_shape[1:]):
        raise ValueError(f"input_shape: expected f's input shape {tuple(f.input_shape[1:])}, got {tuple(input_shape)}")
    return build_metzen_detector(f, layer, filters=filters)

"""Small conv/relu/max-pool stacks for 28x28 inputs (the paper's Figure 2 layout, CPU-sized)."""
from __future__ import annotations

import keras
from keras import layers

from . import MODELS


@MODELS.register("mnist_net_f")
def mnist_net_f(input_shape: tuple[int, ...], num_outputs: int = 10, **_: object) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="fc1"),
            layers.Dense(num_outputs, name="logits"),
        ],
        name="mnist_net_f",
    )


@MODELS.register("mnist_net_f_dropout")
def mnist_net_f_dropout(input_shape: tuple[int, ...], num_outputs: int = 10, *, rate: float = 0.5,
                        **_: object) -> keras.Model:
    """mnist_net_f with Dropout(0.5) after the conv stack and after fc1, where Feinman et al. (2017)'s
    MNIST net carries it: KD+BU's Bayesian uncertainty is MC dropout and needs it. Dropout is the
    identity in inference, so only training differs from mnist_net_f."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(64, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Dropout(rate, name="dropout1"),
            layers.Flatten(name="flatten"),
            layers.Dense(128, activation="relu", name="fc1"),
            layers.Dropout(rate, name="dropout2"),
            layers.Dense(num_outputs, name="logits"),
        ],
        name="mnist_net_f_dropout",
    )


@MODELS.register("mnist_net_d")
def mnist_net_d(input_shape: tuple[int, ...], num_outputs: int = 1, **_: object) -> keras.Model:
    # D sees [image, saliency] (twice f's channels); smaller than f since its task is binary.
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(16, 3, activation="relu", name="conv1"),
            layers.MaxPooling2D(2, name="pool1"),
            layers.Conv2D(32, 3, activation="relu", name="conv2"),
            layers.MaxPooling2D(2, name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(64, activation="relu", name="fc1"),
            layers.Dense(num_outputs, name="logit"),
        ],
        name="mnist_net_d",
    )

"""Conv/relu/max-pool stacks for 32x32x3 inputs (the paper's Figure 2 layout, CPU-sized)."""
from __future__ import annotations

import keras
from keras import layers

from . import MODELS


def _block(filters: int, name: str) -> list[layers.Layer]:
    return [
        layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv1"),
        layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv2"),
        layers.MaxPooling2D(2, name=f"{name}_pool"),
    ]


@MODELS.register("cifar10_net_f")
def cifar10_net_f(input_shape: tuple[int, ...], num_outputs: int = 10, **_: object) -> keras.Model:
    return keras.Sequential(
        [keras.Input(shape=input_shape), *_block(32, "block1"), *_block(64, "block2"), *_block(128, "block3"),
         layers.Flatten(name="flatten"), layers.Dropout(0.3, name="dropout"),
         layers.Dense(256, activation="relu", name="fc1"), layers.Dense(num_outputs, name="logits")],
        name="cifar10_net_f",
    )


@MODELS.register("cifar10_net_d")
def cifar10_net_d(input_shape: tuple[int, ...], num_outputs: int = 1, **_: object) -> keras.Model:
    return keras.Sequential(
        [keras.Input(shape=input_shape), *_block(32, "block1"), *_block(64, "block2"),
         layers.GlobalAveragePooling2D(name="gap"),
         layers.Dense(64, activation="relu", name="fc1"), layers.Dense(num_outputs, name="logit")],
        name="cifar10_net_d",
    )

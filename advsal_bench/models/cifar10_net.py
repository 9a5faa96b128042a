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


# ---- CPU-quick variants (configs/cifar10_quick.yaml) ------------------------------------------------


def _conv_bn(filters: int, name: str) -> list[layers.Layer]:
    return [
        layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv"),
        layers.BatchNormalization(name=f"{name}_bn"),
        layers.ReLU(name=f"{name}_relu"),
    ]


@MODELS.register("cifar10_small_f")
def cifar10_small_f(input_shape: tuple[int, ...], num_outputs: int = 10, *, augment: bool = True,
                    **_: object) -> keras.Model:
    """One conv+BN+relu per stage (32-64-128-256), global average pooling: about 3x fewer FLOPs than
    cifar10_net_f, so it trains (and is attacked) in minutes on a CPU.

    Random flips and shifts are layers of the model: active in ``fit``, the identity in inference
    (attacks, saliency and evaluation call the model with ``training=False``).
    """
    augmentation = [
        layers.RandomFlip("horizontal", name="aug_flip"),
        layers.RandomTranslation(0.125, 0.125, fill_mode="reflect", name="aug_shift"),
    ] if augment else []
    return keras.Sequential(
        [keras.Input(shape=input_shape), *augmentation,
         *_conv_bn(32, "block1"), layers.MaxPooling2D(2, name="block1_pool"),
         *_conv_bn(64, "block2"), layers.MaxPooling2D(2, name="block2_pool"),
         *_conv_bn(128, "block3"), layers.MaxPooling2D(2, name="block3_pool"),
         *_conv_bn(256, "block4"),
         layers.GlobalAveragePooling2D(name="gap"), layers.Dense(num_outputs, name="logits")],
        name="cifar10_small_f",
    )


@keras.saving.register_keras_serializable(package="advsal_bench")
class ChannelSlice(layers.Layer):
    """``x[..., start:stop]``: routes one input (image or saliency) of D's channel stack to its own stream.

    A registered layer rather than a Lambda, so models using it load with ``safe_mode=True``.
    """

    def __init__(self, start: int, stop: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        return x[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def _stream(x, name: str, width: int):
    """Input standardization, two convolutions at full resolution (where an l_inf/l_2 perturbation
    lives), two pooled stages, global average pooling. BatchNorm momentum 0.9: D trains for a few
    hundred steps only, and slow moving averages would lag behind the weights (a biased threshold)."""
    bn = lambda n: layers.BatchNormalization(momentum=0.9, name=f"{name}_{n}")  # noqa: E731
    x = bn("in_bn")(x)
    for i, filters in enumerate((width, width, 2 * width, 4 * width)):
        if i >= 2:
            x = layers.MaxPooling2D(2, name=f"{name}_pool{i - 1}")(x)
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = layers.ReLU(name=f"{name}_relu{i + 1}")(bn(f"bn{i + 1}")(x))
    return layers.GlobalAveragePooling2D(name=f"{name}_gap")(x)


@MODELS.register("cifar10_small_d")
def cifar10_small_d(input_shape: tuple[int, ...], num_outputs: int = 1, *, group_channels: int = 3, width: int = 32,
                    **_: object) -> keras.Model:
    """D with one stream per input (late fusion): the channel stack is cut into groups of
    ``group_channels`` (3 on CIFAR-10: [image, saliency] -> two streams, [image] or [saliency] -> one);
    each stream standardizes and convolves its own input, and their pooled features meet in the head.
    Early fusion lets the noisy saliency channels swamp the faint perturbation in the image channels."""
    channels = input_shape[-1]
    groups = channels // group_channels if channels % group_channels == 0 else 1
    inputs = keras.Input(shape=input_shape)
    if groups == 1:
        features = _stream(inputs, "s1", width)
    else:
        features = layers.Concatenate(name="fuse")([
            _stream(ChannelSlice(g * group_channels, (g + 1) * group_channels, name=f"s{g + 1}_slice")(inputs), f"s{g + 1}", width)
            for g in range(groups)
        ])
    x = layers.Dense(64, activation="relu", name="fc1")(features)
    return keras.Model(inputs, layers.Dense(num_outputs, name="logit")(x), name="cifar10_small_d")

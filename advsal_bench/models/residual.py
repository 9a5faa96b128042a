"""A fixed high-pass ("noise residual") filter for D's image input, from image steganalysis.

An l_2 attack on CIFAR-10 at the selected eps changes each pixel by about 2/255 (RMS): far below the
image content, which dominates every learned filter of a D trained on a few thousand images (it
stays at chance on raw pixels). Steganalysis detects the same kind of signal (a faint additive
noise) by first removing the content with a fixed high-pass kernel; the 5x5 "KV" kernel of
Fridrich and Kodovsky's spatial rich model (Ker and Bohme's predictor) is the standard first layer
of steganalysis CNNs (Qian et al. 2015, Xu et al. 2016).
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

__all__ = ["KV_KERNEL", "HighPassResidual", "with_image_residual"]

# Sums to zero: any constant or linear patch gives a zero residual.
KV_KERNEL = np.array(
    [[-1, 2, -2, 2, -1],
     [2, -6, 8, -6, 2],
     [-2, 8, -12, 8, -2],
     [2, -6, 8, -6, 2],
     [-1, 2, -2, 2, -1]], np.float32) / 12.0


@keras.saving.register_keras_serializable(package="advsal_bench")
class HighPassResidual(layers.Layer):
    """Replace channels ``[start, stop)`` by their KV high-pass residual (per channel); others pass.

    Linear and fixed (no weights), so gradients flow through it to the input for adaptive attacks.
    Borders are reflected: zero padding would put a strong edge response on every image's frame.
    """

    def __init__(self, start: int, stop: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.start, self.stop = int(start), int(stop)

    def call(self, x):
        part = x[..., self.start : self.stop]
        channels = self.stop - self.start
        kernel = tf.constant(np.tile(KV_KERNEL[:, :, None, None], (1, 1, channels, 1)))
        padded = tf.pad(part, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="REFLECT")
        residual = tf.nn.depthwise_conv2d(padded, tf.cast(kernel, part.dtype), [1, 1, 1, 1], "VALID")
        return tf.concat([x[..., : self.start], residual, x[..., self.stop :]], axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "start": self.start, "stop": self.stop}


def with_image_residual(detector: keras.Model, start: int, stop: int) -> keras.Model:
    """``detector`` reading the high-pass residual of input channels ``[start, stop)`` (the image)."""
    inputs = keras.Input(shape=detector.input_shape[1:], name="detector_input")
    residual = HighPassResidual(start, stop, name="image_residual")(inputs)
    return keras.Model(inputs, detector(residual), name=f"{detector.name}_residual")

"""The small CNN the JSMA and pair-search benchmarks share (importable: pytest puts benchmarks/ on sys.path)."""
from __future__ import annotations


def small_cnn(shape, classes: int = 10, seed: int = 0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(8, 5, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(classes),
        ]
    )

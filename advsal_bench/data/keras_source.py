"""``source: keras``: ``keras.datasets.mnist`` / ``keras.datasets.cifar10``.

Keras downloads the archives once into ``~/.keras/datasets`` and reads them from there afterwards;
on an offline machine the first call fails, and the error points at the file-based sources.
(Named ``keras_source`` so that ``import keras`` inside this package still finds Keras itself.)
"""
from __future__ import annotations

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import Part, default_class_names, finish, reason

_FALLBACK = {
    "mnist": "use source: sample (bundled), npz or idx with local files",
    "cifar10": "use source: npz or cifar_batches with local files",
}


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    if cfg.name not in _FALLBACK:
        raise DataError(f"dataset.source 'keras' serves mnist and cifar10, got dataset.name {cfg.name!r}")
    where = f"keras.datasets.{cfg.name}"
    try:
        import keras

        # Looked up at call time (not imported at module level) so tests can monkeypatch load_data.
        loader = getattr(keras.datasets, cfg.name).load_data
        (x_train, y_train), (x_test, y_test) = loader()
    except DataError:
        raise
    except Exception as exc:  # URLError, HTTPError, OSError, BadZipFile, ... all mean the same here
        raise DataError(f"{where}: could not download/load {cfg.name} ({reason(exc)}); {_FALLBACK[cfg.name]}") from None
    return finish(
        cfg,
        seed=seed,
        source=where,
        train=Part(np.asarray(x_train), np.asarray(y_train), where, "x_train", "y_train"),
        test=Part(np.asarray(x_test), np.asarray(y_test), where, "x_test", "y_test"),
        class_names=default_class_names(cfg.name, 10),
        hw=(28, 28) if cfg.name == "mnist" else (32, 32),
    )

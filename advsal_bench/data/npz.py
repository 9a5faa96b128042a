"""``source: npz``: a NumPy ``.npz`` archive (``np.savez`` / ``np.savez_compressed``).

Layouts (other keys are ignored, except ``class_names``):

- ``x_train``, ``y_train``, ``x_test``, ``y_test``: already split; ``train_size``/``test_size``
  subsample each split (stratified, by seed).
- ``x``, ``y``: one pool, split by seed and stratified; ``test_size`` (default 20% of each class)
  goes to test and ``train_size`` (default: the rest) to train.
- optional ``class_names``: a 1-D string array, one name per class in label order.

Images: [N,H,W] (grayscale; a channel axis is added) or [N,H,W,C] with C = 1 or 3, channel-last.
Any HxW is accepted, but train and test must agree and the channels must fit ``dataset.name``
(mnist 1, cifar10 / imagenet10 3).

Pixels: integer dtypes must lie in 0..255 and are divided by 255. Float dtypes must be finite;
in [0, 1] they are kept as is, otherwise in [0, 255] they are divided by 255, otherwise the file is
rejected (e.g. mean/std-normalized data). The scale is decided once for train and test together.

Labels: integers (integral floats are accepted) in 0..num_classes-1, shape [N] or [N,1], or
one-hot [N,K] (argmax). num_classes is 10, or ``len(class_names)`` for imagenet10.

The archive is opened with ``allow_pickle=False``: object arrays are refused, never unpickled.
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import Part, finish, reason

_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError, TypeError)


def _read(data: "np.lib.npyio.NpzFile", key: str, where: str) -> np.ndarray:
    try:
        return np.asarray(data[key])
    except _READ_ERRORS as exc:
        raise DataError(f"{where}: cannot read array {key!r} ({reason(exc)})") from None


def _class_names(data: "np.lib.npyio.NpzFile", where: str) -> tuple[str, ...] | None:
    if "class_names" not in data.files:
        return None
    names = _read(data, "class_names", where)
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{where}: class_names must be a 1-D array of strings, got {names.dtype} {list(names.shape)}")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in names.tolist())


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    if cfg.path is None:
        raise DataError("dataset.path: required for source 'npz', expected a .npz file")
    where = cfg.path
    path = Path(cfg.path)
    if path.is_dir():
        raise DataError(f"{where}: is a folder, expected a .npz file")
    if not path.is_file():
        raise DataError(f"{where}: file not found")
    try:
        with path.open("rb") as fh:
            head = fh.read(6)
    except OSError as exc:
        raise DataError(f"{where}: cannot read file ({reason(exc)})") from None
    if head.startswith(b"\x93NUMPY"):
        raise DataError(f"{where}: expected an .npz archive (np.savez), got a single .npy array")
    if not head.startswith(b"PK"):
        # np.load would fall back to "contains pickled data", which reads as advice to allow pickles.
        raise DataError(f"{where}: not an .npz archive (no zip header; write it with np.savez)")
    try:
        data = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise DataError(f"{where}: not a readable .npz archive ({reason(exc)})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{where}: expected an .npz archive (np.savez), got a single .npy array")
    with data:
        keys = set(data.files)
        common = dict(cfg=cfg, seed=seed, source=f"npz:{path.resolve()}", class_names=_class_names(data, where))
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            arrays = {k: _read(data, k, where) for k in ("x_train", "y_train", "x_test", "y_test")}
            return finish(
                train=Part(arrays["x_train"], arrays["y_train"], where, "x_train", "y_train"),
                test=Part(arrays["x_test"], arrays["y_test"], where, "x_test", "y_test"),
                **common,  # type: ignore[arg-type]
            )
        if {"x", "y"} <= keys:
            return finish(pooled=Part(_read(data, "x", where), _read(data, "y", where), where), **common)  # type: ignore[arg-type]
    raise DataError(f"{where}: expected keys x_train/y_train/x_test/y_test or x/y, got {sorted(keys)}")

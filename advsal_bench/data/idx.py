"""``source: idx``: a folder with the four original MNIST IDX files, raw or gzipped.

Accepted names (each optionally ending in ``.gz``): ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, and the
``t10k-images.idx3-ubyte`` spelling with a dot that some mirrors use.

IDX layout: 2 zero bytes, a type byte (0x08 = uint8), the number of dimensions, then one
big-endian uint32 per dimension, then the data. Images have magic 2051 (3 dims), labels 2049 (1 dim).
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import MNIST_CLASS_NAMES, Part, data_folder, finish, reason

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
# Real MNIST files are 47 MB uncompressed; anything far beyond is not MNIST (or is a gzip bomb).
_MAX_BYTES = 1 << 30


def find_file(folder: Path, prefix: str, kind: str) -> Path:
    """``train-images`` + ``idx3`` -> the first existing of the accepted spellings."""
    stems = (f"{prefix}-{kind}-ubyte", f"{prefix}.{kind}-ubyte")
    for stem in stems:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    raise DataError(f"{folder}: missing {stems[0]}[.gz] (also looked for {stems[1]}[.gz])")


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                raw = fh.read(_MAX_BYTES + 1)
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        what = "truncated or corrupted gzip file" if path.suffix == ".gz" else "cannot read file"
        raise DataError(f"{path}: {what} ({reason(exc)})") from None
    if len(raw) > _MAX_BYTES:
        raise DataError(f"{path}: more than {_MAX_BYTES >> 20} MiB of data, not an MNIST IDX file")
    return raw


def read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """Parse one uint8 IDX file, checking the magic number and that the size matches the header."""
    raw = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes, header alone needs {header})")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(f"{path}: wrong IDX magic number {found}, expected {magic}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(raw) - header
    if got != expected:
        problem = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{path}: IDX file {problem}: header says {'x'.join(map(str, dims))} = {expected} bytes of data, found {got}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    folder = data_folder(cfg, source="idx", expects="a folder of MNIST IDX files", dataset="mnist")
    parts = []
    for prefix in ("train", "t10k"):
        images_path = find_file(folder, f"{prefix}-images", "idx3")
        labels_path = find_file(folder, f"{prefix}-labels", "idx1")
        x = read_idx(images_path, IMAGES_MAGIC, 3)
        y = read_idx(labels_path, LABELS_MAGIC, 1)
        if len(x) != len(y):
            raise DataError(f"{labels_path}: {len(y)} labels but {images_path.name} holds {len(x)} images")
        parts.append(Part(x, y, str(images_path), "file", "file", ywhere=str(labels_path)))
    return finish(
        cfg,
        seed=seed,
        source=f"idx:{folder.resolve()}",
        train=parts[0],
        test=parts[1],
        class_names=MNIST_CLASS_NAMES,
        hw=(28, 28),
    )

"""``source: cifar_batches``: the official ``cifar-10-batches-py`` folder.

``data_batch_1`` .. ``data_batch_5`` (any that exist, at least one) form the train split and
``test_batch`` the test split; ``batches.meta`` (optional) supplies the label names. Each batch is
a Python-2 pickle of ``{b"data": uint8 [N, 3072], b"labels": [N ints]}`` with channel-major rows
(1024 red, 1024 green, 1024 blue values).

Pickles run code on load, and these files come from the internet, so they are read with
:class:`SafeUnpickler`: plain containers and numbers only, plus the three numpy callables an
ndarray pickle needs; any other global (``os.system``, ``builtins.eval``, ...) is refused.
"""
from __future__ import annotations

import codecs
import io
import pickle
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import CIFAR10_CLASS_NAMES, Part, data_folder, finish, reason

_MAX_BYTES = 512 << 20  # official batches are ~31 MB each


def _numpy_reconstruct() -> Any:
    try:  # numpy >= 2 moved the internals to numpy._core; numpy.core still works but warns
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 pickles bytes with protocol 2 as _codecs.encode(str, 'latin1'): a pure function, safe.
    ("_codecs", "encode"): codecs.encode,
}


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an ndarray needs; everything else is refused."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def safe_unpickle(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise DataError(f"{path}: {size >> 20} MiB, too large for a CIFAR-10 batch")
        raw = path.read_bytes()
        return SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError:
        raise
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: unsafe or corrupted pickle ({str(exc).splitlines()[0] if str(exc) else 'no details'})") from None
    except (EOFError, OSError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, zlib.error, UnicodeDecodeError) as exc:
        # A truncated pickle stops with EOFError or UnpicklingError; bad numpy state with ValueError.
        raise DataError(f"{path}: truncated or corrupted pickle ({reason(exc)})") from None


def _get(d: dict, key: bytes, path: Path) -> Any:
    for k in (key, key.decode()):  # files re-pickled under Python 3 may use str keys
        if k in d:
            return d[k]
    raise DataError(f"{path}: batch has no {key.decode()!r} entry (keys: {sorted(map(str, d))})")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch as (uint8 [N,32,32,3], labels [N])."""
    d = safe_unpickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(d).__name__}")
    data, labels = _get(d, b"data", path), _get(d, b"labels", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array [N, 3072] (32x32x3), got {desc}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or any(
        isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in labels
    ):
        raise DataError(f"{path}: 'labels' must be a list of integers")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(y) != len(data):
        raise DataError(f"{path}: 'data' has {len(data)} rows but 'labels' has {len(y)} entries")
    # Rows are channel-major (R plane, G plane, B plane); the models want HWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y


def read_meta(path: Path) -> tuple[str, ...]:
    d = safe_unpickle(path)
    names = _get(d, b"label_names", path) if isinstance(d, dict) else None
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{path}: expected a dict with 'label_names', a list of strings")
    return tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in names)


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    folder = data_folder(cfg, source="cifar_batches", expects="a cifar-10-batches-py folder", dataset="cifar10")
    train_files = sorted(
        (p for p in folder.iterdir() if re.fullmatch(r"data_batch_\d+", p.name) and p.is_file()),
        key=lambda p: int(p.name.rsplit("_", 1)[1]),
    )
    if not train_files:
        raise DataError(f"{folder}: missing data_batch_1 .. data_batch_5")
    test_file = folder / "test_batch"
    if not test_file.is_file():
        raise DataError(f"{folder}: missing test_batch")
    train = [read_batch(p) for p in train_files]
    x_test, y_test = read_batch(test_file)
    meta = folder / "batches.meta"
    class_names = read_meta(meta) if meta.is_file() else CIFAR10_CLASS_NAMES
    where_train = str(folder / "data_batch_*") if len(train_files) > 1 else str(train_files[0])
    return finish(
        cfg,
        seed=seed,
        source=f"cifar_batches:{folder.resolve()}",
        train=Part(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), where_train,
                   "'data'", "'labels'"),
        test=Part(x_test, y_test, str(test_file), "'data'", "'labels'"),
        class_names=class_names,
        hw=(32, 32),
    )

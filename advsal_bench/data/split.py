"""Checks, pixel scaling and deterministic stratified subsampling shared by every source.

Sources hand :func:`finish` raw arrays (any of uint8/int/float, [N,H,W] or [N,H,W,C]) either already
split (``train=``/``test=``) or pooled (``pooled=``); :func:`finish` validates them, picks indices and
returns a :class:`~advsal_bench.data.Dataset`.

Rules (the same for every source):

- Pixels: integer arrays must lie in 0..255 and are divided by 255. Float arrays must be finite; if
  they lie in [0, 1] they are kept, else if they lie in [0, 255] they are divided by 255, else error.
  One scale is chosen for the whole dataset (train and test together), so a float train set in
  0..255 and a test set that happens to stay below 1 cannot end up on different scales; mixing
  integer and float arrays is an error for the same reason.
- Labels: integers (or integral floats) in 0..num_classes-1, shape [N] or [N,1], or one-hot [N,K].
- Pre-split data: ``train_size``/``test_size`` pick a stratified random subset of the split by seed,
  kept in file order; without them the split is used whole, in file order.
- Pooled data: per class, shuffle by seed, put ``test_size`` (default: 20% of each class, at least 1
  where a class has 2+ images) into test and ``train_size`` (default: the rest) into train; both
  splits are then shuffled, because pooled files are often sorted by class.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset

NUM_CLASSES = {"mnist": 10, "cifar10": 10, "imagenet10": 10}
CHANNELS = {"mnist": 1, "cifar10": 3, "imagenet10": 3}
MNIST_CLASS_NAMES = tuple(str(d) for d in range(10))
CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
DEFAULT_TEST_SHARE = 0.2


@dataclass
class Part:
    """Raw images and labels as read from ``where`` (arrays named ``xname``/``yname`` in messages).

    ``ywhere`` names the labels' file where it differs (IDX keeps labels in a file of their own).
    """

    x: np.ndarray
    y: np.ndarray
    where: str
    xname: str = "x"
    yname: str = "y"
    ywhere: str | None = None


def data_folder(cfg: DatasetConfig, *, source: str, expects: str, dataset: str | None = None) -> Path:
    """The folder of a folder-based source, or a one-line DataError naming what was expected."""
    if cfg.path is None:
        raise DataError(f"dataset.path: required for source '{source}', expected {expects}")
    folder = Path(cfg.path)
    if not folder.is_dir():
        raise DataError(f"{cfg.path}: folder not found (source '{source}' expects {expects})")
    if dataset is not None and cfg.name != dataset:
        raise DataError(f"dataset.source '{source}' holds {dataset_title(dataset)}, got dataset.name {cfg.name!r}")
    return folder


def dataset_title(name: str) -> str:
    return {"mnist": "MNIST", "cifar10": "CIFAR-10"}.get(name, name)


def reason(exc: BaseException) -> str:
    """``Type: first line of the message``, so that wrapped errors stay one line."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def default_class_names(name: str, num_classes: int) -> tuple[str, ...]:
    if name == "mnist" and num_classes == 10:
        return MNIST_CLASS_NAMES
    if name == "cifar10" and num_classes == 10:
        return CIFAR10_CLASS_NAMES
    return tuple(str(i) for i in range(num_classes))


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def check_images(part: Part, *, name: str, hw: tuple[int, int] | None = None) -> np.ndarray:
    """Return ``part.x`` as [N,H,W,C] (a view), checking rank, channels, dtype and emptiness."""
    x, where, xn = part.x, part.where, part.xname
    if not isinstance(x, np.ndarray):
        raise DataError(f"{where}: {xn} is not an array (got {type(x).__name__})")
    if x.dtype.kind not in "uif":
        raise DataError(f"{where}: {xn} has dtype {x.dtype}, expected uint8 or float pixels")
    if x.ndim == 3:
        x = x[..., None]  # grayscale [N,H,W] -> [N,H,W,1]
    elif x.ndim != 4:
        raise DataError(
            f"{where}: {xn} has shape {list(part.x.shape)}, expected [N,H,W] or [N,H,W,C] (3-D or 4-D)"
        )
    n, h, w, c = x.shape
    if n == 0:
        raise DataError(f"{where}: {xn} holds 0 images")
    if h == 0 or w == 0:
        raise DataError(f"{where}: {xn} has empty images, shape {list(part.x.shape)}")
    if c not in (1, 3):
        hint = " (looks channel-first; expected channel-last [N,H,W,C])" if x.shape[1] in (1, 3) else ""
        raise DataError(f"{where}: {xn} has {c} channels, expected 1 or 3{hint}, shape {list(part.x.shape)}")
    want_c = CHANNELS[name]
    if c != want_c:
        raise DataError(
            f"{where}: {xn} has {c} channel(s) but dataset.name {name} expects {want_c}, shape {list(part.x.shape)}"
        )
    if hw is not None and (h, w) != hw:
        raise DataError(f"{where}: {xn} has {h}x{w} images but {name} expects {hw[0]}x{hw[1]}")
    return x


def check_labels(part: Part, *, num_classes: int, n: int) -> np.ndarray:
    """Return int64 labels [N], accepting [N], [N,1] and one-hot [N,K]."""
    y, where, yn = part.y, part.ywhere or part.where, part.yname
    if not isinstance(y, np.ndarray):
        raise DataError(f"{where}: {yn} is not an array (got {type(y).__name__})")
    if y.dtype.kind not in "uif":
        raise DataError(f"{where}: {yn} has dtype {y.dtype}, expected integer labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2:
        if y.shape[1] != num_classes:
            raise DataError(
                f"{where}: {yn} looks one-hot with {y.shape[1]} columns, expected {num_classes} (one per class)"
            )
        if y.shape[0] and not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise DataError(f"{where}: {yn} is 2-D but not one-hot (expected a single 1 per row)")
        y = y.argmax(axis=1)
    elif y.ndim != 1:
        raise DataError(f"{where}: {yn} has shape {list(y.shape)}, expected [N] labels or one-hot [N,K]")
    if len(y) != n:
        raise DataError(f"{where}: {part.xname} has {n} images but {yn} has {len(y)} labels")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise DataError(f"{where}: {yn} holds non-integer labels (e.g. {bad})")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(
            f"{where}: {yn} has labels out of range: expected 0..{num_classes - 1}, got {y.min():g}..{y.max():g}"
        )
    return y.astype(np.int64)


def pixel_scale(parts: Sequence[tuple[np.ndarray, Part]]) -> float:
    """Divisor that maps every array onto [0, 1] (1 or 255); see the module docstring."""
    for x, p in parts:
        if x.dtype.kind == "f":
            finite = np.isfinite(x)
            if not finite.all():
                raise DataError(f"{p.where}: {p.xname} holds {int(x.size - finite.sum())} NaN/Inf pixel values")
    kinds = {x.dtype.kind for x, _ in parts}
    if "f" in kinds and kinds & {"u", "i"}:
        desc = ", ".join(f"{p.xname} {x.dtype}" for x, p in parts)
        raise DataError(f"{parts[0][1].where}: pixel arrays mix integer and float dtypes ({desc}); use one scale")
    lo = min(float(x.min()) for x, _ in parts)
    hi = max(float(x.max()) for x, _ in parts)
    if kinds <= {"u", "i"}:
        if lo < 0 or hi > 255:
            raise DataError(f"{parts[0][1].where}: integer pixels must lie in 0..255, got {lo:g}..{hi:g}")
        return 255.0
    if lo >= 0 and hi <= 1:
        return 1.0
    if lo >= 0 and hi <= 255:
        return 255.0
    raise DataError(
        f"{parts[0][1].where}: float pixels must lie in [0, 1] or [0, 255], got [{lo:g}, {hi:g}] "
        "(undo any mean/std normalization before saving)"
    )


# ---------------------------------------------------------------------------------------------
# Stratified selection
# ---------------------------------------------------------------------------------------------


def allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, exact integers)."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if total >= n:
        return counts.copy()
    base, rem = np.divmod(counts * total, n)
    # Ties go to the lower class index (stable sort), which keeps the result seed-independent.
    order = np.argsort(-rem, kind="stable")
    base[order[: total - int(base.sum())]] += 1
    return base


def split_quotas(
    counts: np.ndarray, train_size: int | None, test_size: int | None, *, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class (train, test) counts for pooled data; raises naming the offending config key."""
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if train_size is not None and test_size is not None:
        if train_size + test_size > n:
            raise DataError(
                f"dataset.train_size + dataset.test_size: expected <= {n} available in {where}, "
                f"got {train_size} + {test_size} = {train_size + test_size}"
            )
        test_q = allocate(counts, test_size)
        return allocate(counts - test_q, train_size), test_q
    if test_size is not None:
        if test_size >= n:
            raise DataError(
                f"dataset.test_size: expected < {n} available in {where} (the rest is the train split), got {test_size}"
            )
        test_q = allocate(counts, test_size)
        return counts - test_q, test_q
    test_q = np.where(counts >= 2, np.clip(np.round(counts * DEFAULT_TEST_SHARE), 1, counts - 1), 0).astype(np.int64)
    rest = counts - test_q
    if train_size is None:
        return rest, test_q
    if train_size > int(rest.sum()):
        raise DataError(
            f"dataset.train_size: expected <= {int(rest.sum())} available in {where} after holding out "
            f"{int(test_q.sum())} test images (set dataset.test_size to change that), got {train_size}"
        )
    return allocate(rest, train_size), test_q


def pooled_indices(
    y: np.ndarray, train_q: np.ndarray, test_q: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint shuffled train/test indices drawing ``*_q[c]`` examples of each class ``c``."""
    train, test = [], []
    for c in range(len(train_q)):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[: test_q[c]])
        train.append(idx[test_q[c] : test_q[c] + train_q[c]])
    tr, te = np.concatenate(train), np.concatenate(test)
    return rng.permutation(tr), rng.permutation(te)


def subsample_indices(y: np.ndarray, size: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Stratified random subset of ``size`` indices, returned in file order."""
    quota = allocate(np.bincount(y, minlength=num_classes), size)
    picked = [rng.choice(np.flatnonzero(y == c), quota[c], replace=False) for c in range(num_classes) if quota[c]]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def to_unit_float(x: np.ndarray, scale: float, idx: np.ndarray | None = None) -> np.ndarray:
    """float32 copy of ``x[idx]`` divided by ``scale`` (indexing first keeps big uint8 sets small)."""
    out = (x if idx is None else x[idx]).astype(np.float32)  # astype copies: never alias file memory
    if scale != 1.0:
        out /= np.float32(scale)
    np.clip(out, 0.0, 1.0, out=out)  # float32 rounding of x/255 can land a hair above 1
    return out


# ---------------------------------------------------------------------------------------------
# Assembly
# ---------------------------------------------------------------------------------------------


def _classes(name: str, class_names: Sequence[str] | None, where: str) -> tuple[int, tuple[str, ...]]:
    """The number of classes and their names, checked against the dataset's fixed class count."""
    if class_names is None:
        return NUM_CLASSES[name], default_class_names(name, NUM_CLASSES[name])
    names = tuple(str(c) for c in class_names)
    fixed = name in ("mnist", "cifar10")
    if (fixed and len(names) != NUM_CLASSES[name]) or not names:
        raise DataError(f"{where}: lists {len(names)} class names but {name} has {NUM_CLASSES[name]} classes")
    if len(set(names)) != len(names):
        raise DataError(f"{where}: class names are not unique: {list(names)}")
    return len(names), names


def _split_pooled(cfg: DatasetConfig, x, y, scale, num_classes: int, seed: int, pooled: Part,
                  default_sizes: tuple[int, int] | None, presized: bool):
    train_size, test_size = cfg.train_size, cfg.test_size
    if default_sizes is not None and not presized:
        train_size = default_sizes[0] if train_size is None else train_size
        test_size = default_sizes[1] if test_size is None else test_size
    counts = np.bincount(y, minlength=num_classes)
    train_q, test_q = split_quotas(counts, train_size, test_size, where=pooled.where)
    tr, te = pooled_indices(y, train_q, test_q, np.random.default_rng(seed))
    return (to_unit_float(x, scale, tr), y[tr]), (to_unit_float(x, scale, te), y[te])


def _subsample_splits(cfg: DatasetConfig, xs, ys, scale, num_classes: int, seed: int, presized: bool):
    picked = []
    for key, size, x, y, stream in (
        ("dataset.train_size", cfg.train_size, xs[0], ys[0], 1),
        ("dataset.test_size", cfg.test_size, xs[1], ys[1], 2),
    ):
        if size is None or presized:
            picked.append((to_unit_float(x, scale), y.copy()))
            continue
        if size > len(y):
            raise DataError(f"{key}: expected <= {len(y)} available, got {size}")
        # Separate streams so that changing train_size leaves the test subset as it was.
        idx = subsample_indices(y, size, num_classes, np.random.default_rng([seed, stream]))
        picked.append((to_unit_float(x, scale, idx), y[idx]))
    return picked


def finish(
    cfg: DatasetConfig,
    *,
    seed: int,
    source: str,
    train: Part | None = None,
    test: Part | None = None,
    pooled: Part | None = None,
    class_names: Sequence[str] | None = None,
    hw: tuple[int, int] | None = None,
    default_sizes: tuple[int, int] | None = None,
    presized: bool = False,
) -> Dataset:
    """Validate raw arrays and build the :class:`Dataset` (see the module docstring for the rules).

    ``hw`` fixes the image size where the format implies one (MNIST 28x28); ``default_sizes`` fills
    in ``(train_size, test_size)`` for pooled data; ``presized`` says the source already applied
    the sizes (image_folder decodes only what it needs).
    """
    name = cfg.name
    parts = [pooled] if pooled is not None else [train, test]
    if any(p is None for p in parts):
        raise ValueError("finish() needs pooled= or both train= and test=")
    num_classes, class_names = _classes(name, class_names, parts[0].where)  # type: ignore[union-attr]
    xs = [check_images(p, name=name, hw=hw) for p in parts]  # type: ignore[arg-type]
    ys = [check_labels(p, num_classes=num_classes, n=len(x)) for p, x in zip(parts, xs)]  # type: ignore[arg-type]
    if len(xs) == 2 and xs[0].shape[1:] != xs[1].shape[1:]:
        raise DataError(
            f"{train.where}: {train.xname} images are {list(xs[0].shape[1:])} but "  # type: ignore[union-attr]
            f"{test.xname} images are {list(xs[1].shape[1:])}; train and test must match"  # type: ignore[union-attr]
        )
    scale = pixel_scale(list(zip(xs, parts)))  # type: ignore[arg-type]
    if pooled is not None:
        (x_train, y_train), (x_test, y_test) = _split_pooled(cfg, xs[0], ys[0], scale, num_classes, seed, pooled,
                                                             default_sizes, presized)
        where_train = where_test = pooled.where
    else:
        (x_train, y_train), (x_test, y_test) = _subsample_splits(cfg, xs, ys, scale, num_classes, seed, presized)
        where_train, where_test = train.where, test.where  # type: ignore[union-attr]
    for split, y, where in (("train", y_train, where_train), ("test", y_test, where_test)):
        if len(y) == 0:
            total = sum(len(v) for v in ys)
            raise DataError(f"{where}: the {split} split is empty ({total} usable images in total; too few to split)")
    return Dataset(name=name, x_train=x_train, y_train=y_train.astype(np.int64, copy=False), x_test=x_test,
                   y_test=y_test.astype(np.int64, copy=False), num_classes=num_classes, class_names=class_names,
                   source=source)

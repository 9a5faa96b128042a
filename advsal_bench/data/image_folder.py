"""``source: image_folder``: one subfolder of JPEG/PNG images per class (ImageNet style).

Classes are ``dataset.classes`` (subfolder names, e.g. WordNet ids, in label order) or else every
non-hidden subfolder, sorted. Images are converted to RGB (grayscale for mnist), resized so the
shorter side is ``dataset.image_size`` and center-cropped to a square.

The split is stratified by seed: per class ``test_size`` (default 20%, at least 1 where the class
has 2+ images) goes to test and ``train_size`` (default: the rest) to train. Only the images a split
needs are decoded, in a per-class random order, so a file that fails to decode is replaced by the
next one of its class when spares exist. Failures are skipped with one warning (count and an
example); if more than 10% of the attempted files fail, the folder is rejected.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..config import DatasetConfig
from ..errors import DataError
from . import Dataset
from .split import Part, data_folder, finish, reason, split_quotas

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
MAX_FAILED_SHARE = 0.10


def _pil():  # type: ignore[no-untyped-def]
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DataError("dataset.source 'image_folder' needs Pillow: `pip install pillow`") from None
    return Image, ImageOps


def decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 [size, size] ('L') or [size, size, 3] ('RGB')."""
    Image, ImageOps = _pil()
    with Image.open(path) as im:
        # JPEG only (a no-op elsewhere): decode at a reduced DCT scale that still covers `size`,
        # several times faster for full-size ImageNet photos.
        im.draft(mode, (size, size))
        im = im.convert(mode)
        im = ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
        return np.asarray(im, dtype=np.uint8)


def list_classes(folder: Path, classes: tuple[str, ...] | None) -> list[str]:
    if classes is None:
        found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{folder}: no class subfolders found (expected one subfolder of images per class)")
        return found
    seen: set[str] = set()
    for i, name in enumerate(classes):
        if name in seen:
            raise DataError(f"dataset.classes[{i}]: class {name!r} is listed twice")
        seen.add(name)
        if not (folder / name).is_dir():
            raise DataError(f"{folder}: class folder {name!r} not found (dataset.classes[{i}])")
    return list(classes)


def list_images(class_dir: Path) -> list[Path]:
    files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{class_dir}: class folder holds no JPEG/PNG images")
    return files


def load(cfg: DatasetConfig, *, seed: int) -> Dataset:
    folder = data_folder(cfg, source="image_folder", expects="one subfolder per class")
    _pil()
    classes = list_classes(folder, cfg.classes)
    files = [list_images(folder / c) for c in classes]
    counts = np.array([len(f) for f in files], dtype=np.int64)
    train_q, test_q = split_quotas(counts, cfg.train_size, cfg.test_size, where=str(folder))

    size, mode = cfg.image_size, ("L" if cfg.name == "mnist" else "RGB")
    shape = (size, size) if mode == "L" else (size, size, 3)
    x_train = np.empty((int(train_q.sum()), *shape), np.uint8)
    x_test = np.empty((int(test_q.sum()), *shape), np.uint8)
    y_train, y_test = [], []
    rng = np.random.default_rng(seed)
    attempted, failed, example = 0, 0, ""
    for label, class_files in enumerate(files):
        want = {"test": int(test_q[label]), "train": int(train_q[label])}
        for i in rng.permutation(len(class_files)):
            split = "test" if want["test"] else "train" if want["train"] else None
            if split is None:
                break
            path = class_files[i]
            attempted += 1
            try:
                image = decode(path, size, mode)
            except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
                failed += 1
                example = example or f"{path} ({reason(exc)})"
                continue
            if split == "test":
                x_test[len(y_test)] = image
                y_test.append(label)
            else:
                x_train[len(y_train)] = image
                y_train.append(label)
            want[split] -= 1

    if failed:
        if failed > MAX_FAILED_SHARE * attempted:
            raise DataError(
                f"{folder}: {failed} of {attempted} images failed to decode (more than 10%), e.g. {example}"
            )
        warnings.warn(f"{folder}: skipped {failed} image(s) that failed to decode, e.g. {example}", stacklevel=3)
    for split, got in (("train", y_train), ("test", y_test)):
        if not got:
            raise DataError(
                f"{folder}: the {split} split is empty ({len(y_train) + len(y_test)} images decoded from "
                f"{int(counts.sum())} files; each class needs 2+ images to appear in both splits)"
            )
    # Class-by-class filling order would make every batch single-class; shuffle like the pooled sources.
    tr, te = rng.permutation(len(y_train)), rng.permutation(len(y_test))
    where = str(folder)
    return finish(
        cfg,
        seed=seed,
        source=f"image_folder:{folder.resolve()}",
        train=Part(x_train[: len(y_train)][tr], np.asarray(y_train, np.int64)[tr], where, "train images", "labels"),
        test=Part(x_test[: len(y_test)][te], np.asarray(y_test, np.int64)[te], where, "test images", "labels"),
        class_names=classes,
        presized=True,
    )

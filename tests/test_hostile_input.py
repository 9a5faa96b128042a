"""Broken and hostile input through the CLI: exit 2, one line naming the file or key, no results.json.

One table, one kind of breakage per row, so a regression names the exact case that broke.
"""
from __future__ import annotations

import errno
import gzip
import io
import pickle
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from advsal_bench import cli

MNIST_SHAPE = (28, 28, 1)


def _npz(tmp: Path, **arrays) -> Path:
    path = tmp / "data.npz"
    np.savez(path, **arrays)
    return path


def _good_xy(n: int = 40) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.random((n, *MNIST_SHAPE), dtype=np.float32), "y": np.arange(n) % 10}


def _suite(tmp: Path, dataset: str, extra: str = "") -> Path:
    path = tmp / "suite.yaml"
    path.write_text(f"name: hostile\ndataset: {dataset}\nclassifier: {{epochs: 0}}\n{extra}")
    return path


def npz_case(**arrays) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        return _suite(tmp, f"{{name: mnist, source: npz, path: {_npz(tmp, **arrays)}}}")
    return make


def _truncated_npz(tmp: Path) -> Path:
    path = _npz(tmp, **_good_xy())
    path.write_bytes(path.read_bytes()[:300])
    return _suite(tmp, f"{{name: mnist, source: npz, path: {path}}}")


def _garbage_npz(tmp: Path) -> Path:
    path = tmp / "data.npz"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    return _suite(tmp, f"{{name: mnist, source: npz, path: {path}}}")


def _idx_folder(tmp: Path, images: bytes, labels: bytes) -> Path:
    folder = tmp / "idx"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return _suite(tmp, f"{{name: mnist, source: idx, path: {folder}}}")


def _idx_truncated(tmp: Path) -> Path:
    images = struct.pack(">IIII", 2051, 10, 28, 28) + bytes(28 * 28 * 3)  # header says 10, holds 3
    labels = struct.pack(">II", 2049, 10) + bytes(10)
    return _idx_folder(tmp, images, labels)


def _idx_bad_magic(tmp: Path) -> Path:
    images = struct.pack(">IIII", 1234, 2, 28, 28) + bytes(28 * 28 * 2)
    labels = struct.pack(">II", 2049, 2) + bytes(2)
    return _idx_folder(tmp, images, labels)


def _cifar_folder(tmp: Path, payload: bytes) -> Path:
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(payload)
    return _suite(tmp, f"{{name: cifar10, source: cifar_batches, path: {folder}}}")


def _cifar_truncated(tmp: Path) -> Path:
    good = pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 3]}, protocol=2)
    return _cifar_folder(tmp, good[: len(good) // 2])


PWNED = "PWNED"  # the file a payload creates in the test's tmp_path if it ever runs


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def _cifar_malicious(tmp: Path) -> Path:
    return _cifar_folder(tmp, pickle.dumps({b"data": _Exploit(tmp / PWNED), b"labels": [0]}))


def _image_folder(tmp: Path, good: int, bad: int) -> Path:
    from PIL import Image

    root = tmp / "images"
    for c in ("n01", "n02"):
        d = root / c
        d.mkdir(parents=True)
        for i in range(good):
            buf = io.BytesIO()
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(buf, format="PNG")
            (d / f"ok{i}.png").write_bytes(buf.getvalue())
        for i in range(bad):
            (d / f"broken{i}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return _suite(tmp, f"{{name: imagenet10, source: image_folder, path: {root}, image_size: 32}}",
                  "classifier: {arch: mnist_net_f, epochs: 0}\n")


def _yaml(text: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "suite.yaml"
        path.write_text(text)
        return path
    return make


def _yaml_python_tag(tmp: Path) -> Path:
    return _yaml(f'name: x\nseed: !!python/object/apply:os.system ["touch {tmp / PWNED}"]\n')(tmp)


def _bad_model_file(tmp: Path) -> Path:
    model = tmp / "f.keras"
    model.write_bytes(b"PK\x03\x04 definitely not a keras archive")
    return _suite(tmp, "{name: mnist, source: sample, train_size: 100, test_size: 50}",
                  f"classifier: {{path: {model}}}\n".replace("classifier: {epochs: 0}\n", ""))


def _os_error(code: int) -> Callable[[Path, pytest.MonkeyPatch], Path]:
    def make(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        import advsal_bench.store as store

        def fail(*args, **kwargs):
            raise OSError(code, "simulated")

        monkeypatch.setattr(store.tempfile, "mkstemp", fail)
        return _suite(tmp, "{name: mnist, source: sample, train_size: 100, test_size: 50}")
    return make


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi")) + "name: bomb\n"

CASES = [
    # (id, make(tmp[, monkeypatch]) -> suite path, message regex)
    ("npz_truncated", _truncated_npz, r"data\.npz: not a readable \.npz archive"),
    ("npz_garbage", _garbage_npz, r"data\.npz: not a readable \.npz archive"),
    ("npz_wrong_shape", npz_case(x=np.zeros((40, 784), np.float32), y=np.arange(40) % 10), r"data\.npz: x .*shape"),
    ("npz_wrong_dtype", npz_case(x=np.array(["a"] * 40), y=np.arange(40) % 10), r"data\.npz: x has dtype <U1"),
    ("labels_out_of_range", npz_case(x=_good_xy()["x"], y=np.arange(40) % 12), r"data\.npz: y .*out of range|data\.npz: y .*0\.\.9"),
    ("nan_in_data", npz_case(x=np.full((40, *MNIST_SHAPE), np.nan, np.float32), y=np.arange(40) % 10), r"data\.npz: x .*(NaN|non-finite)"),
    ("inf_in_data", npz_case(x=np.full((40, *MNIST_SHAPE), np.inf, np.float32), y=np.arange(40) % 10), r"data\.npz: x .*(Inf|non-finite)"),
    ("empty_dataset", npz_case(x=np.zeros((0, *MNIST_SHAPE), np.float32), y=np.zeros(0, np.int64)), r"data\.npz: x holds 0 images"),
    ("label_count_mismatch", npz_case(x=_good_xy()["x"], y=np.arange(39) % 10), r"data\.npz: x has 40 images but y has 39 labels"),
    ("idx_truncated", _idx_truncated, r"train-images-idx3-ubyte\.gz: .*(truncated|expected)"),
    ("idx_bad_magic", _idx_bad_magic, r"train-images-idx3-ubyte\.gz: wrong IDX magic number 1234"),
    ("cifar_truncated", _cifar_truncated, r"data_batch_1: .*corrupted pickle .*truncated"),
    ("cifar_malicious_pickle", _cifar_malicious, r"data_batch_1: unsafe or corrupted pickle .*refusing to load global"),
    ("images_fail_to_decode", lambda t: _image_folder(t, good=1, bad=3), r"images: .*failed to decode"),
    ("image_class_empty", lambda t: _image_folder(t, good=0, bad=0), r"n01: class folder holds no JPEG/PNG images"),
    ("yaml_alias_bomb", _yaml(BOMB), r"suite\.yaml: .*(alias|nodes)"),
    ("yaml_python_tag", _yaml_python_tag, r"python/object/apply"),
    ("classifier_not_keras", _bad_model_file, r"f\.keras: cannot load the classifier"),
    ("output_read_only", _os_error(errno.EROFS), r"cannot write \(read-only file system\)"),
    ("output_disk_full", _os_error(errno.ENOSPC), r"cannot write \(no space left on device\)"),
]


@pytest.mark.parametrize("make, message", [pytest.param(c[1], c[2], id=c[0]) for c in CASES])
def test_broken_input_exits_2_with_one_line_and_no_results(tmp_path, monkeypatch, capsys, make, message):
    import inspect

    suite = make(tmp_path, monkeypatch) if len(inspect.signature(make).parameters) == 2 else make(tmp_path)
    out = tmp_path / "out"
    rc = cli.main(["run", str(suite), "--output", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    assert __import__("re").search(message, err), err
    assert not (out / "results.json").exists()
    assert not (tmp_path / PWNED).exists(), "a payload in the input ran"


@pytest.mark.parametrize("make", [_cifar_malicious, _yaml_python_tag], ids=["cifar_pickle", "yaml_tag"])
def test_the_payload_cases_are_live(tmp_path, make):
    """The 'payload did not run' check above can fail: loaded the unsafe way, each payload runs."""
    import yaml

    make(tmp_path)
    if make is _cifar_malicious:
        pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    else:
        yaml.unsafe_load((tmp_path / "suite.yaml").read_text())
    assert (tmp_path / PWNED).exists()


def test_nan_weights_in_classifier_stop_the_run_naming_the_stage(tmp_path, capsys):
    import keras

    from advsal_bench.models import build_model

    f = build_model("mnist_net_f", MNIST_SHAPE, 10)
    weights = f.get_weights()
    weights[-1][:] = np.nan
    f.set_weights(weights)
    f.save(tmp_path / "nan_f.keras")
    suite = _suite(tmp_path, "{name: mnist, source: sample, train_size: 100, test_size: 50}",
                   f"classifier: {{path: {tmp_path / 'nan_f.keras'}}}\n")
    suite.write_text(suite.read_text().replace("classifier: {epochs: 0}\n", ""))
    out = tmp_path / "out"
    rc = cli.main(["run", str(suite), "--output", str(out), "-q"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "classifier logits: NaN/Inf in 50 of 50 outputs (first in batch 0, image 0)" in err
    assert not (out / "results.json").exists()
    del keras


def test_nan_gradients_in_saliency_name_the_batch(tmp_path):
    import tensorflow as tf

    from advsal_bench import stages
    from advsal_bench.config import config_from_dict
    from advsal_bench.errors import NumericalError

    def model_fn(x):
        # sqrt at 0 has an infinite derivative: finite logits, non-finite saliency where a pixel is 0.
        return tf.sqrt(tf.reshape(x, (-1, 4)))

    x = np.ones((12, 2, 2, 1), np.float32)
    x[9] = 0.0
    run = stages.Run(config_from_dict({"name": "nan", "classifier": {"batch_size": 4}}), tmp_path, verbose=0)
    run.open_output()
    f = stages.Classifier("sqrt", None, model_fn)
    with pytest.raises(NumericalError, match=r"saliency: NaN/Inf in 1 of 12 outputs \(first in batch 2, image 9\)"):
        stages.saliency(run, f, stages.Images(x, np.zeros(12, np.int64)), label="clean")

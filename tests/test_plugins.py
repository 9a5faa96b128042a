"""Users' own attacks and detectors in a suite (``type: package.module:name``), and what one trace serves.

The plug-ins are in ``tests/plugin_examples.py``; the suites here run them as the built-ins run.
"""
from __future__ import annotations

import numpy as np
import pytest

import plugin_examples
from advsal_bench.config import config_from_dict
from advsal_bench.suite import run_suite

BASE = {
    "name": "plugins", "seed": 0,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 400, "test_size": 150},
    "classifier": {"epochs": 1, "batch_size": 64, "learning_rate": 2e-3},
    "adversarial": {"train_size": 100, "test_size": 100, "chunk_size": 50, "validation_size": 50},
    "detectors": {"image_only": {"inputs": ["image"], "epochs": 1, "batch_size": 64, "learning_rate": 1e-3}},
    "experiments": ["table1"],
}


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    plugin_examples.TRACES.clear()
    raw = {**BASE,
           "attacks": {"mine": {"type": "plugin_examples:noisy_fgsm", "eps": [0.1, 0.2, 0.3], "norm": "linf",
                                "batch_size": 64, "strength": 1.0},
                       "fgsm": {"eps": [0.1, 0.2, 0.3], "batch_size": 64}},
           "detectors": {**BASE["detectors"], "shift": {"type": "plugin_examples:MeanShift", "quantile": 0.9}}}
    return run_suite(config_from_dict(raw), tmp_path_factory.mktemp("plugins"), verbose=0)


def test_a_plugin_attack_runs_like_the_builtin_it_wraps(plugin_run):
    # noisy_fgsm at strength 1 is FGSM: the same images, so the same accuracies at every eps.
    a = plugin_run["attacks"]
    assert a["mine"]["by_eps"] == a["fgsm"]["by_eps"]
    assert a["mine"]["eps"] == a["fgsm"]["eps"]


def test_one_trace_serves_every_eps_and_every_chunk(plugin_run):
    # 3 eps x 4 chunks of 50 images called the compiled step 12 times; its Python body ran at trace
    # time only, once for the chunks' batch shape.
    assert len(plugin_examples.TRACES) == 1, plugin_examples.TRACES


def test_a_plugin_detector_gets_table1_rows(plugin_run):
    rows = [r for r in plugin_run["table1"] if r["detector"] == "shift"]
    assert [r["attack"] for r in rows] == ["mine", "fgsm"]
    for r in rows:
        # its own threshold (the clean 0.9 quantile) decides D clean, so about 90% of clean test images pass
        assert 0.75 <= r["d_clean"] <= 1.0 and 0.0 <= r["auc"] <= 1.0


def test_a_plugin_attack_without_an_eps_grid(tmp_path):
    raw = {**BASE, "attacks": {"identity": {"type": "plugin_examples:no_eps_attack"}}}
    r = run_suite(config_from_dict(raw), tmp_path, verbose=0)
    assert r["attacks"]["identity"]["eps"] is None and r["attacks"]["identity"]["by_eps"] == {}
    # it returns x itself, so f is as right on it as on the clean images
    assert np.isclose(r["attacks"]["identity"]["adv_accuracy"], r["table1"][0]["f_clean"])

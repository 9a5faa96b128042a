"""A tiny suite end to end (seconds): f learns, the attacks lower its accuracy, D beats chance."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advsal_bench.config import config_from_dict
from advsal_bench.suite import run_suite

TINY = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 1200, "test_size": 300},
    "classifier": {"epochs": 3, "batch_size": 64, "learning_rate": 2e-3},
    "adversarial": {"train_size": 400, "test_size": 200},
    "attacks": {
        "fgsm": {"eps": [0.1, 0.3]},
        "ifgsm_linf": {"eps": [0.2], "steps": 5},
        "ifgsm_l2": {"eps": [2.5], "steps": 5},
    },
    "detectors": {
        "image_saliency": {"inputs": ["image", "saliency"], "epochs": 4, "batch_size": 64, "learning_rate": 1e-3},
        "saliency_only": {"inputs": ["saliency"], "epochs": 4, "batch_size": 64, "learning_rate": 1e-3},
    },
    "experiments": ["table1", "eps_generalization", "attack_generalization", "gradcam"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    results = run_suite(config_from_dict(TINY), out, verbose=0)
    return out, results


def test_classifier_learns(tiny_run):
    _, r = tiny_run
    assert r["classifier"]["test_accuracy"] >= 0.85
    assert r["classifier"]["train_accuracy"] >= 0.85


def test_attacks_lower_accuracy(tiny_run):
    _, r = tiny_run
    clean = r["classifier"]["test_accuracy"]
    for name, a in r["attacks"].items():
        assert a["adv_accuracy"] < clean - 0.3, name
        assert r["images_per_second"][f"attack:{name}"] > 0
    # stronger fgsm hurts more, and selection picks the smallest eps below the threshold
    by = r["attacks"]["fgsm"]["by_eps"]
    assert by["0.3"] < by["0.1"]
    sel = r["attacks"]["fgsm"]["eps"]
    assert sel is None or by[f"{sel:g}"] < 0.30 and all(by[e] >= 0.30 for e in by if float(e) < sel)


def test_detector_beats_chance_and_table_consistent(tiny_run):
    _, r = tiny_run
    rows = r["table1"]
    assert {(row["attack"], row["detector"]) for row in rows} == {
        (a, d) for a in TINY["attacks"] for d in TINY["detectors"]
    }
    for row in rows:
        assert row["d_accuracy"] > 0.7, row
        assert row["auc"] > 0.75, row
        assert row["d_accuracy"] == pytest.approx((row["d_clean"] + row["d_adv"]) / 2)
        assert 0.0 <= row["tpr_at_5_fpr"] <= 1.0 and 0.0 <= row["fpr_test"] <= 1.0
        assert row["n_fooling"] > 0 and 0.0 <= row["d_adv_fooling"] <= 1.0
    assert r["data"]["validation"] == {"split": "test", "size": 100}
    # the diagonal of each generalization matrix is the Table 1 number of the same D
    t1 = {(row["attack"], row["eps"]): row["d_accuracy"] for row in rows if row["detector"] == "image_saliency"}
    ag = r["attack_generalization"]
    assert ag["attacks"] == list(TINY["attacks"])  # so the loops below check every attack
    assert set(r["eps_generalization"]) == set(TINY["attacks"])  # every attack here has an eps grid
    for i, a in enumerate(ag["attacks"]):
        assert ag["accuracy"][i][i] == pytest.approx(t1[(a, ag["eps"][i])])
    for a, g in r["eps_generalization"].items():
        used = r["attacks"][a]["eps_used"]
        k = g["eps_fit"].index(used)
        assert g["accuracy"][k][k] == pytest.approx(t1[(a, used)])


def test_outputs_written(tiny_run):
    out, r = tiny_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["table1"] == json.loads(json.dumps(r["table1"]))
    for key in ("suite", "dataset", "seed", "environment", "classifier", "attacks", "table1"):
        assert key in on_disk
    env = on_disk["environment"]
    assert env["strategy"] == "one_device" and env["replicas"] == 1 and env["tensorflow"]
    report = (out / "report.md").read_text()
    assert "Table 1" in report and "image_saliency" in report
    for png in ("attack_generalization.png", "eps_generalization_fgsm.png", "examples.png", "gradcam.png", "roc_fgsm.png"):
        data = (out / "figures" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (out / "config.yaml").is_file() and (out / "models" / "f.keras").is_file()
    gc = on_disk["gradcam"]
    assert set(gc["similarity"]) == set(TINY["attacks"])
    assert all(-1.0 <= v <= 1.0 for sims in gc["similarity"].values() for v in sims.values())


def test_cli_run_and_reuse_classifier(tiny_run, tmp_path):
    """The CLI path with --set overrides, loading the saved f instead of training."""
    out, _ = tiny_run
    suite = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"
    cmd = [sys.executable, "-m", "advsal_bench", "run", str(suite), "--output", str(tmp_path / "cli"), "-q",
           "--set", f"classifier.path={out / 'models' / 'f.keras'}",
           "--set", "dataset.train_size=600", "--set", "dataset.test_size=200",
           "--set", "adversarial.train_size=200", "--set", "adversarial.test_size=100",
           "--set", "attacks={fgsm: {eps: [0.3]}}", "--set", "experiments=[table1]",
           "--set", "detectors={image_saliency: {epochs: 1}}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "image_saliency" in proc.stdout
    r = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert r["classifier"]["test_accuracy"] >= 0.85  # the loaded f, not a fresh one

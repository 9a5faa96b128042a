"""Runs that survive: SIGKILL mid-stage, resume from the stage store, determinism, corrupt artifacts.

Each case drives the CLI in a subprocess, the way a user (or a cluster's OOM killer) would.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

SUITE = {
    "name": "resume",
    "seed": 3,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 800, "test_size": 200},
    "classifier": {"epochs": 2, "batch_size": 64, "learning_rate": 2e-3},
    "adversarial": {"train_size": 300, "test_size": 100, "chunk_size": 50},
    "attacks": {"fgsm": {"eps": [0.3]}, "ifgsm_linf": {"eps": [0.2], "steps": 10, "batch_size": 25}},
    "detectors": {
        "image_saliency": {"inputs": ["image", "saliency"], "epochs": 2, "batch_size": 64, "learning_rate": 1e-3},
        "image_only": {"inputs": ["image"], "epochs": 2, "batch_size": 64, "learning_rate": 1e-3},
    },
    "experiments": ["table1", "attack_generalization"],
}
TIMING_KEYS = ("timings_seconds", "images_per_second")


def _cmd(suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "advsal_bench", "run", str(suite), "--output", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _run(suite: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(_cmd(suite, out, *extra), capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _run_and_kill(suite: Path, out: Path, marker: str) -> str:
    """Start a run, SIGKILL it as soon as ``marker`` appears in its output; return the output so far."""
    proc = subprocess.Popen(_cmd(suite, out, "-v"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    seen = []
    deadline = time.monotonic() + 600
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "run did not reach the kill point in time"
    proc.wait(timeout=60)
    text = "".join(seen)
    assert proc.returncode == -signal.SIGKILL, f"run ended before {marker!r}:\n{text[-3000:]}"
    assert not (out / "results.json").exists()
    return text


def _statuses(stages: dict) -> set[str]:
    return {v["status"] for v in stages.values()}


def _comparable(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text())
    for k in TIMING_KEYS:
        r.pop(k)
    return r


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "resume.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def reference(suite_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    _run(suite_file, out, "-q")
    return out


def test_same_seed_gives_identical_results(suite_file, reference, tmp_path):
    _run(suite_file, tmp_path / "again", "-q")
    assert _comparable(tmp_path / "again") == _comparable(reference)
    # A rerun in place reuses every stage and still writes the same results.
    _run(suite_file, reference, "-q")
    stages = json.loads((reference / "stages.json").read_text())
    assert stages and _statuses(stages) == {"reused"}
    assert _comparable(reference) == _comparable(tmp_path / "again")


def test_sigkill_during_crafting_and_detector_training_resumes(suite_file, reference, tmp_path):
    out = tmp_path / "killed"
    _run_and_kill(suite_file, out, "store: attack:ifgsm_linf:eps=0.2: chunk 2/8 stored")
    text = _run_and_kill(suite_file, out, "detector image_only on")
    assert "classifier: reused (" in text
    assert "attack:ifgsm_linf:eps=0.2: resumed, 2 of 8 chunks reused" in text
    proc = _run(suite_file, out)
    stages = json.loads((out / "stages.json").read_text())
    assert stages["classifier"]["status"] == "reused"
    assert stages["attack:fgsm:eps=0.3"]["status"] == "reused"
    assert stages["attack:ifgsm_linf:eps=0.2"]["status"] == "reused"
    assert stages["detector:image_saliency:fgsm:eps=0.3"]["status"] == "reused"
    assert "computed" in _statuses(stages)
    assert "stages:" in proc.stdout
    assert _comparable(out) == _comparable(reference)


def test_changing_one_attack_recomputes_only_what_depends_on_it(suite_file, reference, tmp_path):
    out = tmp_path / "changed"
    import shutil

    shutil.copytree(reference, out)
    _run(suite_file, out, "-q", "--set", "attacks.fgsm.eps=[0.25]")
    stages = json.loads((out / "stages.json").read_text())
    assert stages["classifier"]["status"] == "reused"
    assert stages["attack:ifgsm_linf:eps=0.2"]["status"] == "reused"
    assert stages["detector:image_only:ifgsm_linf:eps=0.2"]["status"] == "reused"
    assert stages["attack:fgsm:eps=0.25"]["status"] == "computed"
    assert stages["detector:image_only:fgsm:eps=0.25"]["status"] == "computed"
    # --fresh recomputes everything, to the same numbers
    _run(suite_file, out, "-q", "--fresh")
    assert _statuses(json.loads((out / "stages.json").read_text())) == {"computed"}
    assert _comparable(out) == _comparable(reference)


def test_corrupt_stored_artifacts_are_detected_and_recomputed(suite_file, reference, tmp_path):
    out = tmp_path / "corrupt"
    import shutil

    shutil.copytree(reference, out)
    store = out / "store"
    model = next(store.glob("classifier-*/model.keras"))
    model.write_bytes(model.read_bytes()[:-100] + b"\0" * 100)
    chunk = next(store.glob("attack_fgsm_eps=0.3-*/chunk_00001.npz"))
    chunk.write_bytes(b"not a zip file")
    proc = _run(suite_file, out)
    assert "store: classifier: stored artifact is corrupt" in proc.stdout
    assert "attack:fgsm:eps=0.3: stored artifact is corrupt" in proc.stdout
    stages = json.loads((out / "stages.json").read_text())
    assert stages["classifier"]["status"] == "computed"
    assert stages["attack:fgsm:eps=0.3"]["status"] == "resumed"
    assert stages["attack:fgsm:eps=0.3"]["chunks_reused"] == stages["attack:fgsm:eps=0.3"]["chunks"] - 1
    assert _comparable(out) == _comparable(reference)

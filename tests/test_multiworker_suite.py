"""A whole suite across two local workers (`launch --workers 2`) equals the one-process run.

Both workers train f and D together (each on half of every batch, gradients all-reduced), both
craft their share of every chunked stage (attacks, saliency), and worker 0 evaluates; so any
mistake in sharding, gathering, ordering or gradient averaging would change the numbers. The
one-process run uses the same training loop (``distribute.train_loop: custom``) on one replica.
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
    "name": "two_workers",
    "seed": 5,
    "dataset": {"name": "mnist", "source": "sample", "train_size": 600, "test_size": 200},
    "classifier": {"epochs": 1, "batch_size": 64, "learning_rate": 2e-3},
    "adversarial": {"train_size": 200, "test_size": 100, "chunk_size": 50},
    "attacks": {"fgsm": {"eps": [0.3]}, "ifgsm_linf": {"eps": [0.2], "steps": 5}},
    "detectors": {"image_saliency": {"inputs": ["image", "saliency"], "epochs": 1, "batch_size": 64}},
    "experiments": ["table1"],
}


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "advsal_bench", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


def _comparable(path: Path) -> dict:
    r = json.loads(path.read_text())
    for k in ("timings_seconds", "images_per_second", "environment"):
        r.pop(k)
    return r


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mw") / "suite.yaml"
    path.write_text(yaml.safe_dump(SUITE, sort_keys=False))
    return path


def test_two_workers_match_one_process(suite_file, tmp_path):
    one = _cli("run", str(suite_file), "-q", "--output", str(tmp_path / "one"), "--set", "distribute.train_loop=custom")
    assert one.returncode == 0, one.stderr[-2000:]
    two = _cli("launch", "--workers", "2", "-v", str(suite_file), "--output", str(tmp_path / "two"))
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "worker 1: done; worker 0 wrote" in two.stdout
    # each worker stored its own share of the chunks
    lines = two.stdout.splitlines()
    for worker, chunk in ((0, 1), (1, 2)):
        assert any(line.startswith(f"[worker {worker}]") and f"attack:fgsm:eps=0.3: chunk {chunk}/6 stored" in line
                   for line in lines), worker
    # both workers took part in training f and D, one replica each
    for worker in (0, 1):
        assert sum(line.startswith(f"[worker {worker}]") and "epoch 1/1" in line and "2 replicas" in line
                   for line in lines) == 3, worker  # f and one D per attack
    env = json.loads((tmp_path / "two" / "results.json").read_text())["environment"]
    assert env["strategy"] == "multi_worker" and env["workers"] == 2
    assert env["train_loop"] == "custom" and env["train_replicas"] == 2
    two_r, one_r = _comparable(tmp_path / "two" / "results.json"), _comparable(tmp_path / "one" / "results.json")
    # Deterministic given f's weights, and f agrees to float summation order: exactly equal.
    for key in ("classifier", "attacks", "data"):
        assert two_r.pop(key) == one_r.pop(key), key
    # D's training sums gradients in another order, so D's scores move by float noise: a test image
    # near D's threshold may flip.
    table_two, table_one = two_r.pop("table1"), one_r.pop("table1")
    for a, b in zip(table_two, table_one, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float) and k not in ("eps",):
                assert abs(a[k] - b[k]) <= 0.01, (a["attack"], k, a[k], b[k])
            else:
                assert a[k] == b[k], (a["attack"], k)
    assert two_r == one_r


@pytest.mark.parametrize("kill_at", ["classifier: training", "chunk 2/"], ids=["training", "crafting"])
def test_killing_a_worker_mid_suite_stops_the_other_naming_it(suite_file, tmp_path, kill_at):
    from advsal_bench.launch import free_ports, tf_config

    ports = free_ports(2)
    addrs = [f"localhost:{p}" for p in ports]
    procs = []
    for i in range(2):
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CONFIG": tf_config(addrs, i)}
        cmd = [sys.executable, "-m", "advsal_bench", "run", str(suite_file), "--output", str(tmp_path / "out"),
               "-v", "--set", "distribute.strategy=multi_worker"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env))
    # Kill worker 1 once it trains f with worker 0 (inside the all-reduces), or once it is crafting
    # (its first chunk is stored), then time worker 0's exit.
    for line in procs[1].stdout:
        if kill_at in line:
            break
    procs[1].send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    out, _ = procs[0].communicate(timeout=120)
    elapsed = time.monotonic() - t0
    assert procs[0].returncode not in (0, None)
    assert elapsed < 60, elapsed
    last = [line for line in out.splitlines() if line.startswith("error:")]
    assert last and f"worker 1 ({addrs[1]}) lost" in last[-1], out[-2000:]
    assert not (tmp_path / "out" / "results.json").exists()

"""Multi-worker: launch_local plumbing, the launch CLI, peer-loss translation, and (slow) real workers.

The slow tests start two TensorFlow processes on localhost ports (tests/multiworker_worker.py, not
the suite); each needs 15-40 s just to import TensorFlow on a busy 2-core machine.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest

from advsal_bench import launch
from advsal_bench.cli import main
from advsal_bench.errors import WorkerLostError

WORKER = Path(__file__).with_name("multiworker_worker.py")
SUITE = Path(__file__).resolve().parents[1] / "configs" / "quick.yaml"


def _use_worker(monkeypatch, *args: str) -> None:
    monkeypatch.setattr(launch, "worker_command", lambda *a, **k: [sys.executable, str(WORKER), *args])


def test_free_ports_and_tf_config():
    ports = launch.free_ports(3)
    assert len(set(ports)) == 3
    cfg = json.loads(launch.tf_config(["localhost:1", "localhost:2"], 1))
    assert cfg == {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}


def test_worker_command_forces_multi_worker_after_user_overrides():
    cmd = launch.worker_command("s.yaml", overrides=["seed=3", "distribute.strategy=mirrored"], output="out",
                                extra_args=["--quiet"])
    assert cmd[1:5] == ["-m", "advsal_bench", "run", "s.yaml"]
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    assert sets == ["seed=3", "distribute.strategy=mirrored", "distribute.strategy=multi_worker",
                    "distribute.cluster_resolver=tf_config"]
    assert cmd[-3:] == ["--output", "out", "--quiet"]


def test_launch_local_runs_every_worker_with_its_own_tf_config(monkeypatch, capsys):
    _use_worker(monkeypatch, "plumbing")
    assert launch.launch_local("unused.yaml", workers=3) == 0
    out = capsys.readouterr().out
    tasks = re.findall(r"^\[worker (\d)\] task (\d) of (\S+)$", out, re.M)
    assert sorted((w, t) for w, t, _ in tasks) == [("0", "0"), ("1", "1"), ("2", "2")]
    assert len({c for _, _, c in tasks}) == 1 and len(tasks[0][2].split(",")) == 3
    assert out.count("] done") == 3


def test_launch_local_failure_stops_the_others(monkeypatch, capsys):
    # Worker 1 fails at once; worker 0 would sleep 120 s and ignores SIGTERM like a TF worker does:
    # it must be killed after the grace period, and launch_local returns worker 1's code.
    _use_worker(monkeypatch, "plumbing", "--fail", "1", "--code", "7", "--sleep", "120", "--ignore-term")
    monkeypatch.setattr(launch, "KILL_AFTER_S", 1.0)
    start = time.monotonic()
    assert launch.launch_local("unused.yaml", workers=2, grace=1.0) == 7
    assert time.monotonic() - start < 20
    out = capsys.readouterr().out
    assert "[worker 1] failing with 7" in out
    assert "[launch] worker 1 exited with code 7" in out
    assert "terminating worker(s) 0" in out
    assert "] done" not in out


def test_launch_local_timeout(monkeypatch, capsys):
    _use_worker(monkeypatch, "plumbing", "--sleep", "120")
    monkeypatch.setattr(launch, "KILL_AFTER_S", 1.0)
    assert launch.launch_local("unused.yaml", workers=2, timeout=1.0) == 124
    assert "timeout" in capsys.readouterr().out


def test_launch_local_rejects_bad_worker_count():
    with pytest.raises(ValueError, match="workers"):
        launch.launch_local("unused.yaml", workers=0)


@pytest.mark.parametrize("workers", ["0", "-1", "two", "1.5"])
def test_launch_cli_bad_worker_count(workers, capsys):
    assert main(["launch", "--workers", workers, str(SUITE)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --workers: expected an integer >= 1, got {workers!r}"]


def test_launch_cli_bad_suite_fails_once_before_starting_workers(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(launch, "launch_local", lambda *a, **k: pytest.fail("workers started"))
    assert main(["launch", "--workers", "2", str(tmp_path / "missing.yaml")]) == 2
    assert main(["launch", "--workers", "2", str(SUITE), "--set", "seed=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_launch_cli_passes_arguments_and_exit_code(monkeypatch):
    seen = {}

    def fake(suite, **kwargs):
        seen.update(kwargs, suite=suite)
        return 5

    monkeypatch.setattr(launch, "launch_local", fake)
    assert main(["launch", "-n", "3", str(SUITE), "--output", "o", "--set", "seed=2", "--timeout", "9"]) == 5
    assert seen == {"suite": str(SUITE), "workers": 3, "overrides": ["seed=2"], "output": "o", "timeout": 9.0,
                    "extra_args": ()}
    assert main(["launch", "-n", "2", "-v", str(SUITE)]) == 5
    assert seen["extra_args"] == ["-v"]  # every worker's run prints its chunk lines too


def test_worker_lost_error_names_the_worker(monkeypatch):
    import tensorflow as tf

    from advsal_bench.distribute import peer_loss_guard, worker_lost_error

    monkeypatch.setenv("TF_CONFIG", launch.tf_config(["localhost:1111", "localhost:2222"], 0))
    heartbeat = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are "
        "unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed."))
    err = worker_lost_error(heartbeat)
    assert isinstance(err, WorkerLostError) and (err.task, err.address) == (1, "localhost:2222")
    assert str(err).startswith("worker 1 (localhost:2222) lost: stopped sending heartbeats")
    assert "\n" not in str(err)
    with pytest.raises(WorkerLostError, match=r"^worker 1 \(localhost:2222\) lost"):
        with peer_loss_guard():
            raise heartbeat
    # Seen from worker 1: the leader (worker 0) died; a reset connection, or a heartbeat RPC timing out.
    monkeypatch.setenv("TF_CONFIG", launch.tf_config(["localhost:1111", "localhost:2222"], 1))
    reset = tf.errors.UnavailableError(None, None, (
        "Collective ops is aborted by: recvmsg:Connection reset by peer\nAdditional GRPC error information "
        "from remote target /job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/CompleteInstance"))
    assert str(worker_lost_error(reset)).startswith("worker 0 (localhost:1111) lost: connection reset")
    deadline = tf.errors.DeadlineExceededError(None, None, (
        "Collective ops is aborted by: Deadline Exceeded\nRPC: /tensorflow.CoordinationService/Heartbeat"))
    assert str(worker_lost_error(deadline)).startswith("worker 0 (localhost:1111) lost:")
    # At startup (ADVSAL_CLUSTER_TIMEOUT): worker 1 cannot register with the leader; the leader waits for worker 1.
    monkeypatch.setenv("ADVSAL_CLUSTER_TIMEOUT", "15")
    register = tf.errors.DeadlineExceededError(None, None, "Deadline Exceeded\nRPC: /tensorflow.CoordinationService/RegisterTask")
    assert str(worker_lost_error(register)).startswith(
        "worker 0 (localhost:1111) lost: its coordination service did not register this worker within 15 s")
    monkeypatch.setenv("TF_CONFIG", launch.tf_config(["localhost:1111", "localhost:2222"], 0))
    join = tf.errors.DeadlineExceededError(None, None, (
        "Barrier timed out. Id: [Init]Wait_for_all_tasks_to_register::0.\nThe first task at the barrier: "
        "/job:worker/replica:0/task:0. Some timed out task names:\n/job:worker/replica:0/task:1\n"
        "RPC: /tensorflow.CoordinationService/RegisterTask"))
    assert str(worker_lost_error(join)).startswith("worker 1 (localhost:2222) lost: did not join the cluster within 15 s")
    # Not a peer loss: left alone.
    assert worker_lost_error(tf.errors.InvalidArgumentError(None, None, "bad shape")) is None
    assert worker_lost_error(ValueError("heartbeat")) is None
    with pytest.raises(tf.errors.InvalidArgumentError):
        with peer_loss_guard():
            raise tf.errors.InvalidArgumentError(None, None, "bad shape")


def test_worker_info_and_barrier_on_one_machine():
    from advsal_bench.config import DistributeConfig
    from advsal_bench.distribute import barrier, get_strategy, worker_info

    strategy = get_strategy(DistributeConfig(strategy="one_device"))
    assert worker_info(strategy) == (0, 1, True)
    assert barrier(strategy) == 1


@pytest.mark.slow
def test_two_workers_complete(monkeypatch, capsys):
    monkeypatch.setenv("ADVSAL_CLUSTER_TIMEOUT", "180")
    _use_worker(monkeypatch, "allreduce", "--steps", "60")
    assert launch.launch_local("unused.yaml", workers=2, timeout=400) == 0
    out = capsys.readouterr().out
    assert "[worker 0] info index=0 count=2 chief=True replicas=2" in out
    assert "[worker 1] info index=1 count=2 chief=False replicas=2" in out
    assert out.count("] done total=") == 2


@pytest.mark.slow
def test_killed_worker_makes_the_other_fail_within_60s(monkeypatch, capsys):
    # Worker 1 SIGKILLs itself in the middle of the all-reduce loop; worker 0, blocked in a collective,
    # must exit non-zero with a message naming worker 1 and its address, well within 60 s.
    monkeypatch.setenv("ADVSAL_CLUSTER_TIMEOUT", "180")
    _use_worker(monkeypatch, "allreduce", "--steps", "100000", "--die", "1", "--die-after", "100")
    rc = launch.launch_local("unused.yaml", workers=2, timeout=400, grace=90)
    out = capsys.readouterr().out
    assert rc == 137, out  # worker 1's SIGKILL: the first failure
    killed = float(re.search(r"\[worker 1\] killing myself at ([\d.]+)", out).group(1))
    lost = float(re.search(r"\[worker 0\] lost at ([\d.]+)", out).group(1))
    assert 0 < lost - killed < 60, out
    assert re.search(r"\[launch\] worker 0 exited with code 1$", out, re.M), out
    assert "terminating" not in out  # worker 0 stopped on its own
    msg = re.search(r"^\[worker 0\] error: (.*)$", out, re.M).group(1)
    port = re.search(r"localhost:\d+, (localhost:\d+)", out).group(1)
    assert msg.startswith(f"worker 1 ({port}) lost: "), msg
    print(f"time to failure: {lost - killed:.1f} s; {msg}", file=sys.stderr)

"""Start N multi-worker processes on this machine (localhost ports, one TF_CONFIG each) and wait.

For trying a multi-worker run on one machine; on a cluster, start the workers with the scheduler
(configs/cluster/slurm.sbatch) or set TF_CONFIG on each machine yourself.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Sequence

# After one worker fails, how long the others get to fail on their own (a lost peer is detected by
# TF's coordination service within about 10-20 s, see distribute.py) before they are terminated.
DEFAULT_GRACE_S = 45.0
# TensorFlow's multi-worker runtime catches SIGTERM (its preemption notifier) and keeps running, so a
# worker that has not exited this long after SIGTERM gets SIGKILL.
KILL_AFTER_S = 5.0


def free_ports(n: int, host: str = "localhost") -> list[int]:
    """``n`` distinct free TCP ports on ``host`` (all bound at once, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(addresses: Sequence[str], index: int) -> str:
    """TF_CONFIG for worker ``index`` of a cluster of workers at ``addresses`` (worker 0 is the chief)."""
    return json.dumps({"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}})


def worker_command(
    suite_path: str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    output: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The command line each worker runs (the same for all; TF_CONFIG tells them apart)."""
    cmd = [sys.executable, "-m", "advsal_bench", "run", str(suite_path)]
    for kv in overrides:
        cmd += ["--set", kv]
    # Last, so that they win over the user's overrides.
    cmd += ["--set", "distribute.strategy=multi_worker", "--set", "distribute.cluster_resolver=tf_config"]
    if output is not None:
        cmd += ["--output", str(output)]
    return cmd + list(extra_args)


def _pump(index: int, stream: IO[str], lock: threading.Lock, out: IO[str]) -> None:
    for line in stream:
        with lock:
            out.write(f"[worker {index}] {line if line.endswith(chr(10)) else line + chr(10)}")
            out.flush()
    stream.close()


def _exit_code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal N: 128 + N, as a shell reports it


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + KILL_AFTER_S
    for p in alive:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch_local(
    suite_path: str | os.PathLike,
    *,
    workers: int,
    overrides: Sequence[str] = (),
    output: str | os.PathLike | None = None,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
    grace: float = DEFAULT_GRACE_S,
) -> int:
    """Run ``workers`` workers of a suite on localhost ports; return the first non-zero exit code, or 0.

    Each worker's output is printed with a ``[worker i]`` prefix. When one exits non-zero the others
    get ``grace`` seconds to fail on their own (they detect the lost peer) and are then terminated.
    ``timeout`` (seconds) bounds the whole run: past it every worker is stopped and 124 is returned.
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers: expected an integer >= 1, got {workers!r}")
    out = sys.stdout
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            out.write(f"[launch] {msg}\n")
            out.flush()

    addresses = [f"localhost:{p}" for p in free_ports(workers)]
    cmd = worker_command(suite_path, overrides=overrides, output=output, extra_args=extra_args)
    log(f"{workers} worker(s) at {', '.join(addresses)}: {' '.join(cmd[1:])}")
    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for i in range(workers):
            env = dict(os.environ, TF_CONFIG=tf_config(addresses, i), PYTHONUNBUFFERED="1")
            p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1)
            procs.append(p)
            t = threading.Thread(target=_pump, args=(i, p.stdout, lock, out), daemon=True)
            t.start()
            pumps.append(t)
        return _supervise(procs, pumps, log, timeout=timeout, grace=grace)
    except KeyboardInterrupt:
        log("interrupted: stopping all workers")
        _stop(procs)
        return 130
    finally:
        if any(p.poll() is None for p in procs):
            _stop(procs)
        for t in pumps:
            t.join(timeout=5)


def _supervise(procs: list[subprocess.Popen], pumps: list[threading.Thread], log, *, timeout: float | None,
               grace: float) -> int:
    """Wait for the workers: the first failure's exit code (the others stopped after ``grace``), or 0."""
    start = time.monotonic()
    first_fail: tuple[int, int] | None = None  # (worker, exit code)
    fail_deadline = None
    reported: set[int] = set()
    while len(reported) < len(procs):
        for i, p in enumerate(procs):
            rc = p.poll()
            if rc is None or i in reported:
                continue
            reported.add(i)
            if rc != 0:
                log(f"worker {i} exited with code {_exit_code(rc)}")
                if first_fail is None:
                    first_fail = (i, _exit_code(rc))
                    if len(reported) < len(procs):
                        log(f"giving the other workers up to {grace:g} s to stop")
                    fail_deadline = time.monotonic() + grace
        if len(reported) == len(procs):
            break
        now = time.monotonic()
        if fail_deadline is not None and now >= fail_deadline:
            left = [i for i, p in enumerate(procs) if p.poll() is None]
            log(f"terminating worker(s) {', '.join(map(str, left))} (still running {grace:g} s after "
                f"worker {first_fail[0]} failed)")
            _stop(procs)
            break
        if timeout is not None and now - start >= timeout:
            log(f"timeout: stopping all workers after {timeout:g} s")
            _stop(procs)
            for t in pumps:
                t.join(timeout=5)
            return 124
        time.sleep(0.1)
    return first_fail[1] if first_fail is not None else 0


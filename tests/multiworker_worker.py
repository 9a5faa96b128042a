"""A tiny multi-worker process for tests/test_multiworker.py (not the suite).

    python tests/multiworker_worker.py allreduce [--steps N] [--die WORKER --die-after K]
        get_strategy(multi_worker) from TF_CONFIG, worker_info, barrier, then N all-reduce steps;
        worker WORKER SIGKILLs itself after K steps. A lost peer: "error: ..." on stderr, exit 1.
    python tests/multiworker_worker.py plumbing [--fail WORKER --code C] [--sleep S] [--ignore-term]
        no TensorFlow: prints its TF_CONFIG task and exits 0 (worker WORKER exits C, the others
        sleep S seconds first, optionally ignoring SIGTERM as TF's multi-worker runtime does).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def plumbing(args: argparse.Namespace) -> int:
    cfg = json.loads(os.environ["TF_CONFIG"])
    index = cfg["task"]["index"]
    print(f"task {index} of {','.join(cfg['cluster']['worker'])}", flush=True)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, lambda *a: print("SIGTERM ignored", flush=True))
    if index == args.fail:
        print(f"failing with {args.code}", file=sys.stderr, flush=True)
        return args.code
    if args.sleep:
        time.sleep(args.sleep)
    print("done", flush=True)
    return 0


def allreduce(args: argparse.Namespace) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from advsal_bench.config import DistributeConfig
    from advsal_bench.distribute import barrier, get_strategy, peer_loss_guard, worker_info
    from advsal_bench.errors import WorkerLostError

    try:
        strategy = get_strategy(DistributeConfig(strategy="multi_worker", cluster_resolver="tf_config"))
        index, count, chief = worker_info(strategy)
        replicas = barrier(strategy)
        print(f"info index={index} count={count} chief={chief} replicas={replicas}", flush=True)

        @tf.function
        def step(x):
            per_replica = strategy.run(lambda v: v * 2.0, args=(x,))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        total = 0.0
        with peer_loss_guard(strategy):
            for i in range(args.steps):
                if index == args.die and i == args.die_after:
                    print(f"killing myself at {time.time():.3f}", flush=True)
                    os.kill(os.getpid(), signal.SIGKILL)
                total += float(step(tf.constant(float(i))))
                if i % 50 == 0:
                    print(f"step {i}", flush=True)
                time.sleep(args.pause)
        barrier(strategy)
    except WorkerLostError as exc:
        print(f"lost at {time.time():.3f}", flush=True)
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    expected = sum(2.0 * i * count for i in range(args.steps))
    print(f"done total={total} expected={expected}", flush=True)
    return 0 if total == expected else 3


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("allreduce", "plumbing"))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--pause", type=float, default=0.01)
    p.add_argument("--die", type=int, default=-1)
    p.add_argument("--die-after", type=int, default=50)
    p.add_argument("--fail", type=int, default=-1)
    p.add_argument("--code", type=int, default=3)
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--ignore-term", action="store_true")
    args = p.parse_args()
    return plumbing(args) if args.mode == "plumbing" else allreduce(args)


if __name__ == "__main__":
    sys.exit(main())

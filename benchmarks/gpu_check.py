"""Pair-search exactness and native-vs-cupy timings for benchmarks/gpu_check.sh.

Needs numpy and the package only (no TensorFlow).  Writes gpu_check.json to the folder given as the
first argument.  Every backend present is checked against the brute force; cupy, when present, is
also checked against native on the timed rows.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

import advsal_bench.pairsearch as ps
from advsal_bench.pairsearch.reference import best_pairs_reference

SIZES = (784, 12288, 150528)
BATCHES = (1, 64, 256)
KINDS = ("random", "model", "anti")


def rows(kind: str, b: int, n: int, seed: int = 0):
    """'model': heavy-tailed, partly correlated like CNN gradients; 'anti': nearly every point on the front."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        st, so = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    elif kind == "model":
        st = 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
        so = -0.5 * st + 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
    else:
        st = rng.normal(size=(b, n))
        so = st + 1e-6 * rng.normal(size=(b, n))
    return st.astype(np.float32), so.astype(np.float32), np.ones((b, n), bool)


def exactness(backends: list[str]) -> dict:
    """Random rows of every kind (ties, NaNs, sparse domains) against the brute force."""
    rng = np.random.default_rng(2024)
    out = {b: {"rows": 0, "mismatches": 0} for b in backends}
    for trial in range(60):
        n = int(rng.integers(2, 2500))
        st, so, dom = rows(KINDS[trial % 3], 4, n, seed=trial)
        if trial % 4 == 1:  # integer-valued: ties
            st, so = np.round(st * 3), np.round(so * 3)
        st[rng.random(st.shape) < 0.01] = np.nan
        dom &= rng.random(dom.shape) < rng.uniform(0.05, 1.0)
        increase = bool(trial % 2)
        want = best_pairs_reference(st, so, dom, increase=increase)
        for b in backends:
            got = ps.best_pairs(st, so, dom, increase=increase, backend=b)
            same = np.all([np.array_equal(g, w) for g, w in zip(got, want)], axis=0)
            out[b]["rows"] += st.shape[0]
            out[b]["mismatches"] += int(np.size(same) - np.count_nonzero(same))
    return out


def median_seconds(fn, min_total: float = 0.5, max_reps: int = 50) -> tuple[float, int]:
    fn()  # warm-up (compiles the kernels on the first cupy call)
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_total and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), len(times)


def timings(backends: list[str]) -> list[dict]:
    configs = [("native", 1), ("native", 0)] if "native" in backends else []
    configs += [("cupy", 0)] if "cupy" in backends else []
    out = []
    for n in SIZES:
        for batch in BATCHES:
            for kind in KINDS:
                st, so, dom = rows(kind, batch, n, seed=n + batch)
                results = {}
                for backend, threads in configs:
                    def call(backend=backend, threads=threads):
                        return ps.best_pairs(st, so, dom, backend=backend, threads=threads)

                    sec, reps = median_seconds(call)
                    label = backend if backend == "cupy" else f"native_threads_{threads or 'all'}"
                    results[label] = {"median_ms": 1e3 * sec, "reps": reps, "ms_per_row": 1e3 * sec / batch}
                    results[label]["pairs"] = call()
                row = {"n": n, "batch": batch, "kind": kind}
                pairs = [r.pop("pairs") for r in results.values()]
                row["backends_agree"] = all(all(np.array_equal(a, b) for a, b in zip(pairs[0], p)) for p in pairs)
                row.update(results)
                out.append(row)
                print(json.dumps(row), flush=True)
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/gpu_check")
    out_dir.mkdir(parents=True, exist_ok=True)
    status = ps.backend_status()
    backends = [b for b in ps.available_backends() if b != "reference"]
    report = {
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "backend_status": {k: {"available": v[0], "reason": v[1]} for k, v in status.items()},
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    if "cupy" in backends:
        import cupy as cp

        props = cp.cuda.runtime.getDeviceProperties(0)
        report["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        report["cupy"] = cp.__version__
    report["exactness_vs_reference"] = exactness(backends)
    print(json.dumps(report["exactness_vs_reference"]), flush=True)
    report["timings"] = timings(backends)
    path = out_dir / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    bad = sum(v["mismatches"] for v in report["exactness_vs_reference"].values())
    disagree = sum(not r["backends_agree"] for r in report["timings"])
    return 1 if bad or disagree or report["tensorflow_imported"] else 0


if __name__ == "__main__":
    sys.exit(main())

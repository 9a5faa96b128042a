"""Per-stage throughput (images/s) of the harness next to the minimal TF loop doing the same passes.

Run: ``pytest benchmarks --benchmark-only`` (add ``--benchmark-autosave`` / ``--benchmark-compare``).
Each harness case records ``images_per_second``; the matching ``minimal`` case is the least work any
implementation must do, so their ratio is the harness overhead.
"""
from __future__ import annotations

import pytest

from advsal_bench.bench import workloads

STAGES = ("fgsm", "ifgsm_linf", "ifgsm_l2", "saliency", "detector")
N = 512


@pytest.fixture(scope="module")
def works():
    return {(w.stage, w.batch): w for w in workloads(batches=(64, 256), n=N, stages=STAGES)}


@pytest.mark.parametrize("batch", [64, 256])
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("impl", ["harness", "minimal"])
def test_stage_throughput(benchmark, works, stage, batch, impl):
    w = works[(stage, batch)]
    fn = w.harness if impl == "harness" else w.minimal
    fn()  # trace outside the timed rounds
    benchmark.group = f"{stage}-b{batch}"
    benchmark.pedantic(fn, rounds=5, iterations=1)
    benchmark.extra_info["images_per_second"] = w.n / benchmark.stats.stats.median
    benchmark.extra_info["images"] = w.n


@pytest.mark.slow
def test_quick_suite_end_to_end(benchmark, tmp_path):
    """configs/quick.yaml end to end (minutes; behind the slow marker)."""
    from pathlib import Path

    from advsal_bench.config import load_config
    from advsal_bench.suite import run_suite

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "quick.yaml")
    results = benchmark.pedantic(lambda: run_suite(cfg, tmp_path / "quick", verbose=0), rounds=1, iterations=1)
    benchmark.extra_info["timings_seconds"] = results["timings_seconds"]

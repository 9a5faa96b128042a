"""advsal_bench.bench.measure: medians, the harness/minimal ratio and the JSMA share, on fake workloads
with known costs (the real stages are timed in benchmarks/, not here)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from advsal_bench.bench import Workload, measure


def test_ratio_is_harness_over_minimal_and_the_sides_take_turns() -> None:
    calls: list[str] = []

    def harness():
        calls.append("h")
        time.sleep(0.02)

    def minimal():
        calls.append("m")
        time.sleep(0.01)

    row = measure(Workload("fgsm", 8, 80, harness, minimal), repeats=3)
    # one warm-up each, then alternating: a slow spell hits both sides of the ratio
    assert calls == ["h", "m"] + ["h", "m"] * 3
    assert row["stage"] == "fgsm" and row["batch"] == 8
    assert 1.4 < row["ratio"] < 2.6
    assert 80 / 0.03 < row["images_per_second"] < 80 / 0.019


def test_jsma_row_reports_the_median_share_of_the_timed_runs() -> None:
    shares = iter([0.9, 0.10, 0.20, 0.30])  # the warm-up's 0.9 must not count

    def harness():
        s = next(shares)
        return SimpleNamespace(seconds_jacobian=1.0 - s, seconds_pairsearch=s, iterations=7)

    row = measure(Workload("jsma", 4, 4, harness, None), repeats=3)
    assert row["ratio"] is None
    assert row["pairsearch_share"] == pytest.approx(0.20)
    assert row["iterations"] == 7

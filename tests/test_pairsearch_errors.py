"""Error messages of the pair-search API."""
from __future__ import annotations

import numpy as np
import pytest

import advsal_bench.pairsearch as ps

F = np.float32


def test_unknown_backend_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"expected one of 'auto', 'reference', 'numpy', 'native', 'cupy', got 'fast'"):
        ps.best_pairs(np.zeros((1, 3), F), np.zeros((1, 3), F), np.ones((1, 3), bool), backend="fast")


def test_unknown_env_backend(monkeypatch) -> None:
    monkeypatch.setenv(ps.ENV_VAR, "gpu")
    with pytest.raises(ValueError, match=r"ADVSAL_PAIRSEARCH_BACKEND: expected one of .*got 'gpu'"):
        ps.resolve_backend()


def test_forced_missing_backend_raises(monkeypatch) -> None:
    monkeypatch.setattr(ps._native, "_ext", None)
    monkeypatch.setattr(ps._native, "IMPORT_ERROR", "simulated missing build")
    monkeypatch.setenv(ps.ENV_VAR, "native")
    with pytest.raises(RuntimeError, match=r"'native' \(requested by environment variable .*simulated missing build"):
        ps.resolve_backend()
    monkeypatch.delenv(ps.ENV_VAR)
    with pytest.raises(RuntimeError, match=r"'native' \(requested by backend\) is not available: simulated"):
        ps.best_pairs(np.zeros((1, 3), F), np.zeros((1, 3), F), np.ones((1, 3), bool), backend="native")


def test_missing_cupy_raises(monkeypatch) -> None:
    monkeypatch.setattr(ps, "_cupy_status", (False, "No module named 'cupy'"))
    with pytest.raises(RuntimeError, match=r"'cupy' .* not available: No module named 'cupy'"):
        ps.resolve_backend("cupy")


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"target_grad: expected a 2-D array \[B, n\], got shape \(3,\)"):
        ps.best_pairs(np.zeros(3, F), np.zeros(3, F), np.ones(3, bool))
    with pytest.raises(ValueError, match=r"other_grad: expected shape \(2, 5\) .*got \(2, 6\)"):
        ps.best_pairs(np.zeros((2, 5), F), np.zeros((2, 6), F), np.ones((2, 5), bool))
    with pytest.raises(ValueError, match=r"domain: expected shape \(2, 5\) .*got \(5,\)"):
        ps.best_pairs(np.zeros((2, 5), F), np.zeros((2, 5), F), np.ones(5, bool))


def test_dtype_error() -> None:
    with pytest.raises(TypeError, match=r"target_grad: expected a real numeric dtype, got complex128"):
        ps.best_pairs(np.zeros((1, 2), complex), np.zeros((1, 2), F), np.ones((1, 2), bool))


def test_native_thread_count_error() -> None:
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    with pytest.raises(ValueError, match=r"threads: expected >= 0 .*got -1"):
        ps.best_pairs(np.zeros((1, 2), F), np.zeros((1, 2), F), np.ones((1, 2), bool), backend="native", threads=-1)


def test_native_jsma_step_errors() -> None:
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    step = ps.native.jsma_step
    g, x, dom = np.zeros((2, 5), F), np.zeros((3, 5), F), np.ones((3, 5), bool)
    done, rows, steps = np.zeros(2, bool), np.array([0, 2]), np.zeros(3, np.int64)
    step(g, g, dom, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)  # valid: no error
    with pytest.raises(ValueError, match=r"x: expected a writable C-contiguous float32 array \[B, n\], got float64"):
        step(g, g, dom, done, x.astype(np.float64), rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    x.flags.writeable = False
    with pytest.raises(ValueError, match=r"x: expected a writable .*, read-only"):
        step(g, g, dom, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    x = np.zeros((3, 5), F)
    with pytest.raises(ValueError, match=r"domain: expected a writable C-contiguous bool array .*, strided"):
        step(g, g, np.ones((5, 3), bool).T, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"domain, x: expected shape \(3, 5\) both, got \(3, 4\) and \(3, 5\)"):
        step(g, g, np.ones((3, 4), bool), done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"done: expected a bool array of shape \(2,\), got bool with shape \(3,\)"):
        step(g, g, dom, np.zeros(3, bool), x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"rows: expected indices in \[0, 3\), got 3"):
        step(g, g, dom, done, x, np.array([0, 3]), steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"rows: expected strictly increasing indices, got 2 then 2"):
        step(g, g, dom, done, x, np.array([2, 2]), steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"other_grad: expected shape \(2, 5\), got \(2, 4\)"):
        step(g, np.zeros((2, 4), F), dom, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"steps: expected a writable int64 array of shape \(3,\), got int32 with"):
        step(g, g, dom, done, x, rows, steps.astype(np.int32), 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"steps: expected .* shape \(3,\), got int64 with shape \(2,\)"):
        step(g, g, dom, done, x, rows, steps[:2], 0, False, 1.0, 0.0, 1.0, True)
    with pytest.raises(ValueError, match=r"hints: expected shape \(3, 16\), got \(2, 16\)"):
        step(g, g, dom, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True, hints=ps.native.new_hints(2))
    with pytest.raises(ValueError, match=r"hints: expected a writable C-contiguous int32 array \[B, n\], got int64"):
        step(g, g, dom, done, x, rows, steps, 0, False, 1.0, 0.0, 1.0, True, hints=np.zeros((3, 16), np.int64))

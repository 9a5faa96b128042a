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


def test_native_extension_checks_its_inputs() -> None:
    """The extension's own checks, for callers that bypass best_pairs' validation."""
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    ext = ps._native._ext
    g, dom = np.zeros((2, 5), F), np.ones((2, 5), np.uint8)
    ext.best_pairs(g, g, dom, True, 1)  # valid: no error
    with pytest.raises(ValueError, match=r"target_grad: expected a 2-D array \[B, n\], got shape \(5,\)"):
        ext.best_pairs(g[0], g[0], dom[0], True, 1)
    with pytest.raises(ValueError, match=r"other_grad: expected shape \(2, 5\), got \(2, 4\)"):
        ext.best_pairs(g, np.zeros((2, 4), F), dom, True, 1)
    with pytest.raises(ValueError, match=r"domain: expected shape \(2, 5\), got \(1, 5\)"):
        ext.best_pairs(g, g, dom[:1], True, 1)
    with pytest.raises(ValueError, match=r"threads: expected >= 0 \(0 = OpenMP default\), got -2"):
        ext.best_pairs(g, g, dom, True, -2)

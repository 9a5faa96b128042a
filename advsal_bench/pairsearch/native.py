"""Thin wrapper around the optional pybind11 extension advsal_bench._jsma_native."""
from __future__ import annotations

import numpy as np

try:
    from .. import _jsma_native as _ext

    IMPORT_ERROR: str | None = None
except ImportError as exc:  # build failed or never ran: the reason is reported by the dispatcher
    _ext = None
    IMPORT_ERROR = (
        f"{exc} (build it with `python setup.py build_ext --inplace` or reinstall with a C++17 compiler and pybind11)"
    )


def available() -> bool:
    return _ext is not None


def best_pairs_native(
    target_grad: np.ndarray, other_grad: np.ndarray, domain: np.ndarray, *, increase: bool = True, threads: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows split over ``threads`` OpenMP threads (0: the OpenMP default)."""
    if _ext is None:
        raise RuntimeError(f"pair-search backend 'native' is not available: {IMPORT_ERROR}")
    st = np.ascontiguousarray(target_grad, dtype=np.float32)
    so = np.ascontiguousarray(other_grad, dtype=np.float32)
    dom = np.ascontiguousarray(domain)
    # bool -> uint8 as a view: no copy of the mask.
    dom = dom.view(np.uint8) if dom.dtype == np.bool_ else (dom != 0).view(np.uint8)
    return _ext.best_pairs(st, so, dom, bool(increase), int(threads))

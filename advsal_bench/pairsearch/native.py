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


def best_pairs_native(target_grad, other_grad, domain, *, increase: bool = True, threads: int = 0):
    """OpenMP over the batch; threads=0 uses the OpenMP default, serial below 2**22 features in the batch."""
    if _ext is None:
        raise RuntimeError(f"pair-search backend 'native' is not available: {IMPORT_ERROR}")
    st = np.ascontiguousarray(target_grad, dtype=np.float32)
    so = np.ascontiguousarray(other_grad, dtype=np.float32)
    dom = np.ascontiguousarray(domain)
    # bool -> uint8 as a view: no copy of the mask.
    dom = dom.view(np.uint8) if dom.dtype == np.bool_ else (dom != 0).view(np.uint8)
    return _ext.best_pairs(st, so, dom, bool(increase), int(threads))


def jsma_step(target_grad, other_grad, domain, done, x, rows, delta, lo, hi, increase, threads: int = 0):
    """JSMA's host step in place (see ``_step_numpy`` in attacks/jsma.py for the same in NumPy):
    for the active images ``rows`` (gradient row k is image rows[k]) not ``done``, the best pair
    over the image's domain moves both features of ``x`` by ``delta`` (clipped to [lo, hi]) and
    leaves the domain.  Returns (images that took a step, bool [K] which)."""
    if _ext is None:
        raise RuntimeError(f"pair-search backend 'native' is not available: {IMPORT_ERROR}")
    return _ext.jsma_step(target_grad, other_grad, domain, done, x, rows, float(delta), lo, hi, increase, threads)

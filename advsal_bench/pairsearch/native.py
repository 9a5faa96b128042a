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


def _require():
    """The extension module, or the reason it is missing."""
    if _ext is None:
        raise RuntimeError(f"pair-search backend 'native' is not available: {IMPORT_ERROR}")
    return _ext


def best_pairs_native(target_grad, other_grad, domain, *, increase: bool = True, threads: int = 0):
    """OpenMP over the batch; threads=0 uses the OpenMP default, serial below 2**22 features in the batch."""
    ext = _require()
    st = np.ascontiguousarray(target_grad, dtype=np.float32)
    so = np.ascontiguousarray(other_grad, dtype=np.float32)
    dom = np.ascontiguousarray(domain)
    # bool -> uint8 as a view: no copy of the mask.
    dom = dom.view(np.uint8) if dom.dtype == np.bool_ else (dom != 0).view(np.uint8)
    return ext.best_pairs(st, so, dom, bool(increase), int(threads))


def new_hints(batch: int) -> np.ndarray:
    """Empty per-image hints for ``jsma_step``: one array per attack, carried across its steps."""
    return np.full((batch, _require().hint_width), -1, dtype=np.int32)


def jsma_step(
    target_grad, other_grad, domain, done, x, rows, steps, it, last, delta, lo, hi, increase, threads: int = 0, hints=None
):
    """Iteration ``it`` of JSMA's host work in place (``_step_numpy`` in attacks/jsma.py is the
    same in NumPy): for the active images ``rows`` (gradient row k is image rows[k]) not ``done``,
    the best pair over the image's domain moves both features of ``x`` by ``delta`` (clipped to
    [lo, hi]) and leaves the domain.  ``steps[rows]`` becomes each image's step count.  Returns
    the rows still active: those that took a step, none after the ``last`` iteration.

    ``hints`` (from ``new_hints(B)``, updated in place) carries each image's corner filter from
    one step to the next, so rows skip the sample that finds it; the pairs are the same
    with or without it."""
    return _require().jsma_step(
        target_grad, other_grad, domain, done, x, rows, steps, it, last, float(delta), lo, hi, increase, threads, hints
    )

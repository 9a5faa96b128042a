"""CuPy backend: kernels in jsma_pairs.cu, logic shared with the C++ extension.

Inputs may be numpy or cupy arrays or TF tensors; TF GPU tensors are taken
through DLPack without a host copy.
"""
from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

_DIR = Path(__file__).resolve().parent
_SEARCH_THREADS = 256  # = ADVSAL_SEARCH_THREADS in jsma_pairs.cu


def probe() -> tuple[bool, str]:
    """(usable, reason if not): CuPy imports and sees a GPU."""
    try:
        import cupy as cp
    except Exception as exc:  # noqa: BLE001 - ImportError or a broken CUDA install
        return False, f"CuPy not importable ({type(exc).__name__}: {exc})"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - no driver
        return False, f"no CUDA device visible ({type(exc).__name__}: {exc})"
    if count < 1:
        return False, "no CUDA device visible"
    return True, ""


@lru_cache(maxsize=None)
def _module():
    import cupy as cp

    header = _DIR / "jsma_pairs_core.h"
    if not header.is_file():
        raise RuntimeError(f"expected the shared header at {header}, got nothing (package data missing?)")
    return cp.RawModule(code=(_DIR / "jsma_pairs.cu").read_text(), options=("-I" + str(_DIR), "--std=c++14"))


def _as_cupy(x: Any):
    import cupy as cp

    if isinstance(x, cp.ndarray):
        return x
    if type(x).__module__.startswith("tensorflow") or "EagerTensor" in type(x).__name__:
        # TensorFlow is already loaded when a tensor comes in: take it from
        # sys.modules rather than import it (this package never needs TF).
        tf = sys.modules["tensorflow"]
        if "GPU" in getattr(x, "device", ""):
            return cp.from_dlpack(tf.experimental.dlpack.to_dlpack(x))  # zero-copy on the device
        return cp.asarray(x.numpy())
    if hasattr(x, "__dlpack__") and not isinstance(x, np.ndarray):
        return cp.from_dlpack(x)
    return cp.asarray(np.asarray(x))


def best_pairs_cupy(target_grad: Any, other_grad: Any, domain: Any, *, increase: bool = True):
    """Batched search on the GPU; returns numpy (p int64[B], q int64[B], score float64[B])."""
    import cupy as cp

    st = cp.ascontiguousarray(_as_cupy(target_grad), dtype=cp.float32)
    so = cp.ascontiguousarray(_as_cupy(other_grad), dtype=cp.float32)
    dom = _as_cupy(domain)
    dom = cp.ascontiguousarray(dom if dom.dtype == cp.uint8 else (dom != 0).astype(cp.uint8))
    batch, n = st.shape
    if batch == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    mod = _module()
    u = cp.empty_like(st)
    v = cp.empty_like(st)
    total = batch * n
    threads = 256
    blocks = max(1, min(65535, (total + threads - 1) // threads))
    mod.get_function("advsal_prepare")(
        (blocks,), (threads,), (st, so, dom, cp.int64(total), cp.int32(1 if increase else 0), u, v)
    )
    # Two stable sorts: by v desc, then by u desc -> (u desc, v desc, index asc).
    # "+ 0" turns -0 into +0: radix sorts order the two zeros apart.
    o1 = cp.argsort(-v + 0.0, axis=1)
    o2 = cp.argsort(-cp.take_along_axis(u, o1, axis=1) + 0.0, axis=1)
    order = cp.ascontiguousarray(cp.take_along_axis(o1, o2, axis=1).astype(cp.int64))
    su = cp.ascontiguousarray(cp.take_along_axis(u, order, axis=1))
    sv = cp.ascontiguousarray(cp.take_along_axis(v, order, axis=1))
    seq0, seq1 = cp.empty((batch, n), cp.int64), cp.empty((batch, n), cp.int64)
    d0, d1, dl = cp.empty((batch, n), cp.float64), cp.empty((batch, n), cp.float64), cp.empty((batch, n), cp.float64)
    cu, cv = cp.empty((batch, n), cp.float32), cp.empty((batch, n), cp.float32)
    ci = cp.empty((batch, n), cp.int64)
    count = cp.empty(batch, cp.int64)
    mod.get_function("advsal_sweep_merge")(
        ((batch + 63) // 64,),
        (64,),
        (su, sv, order, cp.int64(batch), cp.int64(n), seq0, d0, seq1, d1, dl, cu, cv, ci, count),
    )
    p = cp.empty(batch, cp.int64)
    q = cp.empty(batch, cp.int64)
    s = cp.empty(batch, cp.float64)
    mod.get_function("advsal_search")(
        (batch,), (_SEARCH_THREADS,), (dl, cu, cv, ci, count, cp.int64(n), p, q, s)
    )
    return cp.asnumpy(p), cp.asnumpy(q), cp.asnumpy(s)

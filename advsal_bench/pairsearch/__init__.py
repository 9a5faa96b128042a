"""Exact JSMA pair search with interchangeable backends.

``best_pairs`` finds, per row, the pair (p, q), p != q, in the search domain
maximizing ``alpha * |beta|`` (alpha = s_t[p] + s_t[q], beta = s_o[p] + s_o[q])
subject to alpha > 0, beta < 0 (``increase=True``) or alpha < 0, beta > 0.

Backends: ``reference`` (brute force), ``numpy`` (vectorized Pareto layers),
``native`` (pybind11 C++/OpenMP) and ``cupy`` (CUDA): one algorithm, see
jsma_pairs_core.h.  ``auto`` picks cupy when a GPU is visible, else native,
else numpy.  ``ADVSAL_PAIRSEARCH_BACKEND`` forces a
backend wherever ``auto`` is asked for.
"""
from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from . import native as _native
from .layers import best_pairs_layers
from .reference import best_pairs_reference

__all__ = ["best_pairs", "available_backends", "resolve_backend", "backend_status", "BACKENDS", "ENV_VAR"]

BACKENDS = ("reference", "numpy", "native", "cupy")
ENV_VAR = "ADVSAL_PAIRSEARCH_BACKEND"

_warned_fallback = False
_cupy_status: tuple[bool, str] | None = None


def _cupy_available() -> tuple[bool, str]:
    global _cupy_status
    if _cupy_status is None:
        try:
            from . import cuda

            _cupy_status = cuda.probe()
        except Exception as exc:  # noqa: BLE001 - any import/driver failure means "absent"
            _cupy_status = (False, f"{type(exc).__name__}: {exc}")
    return _cupy_status


def backend_status() -> dict[str, tuple[bool, str]]:
    """{backend: (available, reason-if-not)}."""
    return {
        "reference": (True, ""),
        "numpy": (True, ""),
        "native": (_native.available(), _native.IMPORT_ERROR or ""),
        "cupy": _cupy_available(),
    }


def available_backends() -> list[str]:
    """Backends usable in this process, in the order of BACKENDS."""
    status = backend_status()
    return [name for name in BACKENDS if status[name][0]]


def _check_name(name: str, source: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in BACKENDS + ("auto",):
        valid = ", ".join(repr(b) for b in ("auto",) + BACKENDS)
        raise ValueError(f"{source}: expected one of {valid}, got {name!r}")
    return name.strip().lower()


def resolve_backend(name: str = "auto") -> str:
    """The backend a call with ``backend=name`` uses (env var applied to 'auto')."""
    global _warned_fallback
    name = _check_name(name, "backend")
    source = "backend"
    if name == "auto" and os.environ.get(ENV_VAR, "").strip():
        name = _check_name(os.environ[ENV_VAR], f"environment variable {ENV_VAR}")
        source = f"environment variable {ENV_VAR}"
    if name != "auto":
        ok, reason = backend_status()[name]
        if not ok:
            raise RuntimeError(f"pair-search backend {name!r} (requested by {source}) is not available: {reason}")
        return name
    if _cupy_available()[0]:
        return "cupy"
    if _native.available():
        return "native"
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"advsal_bench: native pair search unavailable ({_native.IMPORT_ERROR}); using the slower NumPy backend",
            RuntimeWarning,
            stacklevel=3,
        )
    return "numpy"


def _shape(x: Any) -> tuple[int, ...]:
    sh = getattr(x, "shape", None)
    if sh is None:
        return np.shape(x)
    return sh if type(sh) is tuple else tuple(int(d) for d in sh)  # NumPy's is a tuple; TF's a TensorShape


def _validate(target_grad: Any, other_grad: Any, domain: Any) -> None:
    st = _shape(target_grad)
    if len(st) != 2:
        raise ValueError(f"target_grad: expected a 2-D array [B, n], got shape {st}")
    for label, arr in (("other_grad", other_grad), ("domain", domain)):
        sh = _shape(arr)
        if sh != st:
            raise ValueError(f"{label}: expected shape {st} (same as target_grad), got {sh}")
    for label, arr in (("target_grad", target_grad), ("other_grad", other_grad)):
        dt = _dtype(arr)
        if dt.kind not in "fiub":
            raise TypeError(f"{label}: expected a real numeric dtype, got {dt.name}")


def _dtype(x: Any) -> np.dtype:
    # NumPy/CuPy arrays hold a np.dtype; TF tensors a tf.DType.  Not via
    # dtype.name, which NumPy builds in Python on every call.
    dt = getattr(x, "dtype", None)
    if dt is None:
        return np.asarray(x).dtype
    if isinstance(dt, np.dtype):
        return dt
    return np.dtype(getattr(dt, "as_numpy_dtype", None) or getattr(dt, "name", str(dt)))


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "get") and type(x).__module__.startswith("cupy"):
        return x.get()
    if hasattr(x, "numpy") and callable(x.numpy):  # TF eager tensors
        return x.numpy()
    return np.asarray(x)


def best_pairs(
    target_grad: Any,
    other_grad: Any,
    domain: Any,
    *,
    increase: bool = True,
    backend: str = "auto",
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best admissible pair per row.

    Args:
        target_grad, other_grad: [B, n] gradients of the target logit and of the
            sum of the other logits (numpy, cupy or TF tensors; cast to float32).
        domain: [B, n] bool/uint8, features that may be picked.  Features with
            non-finite gradients are excluded.
        increase: True for alpha > 0, beta < 0; False flips both signs.
        backend: 'auto' or one of BACKENDS.
        threads: OpenMP threads over the rows for 'native' (0: the OpenMP default).  One
            by default: a row costs micro- to milliseconds, so a team only pays on large
            batches of long rows, and inside an attack it competes with TensorFlow's threads.

    Returns:
        (p int64[B], q int64[B], score float64[B]) with p < q, score =
        |alpha| * |beta| (alpha * |beta| in increase mode), computed in float64
        from the float32 gradients identically in every backend; p = q = -1,
        score = 0 where no admissible pair exists.
    """
    name = resolve_backend(backend)
    _validate(target_grad, other_grad, domain)
    if name == "cupy":
        from . import cuda

        return cuda.best_pairs_cupy(target_grad, other_grad, domain, increase=increase)
    st, so, dom = _to_numpy(target_grad), _to_numpy(other_grad), _to_numpy(domain)
    if name == "native":
        return _native.best_pairs_native(st, so, dom, increase=increase, threads=threads)
    if name == "numpy":
        return best_pairs_layers(st, so, dom, increase=increase)
    return best_pairs_reference(st, so, dom, increase=increase)

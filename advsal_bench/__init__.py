"""advsal_bench: detecting adversarial examples with saliency maps, as a benchmark harness.

Public API (lazy, so ``import advsal_bench`` stays cheap):
    load_config, run_suite, best_pairs, available_backends
"""
from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# TensorFlow's C++ chatter (CPU feature notes, tf.data graph-version notices logged as errors)
# would bury our one-line messages; Python exceptions still carry every real failure.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    import tensorflow as _tf  # noqa: F401
except ImportError as _exc:  # pragma: no cover - exercised only without TF
    raise ImportError(
        "advsal_bench needs TensorFlow 2 with Keras 3: install it with "
        "`pip install 'advsal_bench[cpu]'` (CPU) or `pip install 'advsal_bench[gpu]'` (CUDA GPUs)"
    ) from _exc

__all__ = ["load_config", "run_suite", "best_pairs", "available_backends", "__version__"]


def __getattr__(name: str):
    if name == "load_config":
        from .config import load_config

        return load_config
    if name == "run_suite":
        from .suite import run_suite

        return run_suite
    if name in ("best_pairs", "available_backends"):
        from . import pairsearch

        return getattr(pairsearch, name)
    raise AttributeError(f"module 'advsal_bench' has no attribute {name!r}")

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

# TF's C++ startup notices that bypass TF_CPP_MIN_LOG_LEVEL (TF 2.21 logs them through absl before
# absl::InitializeLog, straight to fd 2): "oneDNN custom operations are on" on CPUs where oneDNN is
# on by default (AVX-512 machines), each after absl's preamble line.
_TF_IMPORT_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"] oneDNN custom operations are on.",
)


def _import_tensorflow():
    """Import TF with its startup notices dropped unless TF_CPP_MIN_LOG_LEVEL asks for INFO logs.

    Only the lines above are dropped; anything else TF writes while importing is passed through
    as it comes (a pipe and a thread, so a crash mid-import still shows what was printed).
    """
    if _os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        import tensorflow
        return tensorflow
    import sys
    import threading

    try:
        sys.stderr.flush()
        saved = _os.dup(2)
        read_end, write_end = _os.pipe()
    except OSError:  # no usable fd 2 (embedded interpreters): import as is
        import tensorflow
        return tensorflow

    def pump() -> None:
        with _os.fdopen(read_end, "rb") as src:
            for line in src:
                if not any(n in line for n in _TF_IMPORT_NOTICES):
                    _os.write(saved, line)

    thread = threading.Thread(target=pump, name="advsal-tf-import-stderr", daemon=True)
    thread.start()
    _os.dup2(write_end, 2)
    _os.close(write_end)
    try:
        import tensorflow
    finally:
        try:
            sys.stderr.flush()
        finally:
            _os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
            thread.join(timeout=10)
            _os.close(saved)
    return tensorflow


try:
    _import_tensorflow()
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

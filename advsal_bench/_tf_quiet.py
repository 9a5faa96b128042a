"""The CLI's TensorFlow import: TF's C++ start-up notices dropped, so errors stay one line.

Only the command line calls this; ``import advsal_bench`` changes no environment variable and no
file descriptor. TF 2.21 logs two notices through absl before ``absl::InitializeLog``, straight to
fd 2 and whatever ``TF_CPP_MIN_LOG_LEVEL`` says ("oneDNN custom operations are on" on AVX-512 CPUs,
after absl's preamble line); they would turn the CLI's one-line errors into five lines.
"""
from __future__ import annotations

import os
import sys
import threading
from types import ModuleType

_TF_IMPORT_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"] oneDNN custom operations are on.",
)

INSTALL_HINT = ("advsal_bench needs TensorFlow 2 with Keras 3: install it with "
                "`pip install 'advsal_bench[cpu]'` (CPU) or `pip install 'advsal_bench[gpu]'` (CUDA GPUs)")


def import_tensorflow() -> ModuleType:
    """Import TF with its start-up notices dropped unless TF_CPP_MIN_LOG_LEVEL asks for INFO logs.

    Only the lines above are dropped; anything else TF writes while importing passes through as it
    comes (a pipe and a thread, so a crash mid-import still shows what was printed).
    """
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0"):
        import tensorflow
        return tensorflow
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no usable fd 2 (embedded interpreters): import as is
        import tensorflow
        return tensorflow

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not any(n in line for n in _TF_IMPORT_NOTICES):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="advsal-tf-import-stderr", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
            thread.join(timeout=10)
            os.close(saved)
    return tensorflow

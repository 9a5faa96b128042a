"""The CLI's TensorFlow import and Keras fits: TF's known C++ notices dropped, so errors stay one line.

Only the command line turns this on; ``import advsal_bench`` changes no environment variable and
no file descriptor, and library users see TF's logs as TF writes them. TF 2.21 logs through absl
straight to fd 2, whatever ``TF_CPP_MIN_LOG_LEVEL`` says for some lines:

- at import, absl's preamble and "oneDNN custom operations are on" (AVX-512 CPUs); they would turn
  the CLI's one-line errors into five lines;
- in every Keras ``fit`` on arrays once op determinism is on (as every run turns it on), an
  ERROR-level "NodeDef mentions attribute use_unbounded_threadpool" line: tf.data's determinism
  rewrite turns Keras' parallel map into a sequential one and keeps an attribute the sequential op
  lacks. TF ignores the attribute, so the line reports nothing a user can act on.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import ContextManager

_TF_IMPORT_NOTICES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"] oneDNN custom operations are on.",
)
_FIT_NOTICES = (b"NodeDef mentions attribute use_unbounded_threadpool which is not in the op definition",)

INSTALL_HINT = ("advsal_bench needs TensorFlow 2 with Keras 3: install it with "
                "`pip install 'advsal_bench[cpu]'` (CPU) or `pip install 'advsal_bench[gpu]'` (CUDA GPUs)")

_cli_quiet = False  # set by import_tensorflow(), which only the CLI calls


def _info_logs_asked_for() -> bool:
    return os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip() in ("", "0")


@contextlib.contextmanager
def _lines_dropped(notices: tuple[bytes, ...]) -> Iterator[None]:
    """fd 2 through a pipe while the block runs; lines holding one of ``notices`` are dropped.

    Everything else passes through as it comes (a thread pumps the pipe line by line), so what is
    printed before a crash in the block still shows.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no usable fd 2 (embedded interpreters): run the block as is
        yield
        return

    def pump() -> None:
        with os.fdopen(read_end, "rb") as src:
            for line in src:
                if not any(n in line for n in notices):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="advsal-tf-stderr", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)  # closes the pipe's last write end: the pump sees EOF
            thread.join(timeout=10)
            os.close(saved)


def import_tensorflow() -> ModuleType:
    """Import TF with its start-up notices dropped unless TF_CPP_MIN_LOG_LEVEL asks for INFO logs.

    Also turns on :func:`fit_notices_dropped` for this process (the CLI's).
    """
    global _cli_quiet
    if _info_logs_asked_for():
        import tensorflow
        return tensorflow
    _cli_quiet = True
    with _lines_dropped(_TF_IMPORT_NOTICES) if "tensorflow" not in sys.modules else contextlib.nullcontext():
        import tensorflow
    return tensorflow


def fit_notices_dropped() -> ContextManager[None]:
    """Around a Keras ``fit``: the CLI drops TF's determinism-rewrite notice; elsewhere a no-op."""
    if not _cli_quiet or _info_logs_asked_for():
        return contextlib.nullcontext()
    return _lines_dropped(_FIT_NOTICES)

"""Exceptions that the CLI turns into a one-line message and exit code 2."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input (config, data file, saved model): exit code 2, nothing written."""


class ConfigError(InputError):
    """A suite YAML or --set override that does not validate."""


class DataError(InputError):
    """A dataset file or folder that is missing, unreadable, or malformed."""


class NumericalError(RuntimeError):
    """NaN/Inf found in gradients, saliency or model outputs (names the stage and batch)."""


class WorkerLostError(RuntimeError):
    """A multi-worker run lost a peer (killed, crashed, unreachable or never started).

    The message names the worker: ``worker 1 (localhost:12345) lost: stopped sending heartbeats``.
    Every worker of the run must be restarted together; stored shards let the restart resume.
    """

    def __init__(self, message: str, *, task: int | None = None, address: str | None = None) -> None:
        super().__init__(message)
        self.task = task
        self.address = address

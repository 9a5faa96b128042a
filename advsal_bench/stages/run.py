"""A run of a suite: where it computes (strategy, workers), where it stores, what it prints.

Every stage function takes the :class:`Run` first. It gives them the compiled-function cache that
lives with the run (one trace per attack and model), the coordinator in front of the stage store,
seeds, progress bars, and the one console line each stage prints when it ends.
"""
from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..config import SuiteConfig, config_to_yaml
from ..coordinator import Coordinator
from ..distribute import Runner, barrier, get_strategy, local_strategy, worker_info
from ..errors import InputError, NumericalError
from ..store import Keyed, Stage, StageStore, Status, write_text
from ..training import TrainSetup, check_batch_sizes, resolve_loop

Log = Callable[[str], None]


@dataclass
class StageRecord:
    status: Status
    seconds: float
    chunks_reused: int = 0
    chunks: int = 0

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, "seconds": round(self.seconds, 3)}
        if self.status is Status.RESUMED:
            out.update(chunks_reused=self.chunks_reused, chunks=self.chunks)
        return out


def seed_for(seed: int, *parts: object) -> int:
    """A per-stage seed that depends only on the suite seed and the stage's name."""
    return (seed * 1_000_003 + zlib.crc32("/".join(map(str, parts)).encode())) % (2**31 - 1)


def check_finite(array: np.ndarray, stage: str, batch_size: int) -> None:
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise NumericalError(
            f"{stage}: NaN/Inf in {int(bad.sum())} of {len(array)} outputs (first in batch {first // batch_size}, image {first})"
        )


class Progress:
    """A Keras progress bar over images (or nothing when verbose=0)."""

    def __init__(self, total: int, verbose: int, label: str, log: Log) -> None:
        self.bar = None
        if verbose and total:
            log(label)
            self.bar = keras.utils.Progbar(total, verbose=1, unit_name="image")
        self.done = 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(self.done)


class Run:
    """One suite's run: strategy and workers, the store behind its coordinator, the console."""

    def __init__(self, cfg: SuiteConfig, output_dir: str | Path, *, verbose: int = 1, log: Log | None = None,
                 fresh: bool = False) -> None:
        self.cfg, self.out, self.verbose, self.fresh = cfg, Path(output_dir), verbose, fresh
        self.log: Log = log or (lambda msg: None)
        self.t_start = time.perf_counter()
        self.cluster = get_strategy(cfg.distribute)
        # Each worker computes on its own devices (``strategy``): its share of each chunked stage, and
        # on worker 0 the whole-stage work. Training f and D spans all workers (``training.strategy``).
        self.strategy = local_strategy(self.cluster)
        self.index, self.workers, self.chief = worker_info(self.cluster)
        multi = self.workers > 1
        self.training = TrainSetup(self.cluster if multi else self.strategy,
                                   resolve_loop(cfg.distribute.train_loop, self.workers), collective=multi)
        check_batch_sizes({"classifier.batch_size": cfg.classifier.batch_size,
                           **{f"detectors.{n}.batch_size": d.batch_size for n, d in cfg.detectors.items()
                              if hasattr(d, "batch_size")}}, self.training)
        keras.utils.set_random_seed(cfg.seed)
        tf.config.experimental.enable_op_determinism()
        self.runner = Runner(self.strategy)
        self.coord: Coordinator | None = None
        self.records: dict[str, StageRecord] = {}
        self.timings: dict[str, float] = {}
        self._memo: dict[Any, Any] = {}

    def open_output(self) -> None:
        """Create the output folder and the store (after the data has loaded, so bad data writes nothing)."""
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            if self.chief:
                (self.out / "results.json").unlink(missing_ok=True)
        except OSError as exc:
            raise InputError(f"{self.out}: cannot write to the output directory ({exc.strerror or exc})") from None
        if self.chief:
            write_text(self.out / "config.yaml", config_to_yaml(self.cfg))
        store = StageStore(self.out / "store", reuse=not self.fresh, log=self.log)
        sync = (lambda: barrier(self.cluster)) if self.workers > 1 else None
        self.coord = Coordinator(store, index=self.index, count=self.workers, barrier=sync,
                                 chunk_log=self.log if self.verbose >= 2 else None)

    # ---- stages ---------------------------------------------------------------------------------------

    def stage(self, label: str, kind: str, inputs: Sequence[Keyed], config: Any = None) -> Stage:
        assert self.coord is not None, "open_output() first"
        return self.coord.store.stage(label, kind, inputs, config)

    def record(self, stage: Stage, status: Status, seconds: float, *, chunks_reused: int = 0, chunks: int = 0) -> None:
        """Note how a stage ended and print its one line."""
        self.records[stage.label] = StageRecord(status, seconds, chunks_reused, chunks)
        detail = f", {chunks_reused} of {chunks} chunks reused" if status is Status.RESUMED else ""
        self.log(f"{stage.label}: {status.value}{detail} ({seconds:.1f} s)")

    def memo(self, key: Any, build: Callable[[], Any]) -> Any:
        """Something built once per run (a compiled crafter, a saliency function) and reused."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def seed_for(self, *parts: object) -> int:
        return seed_for(self.cfg.seed, *parts)

    def progress(self, total: int, label: str, *, show: bool = True) -> Progress:
        return Progress(total, self.verbose if show else 0, label, self.log)

    def predict(self, fn: Callable, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Logits (or scores) of ``fn`` on ``x``, traced once per function for the run."""
        out = self.runner.run(fn, [x], batch_size=batch_size)
        return out[0] if out else np.zeros((0,), np.float32)

    def status_counts(self) -> dict[str, int]:
        return {s.value: sum(r.status is s for r in self.records.values()) for s in Status}

    def sync(self) -> None:
        if self.coord is not None:
            self.coord.sync()

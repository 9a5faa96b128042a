"""Who computes what, around one process's stage store: the multi-worker protocol in one place.

Every worker runs the same sequence of stages; each stage kind has its rule:

- **arrays** (evaluations, adaptive attacks): worker 0 computes and stores, the others load it;
- **chunked** (adversarial sets, saliency maps): worker k computes the chunks i with
  i % workers == k, then everyone reads all chunks;
- **objects** (f, each detector): with ``collective`` every worker takes part in the training
  (it spans all workers), worker 0 stores the result and everyone continues with the stored copy;
  otherwise worker 0 builds alone and the others load it.

``barrier`` (an all-reduce across workers) keeps anyone from reading what is not yet written; on
one machine it is a no-op and this is a plain cache in front of the store.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from .store import Stage, StageStore, Status

Arrays = dict[str, np.ndarray]


class Coordinator:
    def __init__(self, store: StageStore, *, index: int = 0, count: int = 1,
                 barrier: Callable[[], None] | None = None, chunk_log: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.index, self.count = index, count
        self.writer = index == 0
        self.sync = barrier or (lambda: None)
        self.chunk_log = chunk_log or (lambda msg: None)

    def arrays(self, stage: Stage, compute: Callable[[], tuple[Arrays, dict[str, Any]]]
               ) -> tuple[Arrays, dict[str, Any], Status]:
        """A stage whose output is a few arrays plus JSON-able values."""
        self.sync()
        meta = self.store.load_meta(stage)
        if meta is not None:
            try:
                return self.store.stored_arrays(stage, meta), meta["values"], Status.REUSED
            except (OSError, ValueError) as exc:
                self.store.log(f"store: {stage.label}: cannot read stored arrays ({exc}); recomputing")
        if not self.writer:
            self.sync()  # worker 0 computes and stores it meanwhile
            meta = self.store.written_meta(stage)
            return self.store.stored_arrays(stage, meta), meta["values"], Status.COMPUTED
        self.store.begin(stage)
        arrays, values = compute()
        self.store.save_arrays(stage, arrays, values)
        self.sync()
        return arrays, values, Status.COMPUTED

    def chunked(self, stage: Stage, n: int, chunk_size: int,
                compute_chunk: Callable[[int, int], tuple[Arrays, dict[str, Any]]]
                ) -> tuple[Arrays, list[dict[str, Any]], Status, int]:
        """A stage over ``n`` items in chunks of ``chunk_size``; a killed run resumes at the missing chunks.

        Returns the arrays, each chunk's values, the status and how many chunks were found stored.
        """
        self.sync()
        names = self.store.chunk_names(n, chunk_size)
        meta = self.store.load_meta(stage)
        if meta is not None:
            try:
                arrays, _ = self.store.read_chunks(stage, names)
                return arrays, meta["values"]["chunks"], Status.REUSED, len(names)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                self.store.log(f"store: {stage.label}: cannot read stored chunks ({exc}); recomputing")
        if self.writer:
            self.store.begin(stage, keep_chunks=True)
        self.sync()
        reused = 0
        for i, name in enumerate(names):
            if i % self.count != self.index:
                continue
            if self.store.chunk_stored(stage, name):
                reused += 1
                continue
            arrays, values = compute_chunk(i * chunk_size, min(n, (i + 1) * chunk_size))
            self.store.save_chunk(stage, name, arrays, values)
            self.chunk_log(f"store: {stage.label}: chunk {i + 1}/{len(names)} stored")
        self.sync()
        arrays, values = self.store.read_chunks(stage, names)
        if self.writer:
            self.store.complete(stage, names, {"chunks": values})
        self.sync()
        return arrays, values, Status.RESUMED if reused else Status.COMPUTED, reused

    def obj(self, stage: Stage, build: Callable[[], Any], save: Callable[[Any, Path], list[str]],
            load: Callable[[Path], Any], *, collective: bool = False) -> tuple[Any, Status]:
        """A stage whose output is one object (a model, a fitted detector) kept in the stage folder.

        ``save(obj, dir)`` writes it and returns the file names; ``load(dir)`` reads it back.
        """
        self.sync()
        meta = self.store.load_meta(stage)
        if meta is not None:
            try:
                return load(stage.dir), Status.REUSED
            except Exception as exc:  # noqa: BLE001 - anything unreadable is recomputed
                self.store.log(f"store: {stage.label}: cannot load the stored artifact ({type(exc).__name__}); "
                               "recomputing")
        if not self.writer and not collective:
            self.sync()  # worker 0 builds and stores it meanwhile
            self.store.written_meta(stage)  # a clear error where worker 0 stored nothing
            return load(stage.dir), Status.COMPUTED
        if self.writer:
            self.store.begin(stage)
        result = build()
        if self.writer:
            self.store.complete(stage, save(result, stage.dir))
        self.sync()
        if collective and self.count > 1:
            self.store.written_meta(stage)
            return load(stage.dir), Status.COMPUTED
        return result, Status.COMPUTED

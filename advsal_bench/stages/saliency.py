"""The saliency stage: f's gradient saliency of a set of images, stored in chunks."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..saliency import gradient_saliency
from .artifacts import Classifier, Saliency
from .run import Run, check_finite


def saliency_fn(run: Run, f: Classifier):
    """f's saliency as a per-batch TF function, one per (run, f), so it is traced once."""
    use_abs = run.cfg.saliency.abs

    def saliency(x):
        return gradient_saliency(f.fn, x, abs=use_abs)

    return run.memo(("saliency", f.key), lambda: saliency)


def saliency(run: Run, f: Classifier, images: Any, *, label: str, show_progress: bool = False) -> Saliency:
    """Raw saliency maps of ``images`` (anything with ``key`` and ``x``: clean images or an AdvSet)."""
    cfg, chunk = run.cfg.saliency, run.cfg.adversarial.chunk_size
    t0 = time.perf_counter()
    stage = run.stage(f"saliency:{label}", "saliency", [f, images],
                      {"method": cfg.method, "abs": cfg.abs, "chunk": chunk})
    x_all = images.x
    bar = run.progress(len(x_all), stage.label, show=show_progress)
    fn, bs = saliency_fn(run, f), run.cfg.classifier.batch_size

    def compute(start: int, stop: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        t = time.perf_counter()
        maps = run.runner.run(fn, [x_all[start:stop]], batch_size=bs, progress=bar)[0]
        check_finite(maps, "saliency", bs)
        return {"s": maps}, {"seconds": time.perf_counter() - t}

    arrays, values, status, reused = run.coord.chunked(stage, len(x_all), chunk, compute)
    run.record(stage, status, time.perf_counter() - t0, chunks_reused=reused,
               chunks=len(run.coord.store.chunk_names(len(x_all), chunk)))
    return Saliency(stage.key, arrays["s"], sum(v["seconds"] for v in values))

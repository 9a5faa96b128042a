"""The evaluation stage: a fitted detector's scores and metrics on one adversarial test set."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..detectors import detector_spec
from ..metrics import detection_metrics, operating_point_metrics
from .artifacts import AdvSet, Evaluation, FittedDetector, Images, Pool, Saliency
from .run import Run


def evaluate(run: Run, det: FittedDetector, pool: Pool, val: Images, adv: AdvSet, clean_correct: np.ndarray,
             saliency: dict[str, Saliency | None]) -> Evaluation:
    """D's metrics on the pool's clean test images against ``adv``'s test images, with its threshold
    for TPR@5%FPR chosen on the clean validation images ``val``.

    ``saliency``: f's maps of the ``pool``, ``val`` and ``adv`` sets, for detectors that read them.
    """
    dcfg = run.cfg.detectors[det.name]
    spec = detector_spec(dcfg, f"detectors.{det.name}")
    uses = spec.uses_saliency(dcfg)
    t0 = time.perf_counter()
    maps = [saliency[k] for k in ("pool", "val", "adv")] if uses else []
    stage = run.stage(f"eval:{det.name}:{det.fit_label}:on:{adv.label}", "evaluate", [det, pool, val, adv, *maps])
    s = {k: (saliency[k].maps if uses and saliency[k] is not None else None) for k in ("pool", "val", "adv")}
    fooled = (adv.pred_test != pool.y[pool.test]) & clean_correct

    def score(x: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
        return np.asarray(spec.score(det.detector, x, maps), np.float64) if len(x) else np.zeros(0)

    def compute() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        t = time.perf_counter()
        # The clean test and validation scores are the detector's alone: scored once per run for
        # all the adversarial sets it is evaluated on.
        scored = []

        def once(key: Any, x: np.ndarray, maps: np.ndarray | None) -> np.ndarray:
            return run.memo(("scores", det.key, key), lambda: scored.append(len(x)) or score(x, maps))

        sc = once(pool.key, pool.x[pool.test], None if s["pool"] is None else s["pool"][pool.test])
        sv = once(val.key, val.x, s["val"])
        sa = score(adv.x_test, None if s["adv"] is None else s["adv"][adv.n_train :])
        thr = det.detector.threshold
        metrics = {**detection_metrics(sc, sa, threshold=thr),
                   **operating_point_metrics(sv, sc, sa, fooled, threshold=thr)}
        return ({"clean": sc, "adv": sa},
                {"metrics": metrics, "seconds": time.perf_counter() - t, "images": len(sa) + sum(scored)})

    arrays, values, status = run.coord.arrays(stage, compute)
    run.record(stage, status, time.perf_counter() - t0)
    return Evaluation(stage.key, values["metrics"], arrays["clean"], arrays["adv"], values["seconds"], values["images"])

"""The adaptive stage: one white-box attack on f + one fitted detector, and how it fares."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..attacks import ADAPTIVE_ATTACKS, AdaptiveTask
from ..metrics import threshold_at_fpr
from ..schema import plain
from .artifacts import AdaptiveRows, Classifier, FittedDetector, Images
from .run import Run

_BATCH = 256  # f's predictions and D's scores on the adaptive images


def adaptive_metrics(x: np.ndarray, y: np.ndarray, x_adv: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray,
                     d_scores: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
    """Success (f fooled and no alarm), detection rates and perturbation sizes of one adaptive set."""
    fooled = (adv_pred != y) & (clean_pred == y)
    alarm = np.asarray(d_scores).ravel() >= threshold
    delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    return {
        "success_rate": float(np.mean(fooled & ~alarm)),
        "f_accuracy": float(np.mean(adv_pred == y)),
        "fooling_rate": float(np.mean(fooled)),
        "detection_rate": float(np.mean(alarm)),
        "detection_rate_fooling": float(np.mean(alarm[fooled])) if fooled.any() else float("nan"),
        "mean_l2": float(np.mean(np.linalg.norm(delta, axis=1))),
        "mean_linf": float(np.mean(np.abs(delta).max(axis=1))),
        "images": int(len(x)),
    }


def deployed_threshold(scores_val: np.ndarray, default: float) -> tuple[float, str]:
    """The threshold a deployer would choose, flagging 5% of clean validation images (the detector's
    own where there are none), and which rule gave it."""
    if len(scores_val):
        return threshold_at_fpr(scores_val, 0.05), "5% FPR on clean validation"
    return float(default), "the detector's default"


def adaptive(run: Run, kind: str, f: Classifier, det: FittedDetector, test: Images, val: Images,
             clean_pred: np.ndarray, ball: tuple[str, float] | None) -> AdaptiveRows:
    """Adaptive attack ``kind`` (``adaptive.attacks``) on f + ``det``, on the clean ``test`` images.

    The attack aims at D's deployed threshold (5% FPR on the clean validation images ``val``); each
    row has its numbers there and, as ``*_default``, at D's own threshold (0.5 for a probability).
    """
    ad = run.cfg.adaptive
    spec, cfg = ADAPTIVE_ATTACKS.get(kind, "adaptive.attacks"), ad.params[kind]
    t0 = time.perf_counter()
    label = f"adaptive:{kind}:{det.name}:{det.fit_label}"
    config = {"config": plain(cfg), "ball": ball, "surrogate_beta": ad.surrogate_beta, "batch_size": ad.batch_size}
    stage = run.stage(label, "adaptive", [f, det, test, val], config)
    score = _scorer(run, det)

    def compute() -> tuple[dict, dict]:
        how = f": {ball[0]} eps={ball[1]:g}" if ball else ""
        run.log(f"adaptive {kind} on {det.name}/{det.fit_label}{how}, {len(test)} images")
        default = det.detector.threshold
        threshold, rule = deployed_threshold(score(val.x) if len(val) else np.zeros(0), default)
        task = AdaptiveTask(run.runner, f.fn, det.detector.margin_fn(threshold), test.x, ball, ad.batch_size)
        rows = []
        for fields, x_adv in spec.craft(cfg, task):
            adv_pred = run.predict(f.fn, x_adv, _BATCH).argmax(-1)
            scores = score(x_adv)
            at_default = adaptive_metrics(test.x, test.y, x_adv, clean_pred, adv_pred, scores, threshold=default)
            rows.append({**fields, **adaptive_metrics(test.x, test.y, x_adv, clean_pred, adv_pred, scores,
                                                      threshold=threshold),
                         "threshold": threshold, "threshold_rule": rule, "default_threshold": default,
                         **{f"{k}_default": at_default[k] for k in ("success_rate", "detection_rate")}})
        return {}, {"rows": rows}

    _, values, status = run.coord.arrays(stage, compute)
    run.record(stage, status, time.perf_counter() - t0)
    return AdaptiveRows(stage.key, values["rows"])


def _scorer(run: Run, det: FittedDetector):
    from ..detectors import detector_spec

    spec = detector_spec(run.cfg.detectors[det.name], f"detectors.{det.name}")
    return lambda x: spec.score(det.detector, x, None)

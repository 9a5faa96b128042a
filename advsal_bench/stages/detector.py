"""The detector stage: one detector fit on one adversarial set (or on clean images alone) and stored."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..detectors import DetectorContext, FitData, detector_spec
from ..detectors.base import Detector
from ..schema import plain
from ..store import Status
from .artifacts import AdvSet, Classifier, FittedDetector, Pool, Saliency
from .run import Run


def context(run: Run) -> DetectorContext:
    s = run.cfg.saliency
    return DetectorContext(saliency_abs=s.abs, saliency_normalize=s.normalize,
                           surrogate_beta=run.cfg.adaptive.surrogate_beta, dataset=run.cfg.dataset.name)


def _storable(det: Any) -> bool:
    return type(det).save is not Detector.save


def detector(run: Run, name: str, f: Classifier, pool: Pool, clean: Saliency, adv: AdvSet, adv_saliency: Saliency
             ) -> FittedDetector:
    """Detector ``name`` fit on the pool's clean training images and ``adv``'s (unless it needs none)."""
    dcfg = run.cfg.detectors[name]
    spec = detector_spec(dcfg, f"detectors.{name}")
    det = spec.build(dcfg, context(run))
    needs_adv = getattr(det, "needs_adversarial", True)
    uses_saliency = spec.uses_saliency(dcfg)
    t0 = time.perf_counter()
    fit_label = adv.label if needs_adv else "clean"
    inputs: list[Any] = [f, pool]
    if needs_adv:
        inputs += [adv, adv_saliency] if uses_saliency else [adv]
    if uses_saliency:
        inputs.append(clean)
    config = {"name": name, "config": plain(dcfg), "dataset": run.cfg.dataset.name, "seed": run.cfg.seed,
              "saliency": plain(run.cfg.saliency) if uses_saliency else None, "fit": fit_label,
              "loop": list(run.training.key) if spec.trains_network else None}
    stage = run.stage(f"detector:{name}:{fit_label}" if needs_adv else f"detector:{name}", "detector", inputs, config)
    parts = (name, adv.attack, adv.eps) if needs_adv else (name,)
    data = FitData(x_clean=pool.x[pool.train], y_clean=pool.y[pool.train], x_adv=adv.x_train, model=f.model,
                   saliency_clean=clean.maps[pool.train] if uses_saliency else None,
                   saliency_adv=adv_saliency.maps[: adv.n_train] if uses_saliency and needs_adv else None,
                   seed=run.seed_for("detector", *parts), data_seed=run.seed_for("detector-data", *parts),
                   strategy=run.training.strategy, loop=run.training.loop, runner=run.runner,
                   verbose=2 if run.verbose else 0, log=run.log, key=f"detectors.{name}")

    def build() -> Any:
        n = 2 * min(len(data.x_clean), len(data.x_adv)) if needs_adv else len(data.x_clean)
        run.log(f"detector {name} on {fit_label}: {n} images")
        spec.fit(det, data)
        return det

    if _storable(det):
        fitted, status = run.coord.obj(stage, build, lambda d, folder: d.save(Path(folder)) or _files(folder),
                                       lambda folder: spec.restore(det, folder, data),
                                       collective=spec.trains_network and run.training.collective)
    else:  # a plug-in without save(): every worker fits its own
        fitted, status = build(), Status.COMPUTED
    run.record(stage, status, time.perf_counter() - t0)
    return FittedDetector(stage.key, name, fit_label, fitted)


def _files(folder: Any) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file() and p.name != "meta.json")

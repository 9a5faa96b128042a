"""What the detector registry holds: how the pipeline builds, fits, stores and scores each kind.

A detector module defines its :class:`~advsal_bench.detectors.base.Detector` class, a frozen config
dataclass mirrored by the YAML (``detectors: {NAME: {type: ..., ...}}``), and one
:class:`DetectorSpec` registration. The spec's hooks adapt the kind to the pipeline: which inputs
it needs (saliency maps or not), whether fitting trains a network across every worker, defaults
that depend on the rest of the suite, and the extra arguments its ``fit`` and ``score`` take.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..registry import Registry

__all__ = ["DETECTORS", "DetectorContext", "DetectorSpec", "FitData"]


@dataclass(frozen=True)
class DetectorContext:
    """What a detector's construction may depend on besides its own section."""

    saliency_abs: bool = False
    saliency_normalize: str = "none"
    surrogate_beta: float | None = 30.0
    dataset: str = "mnist"


@dataclass(frozen=True, eq=False)
class FitData:
    """Everything the pipeline has for fitting one detector; each kind's ``fit`` hook takes what it needs."""

    x_clean: np.ndarray
    y_clean: np.ndarray
    x_adv: np.ndarray
    model: Any
    saliency_clean: np.ndarray | None = None
    saliency_adv: np.ndarray | None = None
    seed: int = 0
    data_seed: int = 0
    strategy: Any = None
    loop: str = "fit"
    runner: Any = None
    verbose: int = 0
    log: Callable[[str], None] = print
    key: str = "detectors"


def _default_fit(det: Any, data: FitData) -> Any:
    x_adv = data.x_adv if getattr(det, "needs_adversarial", True) else None
    return det.fit(data.x_clean, x_adv, model=data.model, y_clean=data.y_clean)


def _default_restore(det: Any, folder: Any, data: FitData) -> Any:
    return det.restore(folder, model=data.model)


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector kind.

    - ``build(cfg, ctx)``: a new, unfitted detector for the section ``cfg``;
    - ``fit(det, data)``: fit it (default: ``det.fit(x_clean, x_adv, model=f, y_clean=y)``);
    - ``restore(det, folder, data)``: the fitted detector stored in ``folder`` (default: ``det.restore``);
    - ``score(det, x, saliency)``: its scores (default: ``det.score(x)``);
    - ``uses_saliency(cfg)``: it reads f's saliency maps, so its stages depend on them;
    - ``trains_network``: fitting trains a Keras network, which spans every worker of a run;
    - ``resolve(cfg, suite, key)``: defaults and checks that depend on the rest of the suite.
    """

    name: str
    config: type
    build: Callable[[Any, DetectorContext], Any]
    fit: Callable[[Any, FitData], Any] = _default_fit
    restore: Callable[[Any, Any, FitData], Any] = _default_restore
    score: Callable[[Any, np.ndarray, np.ndarray | None], np.ndarray] = lambda det, x, saliency: det.score(x)
    uses_saliency: Callable[[Any], bool] = lambda cfg: False
    trains_network: bool = False
    resolve: Callable[[Any, Any, str], Any] = lambda cfg, suite, key: cfg


#: Every detector kind the suites know (``detectors.NAME.type``; a name that is a kind is its own type).
DETECTORS: Registry[DetectorSpec] = Registry("detector")


def register_baseline(kind: str, config: type, cls: type,
                      check: Callable[[Any, Any, str], None] = lambda cfg, suite, key: None) -> DetectorSpec:
    """Register a detector built by ``cls.from_config(cfg, key=...)`` from features of f alone.

    Its resolve step fills a ``dataset`` field left null with the suite's dataset where the field
    accepts it (the papers' per-dataset defaults), then builds it once, so a bad hyperparameter is a
    config error before any work; ``check`` adds what depends on the rest of the suite.
    """
    import dataclasses

    def resolve(cfg: Any, suite: Any, key: str) -> Any:
        field = next((f for f in dataclasses.fields(cfg) if f.name == "dataset"), None)
        if field is not None and cfg.dataset is None and suite.dataset.name in (field.metadata.get("choices") or ()):
            cfg = dataclasses.replace(cfg, dataset=suite.dataset.name)
        check(cfg, suite, key)
        cls.from_config(cfg, key=key)
        return cfg

    spec = DetectorSpec(kind, config, build=lambda cfg, ctx: cls.from_config(cfg, key=f"detectors.{kind}"),
                        resolve=resolve)
    DETECTORS.add(kind, spec)
    return spec

"""What the experiment registry holds: each experiment asks for evaluations, computes its part of
results.json and renders its report section."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..registry import Registry

__all__ = ["EXPERIMENTS", "EvalRequest", "ExperimentContext", "ExperimentSpec", "Plan", "SetKey"]

SetKey = tuple[str, "float | None"]  # (attack name, eps): one adversarial set
EvalRequest = tuple[str, SetKey, SetKey]  # (detector, the set it is fit on, the set it is tested on)


@dataclass(frozen=True)
class Plan:
    """What the attacks produced, as the experiments see it before any detector is fit."""

    cfg: Any  # SuiteConfig
    grid: dict[str, tuple[float | None, ...]]  # attack -> the eps values crafted (None: no grid)
    selected: dict[str, SetKey]  # attack -> the set Table 1 uses (its selected eps)
    primary: str  # the paper's detector where the suite has it, else its first

    @property
    def detectors(self) -> list[str]:
        return list(self.cfg.detectors)

    @property
    def matrix_detectors(self) -> list[str]:
        """The detectors whose generalization matrices are computed (``generalization.detectors``)."""
        return list(self.cfg.generalization.detectors or (self.primary,))


@dataclass
class ExperimentContext:
    """What an experiment's ``compute`` reads: the plan, the run, and everything computed so far."""

    plan: Plan
    run: Any  # stages.Run
    f: Any  # Classifier
    splits: Any  # Splits
    adv: dict[SetKey, Any]  # AdvSet per set
    evals: dict[EvalRequest, Any]  # Evaluation per request
    detectors: dict[tuple[str, SetKey], Any]  # FittedDetector per (detector, fit set)
    f_clean: float  # f's accuracy on the clean adversarial test images
    clean_pred_test: Any  # f's predictions on them
    results: dict[str, Any] = field(default_factory=dict)  # results.json so far


@dataclass(frozen=True)
class ReportContext:
    figures: Path
    evals: dict[EvalRequest, Any]
    results: dict[str, Any]


@dataclass(frozen=True)
class ExperimentSpec:
    """A registered experiment (``experiments: [...]`` in the YAML; ``enabled`` can say otherwise).

    ``evaluations(plan)``: the (detector, fit set, test set) evaluations it needs; ``detectors(plan)``:
    fitted detectors it needs beyond those; ``compute(ctx)``: its value in results.json, under its
    name; ``render(value, rctx)``: its report.md lines; ``validate(cfg)``: config errors it can see
    before any work; ``chief_only``: only worker 0 computes it (it writes figures).
    """

    name: str
    compute: Callable[[ExperimentContext], Any]
    render: Callable[[Any, ReportContext], list[str]]
    evaluations: Callable[[Plan], list[EvalRequest]] = lambda plan: []
    detectors: Callable[[Plan], list[tuple[str, SetKey]]] = lambda plan: []
    enabled: Callable[[Any], bool] | None = None
    validate: Callable[[Any], None] = lambda cfg: None
    chief_only: bool = False

    def is_enabled(self, cfg: Any) -> bool:
        return self.enabled(cfg) if self.enabled is not None else self.name in cfg.experiments


#: Every experiment, in the order results.json and report.md show them.
EXPERIMENTS: Registry[ExperimentSpec] = Registry("experiment")
ORDER: list[str] = []


def register(spec: ExperimentSpec) -> ExperimentSpec:
    EXPERIMENTS.add(spec.name, spec)
    ORDER.append(spec.name)
    return spec


def set_label(key: SetKey) -> str:
    """An adversarial set's name in stage labels and logs: the attack, with its eps where it has one."""
    return key[0] if key[1] is None else f"{key[0]}:eps={key[1]:g}"

"""Experiments: each one module that asks for evaluations, computes its part of results.json and
renders its report section (table1, eps_generalization, attack_generalization, adaptive, gradcam)."""
from __future__ import annotations

from . import table1, eps_generalization, attack_generalization, adaptive, gradcam  # noqa: F401,E401  (registration, in report order)
from .spec import EXPERIMENTS, ORDER, EvalRequest, ExperimentContext, ExperimentSpec, Plan, ReportContext, set_label

__all__ = ["EXPERIMENTS", "ORDER", "EvalRequest", "ExperimentContext", "ExperimentSpec", "Plan", "ReportContext",
           "enabled_experiments", "listed_experiments", "set_label"]


def listed_experiments() -> list[str]:
    """The names ``experiments: [...]`` takes (adaptive is switched on by ``adaptive.attacks`` instead)."""
    return [n for n in ORDER if EXPERIMENTS.get(n).enabled is None]


def enabled_experiments(cfg) -> list[ExperimentSpec]:
    return [EXPERIMENTS.get(n) for n in ORDER if EXPERIMENTS.get(n).is_enabled(cfg)]

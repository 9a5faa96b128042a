"""Attack generalization (the paper's Figure 4): D fit on one attack, tested on every other."""
from __future__ import annotations

from typing import Any

from ..report import heatmap_png, matrix_markdown
from .spec import EvalRequest, ExperimentContext, ExperimentSpec, Plan, ReportContext, register


def evaluations(plan: Plan) -> list[EvalRequest]:
    return [(plan.primary, plan.selected[fit], plan.selected[test]) for test in plan.selected for fit in plan.selected]


def compute(ctx: ExperimentContext) -> dict[str, Any]:
    names, sel, d = list(ctx.plan.selected), ctx.plan.selected, ctx.plan.primary
    matrix = [[ctx.evals[(d, sel[fit], sel[test])].metrics["d_accuracy"] for fit in names] for test in names]
    return {"detector": d, "attacks": names, "eps": [sel[n][1] for n in names], "accuracy": matrix}


def render(g: dict[str, Any], rctx: ReportContext) -> list[str]:
    png = rctx.figures / "attack_generalization.png"
    heatmap_png(png, g["accuracy"], g["attacks"], g["attacks"], xlabel="fit attack", ylabel="test attack",
                title=f"D ({g['detector']}) accuracy")
    return [f"## Attack generalization (detector {g['detector']})", "",
            "Rows: attack of the test set; columns: attack D was fit on (each at its selected eps).", "",
            matrix_markdown(g["attacks"], g["attacks"], g["accuracy"], "test \\ fit"), "",
            "![attack generalization](figures/attack_generalization.png)", ""]


register(ExperimentSpec("attack_generalization", compute, render, evaluations=evaluations))

"""Attack generalization (the paper's Figure 4): D fit on one attack, tested on every other."""
from __future__ import annotations

from typing import Any

from ..report import heatmap_png, matrix_markdown
from .spec import EvalRequest, ExperimentContext, ExperimentSpec, Plan, ReportContext, register


def evaluations(plan: Plan) -> list[EvalRequest]:
    return [(d, plan.selected[fit], plan.selected[test]) for d in plan.matrix_detectors
            for test in plan.selected for fit in plan.selected]


def compute(ctx: ExperimentContext) -> dict[str, Any]:
    """The first matrix detector's matrix; ``by_detector`` has each one's where there are several."""
    names, sel, dets = list(ctx.plan.selected), ctx.plan.selected, ctx.plan.matrix_detectors

    def matrix(d: str) -> list[list[float]]:
        return [[ctx.evals[(d, sel[fit], sel[test])].metrics["d_accuracy"] for fit in names] for test in names]

    out = {"detector": dets[0], "attacks": names, "eps": [sel[n][1] for n in names], "accuracy": matrix(dets[0])}
    if len(dets) > 1:
        out["by_detector"] = {d: matrix(d) for d in dets}
    return out


def render(g: dict[str, Any], rctx: ReportContext) -> list[str]:
    parts = []
    for det, matrix in g.get("by_detector", {g["detector"]: g["accuracy"]}).items():
        png = rctx.figures / ("attack_generalization.png" if det == g["detector"] else f"attack_generalization_{det}.png")
        heatmap_png(png, matrix, g["attacks"], g["attacks"], xlabel="fit attack", ylabel="test attack",
                    title=f"D ({det}) accuracy")
        parts += [f"## Attack generalization (detector {det})", "",
                  "Rows: attack of the test set; columns: attack D was fit on (each at its selected eps).", "",
                  matrix_markdown(g["attacks"], g["attacks"], matrix, "test \\ fit"), "",
                  f"![attack generalization](figures/{png.name})", ""]
    return parts


register(ExperimentSpec("attack_generalization", compute, render, evaluations=evaluations))

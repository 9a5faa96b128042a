"""Table 1 (the paper's): f and every detector on each attack at its selected eps, with ROC curves."""
from __future__ import annotations

from typing import Any

from ..report import pct, roc_png, table
from .spec import EvalRequest, ExperimentContext, ExperimentSpec, Plan, ReportContext, register

HEADERS = ["attack", "eps", "detector", "f clean %", "f adv %", "D clean %", "D adv %", "D acc %", "AUC",
           "TPR@5%FPR %", "D adv (fooling f) %"]


def evaluations(plan: Plan) -> list[EvalRequest]:
    return [(d, key, key) for key in plan.selected.values() for d in plan.detectors]


def compute(ctx: ExperimentContext) -> list[dict[str, Any]]:
    rows = []
    for attack, key in ctx.plan.selected.items():
        for det in ctx.plan.detectors:
            rows.append({"attack": attack, "eps": key[1], "detector": det, "f_clean": ctx.f_clean,
                         "f_adv": ctx.results["attacks"][attack]["adv_accuracy"], **ctx.evals[(det, key, key)].metrics})
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Paper Table 1 layout: a row per (attack, detector), accuracies in percent."""
    body = [[r["attack"], "-" if r["eps"] is None else f"{r['eps']:g}", r["detector"], pct(r["f_clean"]),
             pct(r["f_adv"]), pct(r["d_clean"]), pct(r["d_adv"]), pct(r["d_accuracy"]),
             "n/a" if r["auc"] != r["auc"] else f"{r['auc']:.3f}", pct(r.get("tpr_at_5_fpr")),
             pct(r.get("d_adv_fooling"))] for r in rows]
    return table(body, HEADERS)


def render(rows: list[dict[str, Any]], rctx: ReportContext) -> list[str]:
    parts = ["## Table 1: classifier and detector accuracy", "",
             "f clean/adv: f's accuracy on clean/adversarial test images. D clean: detector accuracy on clean test "
             "images (1 - false-positive rate); D adv: on adversarial test images (true-positive rate); "
             "D acc: on both; AUC: ROC AUC of D's score. TPR@5%FPR: D adv at the threshold that flags 5% of "
             "clean *validation* images (chosen without test data). D adv (fooling f): D adv on the adversarial "
             "images that turn f's correct answer wrong.", "", markdown(rows), ""]
    curves: dict[str, dict[str, tuple]] = {}
    for (det, fit, test), ev in rctx.evals.items():
        if fit == test and any(r["attack"] == fit[0] and r["eps"] == fit[1] and r["detector"] == det for r in rows):
            curves.setdefault(fit[0], {})[det] = (ev.scores_clean, ev.scores_adv)
    for attack, by_detector in curves.items():
        png = rctx.figures / f"roc_{attack}.png"
        roc_png(png, by_detector, title=f"ROC on {attack}")
        parts += [f"![ROC {attack}](figures/{png.name})", ""]
    return parts


register(ExperimentSpec("table1", compute, render, evaluations=evaluations))

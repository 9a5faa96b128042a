"""Epsilon generalization (the paper's Figure 3): D fit at one eps, tested at every eps of the grid."""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..report import heatmap_png, matrix_markdown
from .spec import EvalRequest, ExperimentContext, ExperimentSpec, Plan, ReportContext, register


def _grids(plan: Plan) -> dict[str, list[float]]:
    return {name: list(grid) for name, grid in plan.grid.items() if grid != (None,)}


def evaluations(plan: Plan) -> list[EvalRequest]:
    return [(d, (name, fit), (name, test)) for d in plan.matrix_detectors for name, grid in _grids(plan).items()
            for test in grid for fit in grid]


def _matrix(ctx: ExperimentContext, d: str, name: str, grid: list[float]) -> list[list[float]]:
    return [[ctx.evals[(d, (name, fit), (name, test))].metrics["d_accuracy"] for fit in grid] for test in grid]


def compute(ctx: ExperimentContext) -> dict[str, Any]:
    """Per attack, the first matrix detector's matrix; ``by_detector`` has each one's where there are several."""
    out = {}
    dets = ctx.plan.matrix_detectors
    for name, grid in _grids(ctx.plan).items():
        out[name] = {"detector": dets[0], "eps_fit": grid, "eps_test": grid, "accuracy": _matrix(ctx, dets[0], name, grid)}
        if len(dets) > 1:
            out[name]["by_detector"] = {d: _matrix(ctx, d, name, grid) for d in dets}
    return out


def render(part: dict[str, Any], rctx: ReportContext) -> list[str]:
    parts = []
    for name, g in part.items():
        for det, matrix in g.get("by_detector", {g["detector"]: g["accuracy"]}).items():
            png = rctx.figures / (f"eps_generalization_{name}.png" if det == g["detector"]
                                  else f"eps_generalization_{name}_{det}.png")
            heatmap_png(png, matrix, g["eps_test"], g["eps_fit"], xlabel="eps_fit", ylabel="eps_test",
                        title=f"{name}: D ({det}) accuracy")
            parts += [f"## Epsilon generalization: {name} (detector {det})", "",
                      "Rows: eps of the test set; columns: eps D was fit on.", "",
                      matrix_markdown(g["eps_test"], g["eps_fit"], matrix, "eps_test \\ eps_fit"), "",
                      f"![{name}](figures/{png.name})", ""]
    return parts


def validate(cfg: Any) -> None:
    from ..attacks import attack_spec

    if not any(attack_spec(a, f"attacks.{n}").eps_grid for n, a in cfg.attacks.items()):
        raise ConfigError("config key 'experiments': eps_generalization needs at least one attack with an 'eps' grid")


register(ExperimentSpec("eps_generalization", compute, render, evaluations=evaluations, validate=validate))

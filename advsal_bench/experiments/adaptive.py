"""Adaptive attacks on f + D (Carlini & Wagner 2017): each registered attack against each Table 1 detector.

An attack succeeds on an image when f's answer turns wrong *and* D raises no alarm; a detector
evaluated only against attacks that ignore it says little.
"""
from __future__ import annotations

from typing import Any

from ..attacks import ADAPTIVE_ATTACKS, attack_spec
from ..errors import ConfigError
from ..report import pct, table
from ..stages.adaptive import adaptive
from ..stages.artifacts import Images
from .spec import ExperimentContext, ExperimentSpec, Plan, ReportContext, SetKey, register

HEADERS = ["detector", "D fit on", "adaptive attack", "success %", "detection %", "f acc %", "mean l2", "mean linf",
           "success @default %", "detection @default %", "non-adaptive detection %"]


def _detectors(plan: Plan) -> list[str]:
    return list(plan.cfg.adaptive.detectors or plan.cfg.detectors)


def _fit_sets(plan: Plan) -> dict[str, SetKey]:
    names = plan.cfg.adaptive.fit_on or tuple(plan.selected)
    return {a: plan.selected[a] for a in names}


def needed(plan: Plan) -> list[tuple[str, SetKey]]:
    return [(d, key) for key in _fit_sets(plan).values() for d in _detectors(plan)]


def fit_ball(ctx: ExperimentContext, attack: str) -> tuple[str, float] | None:
    """(norm, eps) of the attack a detector was fit on, when it has a grid and a norm."""
    acfg = ctx.plan.cfg.attacks[attack]
    spec = attack_spec(acfg, f"attacks.{attack}")
    eps = ctx.results["attacks"][attack]["eps_used"]
    norm = spec.norm(acfg) if spec.eps_grid else None
    return (norm, float(eps)) if norm and eps is not None else None


def ball_for(cfg: Any, fit: tuple[str, float] | None, fallback: tuple[str, float] | None,
             fit_norm: str | None) -> tuple[str, float] | None:
    """The ball an adaptive attack works in: its own ``eps`` (and ``norm``), else the fit attack's,
    else the suite's first l_inf ball (detectors fit on JSMA or C&W have none); None if none fits."""
    want = getattr(cfg, "norm", "auto")
    if getattr(cfg, "eps", None) is not None:
        return (want if want != "auto" else (fit_norm or "linf")), cfg.eps
    if fit is not None:
        return fit if want in ("auto", fit[0]) else None
    if fallback is not None and want in ("auto", fallback[0]):
        return fallback
    return None


def compute(ctx: ExperimentContext) -> list[dict[str, Any]]:
    ad, pool = ctx.plan.cfg.adaptive, ctx.splits.pool
    n = min(ad.test_size, pool.x[pool.test].shape[0])
    test = Images(pool.x[pool.test][:n], pool.y[pool.test][:n])
    clean_pred = ctx.clean_pred_test[:n]
    balls = {a: fit_ball(ctx, a) for a in ctx.plan.selected}
    fallback = next((b for b in balls.values() if b is not None and b[0] == "linf"), None)
    t1 = {(r["attack"], r["detector"]): r for r in ctx.results["table1"]}
    rows: list[dict[str, Any]] = []
    for attack, key in _fit_sets(ctx.plan).items():
        for det_name in _detectors(ctx.plan):
            det, ref = ctx.detectors[(det_name, key)], t1[(attack, det_name)]
            base = {"attack": attack, "eps": key[1], "detector": det_name,
                    "non_adaptive": {k: ref[k] for k in ("f_adv", "d_adv", "d_adv_fooling")}}
            if not det.detector.differentiable:
                ctx.run.log(f"adaptive attacks on {det_name}: it has no margin(x, threshold); skipped")
                continue
            for kind in ad.attacks:
                spec, cfg = ADAPTIVE_ATTACKS.get(kind), ad.params[kind]
                ball = ball_for(cfg, balls[attack], fallback, balls[attack] and balls[attack][0]) if spec.uses_ball else None
                if spec.uses_ball and ball is None:
                    ctx.run.log(f"adaptive {kind} on {det_name}/{attack}: no eps ball defined "
                                f"(set adaptive.{kind}.eps); skipped")
                    continue
                out = adaptive(ctx.run, kind, ctx.f, det, test, ctx.splits.val, clean_pred, ball)
                rows += [{**base, "adaptive_attack": kind, **r} for r in out.rows]
    return rows


def render(rows: list[dict[str, Any]], rctx: ReportContext) -> list[str]:
    body = [[r["detector"], r["attack"], ADAPTIVE_ATTACKS.get(r["adaptive_attack"]).describe(r), pct(r["success_rate"]),
             pct(r["detection_rate"]), pct(r["f_accuracy"]), f"{r['mean_l2']:.3f}", f"{r['mean_linf']:.3f}",
             pct(r["success_rate_default"]), pct(r["detection_rate_default"]), pct(r["non_adaptive"]["d_adv"])]
            for r in rows]
    return ["## Adaptive attacks on f + D", "",
            "White-box attacks that know D and aim at its deployed threshold, the one that flags 5% of clean "
            "*validation* images. success: f fooled *and* D silent at that threshold; detection: D's alarm rate "
            "on the adaptive images; f acc: f's accuracy on them; mean l2 / linf: the perturbation. @default: "
            "the same at D's own threshold (0.5 for a probability). non-adaptive: the same D's Table 1 "
            "detection rate on the attack it was fit on. Metzen's sigma weighs D's gradient against f's "
            "(sigma 0 is plain I-FGSM in the same ball).", "", table(body, HEADERS), ""]


def validate(cfg: Any) -> None:
    if "table1" not in cfg.experiments:
        raise ConfigError("config key 'adaptive.attacks': adaptive attacks target the Table 1 detectors, "
                          "expected 'table1' in experiments")


register(ExperimentSpec("adaptive", compute, render, detectors=needed, validate=validate,
                        enabled=lambda cfg: bool(cfg.adaptive.attacks)))

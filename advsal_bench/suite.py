"""The pipeline, as the paper's method reads: train f, attack it, compute saliency, fit D, evaluate.

:func:`run_suite` is the driver; each step is a stage function (``advsal_bench.stages``) of typed
artifacts, and each experiment (``advsal_bench.experiments``) computes its part of results.json.
No printing here beyond Keras progress bars: the caller passes ``log`` for stage messages.
Output files are written only after the data has loaded, and ``results.json`` is written last
and atomically, so a failed run never leaves complete-looking results behind.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from . import __version__, stages
from .attacks import attack_spec
from .attacks.spec import SetSummary
from .config import SuiteConfig
from .data import Dataset
from .distribute import describe
from .experiments import ExperimentContext, Plan, ReportContext, enabled_experiments
from .metrics import accuracy
from .saliency import fit_global_scale, normalize_saliency
from .stages import AdvSet, Run, Saliency, Splits
from .store import save_keras, write_json

Log = Callable[[str], None]
SetKey = tuple[str, "float | None"]


def run_suite(cfg: SuiteConfig, output_dir: str | Path, *, verbose: int = 1, log: Log | None = None,
              dataset: Dataset | None = None, fresh: bool = False) -> dict[str, Any]:
    """Run a validated suite end to end and write results.json, report.md, config.yaml and stages.json.

    In a multi-worker run every worker calls this; worker 0 writes the outputs and returns the full
    results, the others return what they computed, with ``"worker": index`` and nothing written.
    Every stage's output is kept in ``<output_dir>/store`` keyed by what it depends on, so a rerun
    reuses finished work (``fresh=True`` recomputes everything).
    """
    run = Run(cfg, output_dir, verbose=verbose, log=log, fresh=fresh)
    data = stages.load_data(cfg, dataset)
    run.log(f"data: {cfg.dataset.name} ({data.source}) train {len(data.x_train)}, test {len(data.x_test)}")
    splits = stages.splits(cfg, data)
    run.open_output()
    # 1. The classifier f, and its clean saliency maps.
    f = stages.classifier(run, splits.train, cfg.classifier, num_classes=splits.num_classes)
    if run.chief:
        save_keras(f.model, run.out / "models" / "f.keras")
    clf = _classifier_summary(run, f, splits)
    clean = stages.saliency(run, f, splits.pool, label="clean", show_progress=True)
    val = stages.saliency(run, f, splits.val, label="validation") if len(splits.val) else Saliency("none", splits.val.x)
    # 2. Every attack at every eps of its grid, with f's saliency of the adversarial images.
    adv: dict[SetKey, AdvSet] = {}
    adv_saliency: dict[SetKey, Saliency] = {}
    for name, acfg in cfg.attacks.items():
        for eps in _grid(name, acfg):
            adv[(name, eps)] = a = stages.attack(run, f, splits.pool, name, acfg, eps)
            adv_saliency[(name, eps)] = stages.saliency(run, f, a, label=a.label)
    attacks_out = _attack_summary(run, splits, adv, clf)
    # 3. The detectors each experiment needs, fit on their adversarial sets, and their evaluations.
    plan = Plan(cfg, {n: _grid(n, a) for n, a in cfg.attacks.items()},
                {n: (n, a["eps_used"]) for n, a in attacks_out.items()},
                "image_saliency" if "image_saliency" in cfg.detectors else next(iter(cfg.detectors)))
    experiments = enabled_experiments(cfg)
    requests = list(dict.fromkeys(r for e in experiments for r in e.evaluations(plan)))
    fits = list(dict.fromkeys([(d, fit) for d, fit, _ in requests] + [n for e in experiments for n in e.detectors(plan)]))
    detectors = {(d, fit): stages.detector(run, d, f, splits.pool, clean, adv[fit], adv_saliency[fit]) for d, fit in fits}
    evals = {(d, fit, test): stages.evaluate(run, detectors[(d, fit)], splits.pool, splits.val, adv[test],
                                             clf["clean_correct"], {"pool": clean, "val": val, "adv": adv_saliency[test]})
             for d, fit, test in requests}
    # 4. Table 1, the generalization matrices, the adaptive attacks, Grad-CAM.
    results = _header(run, splits, clf, attacks_out, clean)
    ctx = ExperimentContext(plan, run, f, splits, adv, evals, detectors, clf["f_clean"], clf["clean_pred_test"], results)
    for e in experiments:
        if run.chief or not e.chief_only:
            results[e.name] = e.compute(ctx)
    return _finish(run, results, plan, experiments, evals, detectors, _throughput(run, splits, clean, adv, evals),
                   _examples(run, splits, clean, adv, adv_saliency, plan))


# ---- helpers of the driver ---------------------------------------------------------------------------


def _grid(name: str, acfg: Any) -> tuple[float | None, ...]:
    return tuple(acfg.eps) if attack_spec(acfg, f"attacks.{name}").eps_grid else (None,)


def _classifier_summary(run: Run, f: stages.Classifier, splits: Splits) -> dict[str, Any]:
    """f's train and test accuracy, and its predictions on the pool's clean test images."""
    bs = run.cfg.classifier.batch_size
    train_logits, test_logits = run.predict(f.fn, splits.train.x, bs), run.predict(f.fn, splits.test.x, bs)
    stages.run.check_finite(test_logits, "classifier logits", bs)
    n_te = len(splits.pool) - splits.pool.n_train
    pred = test_logits[:n_te].argmax(-1)
    out = {"train_accuracy": accuracy(train_logits, splits.train.y), "test_accuracy": accuracy(test_logits, splits.test.y),
           "clean_pred_test": pred, "clean_correct": pred == splits.test.y[:n_te],
           "f_clean": accuracy(test_logits[:n_te], splits.test.y[:n_te])}
    run.log(f"classifier: train accuracy {out['train_accuracy']:.4f}, test accuracy {out['test_accuracy']:.4f}")
    return out


def _select_eps(grid: tuple[float, ...], by_eps: dict[str, float], max_accuracy: float) -> float | None:
    """The smallest eps of the grid at which f's accuracy falls below ``max_accuracy``."""
    for eps in sorted(grid):
        if by_eps[f"{eps:g}"] < max_accuracy:
            return eps
    return None


def _attack_summary(run: Run, splits: Splits, adv: dict[SetKey, AdvSet], clf: dict[str, Any]) -> dict[str, Any]:
    """Per attack: f's accuracy at each eps, the selected eps (Table 1's) and the attack's own metrics."""
    out, pool, limit = {}, splits.pool, run.cfg.epsilon_selection.max_accuracy
    y_te = pool.y[pool.test]
    for name, acfg in run.cfg.attacks.items():
        spec, grid = attack_spec(acfg, f"attacks.{name}"), _grid(name, acfg)
        f_adv = {eps: accuracy(adv[(name, eps)].pred_test, y_te) for eps in grid}
        by_eps = {f"{e:g}": v for e, v in f_adv.items() if e is not None}
        selected = _select_eps(grid, by_eps, limit) if spec.eps_grid else None
        used = selected if selected is not None or not spec.eps_grid else max(grid)
        if spec.eps_grid and selected is None:
            run.log(f"attack {name}: no eps brings f below {limit}; Table 1 uses the largest, {used}")
        a = adv[(name, used)]
        summary = SetSummary(pool.x[pool.test], y_te, a.x_test, a.pred_test, clf["clean_correct"],
                             {k: v[pool.n_train :] for k, v in a.arrays.items()})
        out[name] = {"type": acfg.type, "eps": selected, "eps_used": used, "adv_accuracy": f_adv[used], "by_eps": by_eps,
                     **spec.metrics(summary)}
        run.log(f"attack {name}: f accuracy {f_adv[used]:.4f}" + (f", {spec.notes(out[name])}" if spec.notes(out[name]) else ""))
    return out


def _header(run: Run, splits: Splits, clf: dict[str, Any], attacks_out: dict[str, Any], clean: Saliency) -> dict[str, Any]:
    cfg, pool = run.cfg, splits.pool
    env: dict[str, Any] = {"pairsearch_backend": None}
    for name, acfg in cfg.attacks.items():
        env.update(attack_spec(acfg, f"attacks.{name}").environment(acfg))
    scale = fit_global_scale(clean.maps[pool.train]) if cfg.saliency.normalize == "global" else None
    return {
        "suite": cfg.name, "dataset": cfg.dataset.name, "seed": cfg.seed,
        "environment": {"advsal_bench": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
                        "python": platform.python_version(), **describe(run.cluster), "train_loop": run.training.loop,
                        "train_replicas": int(run.training.strategy.num_replicas_in_sync), **env},
        "data": {"source": splits.source, "train": len(splits.train), "test": len(splits.test),
                 "adversarial_train": pool.n_train, "adversarial_test": len(pool) - pool.n_train,
                 "num_classes": splits.num_classes, "validation": {"split": splits.val_split, "size": len(splits.val)}},
        "classifier": {k: clf[k] for k in ("train_accuracy", "test_accuracy")},
        "saliency": {"method": cfg.saliency.method, "abs": cfg.saliency.abs, "normalize": cfg.saliency.normalize,
                     "scale": scale},
        "attacks": attacks_out,
    }


def _examples(run: Run, splits: Splits, clean: Saliency, adv, adv_saliency, plan: Plan, n: int = 4) -> dict[str, Any]:
    """A few test images per attack for the report's Figure-1-style grid (saliency as D sees it)."""
    s, pool = run.cfg.saliency, splits.pool
    scale = fit_global_scale(clean.maps[pool.train]) if s.normalize == "global" else None
    norm = lambda maps: normalize_saliency(maps, s.normalize, scale=scale)  # noqa: E731
    test = slice(pool.n_train, pool.n_train + n)
    return {"clean": (pool.x[test], norm(clean.maps[test])),
            "attacks": {name: (adv[key].x_test[:n], norm(adv_saliency[key].maps[test])) for name, key in plan.selected.items()}}


def _throughput(run: Run, splits: Splits, clean: Saliency, adv: dict[SetKey, AdvSet], evals: dict) -> dict[str, float]:
    """Images per second of computing each kind of stage (from the stored compute times, so a
    reused stage keeps the figure of the run that computed it)."""
    pool = splits.pool
    out = {"saliency": len(pool) / max(clean.seconds, 1e-9)}
    for name in run.cfg.attacks:
        sets = [a for (n, _), a in adv.items() if n == name]
        out[f"attack:{name}"] = float(np.mean([len(pool) / max(a.seconds, 1e-9) for a in sets]))
    seconds, images = sum(e.seconds for e in evals.values()), sum(e.images for e in evals.values())
    out["detector_inference"] = images / seconds if seconds else float("nan")
    return out


def _finish(run: Run, results: dict[str, Any], plan: Plan, experiments: list, evals: dict, detectors: dict,
            throughput: dict[str, float], examples: dict[str, Any]) -> dict[str, Any]:
    """Worker 0 writes the models, report.md, stages.json and, last, results.json."""
    if not run.chief:
        run.sync()  # the others wait for it, so no worker leaves while another still needs it
        return {**results, "worker": run.index}
    from .report import write_report

    for (det, fit), fitted in detectors.items():
        network = getattr(fitted.detector, "network", None)
        if network is not None and fit == plan.selected.get(fit[0]):
            save_keras(network, run.out / "models" / f"d_{det}_{fit[0]}.keras")
    run.timings["total"] = time.perf_counter() - run.t_start
    # Timing-derived numbers live under these two keys only, so runs compare equal apart from them.
    results["images_per_second"] = throughput
    results["timings_seconds"] = {**{k: r.seconds for k, r in run.records.items()}, **run.timings}  # wall, this run
    stages_json = {k: r.as_json() for k, r in run.records.items()}
    write_json(run.out / "stages.json", stages_json)
    run.log("stages: " + ", ".join(f"{v} {k}" for k, v in run.status_counts().items()))
    sections = [line for e in experiments if e.name in results
                for line in e.render(results[e.name], ReportContext(run.out / "figures", evals, results))]
    notes = {n: attack_spec(a, f"attacks.{n}").notes(results["attacks"][n]) for n, a in run.cfg.attacks.items()}
    write_report(results, run.out, sections=sections, notes=notes, examples=examples, stages=stages_json)
    write_json(run.out / "results.json", results)
    run.sync()
    return results

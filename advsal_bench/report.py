"""report.md (tabulate tables laid out like the paper's) and PNG figures (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from .store import atomic_path, write_text


def _pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"


def table1_markdown(results: dict[str, Any]) -> str:
    """Paper Table 1 layout: a row per (attack, detector), accuracies in percent."""
    rows = []
    for r in results.get("table1", []):
        rows.append([r["attack"], "-" if r["eps"] is None else f"{r['eps']:g}", r["detector"], _pct(r["f_clean"]),
                     _pct(r["f_adv"]), _pct(r["d_clean"]), _pct(r["d_adv"]), _pct(r["d_accuracy"]),
                     "n/a" if np.isnan(r["auc"]) else f"{r['auc']:.3f}", _pct(r.get("tpr_at_5_fpr")),
                     _pct(r.get("d_adv_fooling"))])
    headers = ["attack", "eps", "detector", "f clean %", "f adv %", "D clean %", "D adv %", "D acc %", "AUC",
               "TPR@5%FPR %", "D adv (fooling f) %"]
    return tabulate(rows, headers=headers, tablefmt="github")


def attacks_markdown(results: dict[str, Any]) -> str:
    rows = []
    for name, a in results["attacks"].items():
        grid = ", ".join(f"{e}: {_pct(v)}" for e, v in a["by_eps"].items()) or "-"
        extra = ""
        if "changed_fraction" in a:
            extra = f"success {_pct(a['success_rate'])}%, changed {100 * a['changed_fraction']:.2f}% of features"
        elif "mean_l2" in a:
            extra = f"success {_pct(a['success_rate'])}%, mean l2 {a['mean_l2']:.3f}"
        rows.append([name, a["type"], "none" if a["eps"] is None else f"{a['eps']:g}", grid,
                     f"{results.get('images_per_second', {}).get(f'attack:{name}', float('nan')):.0f}", extra])
    return tabulate(rows, headers=["attack", "type", "selected eps", "f accuracy % by eps", "images/s", "notes"],
                    tablefmt="github")


def adaptive_markdown(results: dict[str, Any]) -> str:
    rows = []
    for r in results.get("adaptive", []):
        how = (f"metzen sigma={r['sigma']:g} ({r['norm']} {r['eps_adaptive']:g})" if r["adaptive_attack"] == "metzen"
               else "cw_detector")
        rows.append([r["detector"], r["attack"], how, _pct(r["success_rate"]), _pct(r["f_accuracy"]),
                     _pct(r["detection_rate"]), _pct(r["detection_rate_fooling"]), _pct(r["non_adaptive"]["d_adv"]),
                     f"{r['mean_l2']:.3f}", f"{r['mean_linf']:.3f}"])
    return tabulate(rows, headers=["detector", "D fit on", "adaptive attack", "success %", "f acc %", "detection %",
                                   "detection (fooling f) %", "non-adaptive detection %", "mean l2", "mean linf"],
                    tablefmt="github")


def matrix_markdown(row_labels: list, col_labels: list, matrix: list[list[float]], corner: str) -> str:
    rows = [[str(r), *[_pct(v) for v in row]] for r, row in zip(row_labels, matrix)]
    return tabulate(rows, headers=[corner, *map(str, col_labels)], tablefmt="github")


def heatmap_png(path: Path, matrix: list[list[float]], row_labels: list, col_labels: list, *, xlabel: str,
                ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * m.shape[1], 1.0 + 0.9 * m.shape[0]))
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(m.shape[1]), [str(c) for c in col_labels], rotation=30, ha="right")
    ax.set_yticks(range(m.shape[0]), [str(r) for r in row_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="white" if m[i, j] < 0.6 else "black",
                    fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def examples_png(path: Path, examples: dict[str, Any]) -> None:
    """Paper Figure 1 grid: a column per image, rows clean/adversarial each above its saliency map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [("clean", *examples["clean"])] + [(n, *v) for n, v in examples["attacks"].items()]
    n = min(len(examples["clean"][0]), 4)
    fig, axes = plt.subplots(2 * len(sets), n, figsize=(1.6 * n, 1.6 * 2 * len(sets)), squeeze=False)
    for r, (name, xs, ss) in enumerate(sets):
        for c in range(n):
            img = xs[c]
            ax = axes[2 * r, c]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
            if c == 0:
                ax.set_title(name, fontsize=8, loc="left")
            sal = np.abs(ss[c]).sum(axis=-1) if len(ss) else np.zeros(img.shape[:2])
            ax = axes[2 * r + 1, c]
            ax.imshow(sal, cmap="hot")
            ax.set_axis_off()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def roc_png(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], *, title: str) -> None:
    """ROC curves of several detectors on one attack's test set (sklearn computes the points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    for name, (clean, adv) in curves.items():
        labels = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
        fpr, tpr, _ = roc_curve(labels, np.r_[clean, adv])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.axvline(0.05, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("false-positive rate (clean flagged)")
    ax.set_ylabel("true-positive rate (adversarial flagged)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(results: dict[str, Any], out: Path, *, examples: dict[str, Any] | None = None,
                 stages: dict[str, str] | None = None,
                 roc: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] | None = None) -> None:
    """Write report.md and its PNGs into ``out``."""
    parts = [f"# advsal_bench report: {results['suite']}", ""]
    env = results["environment"]
    c = results["classifier"]
    parts += [
        f"Dataset **{results['dataset']}** ({results['data']['source']}), seed {results['seed']}; "
        f"TensorFlow {env['tensorflow']}, strategy {env['strategy']} x{env['replicas']}"
        + (f" on {env['workers']} workers" if env.get("workers", 1) > 1 else "")
        + (f"; f and D trained with the {env['train_loop']} loop over {env['train_replicas']} replica(s)."
           if "train_loop" in env else "."),
        "",
        f"Classifier f: train accuracy {_pct(c['train_accuracy'])}%, test accuracy {_pct(c['test_accuracy'])}%.",
        "",
        "## Attacks",
        "",
        attacks_markdown(results),
        "",
    ]
    if "table1" in results:
        parts += [
            "## Table 1: classifier and detector accuracy",
            "",
            "f clean/adv: f's accuracy on clean/adversarial test images. D clean: detector accuracy on clean test "
            "images (1 - false-positive rate); D adv: on adversarial test images (true-positive rate); "
            "D acc: on both; AUC: ROC AUC of D's score. TPR@5%FPR: D adv at the threshold that flags 5% of "
            "clean *validation* images (chosen without test data). D adv (fooling f): D adv on the adversarial "
            "images that turn f's correct answer wrong.",
            "",
            table1_markdown(results),
            "",
        ]
    figures = out / "figures"
    for attack, curves in (roc or {}).items():
        png = figures / f"roc_{attack}.png"
        roc_png(png, curves, title=f"ROC on {attack}")
        parts += [f"![ROC {attack}](figures/{png.name})", ""]
    for name, g in results.get("eps_generalization", {}).items():
        png = figures / f"eps_generalization_{name}.png"
        heatmap_png(png, g["accuracy"], g["eps_test"], g["eps_fit"], xlabel="eps_fit", ylabel="eps_test",
                    title=f"{name}: D ({g['detector']}) accuracy")
        parts += [f"## Epsilon generalization: {name} (detector {g['detector']})", "",
                  "Rows: eps of the test set; columns: eps D was fit on.", "",
                  matrix_markdown(g["eps_test"], g["eps_fit"], g["accuracy"], "eps_test \\ eps_fit"), "",
                  f"![{name}](figures/{png.name})", ""]
    if "attack_generalization" in results:
        g = results["attack_generalization"]
        png = figures / "attack_generalization.png"
        heatmap_png(png, g["accuracy"], g["attacks"], g["attacks"], xlabel="fit attack", ylabel="test attack",
                    title=f"D ({g['detector']}) accuracy")
        parts += [f"## Attack generalization (detector {g['detector']})", "",
                  "Rows: attack of the test set; columns: attack D was fit on (each at its selected eps).", "",
                  matrix_markdown(g["attacks"], g["attacks"], g["accuracy"], "test \\ fit"), "",
                  "![attack generalization](figures/attack_generalization.png)", ""]
    if results.get("adaptive"):
        parts += ["## Adaptive attacks on f + D", "",
                  "White-box attacks that know D. success: f fooled *and* D silent (at D's 0.5 threshold); "
                  "detection: D's alarm rate on the adaptive images (all / those that fool f); non-adaptive: the "
                  "same D's Table 1 detection rate on the attack it was fit on. sigma weighs D's gradient "
                  "against f's (sigma 0 is plain I-FGSM in the same ball).", "",
                  adaptive_markdown(results), ""]
    if "gradcam" in results:
        gc = results["gradcam"]
        rows = [[layer, *[f"{gc['similarity'][a][layer]:.3f}" for a in gc["similarity"]]] for layer in gc["layers"]]
        parts += ["## Grad-CAM layer analysis", "",
                  "Mean cosine similarity between clean and adversarial Grad-CAM maps per layer.", "",
                  tabulate(rows, headers=["layer", *gc["similarity"]], tablefmt="github"), "",
                  f"![gradcam]({gc['figure']})", ""]
    if examples is not None:
        examples_png(figures / "examples.png", examples)
        parts += ["## Examples", "", "Clean and adversarial test images, each above its saliency map (|gradient| "
                  "summed over channels).", "", "![examples](figures/examples.png)", ""]
    ips = results.get("images_per_second", {})
    if ips:
        # Chunked stages (attacks, saliency) run on every worker's replicas; the rest on worker 0's.
        n = env.get("replicas", 1) * env.get("workers", 1)
        parts += ["## Throughput", "", f"{env['workers']} worker(s) x {env['replicas']} replica(s), "
                  f"devices: {', '.join(env['devices'])}.", "",
                  tabulate([[k, f"{v:.1f}", f"{v / n:.1f}"] for k, v in ips.items()],
                           headers=["stage", "images/s", "images/s per replica"], tablefmt="github"), ""]
    if stages:
        parts += ["## Stages", "", "What this run computed and what it reused from the stage store "
                  "(`store/`; `--fresh` recomputes everything).", "",
                  tabulate(sorted(stages.items()), headers=["stage", "status"], tablefmt="github"), ""]
    write_text(out / "report.md", "\n".join(parts))

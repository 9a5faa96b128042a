"""report.md (tabulate tables laid out like the paper's) and PNG figures (matplotlib, Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from .store import atomic_path, write_text


def pct(v: float | None) -> str:
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.1f}"


def table(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github")


def attacks_markdown(results: dict[str, Any], notes: dict[str, str]) -> str:
    rows = []
    for name, a in results["attacks"].items():
        grid = ", ".join(f"{e}: {pct(v)}" for e, v in a["by_eps"].items()) or "-"
        rows.append([name, a["type"], "none" if a["eps"] is None else f"{a['eps']:g}", grid,
                     f"{results.get('images_per_second', {}).get(f'attack:{name}', float('nan')):.0f}",
                     notes.get(name, "")])
    return table(rows, ["attack", "type", "selected eps", "f accuracy % by eps", "images/s", "notes"])


def matrix_markdown(row_labels: list, col_labels: list, matrix: list[list[float]], corner: str) -> str:
    rows = [[str(r), *[pct(v) for v in row]] for r, row in zip(row_labels, matrix)]
    return table(rows, [corner, *map(str, col_labels)])


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


def write_report(results: dict[str, Any], out: Path, *, sections: list[str], notes: dict[str, str],
                 examples: dict[str, Any] | None = None, stages: dict[str, dict[str, Any]] | None = None) -> None:
    """Write report.md into ``out``: the header, the attacks, each experiment's ``sections``, the
    example grid, throughput and the stages table."""
    env, c = results["environment"], results["classifier"]
    parts = [
        f"# advsal_bench report: {results['suite']}", "",
        f"Dataset **{results['dataset']}** ({results['data']['source']}), seed {results['seed']}; "
        f"TensorFlow {env['tensorflow']}, strategy {env['strategy']} x{env['replicas']}"
        + (f" on {env['workers']} workers" if env.get("workers", 1) > 1 else "")
        + (f"; f and D trained with the {env['train_loop']} loop over {env['train_replicas']} replica(s)."
           if "train_loop" in env else "."),
        "", f"Classifier f: train accuracy {pct(c['train_accuracy'])}%, test accuracy {pct(c['test_accuracy'])}%.",
        "", "## Attacks", "", attacks_markdown(results, notes), "", *sections,
    ]
    if examples is not None:
        examples_png(out / "figures" / "examples.png", examples)
        parts += ["## Examples", "", "Clean and adversarial test images, each above its saliency map (|gradient| "
                  "summed over channels).", "", "![examples](figures/examples.png)", ""]
    parts += _throughput(results, env)
    if stages:
        parts += ["## Stages", "", "What this run computed and what it reused from the stage store "
                  "(`store/`; `--fresh` recomputes everything).", "",
                  table([[k, v["status"], f"{v['seconds']:.1f}"] for k, v in sorted(stages.items())],
                        ["stage", "status", "seconds"]), ""]
    write_text(out / "report.md", "\n".join(parts))


def _throughput(results: dict[str, Any], env: dict[str, Any]) -> list[str]:
    ips = results.get("images_per_second", {})
    if not ips:
        return []
    # Chunked stages (attacks, saliency) run on every worker's replicas; the rest on worker 0's.
    n = env.get("replicas", 1) * env.get("workers", 1)
    return ["## Throughput", "", f"{env['workers']} worker(s) x {env['replicas']} replica(s), "
            f"devices: {', '.join(env['devices'])}.", "",
            table([[k, f"{v:.1f}", f"{v / n:.1f}"] for k, v in ips.items()], ["stage", "images/s", "images/s per replica"]),
            ""]

"""Which saliency scaling serves D best? Trains f once, crafts the attacks once, then fits the
[image, saliency] and saliency-only detectors under each normalization.

    python benchmarks/saliency_scale_study.py [configs/quick.yaml] [--set k=v ...]

Prints a Markdown table of D accuracy per (attack, normalization); the README quotes its output.
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
import types

from tabulate import tabulate

from advsal_bench.config import SaliencyConfig, load_config
from advsal_bench.data import load_dataset
from advsal_bench.suite import run_suite


def main(argv: list[str]) -> None:
    suite = argv[0] if argv and not argv[0].startswith("--") else "configs/quick.yaml"
    overrides = [a for a in argv[1:] if a != "--set"]
    base = load_config(suite, overrides)
    data = load_dataset(base.dataset, seed=base.seed)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        f_path = None
        for method, use_abs in (("none", False), ("per_image", False), ("global", False), ("global", True)):
            cfg = dataclasses.replace(
                base,
                saliency=SaliencyConfig(method="gradient", abs=use_abs, normalize=method),
                experiments=("table1",),
                detectors=types.MappingProxyType({k: v for k, v in base.detectors.items() if "saliency" in v.inputs}),
            )
            if f_path is not None:  # same f for every variant: only D's input changes
                cfg = dataclasses.replace(cfg, classifier=dataclasses.replace(cfg.classifier, path=f_path))
            out = f"{tmp}/{method}_{use_abs}"
            results = run_suite(cfg, out, verbose=0, dataset=data)
            f_path = f"{tmp}/none_False/models/f.keras"
            label = method + (" (abs)" if use_abs else "")
            for r in results["table1"]:
                rows.setdefault((r["attack"], r["detector"]), {})[label] = r["d_accuracy"]
    labels = ["none", "per_image", "global", "global (abs)"]
    table = [[a, d, *[f"{100 * v.get(l, float('nan')):.1f}" for l in labels]] for (a, d), v in rows.items()]
    print(tabulate(table, headers=["attack", "detector", *labels], tablefmt="github"))


if __name__ == "__main__":
    main(sys.argv[1:])

"""advsal_bench: detecting adversarial examples with saliency maps, as a benchmark harness.

The public API, imported on first use so that ``import advsal_bench`` stays cheap and changes no
process state (no environment variable, no file descriptor; the CLI quiets TensorFlow for itself):

- ``advsal_bench.attacks.<name>(model, x, *, y=None, **params)`` -> ``AttackResult``
- ``advsal_bench.saliency_map(model, x, *, abs=False)`` -> NumPy saliency maps
- ``advsal_bench.detectors``: detector objects with ``fit(x_clean, x_adv, *, model)`` and ``score(x)``
- ``advsal_bench.load_config(path)``, ``advsal_bench.run_suite(cfg, output_dir)``
- ``advsal_bench.best_pairs``, ``advsal_bench.available_backends`` (JSMA's pair search; no TensorFlow needed)
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["attacks", "detectors", "saliency_map", "load_config", "run_suite", "best_pairs",
           "available_backends", "__version__"]

_LAZY = {
    "load_config": ("config", "load_config"),
    "run_suite": ("suite", "run_suite"),
    "saliency_map": ("saliency", "saliency_map"),
    "best_pairs": ("pairsearch", "best_pairs"),
    "available_backends": ("pairsearch", "available_backends"),
}
_SUBMODULES = ("attacks", "detectors")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
    raise AttributeError(f"module 'advsal_bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)

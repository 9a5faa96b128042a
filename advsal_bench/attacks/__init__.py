"""Attacks: plain functions of ``model_fn`` (x -> logits) with keyword-only hyperparameters."""
from __future__ import annotations

from ..registry import Registry
from .fgsm import fgsm
from .ifgsm import ifgsm, ifgsm_l2, ifgsm_linf

ATTACKS: Registry = Registry("attack")
ATTACKS.register("fgsm")(fgsm)
ATTACKS.register("ifgsm_linf")(ifgsm_linf)
ATTACKS.register("ifgsm_l2")(ifgsm_l2)


def _jsma(*args, **kwargs):
    from .jsma import jsma

    return jsma(*args, **kwargs)


ATTACKS.register("jsma")(_jsma)

__all__ = ["ATTACKS", "fgsm", "ifgsm", "ifgsm_linf", "ifgsm_l2"]

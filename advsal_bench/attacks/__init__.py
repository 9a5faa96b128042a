"""Attacks: plain functions of ``model_fn`` (x -> logits) with keyword-only hyperparameters."""
from __future__ import annotations

from ..registry import Registry
from .cw_detector import cw_detector
from .cw_l2 import cw_l2
from .detector_fn import make_detector_fn
from .fgsm import fgsm
from .ifgsm import ifgsm, ifgsm_l2, ifgsm_linf
from .metzen import metzen_adaptive

ATTACKS: Registry = Registry("attack")
ATTACKS.register("fgsm")(fgsm)
ATTACKS.register("ifgsm_linf")(ifgsm_linf)
ATTACKS.register("ifgsm_l2")(ifgsm_l2)
ATTACKS.register("cw_l2")(cw_l2)

# Attacks on f and a detector together: (model_fn, detector_fn, x, **hyperparameters) -> x_adv.
ADAPTIVE_ATTACKS: Registry = Registry("adaptive attack")
ADAPTIVE_ATTACKS.register("metzen")(metzen_adaptive)
ADAPTIVE_ATTACKS.register("cw_detector")(cw_detector)


def _jsma(*args, **kwargs):
    from .jsma import jsma

    return jsma(*args, **kwargs)


ATTACKS.register("jsma")(_jsma)

__all__ = [
    "ADAPTIVE_ATTACKS",
    "ATTACKS",
    "cw_detector",
    "cw_l2",
    "fgsm",
    "ifgsm",
    "ifgsm_l2",
    "ifgsm_linf",
    "make_detector_fn",
    "metzen_adaptive",
]

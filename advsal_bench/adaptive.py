"""Adaptive (white-box) attacks on f and a trained detector D, and the numbers that judge them.

An attack succeeds on an image when f's answer turns wrong *and* D raises no alarm; a detector
evaluated only against attacks that ignore it says little (Carlini & Wagner 2017).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from .attacks import cw_detector, make_detector_fn, metzen_adaptive
from .config import AdaptiveConfig, DetectorConfig, SaliencyConfig
from .distribute import run_batched

_NORMS = {"linf": np.inf, "l2": 2}
# The norm and eps the Metzen attack uses by default: the same ball as the attack D was fit on.
ATTACK_NORM = {"fgsm": "linf", "ifgsm_linf": "linf", "ifgsm_l2": "l2"}


def detector_fn_for(d_model: keras.Model, dcfg: DetectorConfig, model_fn: Callable, saliency: SaliencyConfig,
                    scale: float | None, surrogate_fn: Callable | None) -> Callable[[tf.Tensor], tf.Tensor]:
    """D's logit as a function of the image, saliency recomputed inside (differentiable)."""
    return make_detector_fn(d_model, model_fn, inputs=dcfg.inputs, saliency_abs=saliency.abs, saliency_scale=scale,
                            saliency_normalize=saliency.normalize,
                            saliency_model_fn=surrogate_fn if "saliency" in dcfg.inputs else None)


def metzen_ball(cfg: AdaptiveConfig, attack_type: str, eps_used: float | None,
                fallback: tuple[str, float] | None) -> tuple[str, float] | None:
    """(norm, eps) of the Metzen attack on a D fit on ``attack_type``; None when nothing defines one."""
    m = cfg.metzen
    if m.eps is not None:
        norm = m.norm if m.norm != "auto" else ATTACK_NORM.get(attack_type, "linf")
        return norm, m.eps
    if attack_type in ATTACK_NORM and eps_used is not None:
        norm = ATTACK_NORM[attack_type]
        if m.norm not in ("auto", norm):
            return None
        return norm, float(eps_used)
    if fallback is not None and m.norm in ("auto", fallback[0]):
        return fallback
    return None


def craft_metzen(strategy, model_fn, detector_fn, x: np.ndarray, *, norm: str, eps: float, sigmas: Sequence[float],
                 steps: int, batch_size: int) -> dict[float, np.ndarray]:
    def step(xb, eps_t, sigma_t):
        return metzen_adaptive(model_fn, detector_fn, xb, eps=eps_t, sigma=sigma_t, steps=steps, norm=_NORMS[norm])

    # eps and sigma enter as tensors: one trace of the (second-order) graph serves the whole sigma grid.
    return {s: run_batched(strategy, step, [x], batch_size=batch_size, constants=(eps, s))[0] for s in sigmas}


def craft_cw_detector(strategy, model_fn, detector_fn, x: np.ndarray, *, kappa: float, c: float, steps: int,
                      learning_rate: float, batch_size: int) -> np.ndarray:
    def step(xb):
        return cw_detector(model_fn, detector_fn, xb, threshold_logit=0.0, kappa=kappa, c=c, steps=steps,
                           learning_rate=learning_rate)

    return run_batched(strategy, step, [x], batch_size=batch_size)[0]


def adaptive_metrics(x: np.ndarray, y: np.ndarray, x_adv: np.ndarray, clean_pred: np.ndarray, adv_pred: np.ndarray,
                     d_scores: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
    """Success (f fooled and no alarm), detection rates and perturbation sizes of one adaptive set."""
    fooled = (adv_pred != y) & (clean_pred == y)
    alarm = np.asarray(d_scores).ravel() >= threshold
    delta = (x_adv - x).reshape(len(x), -1).astype(np.float64)
    return {
        "success_rate": float(np.mean(fooled & ~alarm)),
        "f_accuracy": float(np.mean(adv_pred == y)),
        "fooling_rate": float(np.mean(fooled)),
        "detection_rate": float(np.mean(alarm)),
        "detection_rate_fooling": float(np.mean(alarm[fooled])) if fooled.any() else float("nan"),
        "mean_l2": float(np.mean(np.linalg.norm(delta, axis=1))),
        "mean_linf": float(np.mean(np.abs(delta).max(axis=1))),
        "images": int(len(x)),
    }

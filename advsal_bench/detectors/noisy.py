"""Noisy copies of clean images, as large as the adversarial perturbations: Feinman et al.'s negatives.

Feinman et al. (2017) fit KD+BU's logistic regression with clean *and* noisy images in the negative
class, so that the detector learns "adversarial", not "perturbed". Their noise is as large as the
adversarial perturbation of the same images:

- ``gaussian``: ``clip(x + sigma * z, 0, 1)``, z standard normal, with sigma set so that the mean L2
  distance to the clean images equals the adversarial images' mean L2 distance (their code fixes
  sigma per dataset and attack from that rule; here it is solved from the images at hand);
- ``flip``: as many values set to 1.0 as the adversarial image changed, drawn among the values
  below 0.99 (their code draws with replacement; here without, so the count is exact);
- ``auto``: ``flip`` where the adversarial images change under a quarter of the values on average
  (L0 attacks such as JSMA), ``gaussian`` otherwise. Their code picks by attack name and flips for
  C&W as well; a dense C&W L2 perturbation gets Gaussian noise here.
"""
from __future__ import annotations

import numpy as np

__all__ = ["NOISE_KINDS", "noisy_copies"]

NOISE_KINDS = ("auto", "gaussian", "flip")
_SPARSE = 0.25  # mean fraction of changed values below which `auto` flips
_FLIP_BELOW = 0.99


def noisy_copies(x_clean: np.ndarray, x_adv: np.ndarray, *, kind: str = "auto", seed: int = 0) -> np.ndarray:
    """One noisy copy of each ``x_clean[i]``, as large as the perturbation ``x_adv[i] - x_clean[i]``."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise: expected one of {', '.join(NOISE_KINDS)}, got {kind!r}")
    if x_clean.shape != x_adv.shape:
        raise ValueError(f"x_adv: expected one adversarial image per clean image, shape {x_clean.shape}, "
                         f"got {x_adv.shape}")
    x = x_clean.astype(np.float32)
    changed = (x_adv != x_clean).reshape(len(x), -1)
    if kind == "auto":
        kind = "flip" if changed.mean() < _SPARSE else "gaussian"
    rng = np.random.default_rng(seed)
    if kind == "flip":
        return _flipped(x, changed.sum(axis=1), rng)
    target = float(np.mean(_l2(x_adv.astype(np.float32) - x)))
    return _gaussian(x, target, rng.standard_normal(x.shape, dtype=np.float32))


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt(np.sum(np.square(d.reshape(len(d), -1), dtype=np.float64), axis=1))


def _gaussian(x: np.ndarray, target: float, z: np.ndarray) -> np.ndarray:
    """clip(x + sigma z) with the mean L2 change ``target``: bisection, the change grows with sigma."""
    def noisy(sigma: float) -> np.ndarray:
        return np.clip(x + np.float32(sigma) * z, 0.0, 1.0)

    def mean_l2(sigma: float) -> float:
        return float(np.mean(_l2(noisy(sigma) - x)))

    if target <= 0.0:
        return x.copy()
    lo, hi = 0.0, 1.0
    while mean_l2(hi) < target and hi < 1e3:  # past 1e3 every value sits at 0 or 1 already
        lo, hi = hi, hi * 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if mean_l2(mid) < target else (lo, mid)
    return noisy(hi)


def _flipped(x: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``counts[i]`` values of image i below 0.99, drawn without replacement, set to 1.0."""
    out = x.reshape(len(x), -1).copy()
    for row, k in zip(out, counts):
        candidates = np.flatnonzero(row < _FLIP_BELOW)
        row[rng.choice(candidates, size=min(int(k), len(candidates)), replace=False)] = 1.0
    return out.reshape(x.shape)

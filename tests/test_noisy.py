"""Feinman et al.'s noisy negatives: noise of the adversarial perturbation's size and kind."""
from __future__ import annotations

import numpy as np
import pytest

from advsal_bench.detectors.noisy import noisy_copies


def _digits(n: int = 64, seed: int = 0) -> np.ndarray:
    """MNIST-like: mostly exact zeros, a stroke of values in (0, 1]."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.float32)
    x[:, 8:20, 10:18] = rng.uniform(0.2, 1.0, (n, 12, 8, 1))
    return x


def _fgsm_like(x: np.ndarray, eps: float = 0.3, seed: int = 1) -> np.ndarray:
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=x.shape).astype(np.float32)
    return np.clip(x + eps * signs, 0.0, 1.0)


def _l0_like(x: np.ndarray, fraction: float = 0.05, seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = x.reshape(len(x), -1).copy()
    for row in out:
        row[rng.choice(row.size, int(fraction * row.size), replace=False)] = 1.0
    return out.reshape(x.shape)


def _l2(d: np.ndarray) -> np.ndarray:
    return np.sqrt((d.reshape(len(d), -1).astype(np.float64) ** 2).sum(axis=1))


@pytest.mark.parametrize("eps", [0.05, 0.3])
def test_gaussian_noise_matches_the_mean_l2_of_the_perturbation_and_stays_in_range(eps):
    x = _digits()
    adv = _fgsm_like(x, eps)
    noisy = noisy_copies(x, adv, kind="gaussian", seed=0)
    assert noisy.shape == x.shape and noisy.dtype == np.float32
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0
    np.testing.assert_allclose(_l2(noisy - x).mean(), _l2(adv - x).mean(), rtol=1e-3)
    # Noise, not the perturbation: uncorrelated with it.
    corr = np.corrcoef((noisy - x).ravel(), (adv - x).ravel())[0, 1]
    assert abs(corr) < 0.1


def test_flips_change_as_many_values_as_the_attack_and_set_them_to_one():
    x = _digits()
    adv = _l0_like(x, 0.05)
    noisy = noisy_copies(x, adv, kind="flip", seed=0)
    changed = (noisy != x).reshape(len(x), -1)
    np.testing.assert_array_equal(changed.sum(axis=1), (adv != x).reshape(len(x), -1).sum(axis=1))
    assert (noisy[noisy != x] == 1.0).all() and (x[noisy != x] < 0.99).all()


def test_auto_flips_for_sparse_perturbations_and_adds_gaussian_noise_for_dense_ones():
    x = _digits()
    sparse, dense = _l0_like(x, 0.05), _fgsm_like(x, 0.3)
    np.testing.assert_array_equal(noisy_copies(x, sparse, seed=3), noisy_copies(x, sparse, kind="flip", seed=3))
    np.testing.assert_array_equal(noisy_copies(x, dense, seed=3), noisy_copies(x, dense, kind="gaussian", seed=3))


def test_the_seed_fixes_the_noise():
    x = _digits()
    adv = _fgsm_like(x)
    np.testing.assert_array_equal(noisy_copies(x, adv, seed=5), noisy_copies(x, adv, seed=5))
    assert not np.array_equal(noisy_copies(x, adv, seed=5), noisy_copies(x, adv, seed=6))


def test_no_perturbation_gives_the_clean_images_back():
    x = _digits()
    np.testing.assert_array_equal(noisy_copies(x, x.copy(), kind="gaussian"), x)

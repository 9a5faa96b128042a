"""Binary detectors D on [image, saliency] (the paper's), [image] (input-only) or [saliency] alone."""
from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from ..config import DetectorConfig
from ..distribute import run_batched
from ..models import build_model
from ..models.residual import with_image_residual
from ..training import train_model


def detector_input(inputs: Sequence[str], image: np.ndarray, saliency: np.ndarray | None) -> np.ndarray:
    """Concatenate the named inputs on the channel axis, in the configured order."""
    parts = []
    for name in inputs:
        if name == "image":
            parts.append(image)
        elif name == "saliency":
            if saliency is None:
                raise ValueError("detector input 'saliency': expected saliency maps, got None")
            parts.append(saliency)
        else:
            raise ValueError(f"detector input: expected 'image' or 'saliency', got {name!r}")
    return np.concatenate(parts, axis=-1).astype(np.float32, copy=False)


def balanced_set(clean: np.ndarray, adv: np.ndarray, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clean (label 0) and adversarial (label 1) inputs, equally many of each, shuffled by seed."""
    n = min(len(clean), len(adv))
    x = np.concatenate([clean[:n], adv[:n]], axis=0)
    y = np.concatenate([np.zeros(n, np.float32), np.ones(n, np.float32)])
    order = np.random.default_rng(seed).permutation(len(x))
    return x[order], y[order]


def train_detector(
    cfg: DetectorConfig,
    x: np.ndarray,
    y: np.ndarray,
    *,
    strategy: tf.distribute.Strategy,
    seed: int,
    verbose: int = 0,
    f: keras.Model | None = None,
    loop: str = "fit",
    log=print,
    key: str = "detectors.batch_size",
) -> keras.Model:
    """Train D (``loop``: see :func:`train_model`); ``f`` is needed by detectors that read f's activations (``metzen_d``)."""
    options = {"f": f, "layer": cfg.layer} if cfg.arch == "metzen_d" else {}

    def build() -> keras.Model:
        model = build_model(cfg.arch, x.shape[1:], 1, **options)
        if cfg.image_filter == "highpass":
            channels = x.shape[-1] // len(cfg.inputs)  # image and saliency have the same channels
            start = cfg.inputs.index("image") * channels
            model = with_image_residual(model, start, start + channels)
        return model

    return train_model(build, x, y, task="detect",
                       strategy=strategy, loop=loop, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       learning_rate=cfg.learning_rate, seed=seed, verbose=verbose, log=log, key=key)


def scorer(model: keras.Model):
    """D's probability of 'adversarial' as a per-batch TF function (make once per model: it is traced once)."""

    def score(batch: tf.Tensor) -> tf.Tensor:
        return tf.math.sigmoid(model(batch, training=False))

    return score


def detector_scores(
    score_fn, x: np.ndarray, *, strategy: tf.distribute.Strategy, batch_size: int = 256
) -> np.ndarray:
    """Apply a :func:`scorer` to inputs, sharded over the strategy's replicas."""
    if not len(x):
        return np.zeros(0, np.float32)
    return run_batched(strategy, score_fn, [x], batch_size=batch_size)[0].ravel()

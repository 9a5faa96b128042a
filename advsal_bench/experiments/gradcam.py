"""Grad-CAM layer analysis (paper section 5, Figure 7): where do adversarial maps go wrong?

For each chosen layer, Grad-CAM (Selvaraju et al. 2017) of the predicted class for clean and
adversarial images, and the mean cosine similarity between the two maps: a number per layer, so the
claim "shallow layers are robust, middle layers go wrong" is measured.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..report import table
from ..store import atomic_path
from .spec import ExperimentContext, ExperimentSpec, ReportContext, register

DEFAULT_LAYERS = {
    "mnist_net_f": ("conv1", "pool1", "conv2"),
    "mnist_net_f_dropout": ("conv1", "pool1", "conv2"),
    "cifar10_net_f": ("block1_conv1", "block2_conv2", "block3_conv2"),
    "cifar10_small_f": ("block1_relu", "block2_relu", "block4_relu"),
    "vgg16_f": ("block2_conv1", "block4_conv1", "block5_pool"),
}


def default_layers(model: keras.Model) -> tuple[str, ...]:
    if model.name in DEFAULT_LAYERS:
        return DEFAULT_LAYERS[model.name]
    spatial = [l.name for l in model.layers if _rank(l) == 4]
    if not spatial:
        raise ValueError(f"gradcam: expected a model with 4-D feature maps, got none in {model.name!r}")
    return tuple(dict.fromkeys([spatial[0], spatial[len(spatial) // 2], spatial[-1]]))


def _rank(layer: keras.layers.Layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer that was never called has no output
        return 0


def gradcam(model: keras.Model, x: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """Grad-CAM maps of the predicted class at each layer, resized to the input, scaled to [0, 1]."""
    try:
        outputs = [model.get_layer(name).output for name in layers]
    except ValueError as exc:
        valid = ", ".join(l.name for l in model.layers)
        raise ValueError(f"gradcam layers: expected layer names of {model.name!r} ({valid}), got {list(layers)}") from exc
    xt = tf.convert_to_tensor(x, tf.float32)
    with tf.GradientTape() as tape:
        acts, logits = _activations(model, xt, layers, outputs)
        score = tf.reduce_sum(tf.reduce_max(logits, axis=-1))
    grads = tape.gradient(score, acts)
    maps = {}
    for name, a, g in zip(layers, acts, grads):
        weights = tf.reduce_mean(g, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * a, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, x.shape[1:3]).numpy()[..., 0]
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        maps[name] = cam / np.maximum(peak, 1e-12)
    return maps


def _activations(model: keras.Model, x: tf.Tensor, layers: Sequence[str], outputs: list) -> tuple[list, tf.Tensor]:
    """The named layers' activations and the logits, in one differentiable forward pass.

    A Sequential model loaded from a .keras file rebuilds its graph, and its layers' symbolic
    outputs are then not the ones ``model.outputs`` depends on (the gradient comes back None); so
    a Sequential model is run layer by layer instead of through a probe model.
    """
    if isinstance(model, keras.Sequential):
        acts, h = {}, x
        for layer in model.layers:
            h = layer(h, training=False)
            if layer.name in layers:
                acts[layer.name] = h
        return [acts[name] for name in layers], h
    *acts, logits = keras.Model(model.inputs, [*outputs, model.outputs[0]])(x, training=False)
    return acts, logits


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a2, b2 = a.reshape(len(a), -1), b.reshape(len(b), -1)
    num = np.sum(a2 * b2, axis=1)
    den = np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1)
    # Two all-zero maps are identical; one zero map against a non-zero one shares nothing.
    both_zero = den == 0
    return np.where(both_zero, np.where(np.linalg.norm(a2 - b2, axis=1) == 0, 1.0, 0.0), num / np.where(both_zero, 1, den))


def gradcam_experiment(model: keras.Model, x_clean: np.ndarray, x_adv: dict[str, np.ndarray], out: Path, *,
                       layers: Sequence[str] | None = None, images: int = 4, batch: int = 256) -> dict[str, Any]:
    layers = tuple(layers or default_layers(model))
    clean_maps = _batched(model, x_clean, layers, batch)
    similarity = {}
    adv_maps = {}
    for name, xa in x_adv.items():
        adv_maps[name] = _batched(model, xa, layers, batch)
        similarity[name] = {l: float(np.mean(cosine_similarity(clean_maps[l], adv_maps[name][l]))) for l in layers}
    figure = "figures/gradcam.png"
    _grid_png(out / figure, x_clean[:images], {n: x[:images] for n, x in x_adv.items()},
              {l: m[:images] for l, m in clean_maps.items()},
              {n: {l: m[:images] for l, m in maps.items()} for n, maps in adv_maps.items()}, layers)
    return {"layers": list(layers), "similarity": similarity, "figure": figure, "images": int(len(x_clean))}


def _batched(model, x, layers, batch):
    parts = [gradcam(model, x[i : i + batch], layers) for i in range(0, len(x), batch)]
    return {l: np.concatenate([p[l] for p in parts]) for l in layers}


def _grid_png(path: Path, x_clean, x_adv, clean_maps, adv_maps, layers) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attack = next(iter(x_adv))  # one attack keeps the grid readable; numbers cover all attacks
    n = len(x_clean)
    cols = 2 * (1 + len(layers))
    fig, axes = plt.subplots(n, cols, figsize=(1.5 * cols, 1.5 * n), squeeze=False)

    def show(ax, img, title=None, cmap=None):
        img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
        ax.imshow(np.clip(img, 0, 1), cmap=cmap or ("gray" if img.ndim == 2 else None), vmin=0, vmax=1)
        ax.set_axis_off()
        if title:
            ax.set_title(title, fontsize=7)

    for i in range(n):
        show(axes[i, 0], x_clean[i], "input (clean)" if i == 0 else None)
        show(axes[i, 1], x_adv[attack][i], f"input ({attack})" if i == 0 else None)
        for j, l in enumerate(layers):
            show(axes[i, 2 + 2 * j], clean_maps[l][i], f"{l} clean" if i == 0 else None, cmap="jet")
            show(axes[i, 3 + 2 * j], adv_maps[attack][l][i], f"{l} adv" if i == 0 else None, cmap="jet")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def compute(ctx: ExperimentContext) -> dict[str, Any]:
    pool, g = ctx.splits.pool, ctx.run.cfg.gradcam
    x_adv = {name: ctx.adv[key].x_test for name, key in ctx.plan.selected.items()}
    return gradcam_experiment(ctx.f.model, pool.x[pool.test], x_adv, ctx.run.out, layers=g.layers, images=g.images)


def render(gc: dict[str, Any], rctx: ReportContext) -> list[str]:
    rows = [[layer, *[f"{gc['similarity'][a][layer]:.3f}" for a in gc["similarity"]]] for layer in gc["layers"]]
    return ["## Grad-CAM layer analysis", "",
            "Mean cosine similarity between clean and adversarial Grad-CAM maps per layer.", "",
            table(rows, ["layer", *gc["similarity"]]), "", f"![gradcam]({gc['figure']})", ""]


register(ExperimentSpec("gradcam", compute, render, chief_only=True))

"""The paper's detector D: a Keras network trained on [image, saliency] (or on one of the two).

``inputs: [image, saliency]`` is the paper's detector, ``[image]`` and ``[saliency]`` its
ablations; ``arch: metzen_d`` is Metzen et al.'s head on a frozen layer of f. The saliency is f's
gradient saliency, normalized as the suite's ``saliency`` block says.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from ..distribute import Runner, run_batched
from ..models import build_model
from ..models.residual import with_image_residual
from ..saliency import NORMALIZATIONS, fit_global_scale, gradient_saliency, normalize_saliency, saliency_map
from ..schema import param
from ..store import save_keras
from ..training import train_model
from .base import Detector, as_model_fn, check_images, logit

DETECTOR_INPUTS = ("image", "saliency")
_SCORE_BATCH = 256


@dataclass(frozen=True)
class LearnedDetectorConfig:
    type: str = "learned"
    arch: str | None = param(None, model=True)  # null: the dataset's default D
    inputs: tuple[str, ...] = param(("image", "saliency"), choices=DETECTOR_INPUTS, nonempty=True, unique=True)
    epochs: int = param(10, ge=0)
    batch_size: int = param(128, gt=0)
    learning_rate: float = param(1e-4, gt=0)
    # arch metzen_d only: the layer of f whose activations the detector reads (null: the arch's default).
    layer: str | None = param(None)
    # highpass: D sees the image's fixed high-pass residual instead of its pixels (models/residual.py);
    # none: the pixels, as in the paper.
    image_filter: str = param("none", choices=("none", "highpass"))


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


def scorer(model: keras.Model):
    """D's probability of 'adversarial' as a per-batch TF function (make once per model: it is traced once)."""

    def score(batch: tf.Tensor) -> tf.Tensor:
        return tf.math.sigmoid(model(batch, training=False))

    return score


def detector_scores(score_fn, x: np.ndarray, *, strategy: tf.distribute.Strategy, batch_size: int = 256) -> np.ndarray:
    """Apply a :func:`scorer` to inputs, sharded over the strategy's replicas (traced for this call)."""
    if not len(x):
        return np.zeros(0, np.float32)
    return run_batched(strategy, score_fn, [x], batch_size=batch_size)[0].ravel()


class LearnedDetector(Detector):
    """D, a network trained on balanced clean/adversarial images of f (``fit``); ``score``: its
    probability of 'adversarial', flagged at 0.5. ``margin`` differentiates D through f's saliency,
    taking the saliency's gradient from a softplus copy of f (``surrogate_beta``; None: f's own,
    which is zero almost everywhere for a ReLU f: gradient masking, not robustness)."""

    threshold = 0.5

    def __init__(self, *, arch: str = "mnist_net_d", inputs: Sequence[str] = ("image", "saliency"), epochs: int = 10,
                 batch_size: int = 128, learning_rate: float = 1e-4, layer: str | None = None,
                 image_filter: str = "none", saliency_abs: bool = False, saliency_normalize: str = "none",
                 surrogate_beta: float | None = 30.0) -> None:
        from ..schema import build

        self.config = build(LearnedDetectorConfig, {"arch": arch, "inputs": list(inputs), "epochs": epochs,
                                                    "batch_size": batch_size, "learning_rate": learning_rate,
                                                    "layer": layer, "image_filter": image_filter}, "detector")
        if saliency_normalize not in NORMALIZATIONS:
            raise ValueError(f"saliency_normalize: expected one of {', '.join(NORMALIZATIONS)}, got {saliency_normalize!r}")
        if surrogate_beta is not None and not surrogate_beta > 0:
            raise ValueError(f"surrogate_beta: expected > 0 or None, got {surrogate_beta}")
        self.saliency_abs, self.saliency_normalize, self.surrogate_beta = saliency_abs, saliency_normalize, surrogate_beta
        self.scale: float | None = None
        self.network: keras.Model | None = None
        self.model: Any = None
        self.runner: Runner | None = None
        self._score_fn: Callable | None = None
        self._saliency_fn: Callable | None = None

    @classmethod
    def from_config(cls, cfg: LearnedDetectorConfig, *, saliency_abs: bool = False, saliency_normalize: str = "none",
                    surrogate_beta: float | None = 30.0) -> "LearnedDetector":
        return cls(arch=cfg.arch, inputs=cfg.inputs, epochs=cfg.epochs, batch_size=cfg.batch_size,
                   learning_rate=cfg.learning_rate, layer=cfg.layer, image_filter=cfg.image_filter,
                   saliency_abs=saliency_abs, saliency_normalize=saliency_normalize, surrogate_beta=surrogate_beta)

    @property
    def uses_saliency(self) -> bool:
        return "saliency" in self.config.inputs

    def _raw_saliency(self, x: np.ndarray) -> np.ndarray:
        if self.runner is None:
            return saliency_map(self.model, x, abs=self.saliency_abs, batch_size=_SCORE_BATCH)
        if self._saliency_fn is None:
            f_fn, use_abs = as_model_fn(self.model), self.saliency_abs
            self._saliency_fn = lambda batch: gradient_saliency(f_fn, batch, abs=use_abs)
        return self.runner.run(self._saliency_fn, [x], batch_size=_SCORE_BATCH)[0]

    def _maps(self, x: np.ndarray, saliency: np.ndarray | None) -> np.ndarray | None:
        if not self.uses_saliency:
            return None
        raw = saliency if saliency is not None else self._raw_saliency(x)
        return normalize_saliency(raw, self.saliency_normalize, scale=self.scale)

    def fit(self, x_clean, x_adv, *, model, y_clean=None, saliency_clean=None, saliency_adv=None, seed: int = 0,
            data_seed: int | None = None, strategy: tf.distribute.Strategy | None = None, loop: str = "fit",
            runner: Runner | None = None, verbose: int = 0, log=print,
            key: str = "detectors.batch_size") -> "LearnedDetector":
        """Train D on ``x_clean`` (label 0) and ``x_adv`` (label 1), balanced and shuffled by ``data_seed``.

        ``saliency_clean`` / ``saliency_adv``: f's raw saliency of the two sets where already computed.
        """
        x_clean, x_adv = check_images(x_clean, "x_clean"), check_images(x_adv, "x_adv")
        self.model, strategy = model, strategy or tf.distribute.get_strategy()
        self.runner = runner or Runner(strategy)
        if self.uses_saliency:
            raw = saliency_clean if saliency_clean is not None else self._raw_saliency(x_clean)
            self.scale = fit_global_scale(raw) if self.saliency_normalize == "global" else None
            saliency_clean = raw
        x, y = balanced_set(detector_input(self.config.inputs, x_clean, self._maps(x_clean, saliency_clean)),
                            detector_input(self.config.inputs, x_adv, self._maps(x_adv, saliency_adv)),
                            seed=seed if data_seed is None else data_seed)
        self.network = train_model(lambda: self._build(x.shape[1:]), x, y, task="detect", strategy=strategy,
                                   loop=loop, epochs=self.config.epochs, batch_size=self.config.batch_size,
                                   learning_rate=self.config.learning_rate, seed=seed, verbose=verbose, log=log, key=key)
        self._score_fn = scorer(self.network)
        return self

    def _build(self, shape: tuple[int, ...]) -> keras.Model:
        cfg = self.config
        options = {"f": self.model, "layer": cfg.layer} if cfg.arch == "metzen_d" else {}
        network = build_model(cfg.arch, shape, 1, **options)
        if cfg.image_filter == "highpass":
            channels = shape[-1] // len(cfg.inputs)  # image and saliency have the same channels
            start = cfg.inputs.index("image") * channels
            network = with_image_residual(network, start, start + channels)
        return network

    def score(self, x, *, saliency=None) -> np.ndarray:
        if self.network is None:
            raise RuntimeError("LearnedDetector.score: fit or load it first")
        x = check_images(x)
        if not len(x):
            return np.zeros(0, np.float64)
        inputs = detector_input(self.config.inputs, x, self._maps(x, saliency))
        return self.runner.run(self._score_fn, [inputs], batch_size=_SCORE_BATCH)[0].ravel().astype(np.float64)

    def margin_fn(self, threshold: float | None = None) -> Callable[[tf.Tensor], tf.Tensor]:
        """D's logit minus the threshold's, as a differentiable function of the images (built now, eagerly)."""
        from ..attacks.detector_fn import make_detector_fn
        from ..models.surrogate import softplus_surrogate

        f_fn = as_model_fn(self.model)
        smooth = None
        if self.uses_saliency and self.surrogate_beta is not None:
            smooth = as_model_fn(softplus_surrogate(self.model, beta=self.surrogate_beta))
        d = make_detector_fn(self.network, f_fn, inputs=self.config.inputs, saliency_abs=self.saliency_abs,
                             saliency_scale=self.scale, saliency_normalize=self.saliency_normalize,
                             saliency_model_fn=smooth)
        offset = logit(self.threshold if threshold is None else threshold)
        return d if offset == 0.0 else (lambda x: d(x) - offset)

    def margin(self, x, threshold: float | None = None):
        return self.margin_fn(threshold)(x)

    def save(self, directory: Path) -> list[str]:
        save_keras(self.network, Path(directory) / "model.keras")
        (Path(directory) / "detector.json").write_text(json.dumps({"scale": self.scale}))
        return ["model.keras", "detector.json"]

    def restore(self, directory: Path, *, model, strategy=None, runner: Runner | None = None) -> "LearnedDetector":
        """Load the network and scale stored by :meth:`save` into this (configured) detector."""
        strategy = strategy or tf.distribute.get_strategy()
        with strategy.scope():
            self.network = keras.models.load_model(Path(directory) / "model.keras", compile=False, safe_mode=True)
        self.scale = json.loads((Path(directory) / "detector.json").read_text())["scale"]
        self.model, self.runner, self._score_fn = model, runner or Runner(strategy), scorer(self.network)
        return self


# ---- registration -------------------------------------------------------------------------------------


def _fit(det: LearnedDetector, d: Any) -> LearnedDetector:
    return det.fit(d.x_clean, d.x_adv, model=d.model, saliency_clean=d.saliency_clean, saliency_adv=d.saliency_adv,
                   seed=d.seed, data_seed=d.data_seed, strategy=d.strategy, loop=d.loop, runner=d.runner,
                   verbose=d.verbose, log=d.log, key=f"{d.key}.batch_size")


def _resolve(cfg: LearnedDetectorConfig, suite: Any, key: str) -> LearnedDetectorConfig:
    """The dataset's default D, and the combinations of inputs, arch and filter that make sense."""
    from dataclasses import replace

    from ..config import DEFAULT_ARCHS
    from ..errors import ConfigError

    if cfg.arch is None:
        cfg = replace(cfg, arch=DEFAULT_ARCHS[suite.dataset.name][1])
    if cfg.arch == "metzen_d" and tuple(cfg.inputs) != ("image",):
        raise ConfigError(f"config key '{key}.inputs': metzen_d reads f's activations of the image, "
                          f"expected [image], got {list(cfg.inputs)}")
    if cfg.layer is not None and cfg.arch != "metzen_d":
        raise ConfigError(f"config key '{key}.layer': only arch metzen_d takes a layer, got arch {cfg.arch!r}")
    if cfg.image_filter != "none" and (cfg.arch == "metzen_d" or "image" not in cfg.inputs):
        why = "metzen_d feeds the image to f" if cfg.arch == "metzen_d" else "'image' is not among its inputs"
        raise ConfigError(f"config key '{key}.image_filter': {why}; expected none, got {cfg.image_filter!r}")
    return cfg


def _register() -> None:
    from .spec import DETECTORS, DetectorSpec

    DETECTORS.add("learned", DetectorSpec(
        "learned", LearnedDetectorConfig,
        build=lambda cfg, ctx: LearnedDetector.from_config(cfg, saliency_abs=ctx.saliency_abs,
                                                           saliency_normalize=ctx.saliency_normalize,
                                                           surrogate_beta=ctx.surrogate_beta),
        fit=_fit, score=lambda det, x, saliency: det.score(x, saliency=saliency),
        restore=lambda det, folder, d: det.restore(folder, model=d.model, strategy=d.strategy, runner=d.runner),
        uses_saliency=lambda cfg: "saliency" in cfg.inputs, trains_network=True, resolve=_resolve,
    ))


_register()

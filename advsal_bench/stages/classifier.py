"""The classifier stage: f trained on the training images (and stored), or loaded from ``classifier.path``."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import tensorflow as tf

from ..config import ClassifierConfig
from ..errors import InputError
from ..models import build_model
from ..store import fingerprint, save_keras, sha256_file
from ..training import train_model
from .artifacts import Classifier, Images
from .run import Run


def load_model(path: Path | str, strategy: tf.distribute.Strategy) -> keras.Model:
    with strategy.scope():
        return keras.models.load_model(path, compile=False, safe_mode=True)


def _model_fn(model: keras.Model):
    def model_fn(x: tf.Tensor) -> tf.Tensor:
        return model(x, training=False)

    return model_fn


def classifier(run: Run, train: Images, cfg: ClassifierConfig, *, num_classes: int) -> Classifier:
    """f, with the key every downstream stage derives its own from (the file's hash for a loaded f)."""
    if cfg.path is not None:
        return _load(run, cfg, train, num_classes)
    t0 = time.perf_counter()
    config = {"classifier": dataclasses.asdict(cfg), "seed": run.cfg.seed, "loop": list(run.training.key)}
    stage = run.stage("classifier", "classifier", [train], config)
    training = run.training

    def build() -> keras.Model:
        run.log(f"classifier: training {cfg.arch} for {cfg.epochs} epochs ({training.loop} loop, "
                f"{training.strategy.num_replicas_in_sync} replica(s))")
        return train_model(
            lambda: build_model(cfg.arch, train.x.shape[1:], num_classes, weights=cfg.weights),
            train.x, train.y, task="classify", strategy=training.strategy, loop=training.loop,
            epochs=cfg.epochs, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
            lr_decay_epochs=cfg.lr_decay_epochs, lr_decay_factor=cfg.lr_decay_factor,
            seed=run.seed_for("classifier"), verbose=2 if run.verbose else 0, log=run.log, key="classifier.batch_size")

    def save(model: keras.Model, folder: Path) -> list[str]:
        save_keras(model, folder / "model.keras")
        return ["model.keras"]

    model, status = run.coord.obj(stage, build, save, lambda folder: load_model(folder / "model.keras", run.strategy),
                                  collective=training.collective)
    run.record(stage, status, time.perf_counter() - t0)
    return Classifier(stage.key, model, _model_fn(model))


def _load(run: Run, cfg: ClassifierConfig, train: Images, num_classes: int) -> Classifier:
    try:
        model = load_model(cfg.path, run.strategy)
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe model file is an input error
        raise InputError(f"{cfg.path}: cannot load the classifier ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None
    expected = tuple(train.x.shape[1:])
    if tuple(model.input_shape[1:]) != expected or model.output_shape[-1] != num_classes:
        raise InputError(f"{cfg.path}: expected a model from {expected} to {num_classes} logits, "
                         f"got {tuple(model.input_shape[1:])} -> {model.output_shape[-1]}")
    run.log(f"classifier: loaded {cfg.path}")
    return Classifier(fingerprint("classifier-file", sha256_file(cfg.path)), model, _model_fn(model))

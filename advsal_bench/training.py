"""Training f and D under any strategy: Keras' ``model.fit`` on one machine, a custom loop across machines.

Keras 3's ``model.fit`` does not run under MultiWorkerMirroredStrategy (keras-team/keras#20585:
"Attempt to convert a value (PerReplica...)" from its data adapter), so a run that spans workers
trains with :func:`custom_fit` instead: every replica of every worker takes its slice of each
global batch, gradients are all-reduced (Keras' optimizer sums them across replicas inside
``apply_gradients``), and every worker ends with the same weights. The same loop on one machine
(``distribute.train_loop: custom``) gives the same weights for 1 and N replicas up to float
summation order, which ``model.fit`` does not promise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import keras
import numpy as np
import tensorflow as tf

from ._tf_quiet import fit_notices_dropped
from .errors import ConfigError

Task = Literal["classify", "detect"]
Log = Callable[[str], None]


@dataclass(frozen=True)
class TrainSetup:
    """Where and how a suite trains its models."""

    strategy: tf.distribute.Strategy  # across workers, the strategy spanning all of them
    loop: Literal["fit", "custom"]
    collective: bool = False  # every worker takes part, so every worker must call the training

    @property
    def key(self) -> tuple[str, ...]:
        """What stage keys add for this setup: fit and the custom loop shuffle differently, so they
        train different weights (nothing for fit, so stores written before the custom loop stay valid)."""
        return ("custom-loop",) if self.loop == "custom" else ()


def resolve_loop(name: str, workers: int) -> Literal["fit", "custom"]:
    """The training loop ``distribute.train_loop`` names, for a run over ``workers`` workers."""
    if name == "fit" and workers > 1:
        raise ConfigError(f"config key 'distribute.train_loop': model.fit cannot train across {workers} workers "
                          "(keras-team/keras#20585); expected auto or custom, got fit")
    if name == "auto":
        return "custom" if workers > 1 else "fit"
    return name  # type: ignore[return-value]


def check_batch_sizes(batch_sizes: dict[str, int], setup: TrainSetup) -> None:
    """Fail before any work where the custom loop cannot split a configured batch over the replicas."""
    if setup.loop != "custom":
        return
    for key, batch in batch_sizes.items():
        _require_multiple(key, batch, int(setup.strategy.num_replicas_in_sync))


def _require_multiple(key: str, batch: int, replicas: int) -> None:
    if batch % replicas:
        raise ConfigError(f"config key '{key}': expected a multiple of the {replicas} replicas in sync, got {batch}")


def _loss(task: Task, reduction: str | None = "sum_over_batch_size") -> keras.losses.Loss:
    if task == "classify":
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=reduction)
    return keras.losses.BinaryCrossentropy(from_logits=True, reduction=reduction)


def _schedule(learning_rate: float, decay_epochs: Sequence[int], decay_factor: float) -> Callable[[int], float]:
    boundaries = sorted(decay_epochs)
    return lambda epoch: learning_rate * decay_factor ** sum(epoch >= b for b in boundaries)


def train_model(
    build: Callable[[], keras.Model],
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task,
    strategy: tf.distribute.Strategy,
    loop: Literal["fit", "custom"] = "fit",
    epochs: int,
    batch_size: int,
    learning_rate: float,
    lr_decay_epochs: Sequence[int] = (),
    lr_decay_factor: float = 0.1,
    seed: int,
    verbose: int = 0,
    log: Log = print,
    key: str = "batch_size",
) -> keras.Model:
    """Build (in ``strategy.scope()``) and train a model on ``x, y`` with Adam, softmax or sigmoid loss.

    ``loop``: ``fit`` (Keras' ``model.fit``) or ``custom`` (:func:`custom_fit`, needed where
    ``strategy`` spans workers; every worker must then call this at the same point with the same
    arguments). ``batch_size`` is the global batch, as in ``model.fit``; ``key`` names its config
    key in errors.
    """
    keras.utils.set_random_seed(seed)
    schedule = _schedule(learning_rate, lr_decay_epochs, lr_decay_factor)
    with strategy.scope():
        model = build()
        optimizer = keras.optimizers.Adam(learning_rate)
        if loop == "fit":
            metric = ("accuracy" if task == "classify"
                      else keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy"))
            model.compile(optimizer=optimizer, loss=_loss(task), metrics=[metric])
    if not epochs:
        return model
    if loop == "fit":
        callbacks = [keras.callbacks.LearningRateScheduler(lambda epoch, _lr: schedule(epoch))] if lr_decay_epochs else []
        with fit_notices_dropped():
            model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, callbacks=callbacks,
                      verbose=verbose)
        return model
    custom_fit(model, optimizer, x, y, task=task, strategy=strategy, epochs=epochs, batch_size=batch_size,
                       schedule=schedule, seed=seed, log=log if verbose else None, key=key)
    return model


def global_batches(n: int, batch_size: int, replicas: int, *, epoch: int, seed: int) -> list[np.ndarray]:
    """One epoch's global batches of indices, the same on every worker.

    Every batch holds the same number of examples, a multiple of ``replicas``: replicas whose
    shapes differed would trace different graphs, and collectives traced in a different order on
    different workers deadlock. The ``n % batch`` examples left over are dropped from this epoch
    only (the permutation changes every epoch).
    """
    batch = min(batch_size, n - n % replicas)
    if batch < replicas:
        return []
    order = np.random.default_rng([seed, epoch]).permutation(n)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def custom_fit(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    x: np.ndarray,
    y: np.ndarray,
    *,
    task: Task,
    strategy: tf.distribute.Strategy,
    epochs: int,
    batch_size: int,
    schedule: Callable[[int], float],
    seed: int,
    log: Log | None = None,
    key: str = "batch_size",
) -> list[dict[str, float]]:
    """Synchronous data-parallel training with a custom loop; returns each epoch's loss and accuracy.

    ``model`` and ``optimizer`` must have been built in ``strategy.scope()``. Each global batch is
    split evenly over all replicas of all workers (replica ``r`` takes slice ``r``); the loss is
    the mean over the global batch, so one step equals one ``model.fit`` step on the whole batch
    up to float summation order (and BatchNorm, whose statistics are per replica, as in ``fit``).
    """
    replicas = int(strategy.num_replicas_in_sync)
    _require_multiple(key, batch_size, replicas)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64 if task == "classify" else np.float32)
    loss_fn = _loss(task, reduction=None)
    with strategy.scope():
        # Slot variables made lazily inside the replica function would be per replica, not mirrored.
        optimizer.build(model.trainable_variables)
    history: list[dict[str, float]] = []

    @tf.function
    def train_step(xb, yb, global_size):
        def replica_step(xr, yr):
            with tf.GradientTape() as tape:
                logits = model(xr, training=True)
                target = yr if task == "classify" else tf.reshape(yr, [-1, 1])
                loss = tf.reduce_sum(loss_fn(target, logits)) / global_size
                if model.losses:
                    loss += tf.add_n(model.losses) / replicas
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            if task == "classify":
                hits = tf.cast(tf.equal(tf.argmax(logits, -1), yr), tf.float32)
            else:
                hits = tf.cast(tf.equal(tf.cast(logits[:, 0] > 0, tf.float32), yr), tf.float32)
            return loss, tf.reduce_sum(hits)

        loss, hits = strategy.run(replica_step, args=(xb, yb))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None))

    for epoch in range(epochs):
        optimizer.learning_rate.assign(schedule(epoch))
        batches = global_batches(len(x), batch_size, replicas, epoch=epoch, seed=seed)
        total_loss = total_hits = seen = 0.0
        for idx in batches:
            parts = np.split(idx, replicas)
            xb = strategy.experimental_distribute_values_from_function(
                lambda ctx, parts=parts: tf.constant(x[parts[ctx.replica_id_in_sync_group]]))
            yb = strategy.experimental_distribute_values_from_function(
                lambda ctx, parts=parts: tf.constant(y[parts[ctx.replica_id_in_sync_group]]))
            loss, hits = train_step(xb, yb, tf.constant(float(len(idx))))
            total_loss += float(loss) * len(idx)
            total_hits += float(hits)
            seen += len(idx)
        row = {"loss": total_loss / max(seen, 1), "accuracy": total_hits / max(seen, 1)}
        history.append(row)
        if log is not None:
            log(f"epoch {epoch + 1}/{epochs}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.4f} "
                f"({int(seen)} images, {replicas} replicas)")
    return history

"""The one place that builds a ``tf.distribute`` strategy, and the batched runner that uses it."""
from __future__ import annotations

import json
import os
import functools
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from .config import DistributeConfig
from .errors import ConfigError

_CPU_SPLIT_DONE: list[int] = []


def _split_cpu(n: int) -> None:
    """Split the CPU into ``n`` logical devices; only possible before TF initializes its devices."""
    if _CPU_SPLIT_DONE:
        if _CPU_SPLIT_DONE[0] != n:
            raise ConfigError(
                f"config key 'distribute.cpu_devices': the CPU is already split into {_CPU_SPLIT_DONE[0]} devices "
                f"in this process, got {n}"
            )
        return
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError as exc:
        existing = len(tf.config.list_logical_devices("CPU"))
        if existing == n:
            _CPU_SPLIT_DONE.append(n)
            return
        raise ConfigError(
            f"config key 'distribute.cpu_devices': TensorFlow is already initialized with {existing} CPU device(s), "
            f"cannot split into {n} ({exc})"
        ) from None
    _CPU_SPLIT_DONE.append(n)


def _device_names(cfg: DistributeConfig) -> list[str]:
    if cfg.cpu_devices:
        _split_cpu(cfg.cpu_devices)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    available = gpus or cpus
    if cfg.cpu_devices:
        available = cpus
    if cfg.devices is None:
        return available
    if isinstance(cfg.devices, int):
        if cfg.devices > len(available):
            raise ConfigError(
                f"config key 'distribute.devices': expected at most {len(available)} devices here, got {cfg.devices}"
            )
        return available[: cfg.devices]
    all_names = gpus + cpus
    for name in cfg.devices:
        if not any(n.endswith(name) or n == name for n in all_names):
            raise ConfigError(f"config key 'distribute.devices': unknown device {name!r}; expected one of {', '.join(all_names)}")
    return list(cfg.devices)


def get_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
    """Build the strategy named by ``cfg.strategy`` (``auto``: mirrored over >1 GPU, else one device)."""
    name = cfg.strategy
    if name == "multi_worker":
        if cfg.cluster_resolver == "slurm":
            resolver = tf.distribute.cluster_resolver.SlurmClusterResolver()
        else:
            if "TF_CONFIG" not in os.environ:
                raise ConfigError("config key 'distribute.strategy': multi_worker with tf_config expects the TF_CONFIG environment variable")
            try:
                json.loads(os.environ["TF_CONFIG"])
            except ValueError as exc:
                raise ConfigError(f"TF_CONFIG: expected JSON, got a parse error ({exc})") from None
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    devices = _device_names(cfg)
    if name == "auto":
        gpus = [d for d in devices if "GPU" in d.upper()]
        name = "mirrored" if len(gpus) > 1 or (cfg.cpu_devices or 0) > 1 else "one_device"
    if name == "one_device":
        if cfg.devices is None:
            # TF's default strategy runs on the default device too, without OneDeviceStrategy's
            # per-step distribution machinery (measured: half the model.fit time on small nets).
            return tf.distribute.get_strategy()
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(devices)


def describe(strategy: tf.distribute.Strategy) -> dict[str, object]:
    kind = {
        "_DefaultDistributionStrategy": "one_device",
        "OneDeviceStrategy": "one_device",
        "MirroredStrategy": "mirrored",
        "MultiWorkerMirroredStrategy": "multi_worker",
    }.get(type(strategy).__name__, type(strategy).__name__)
    workers = 1
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and kind == "multi_worker":
        workers = len(resolver.cluster_spec().as_dict().get("worker", [])) or 1
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):
        devices = []
    if not devices:  # the default strategy names no device: it is TF's default placement
        gpus = tf.config.list_logical_devices("GPU")
        devices = [(gpus or tf.config.list_logical_devices("CPU"))[0].name]
    return {"strategy": kind, "replicas": int(strategy.num_replicas_in_sync), "workers": workers, "devices": devices}


def run_batched(
    strategy: tf.distribute.Strategy,
    fn: Callable[..., tf.Tensor | Sequence[tf.Tensor]],
    inputs: Sequence[np.ndarray],
    *,
    batch_size: int,
    constants: Sequence[float] = (),
    progress: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """Apply a per-batch TF function to numpy arrays, sharding each batch over the replicas.

    ``fn(*batch, *constants)``: constants (eps, step size) are passed as float32 tensors so one trace
    serves every value of the grid. ``batch_size`` is per replica; outputs come back in input
    order, as numpy arrays.
    """
    n = len(inputs[0])
    replicas = strategy.num_replicas_in_sync
    global_batch = batch_size * replicas
    step = _compiled_step(strategy, fn)
    consts = tuple(tf.constant(c, tf.float32) for c in constants)
    outputs: list[list[np.ndarray]] = []
    if replicas == 1:
        for start in range(0, n, global_batch):
            batch = tuple(tf.convert_to_tensor(a[start : start + global_batch]) for a in inputs)
            res = step(*batch, *consts)
            res = res if isinstance(res, (tuple, list)) else (res,)
            outputs.append([r.numpy() for r in res])
            if progress:
                progress(len(batch[0]))
    else:
        ds = tf.data.Dataset.from_tensor_slices(tuple(inputs)).batch(global_batch)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        ds = ds.with_options(options)
        for batch in strategy.experimental_distribute_dataset(ds):
            res = step(*batch, *consts)
            res = res if isinstance(res, (tuple, list)) else (res,)
            gathered = [strategy.gather(r, axis=0).numpy() for r in res]
            outputs.append(gathered)
            if progress:
                progress(len(gathered[0]))
    if not outputs:
        return []
    return [np.concatenate([o[i] for o in outputs], axis=0) for i in range(len(outputs[0]))]


@functools.lru_cache(maxsize=128)
def _compiled_step(strategy: tf.distribute.Strategy, fn: Callable) -> Callable:
    # Cached so that each (strategy, fn) pair is traced once per process, not once per call.
    return tf.function(lambda *args: strategy.run(fn, args=args), reduce_retracing=True)

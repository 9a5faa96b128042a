"""The one place that builds a ``tf.distribute`` strategy, and the batched runner that uses it."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import re
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from .config import DistributeConfig
from .errors import ConfigError, WorkerLostError

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
        return _multi_worker_strategy(cfg)
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


# ---------------------------------------------------------------------------------------------
# Multi-worker: peer-loss detection, worker identity, barrier
# ---------------------------------------------------------------------------------------------

# How a lost peer is detected (measured with TF 2.21, 2 CPU workers on localhost): TF's coordination
# service. Every worker sends heartbeats to the service on the leader (worker 0 / the chief); when one
# stops (SIGKILL, SIGSTOP, crash, lost network) the service aborts the collectives on every other worker
# with UnavailableError "tasks are unhealthy (stopped sending heartbeats)"; when the leader itself dies,
# the others get UNAVAILABLE (connection reset) at once or DEADLINE_EXCEEDED on their next heartbeat.
# Measured time from the kill to the surviving worker's exception: 1-16 s (heartbeat timeout 10 s).
# CommunicationOptions(timeout_seconds=...) is not used: it bounds every collective, so a barrier that
# waits for a slower worker (the chief writing the report) would fail although nobody was lost.
# What the defaults miss: a worker that never starts leaves the others waiting forever at startup;
# cluster_register_timeout (with the registration barrier) bounds that.
HEARTBEAT_TIMEOUT_ENV = "ADVSAL_HEARTBEAT_TIMEOUT"
CLUSTER_TIMEOUT_ENV = "ADVSAL_CLUSTER_TIMEOUT"
DEFAULT_HEARTBEAT_TIMEOUT_S = 10.0
DEFAULT_CLUSTER_TIMEOUT_S = 300.0


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ConfigError(f"environment variable {name}: expected a number of seconds > 0, got {raw!r}")
    return value


def _configure_coordination(resolver: tf.distribute.cluster_resolver.ClusterResolver,
                            cfg: DistributeConfig | None = None) -> bool:
    """Configure TF's coordination service before the strategy starts it: heartbeat and join timeouts.

    Mirrors what MultiWorkerMirroredStrategy configures itself (standalone service, leader, the chief
    and worker jobs) and adds the timeouts. Returns False (TF's defaults then apply: 10 s heartbeat,
    no join timeout) where this TF build lacks the internal API.
    """
    try:
        from tensorflow.python.distribute import multi_worker_util
        from tensorflow.python.eager import context

        try:
            from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
        except ImportError:  # older TF layouts
            from tsl.protobuf import coordination_config_pb2  # type: ignore[no-redef]
    except ImportError:
        return False
    spec = resolver.cluster_spec()
    ctx = context.context()
    if not spec.jobs or resolver.task_type not in ("chief", "worker") or ctx.coordination_service is not None:
        return False
    heartbeat = (cfg.heartbeat_timeout if cfg is not None and cfg.heartbeat_timeout
                 else _env_seconds(HEARTBEAT_TIMEOUT_ENV, DEFAULT_HEARTBEAT_TIMEOUT_S))
    join = (cfg.join_timeout if cfg is not None and cfg.join_timeout
            else _env_seconds(CLUSTER_TIMEOUT_ENV, DEFAULT_CLUSTER_TIMEOUT_S))
    jobs = [coordination_config_pb2.CoordinatedJob(name=j, num_tasks=spec.num_tasks(j))
            for j in ("chief", "worker") if j in spec.jobs]
    try:
        ctx.configure_coordination_service(
            service_type="standalone",
            service_leader=multi_worker_util.coordination_leader(spec),
            coordinated_jobs=jobs,
            heartbeat_timeout_in_ms=int(heartbeat * 1000),
            cluster_register_timeout_in_ms=int(join * 1000),
        )
        # Without the registration barrier the join timeout is not applied: the first collective
        # would wait forever for a worker that never started (measured).
        ctx.coordination_service.cluster_register_with_barrier = True
    except (AttributeError, TypeError, ValueError):
        return False
    return True


def _multi_worker_strategy(cfg: DistributeConfig) -> tf.distribute.Strategy:
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
    _configure_coordination(resolver, cfg)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except tf.errors.OpError as exc:
        lost = worker_lost_error(exc, cluster=(resolver.cluster_spec(), resolver.task_type, resolver.task_id))
        if lost is not None:
            raise lost from None
        raise


_TASK_RE = re.compile(r"/job:(chief|worker)(?:/replica:\d+)?/task:(\d+)")
_PEER_LOSS_TYPES = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
    tf.errors.InternalError,
    tf.errors.FailedPreconditionError,
    tf.errors.UnknownError,
)
_PEER_LOSS_MARKERS = (
    "heartbeat", "unhealthy", "collective ops is aborted", "connection reset", "socket closed",
    "connection refused", "failed to connect", "barrier timed out", "is down", "coordinationservice",
    "registertask",
)


def _cluster_of(strategy: tf.distribute.Strategy | None) -> tuple[tf.train.ClusterSpec, str, int] | None:
    resolver = getattr(strategy, "cluster_resolver", None) if strategy is not None else None
    if resolver is None:
        if strategy is not None or "TF_CONFIG" not in os.environ:
            return None
        try:
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        except (ValueError, KeyError):
            return None
    spec = resolver.cluster_spec()
    if not spec.jobs:
        return None
    return spec, resolver.task_type, int(resolver.task_id or 0)


def _peer_reason(msg: str) -> str:
    low = msg.lower()
    if "stopped sending heartbeats" in low or "unhealthy" in low:
        return "stopped sending heartbeats (killed, crashed or unreachable)"
    if "wait_for_all_tasks_to_register" in low or ("barrier timed out" in low and "register" in low):
        join = _env_seconds(CLUSTER_TIMEOUT_ENV, DEFAULT_CLUSTER_TIMEOUT_S)
        return f"did not join the cluster within {join:g} s ({CLUSTER_TIMEOUT_ENV})"
    if "registertask" in low:
        join = _env_seconds(CLUSTER_TIMEOUT_ENV, DEFAULT_CLUSTER_TIMEOUT_S)
        return f"its coordination service did not register this worker within {join:g} s ({CLUSTER_TIMEOUT_ENV})"
    if "heartbeat" in low:
        return "the coordination service on it stopped answering heartbeats"
    for marker, reason in (("connection reset", "connection reset (killed or crashed)"),
                           ("socket closed", "connection closed (killed or crashed)"),
                           ("connection refused", "connection refused (not running)"),
                           ("failed to connect", "not reachable")):
        if marker in low:
            return reason
    first = next((line.strip() for line in msg.splitlines() if line.strip()), "")
    return first[:160]


def worker_lost_error(
    exc: BaseException,
    strategy: tf.distribute.Strategy | None = None,
    *,
    cluster: tuple[tf.train.ClusterSpec, str, int] | None = None,
) -> WorkerLostError | None:
    """Translate TF's peer-loss error into a one-line WorkerLostError naming the lost worker.

    Returns None where ``exc`` is not a peer loss (the caller re-raises it as it is). ``strategy``
    (or ``cluster``: (ClusterSpec, task type, task id)) names the workers; without either, TF_CONFIG does.
    """
    if isinstance(exc, WorkerLostError):
        return exc
    if not isinstance(exc, _PEER_LOSS_TYPES):
        return None
    msg = getattr(exc, "message", None) or str(exc)
    low = msg.lower()
    if not any(m in low for m in _PEER_LOSS_MARKERS):
        return None
    from tensorflow.python.distribute import multi_worker_util

    cluster = cluster or _cluster_of(strategy)
    me: tuple[str, int] | None = None
    if cluster is not None:
        spec, my_type, my_id = cluster
        me = (my_type, my_id)
    named = []
    for job, task in _TASK_RE.findall(msg):
        key = (job, int(task))
        if key != me and key not in named:
            named.append(key)
    if not named and ("heartbeat" in low or "registertask" in low) and cluster is not None:
        # Heartbeat and registration RPCs go to the coordination service leader.
        leader = "chief" if "chief" in spec.jobs else "worker"
        if (leader, 0) != me:
            named.append((leader, 0))
    reason = _peer_reason(msg)
    if not named:
        return WorkerLostError(f"a peer worker was lost: {reason}")
    job, task = named[0]
    index, address = task, None
    if cluster is not None:
        try:
            index = multi_worker_util.id_in_cluster(spec, job, task)
            address = spec.task_address(job, task)
        except (ValueError, KeyError):
            pass
    who = f"worker {index}" + (f" ({address})" if address else "")
    mine = ""
    if me is not None:
        mine = f"; worker {multi_worker_util.id_in_cluster(spec, *me)} stops too"
    return WorkerLostError(f"{who} lost: {reason}{mine} (restart all workers to resume)",
                           task=index, address=address)


@contextlib.contextmanager
def peer_loss_guard(strategy: tf.distribute.Strategy | None = None) -> Iterator[None]:
    """Re-raise TF's peer-loss errors inside the block as WorkerLostError (other errors pass through)."""
    try:
        yield
    except tf.errors.OpError as exc:
        lost = worker_lost_error(exc, strategy)
        if lost is None:
            raise
        raise lost from None


def _is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return type(strategy).__name__ in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy") and (
        _cluster_of(strategy) is not None
    )


def worker_info(strategy: tf.distribute.Strategy) -> tuple[int, int, bool]:
    """(this worker's index, number of workers, whether it is the chief); (0, 1, True) on one machine.

    Index 0 is the chief (the ``chief`` task if the cluster has one, else worker 0).
    """
    if not _is_multi_worker(strategy):
        return 0, 1, True
    from tensorflow.python.distribute import multi_worker_util

    spec, task_type, task_id = _cluster_of(strategy)
    return (
        int(multi_worker_util.id_in_cluster(spec, task_type, task_id)),
        int(multi_worker_util.worker_count(spec, task_type)),
        bool(multi_worker_util.is_chief(spec, task_type, task_id)),
    )


def local_strategy(strategy: tf.distribute.Strategy) -> tf.distribute.Strategy:
    """The strategy for work a worker does alone: ``strategy`` itself unless it spans several workers.

    Across workers, each one runs its own share (chunks, or the whole stage on the chief) on its own
    devices: mirrored over its GPUs when it has more than one, else TF's default placement. Training
    is the exception: it runs under the multi-worker strategy itself, with the custom loop of
    :mod:`advsal_bench.training`.
    """
    if not _is_multi_worker(strategy):
        return strategy
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    return tf.distribute.MirroredStrategy(gpus) if len(gpus) > 1 else tf.distribute.get_strategy()


@functools.lru_cache(maxsize=8)
def _barrier_fn(strategy: tf.distribute.Strategy) -> Callable[[], tf.Tensor]:
    @tf.function
    def fn() -> tf.Tensor:
        ones = strategy.run(lambda: tf.ones([], tf.float32))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)

    return fn


def barrier(strategy: tf.distribute.Strategy) -> int:
    """Wait until every worker reaches this call (a one-scalar all-reduce); returns the replica count.

    All workers must call it the same number of times, in the same order as their other collectives.
    A lost peer raises WorkerLostError. Free on one machine (no collective is run).
    """
    if not _is_multi_worker(strategy):
        return int(strategy.num_replicas_in_sync)
    with peer_loss_guard(strategy):
        return int(_barrier_fn(strategy)().numpy())


def describe(strategy: tf.distribute.Strategy) -> dict[str, object]:
    """Strategy, replicas per worker, workers and this worker's devices, as results.json records them."""
    if _is_multi_worker(strategy):
        _, workers, _ = worker_info(strategy)
        local = local_strategy(strategy)
        return {"strategy": "multi_worker", "replicas": int(local.num_replicas_in_sync), "workers": workers,
                "devices": _devices(local)}
    kind = {
        "_DefaultDistributionStrategy": "one_device",
        "OneDeviceStrategy": "one_device",
        "MirroredStrategy": "mirrored",
    }.get(type(strategy).__name__, type(strategy).__name__)
    return {"strategy": kind, "replicas": int(strategy.num_replicas_in_sync), "workers": 1, "devices": _devices(strategy)}


def _devices(strategy: tf.distribute.Strategy) -> list[str]:
    try:
        devices = list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError):
        devices = []
    if not devices:  # the default strategy names no device: it is TF's default placement
        gpus = tf.config.list_logical_devices("GPU")
        devices = [(gpus or tf.config.list_logical_devices("CPU"))[0].name]
    return devices


class Runner:
    """Per-batch TF functions compiled once and applied to NumPy arrays on a strategy's replicas.

    A run owns one: each function it is given is traced once for the run (eps, step sizes and
    other constants enter as tensors, so one trace serves a whole grid) and is freed with it.
    """

    def __init__(self, strategy: tf.distribute.Strategy) -> None:
        self.strategy = strategy
        self._steps: dict[Callable, Callable] = {}

    def step(self, fn: Callable) -> Callable:
        """``fn`` compiled for this runner's strategy (built on first use, then reused)."""
        if fn not in self._steps:
            strategy = self.strategy
            self._steps[fn] = tf.function(lambda *args: strategy.run(fn, args=args), reduce_retracing=True)
        return self._steps[fn]

    def run(self, fn: Callable[..., tf.Tensor | Sequence[tf.Tensor]], inputs: Sequence[np.ndarray], *,
            batch_size: int, constants: Sequence[float] = (),
            progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
        """``fn(*batch, *constants)`` over ``inputs``, each batch sharded over the replicas.

        ``batch_size`` is per replica; outputs come back in input order, as NumPy arrays.
        """
        step = self.step(fn)
        consts = tuple(tf.constant(c, tf.float32) for c in constants)
        if self.strategy.num_replicas_in_sync == 1:
            outputs = _run_single(step, inputs, batch_size, consts, progress)
        else:
            outputs = _run_replicated(self.strategy, step, inputs, batch_size, consts, progress)
        if not outputs:
            return []
        n = len(inputs[0])
        return [np.concatenate([o[i] for o in outputs], axis=0)[:n] for i in range(len(outputs[0]))]


def run_batched(strategy: tf.distribute.Strategy, fn: Callable[..., tf.Tensor | Sequence[tf.Tensor]],
                inputs: Sequence[np.ndarray], *, batch_size: int, constants: Sequence[float] = (),
                progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """One :meth:`Runner.run` with a runner of its own: ``fn`` is traced for this call only."""
    return Runner(strategy).run(fn, inputs, batch_size=batch_size, constants=constants, progress=progress)


def _as_tuple(res: Any) -> tuple:
    return tuple(res) if isinstance(res, (tuple, list)) else (res,)


def _run_single(step, inputs, batch_size, consts, progress) -> list[list[np.ndarray]]:
    outputs = []
    for start in range(0, len(inputs[0]), batch_size):
        batch = tuple(tf.convert_to_tensor(a[start : start + batch_size]) for a in inputs)
        outputs.append([r.numpy() for r in _as_tuple(step(*batch, *consts))])
        if progress:
            progress(len(batch[0]))
    return outputs


def _run_replicated(strategy, step, inputs, batch_size, consts, progress) -> list[list[np.ndarray]]:
    # A last batch with fewer images than replicas leaves a replica an empty shard, and
    # gradients through oneDNN kernels (TF's default on AVX-512 CPUs) fail on empty inputs
    # ("ReluGrad must have the same size and shape. Input 0: [0,6,6,4] != input 1: [0,8,8,1]",
    # TF 2.21).  Repeating the last image until n is a multiple of the replicas gives every
    # replica of every batch at least one image; the copies' outputs are dropped by the caller.
    # Every function run here maps each image on its own (attacks, saliency, scores), so the
    # copies change nothing else.
    n, replicas = len(inputs[0]), strategy.num_replicas_in_sync
    pad = -n % replicas
    if pad:
        inputs = [np.concatenate([a, np.repeat(a[-1:], pad, axis=0)]) for a in inputs]
    ds = tf.data.Dataset.from_tensor_slices(tuple(inputs)).batch(batch_size * replicas)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    ds = ds.with_options(options)
    outputs, done = [], 0
    for batch in strategy.experimental_distribute_dataset(ds):
        gathered = [strategy.gather(r, axis=0).numpy() for r in _as_tuple(step(*batch, *consts))]
        outputs.append(gathered)
        if progress:
            real = min(len(gathered[0]), n - done)  # the padding copies are not images
            done += real
            progress(real)
    return outputs

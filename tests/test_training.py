"""The custom training loop (advsal_bench.training): the same weights for 1 and N replicas, and it learns."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from advsal_bench.training import global_batches


def test_global_batches_are_equal_sized_multiples_of_the_replicas_and_reshuffled_per_epoch():
    first = global_batches(1000, 64, 4, epoch=0, seed=7)
    assert all(len(b) == 64 for b in first) and len(first) == 1000 // 64
    assert len(np.unique(np.concatenate(first))) == 64 * (1000 // 64)  # no example twice in an epoch
    again = global_batches(1000, 64, 4, epoch=0, seed=7)  # what another worker computes
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], global_batches(1000, 64, 4, epoch=1, seed=7)[0])
    # fewer images than one batch: one smaller batch, still a multiple of the replicas
    (small,) = global_batches(30, 64, 4, epoch=0, seed=7)
    assert len(small) == 28
    assert global_batches(3, 64, 4, epoch=0, seed=7) == []


_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from advsal_bench.models import build_model
    from advsal_bench.training import train_model
    rng = np.random.default_rng(0)
    x = rng.random((300, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, 300)
    weights = []
    for strategy in (tf.distribute.get_strategy(), tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])):
        m = train_model(lambda: build_model("mnist_net_f", (28, 28, 1), 10), x, y, task="classify",
                        strategy=strategy, loop="custom", epochs=2, batch_size=32, learning_rate=1e-3,
                        lr_decay_epochs=[1], seed=3)
        weights.append(m.get_weights())
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*weights))
    moved = max(float(np.abs(a).max()) for a in weights[0])
    print("DIFF", diff, "MAX", moved)
""")


def test_custom_loop_gives_the_same_weights_on_one_and_two_replicas():
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("DIFF")][-1]
    diff = float(line.split()[1])
    assert diff <= 1e-5, line


@pytest.mark.parametrize("task", ["classify", "detect"])
def test_custom_loop_learns_as_well_as_fit(mnist_sample, task):
    import keras
    import tensorflow as tf

    from advsal_bench.models import build_model
    from advsal_bench.training import train_model

    x, y = mnist_sample
    if task == "detect":  # a binary task: is the digit a 0..4 or a 5..9
        y = (y >= 5).astype(np.float32)
    outputs = 10 if task == "classify" else 1
    accuracies = {}
    for loop in ("fit", "custom"):
        model = train_model(lambda: build_model("mnist_net_f", (28, 28, 1), outputs), x[:1500], y[:1500],
                            task=task, strategy=tf.distribute.get_strategy(), loop=loop, epochs=2, batch_size=64,
                            learning_rate=2e-3, seed=1)
        logits = np.asarray(model(x[1500:], training=False))
        pred = logits.argmax(-1) if task == "classify" else (logits[:, 0] > 0).astype(np.float32)
        accuracies[loop] = float(np.mean(pred == y[1500:]))
        keras.backend.clear_session()
    assert accuracies["custom"] >= 0.85, accuracies
    assert abs(accuracies["custom"] - accuracies["fit"]) <= 0.05, accuracies

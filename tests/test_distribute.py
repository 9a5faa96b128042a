"""Strategies and the batched runner: mirrored over 2 logical CPUs must match one_device.

The CPU can be split into logical devices only before TensorFlow initializes, so the mirrored /
one_device comparison runs in a fresh subprocess; cheap checks run in-process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from advsal_bench.config import DistributeConfig
from advsal_bench.distribute import describe, get_strategy, run_batched
from advsal_bench.errors import ConfigError

SCRIPT = textwrap.dedent(
    r"""
    import json, sys
    import numpy as np
    import keras
    import tensorflow as tf

    from advsal_bench.attacks.fgsm import fgsm
    from advsal_bench.attacks.ifgsm import ifgsm_linf
    from advsal_bench.config import DistributeConfig
    from advsal_bench.distribute import describe, get_strategy, run_batched
    from advsal_bench.errors import ConfigError
    from advsal_bench.saliency import gradient_saliency

    out = {}
    mirrored = get_strategy(DistributeConfig(strategy="mirrored", cpu_devices=2))
    one = get_strategy(DistributeConfig(strategy="one_device"))
    auto2 = get_strategy(DistributeConfig(strategy="auto", cpu_devices=2))
    out["logical_cpus"] = len(tf.config.list_logical_devices("CPU"))
    out["replicas"] = {"mirrored": mirrored.num_replicas_in_sync, "one_device": one.num_replicas_in_sync,
                       "auto_cpu2": auto2.num_replicas_in_sync}
    out["describe"] = {"mirrored": describe(mirrored), "one_device": describe(one), "auto_cpu2": describe(auto2)}
    try:
        get_strategy(DistributeConfig(strategy="mirrored", cpu_devices=3))
        out["resplit_error"] = None
    except ConfigError as exc:
        out["resplit_error"] = str(exc)
    # Named device list and a count.
    named = get_strategy(DistributeConfig(strategy="mirrored", devices=("CPU:0", "CPU:1")))
    out["named_replicas"] = named.num_replicas_in_sync
    out["count_replicas"] = get_strategy(DistributeConfig(strategy="mirrored", devices=1, cpu_devices=2)).num_replicas_in_sync

    def build(strategy, weights=None):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([
                keras.Input(shape=(8, 8, 1)),
                keras.layers.Conv2D(4, 3, activation="relu"),
                keras.layers.Flatten(),
                keras.layers.Dense(5),
            ])
        if weights is not None:
            model.set_weights(weights)
        return model

    model_one = build(one)
    weights = model_one.get_weights()
    model_mirrored = build(mirrored, weights)
    model_plain = build(tf.distribute.get_strategy(), weights)

    def fns(model):
        model_fn = lambda x: model(x, training=False)
        def fgsm_step(x, eps):
            return fgsm(model_fn, x, eps=eps)
        def multi_step(x, y, eps):  # two inputs, two outputs
            return ifgsm_linf(model_fn, x, eps=eps, steps=2, y=y), gradient_saliency(model_fn, x)
        return fgsm_step, multi_step

    steps = {"one": fns(model_one), "mirrored": fns(model_mirrored)}  # one trace set per strategy
    rng = np.random.default_rng(0)
    out["cases"] = []
    # global batch 8: the last batch holds 5 (split 3 + 2), then 1, which would leave a replica empty
    # (oneDNN gradients fail on that) and so is padded to 2 with a copy whose outputs are dropped
    for n in (37, 33):
        x = rng.uniform(0, 1, size=(n, 8, 8, 1)).astype(np.float32)
        y = rng.integers(0, 5, size=n).astype(np.int32)
        seen = {"one": 0, "mirrored": 0}
        results = {}
        for name, strategy, model in (("one", one, model_one), ("mirrored", mirrored, model_mirrored)):
            fgsm_step, multi_step = steps[name]
            def progress(k, name=name):
                seen[name] += k
            (a,) = run_batched(strategy, fgsm_step, [x], batch_size=4, constants=(0.1,), progress=progress)
            b, s = run_batched(strategy, multi_step, [x, y], batch_size=4, constants=(0.05,))
            results[name] = (a, b, s)
        ref_a = fgsm(lambda t: model_plain(t, training=False), x, eps=0.1).numpy()
        ref_b = ifgsm_linf(lambda t: model_plain(t, training=False), x, eps=0.05, steps=2, y=y).numpy()
        ref_s = gradient_saliency(lambda t: model_plain(t, training=False), x).numpy()
        case = {"n": n, "seen": seen,
                "shapes": {k: [list(r.shape) for r in v] for k, v in results.items()},
                "moved": float(np.abs(results["mirrored"][0] - x).max())}
        for i, ref in enumerate((ref_a, ref_b, ref_s)):
            case[f"diff_{i}"] = float(np.abs(results["mirrored"][i] - results["one"][i]).max())
            case[f"ref_diff_{i}"] = float(max(np.abs(results[k][i] - ref).max() for k in results))
        out["cases"].append(case)
    print("RESULT " + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def mirrored_run():
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",)}
    env["CUDA_VISIBLE_DEVICES"] = ""  # logical CPUs only, even on a GPU machine
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, f"subprocess failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


def test_replica_counts(mirrored_run):
    assert mirrored_run["logical_cpus"] == 2
    assert mirrored_run["replicas"] == {"mirrored": 2, "one_device": 1, "auto_cpu2": 2}
    assert mirrored_run["named_replicas"] == 2
    assert mirrored_run["count_replicas"] == 1


def test_describe_in_subprocess(mirrored_run):
    d = mirrored_run["describe"]
    for info in d.values():
        assert set(info) == {"strategy", "replicas", "workers", "devices"}
        assert info["workers"] == 1
    assert d["mirrored"]["strategy"] == "mirrored" and d["mirrored"]["replicas"] == 2
    assert len(d["mirrored"]["devices"]) == 2 and all("CPU" in dev for dev in d["mirrored"]["devices"])
    assert d["one_device"]["strategy"] == "one_device" and d["one_device"]["replicas"] == 1
    assert len(d["one_device"]["devices"]) == 1
    assert d["auto_cpu2"]["strategy"] == "mirrored"


def test_cpu_cannot_be_resplit(mirrored_run):
    msg = mirrored_run["resplit_error"]
    assert msg is not None and "distribute.cpu_devices" in msg and "already split into 2" in msg


@pytest.mark.parametrize("index", [0, 1, 2])
def test_mirrored_matches_one_device_in_input_order(mirrored_run, index):
    for case in mirrored_run["cases"]:
        n = case["n"]
        assert case["shapes"]["mirrored"] == case["shapes"]["one"]
        assert case["shapes"]["mirrored"][index][0] == n
        assert case[f"diff_{index}"] <= 1e-5, case
        # Both agree with a plain eager call on the whole array, so rows are in input order.
        assert case[f"ref_diff_{index}"] <= 1e-5, case
        assert case["seen"] == {"one": n, "mirrored": n}
    assert mirrored_run["cases"][0]["moved"] > 0.09  # the attack did move the inputs


# --- in-process ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_initialized():
    # Initialize TF's devices first, so nothing below can split the CPU of the test process.
    tf.config.list_logical_devices("CPU")
    return tf.config.list_logical_devices("GPU")


def test_auto_picks_one_device_on_a_single_cpu(tf_initialized):
    if len(tf_initialized) > 1:
        pytest.skip("several GPUs: auto picks mirrored")
    strategy = get_strategy(DistributeConfig(strategy="auto"))
    # one device without an explicit device list: TF's default strategy (no per-step distribution)
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1
    info = describe(strategy)
    assert info == {"strategy": "one_device", "replicas": 1, "workers": 1, "devices": info["devices"]}
    assert len(info["devices"]) == 1


def test_one_device_with_explicit_device_uses_one_device_strategy(tf_initialized):
    strategy = get_strategy(DistributeConfig(strategy="one_device", devices=1))
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert describe(strategy)["strategy"] == "one_device"


def test_run_batched_one_device_order_and_empty(tf_initialized):
    strategy = get_strategy(DistributeConfig(strategy="one_device"))
    x = np.arange(23, dtype=np.float32).reshape(23, 1)

    def fn(a, c):
        return a * c + 1.0, -a

    seen = []
    out, neg = run_batched(strategy, fn, [x], batch_size=5, constants=(2.0,), progress=seen.append)
    np.testing.assert_array_equal(out, x * 2 + 1)
    np.testing.assert_array_equal(neg, -x)
    assert seen == [5, 5, 5, 5, 3]
    # One trace serves every constant value (constants are tensors).
    out3, _ = run_batched(strategy, fn, [x], batch_size=5, constants=(3.0,))
    np.testing.assert_array_equal(out3, x * 3 + 1)
    assert run_batched(strategy, fn, [x[:0]], batch_size=5, constants=(2.0,)) == []


def test_cpu_split_after_init_is_a_config_error(tf_initialized):
    with pytest.raises(ConfigError, match=r"distribute.cpu_devices.*already initialized with 1 CPU device"):
        get_strategy(DistributeConfig(strategy="mirrored", cpu_devices=2))


def test_device_errors(tf_initialized):
    with pytest.raises(ConfigError, match=r"'distribute.devices': expected at most \d+ devices here, got 64"):
        get_strategy(DistributeConfig(strategy="mirrored", devices=64))
    with pytest.raises(ConfigError, match=r"'distribute.devices': unknown device 'TPU:7'; expected one of .*CPU:0"):
        get_strategy(DistributeConfig(strategy="mirrored", devices=("TPU:7",)))


def test_multi_worker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=r"multi_worker with tf_config expects the TF_CONFIG environment variable"):
        get_strategy(DistributeConfig(strategy="multi_worker"))
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match=r"TF_CONFIG: expected JSON"):
        get_strategy(DistributeConfig(strategy="multi_worker"))

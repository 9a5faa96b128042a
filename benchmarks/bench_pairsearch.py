"""best_pairs per backend at image sizes from MNIST to ImageNet (batch 1).

Run: pytest benchmarks/bench_pairsearch.py -p no:cacheprovider -o python_files='bench_*.py'
Gradient kinds: 'model' (target/other gradients of a small random-init CNN at a
random input), 'random' (i.i.d. normal) and 'anti' (v = -u + 1e-6 noise: almost
every feature on the Pareto front, the adversarial case for the layer method).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

import advsal_bench.pairsearch as ps
from _models import small_cnn

SHAPES = {784: (28, 28, 1), 3072: (32, 32, 3), 12288: (64, 64, 3), 150528: (224, 224, 3)}
_CACHE: dict = {}


def gradients(kind: str, n: int):
    key = (kind, n)
    if key in _CACHE:
        return _CACHE[key]
    rng = np.random.default_rng(n)
    if kind == "model":
        import tensorflow as tf

        from advsal_bench.attacks.jsma import _grad_fn

        shape = SHAPES[n]
        model = small_cnn(shape)
        x = rng.random((1, *shape), dtype=np.float32)
        _, st, so = _grad_fn(model, shape)(tf.constant(x), tf.constant([3], tf.int32))
        st, so = st.numpy(), so.numpy()
    elif kind == "random":
        st, so = rng.normal(size=(1, n)).astype(np.float32), rng.normal(size=(1, n)).astype(np.float32)
    else:
        st = rng.normal(size=(1, n)).astype(np.float32)
        so = (st + 1e-6 * rng.normal(size=(1, n))).astype(np.float32)
    dom = np.ones((1, n), bool)
    _CACHE[key] = (st, so, dom)
    return _CACHE[key]


def _cases():
    for backend in ("native", "numpy", "cupy", "reference"):
        for n in SHAPES:
            if backend == "reference" and n > 12288:
                continue
            for kind in ("model", "random", "anti"):
                yield pytest.param(backend, n, kind, id=f"{backend}-{n}-{kind}")


@pytest.mark.parametrize("backend,n,kind", list(_cases()))
def test_best_pairs(benchmark, backend: str, n: int, kind: str) -> None:
    if backend not in ps.available_backends():
        pytest.skip(f"backend {backend!r} not available: {ps.backend_status()[backend][1]}")
    st, so, dom = gradients(kind, n)
    kwargs = {"backend": backend, "threads": 1}
    benchmark.extra_info.update(backend=backend, n=n, kind=kind, batch=1, threads=1)
    if backend == "reference" and n >= 12288:
        p, q, s = benchmark.pedantic(ps.best_pairs, args=(st, so, dom), kwargs=kwargs, rounds=1, iterations=1)
    elif backend == "reference" or (backend == "numpy" and n >= 12288):
        p, q, s = benchmark.pedantic(ps.best_pairs, args=(st, so, dom), kwargs=kwargs, rounds=3, iterations=1)
    else:
        p, q, s = benchmark(ps.best_pairs, st, so, dom, **kwargs)
    benchmark.extra_info["score"] = float(s[0])
    if n <= 3072 and backend != "reference":
        assert s[0] == pytest.approx(ps.best_pairs(st, so, dom, backend="reference")[2][0], rel=1e-9)

"""Every pair-search backend against brute force, plus dispatch and CUDA source checks."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import advsal_bench.pairsearch as ps
from advsal_bench.pairsearch import layers
from advsal_bench.pairsearch.reference import best_pairs_reference

ROOT = Path(__file__).resolve().parents[1]
FAST_BACKENDS = [b for b in ps.available_backends() if b not in ("reference", "cupy")]


def _case(rng: np.random.Generator, kind: int, b: int, n: int):
    if kind == 0:  # continuous
        st, so = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    elif kind == 1:  # integer-valued: many ties and duplicate points
        st, so = rng.integers(-3, 4, (b, n)).astype(float), rng.integers(-3, 4, (b, n)).astype(float)
    elif kind == 2:  # anti-correlated: huge Pareto front
        st = rng.normal(size=(b, n))
        so = st + 10 ** rng.uniform(-7, 0) * rng.normal(size=(b, n))
    elif kind == 3:  # mostly zero gradients
        st = rng.integers(-1, 2, (b, n)).astype(float) * (rng.random((b, n)) < 0.3)
        so = np.zeros((b, n))
    elif kind == 4:  # front on a quarter circle: every point is a candidate
        th = rng.uniform(0, np.pi / 2, (b, n))
        st, so = np.cos(th), -np.sin(th)
    else:  # sparse with exact zeros and repeated values
        st = rng.normal(size=(b, n)) * (rng.random((b, n)) < 0.5)
        so = np.round(rng.normal(size=(b, n)), 1)
    dom = rng.random((b, n)) < rng.uniform(0.0, 1.0)
    # Domains of exactly 0, 1 and 2 features.
    if b >= 3:
        dom[0] = False
        dom[1] = False
        dom[1, rng.integers(n)] = True
        dom[2] = False
        dom[2, rng.choice(n, size=min(2, n), replace=False)] = True
    return st.astype(np.float32), so.astype(np.float32), dom


def _check(backend: str, st, so, dom, increase: bool) -> None:
    ref = best_pairs_reference(st, so, dom, increase=increase)
    p, q, score = ps.best_pairs(st, so, dom, increase=increase, backend=backend)
    assert p.dtype == np.int64 and q.dtype == np.int64 and score.dtype == np.float64
    np.testing.assert_allclose(score, ref[2], rtol=1e-9, atol=0)
    sign = 1.0 if increase else -1.0
    for b in range(st.shape[0]):
        if ref[0][b] < 0:
            assert p[b] == q[b] == -1 and score[b] == 0.0
            continue
        assert 0 <= p[b] < q[b] < st.shape[1]
        assert dom[b, p[b]] and dom[b, q[b]]
        alpha = float(st[b, p[b]]) + float(st[b, q[b]])
        beta = float(so[b, p[b]]) + float(so[b, q[b]])
        assert sign * alpha > 0 and sign * beta < 0
        assert abs(alpha) * abs(beta) == pytest.approx(score[b], rel=1e-12)


@pytest.mark.parametrize("backend", ps.available_backends())
def test_matches_reference_random_cases(backend: str) -> None:
    if backend == "cupy":
        pytest.skip("covered by the gpu-marked test")
    rng = np.random.default_rng(1234)
    cases = 0
    for trial in range(400):
        n = int(rng.integers(1, 48))
        st, so, dom = _case(rng, trial % 6, 3, n)
        _check(backend, st, so, dom, increase=bool(trial % 2))
        cases += 3
    assert cases >= 1000


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_matches_reference_large_fronts(backend: str, monkeypatch) -> None:
    # Forces the windowed (pruned) search paths, not the dense small-m ones.
    monkeypatch.setattr(layers, "_DENSE_CANDIDATES", 4)
    rng = np.random.default_rng(99)
    for trial in range(60):
        n = int(rng.integers(60, 400))
        st, so, dom = _case(rng, [1, 2, 4][trial % 3], 2, n)
        dom |= rng.random(dom.shape) < 0.8
        _check(backend, st, so, dom, increase=bool(trial % 2))


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_edge_cases(backend: str) -> None:
    f = np.float32
    # v = -u exactly: no admissible pair at all.
    u = np.linspace(-3, 3, 500, dtype=f)[None]
    p, q, s = ps.best_pairs(u, u, np.ones_like(u, bool), backend=backend)
    assert (p[0], q[0], s[0]) == (-1, -1, 0.0)
    # Non-finite gradients are excluded.
    st = np.array([[np.nan, 1.0, 2.0, np.inf]], f)
    so = np.array([[-1.0, -1.0, -1.0, -1.0]], f)
    p, q, s = ps.best_pairs(st, so, np.ones((1, 4), bool), backend=backend)
    assert (p[0], q[0], s[0]) == (1, 2, 6.0)
    # Duplicates: the only admissible pairs involve two equal points.
    st = np.array([[1.0, 1.0, 1.0, -5.0]], f)
    so = np.array([[-1.0, -1.0, -1.0, 0.0]], f)
    p, q, s = ps.best_pairs(st, so, np.ones((1, 4), bool), backend=backend)
    assert s[0] == 4.0 and p[0] < q[0] <= 2
    # Empty batch and uint8 domain.
    p, q, s = ps.best_pairs(np.zeros((0, 5), f), np.zeros((0, 5), f), np.zeros((0, 5), np.uint8), backend=backend)
    assert p.shape == q.shape == s.shape == (0,)


def test_native_threads_agree() -> None:
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    rng = np.random.default_rng(7)
    # 16 x 5000 features: above the extension's serial cutoff, so OpenMP runs.
    st, so = rng.normal(size=(16, 5000)).astype(np.float32), rng.normal(size=(16, 5000)).astype(np.float32)
    dom = rng.random((16, 5000)) < 0.9
    one = ps.best_pairs(st, so, dom, backend="native", threads=1)
    two = ps.best_pairs(st, so, dom, backend="native", threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(one[2], ps.best_pairs(st, so, dom, backend="numpy")[2], rtol=1e-12)


def test_env_var_forces_backend(monkeypatch) -> None:
    monkeypatch.setenv(ps.ENV_VAR, "numpy")
    assert ps.resolve_backend() == "numpy"
    assert ps.resolve_backend("auto") == "numpy"
    monkeypatch.setenv(ps.ENV_VAR, "reference")
    assert ps.resolve_backend() == "reference"
    # An explicit argument wins over the environment.
    assert ps.resolve_backend("numpy") == "numpy"
    monkeypatch.delenv(ps.ENV_VAR)
    assert ps.resolve_backend() in ps.available_backends()


def test_auto_falls_back_to_numpy_with_one_warning(monkeypatch) -> None:
    monkeypatch.delenv(ps.ENV_VAR, raising=False)
    monkeypatch.setattr(ps._native, "_ext", None)
    monkeypatch.setattr(ps._native, "IMPORT_ERROR", "simulated missing build")
    monkeypatch.setattr(ps, "_cupy_status", (False, "no GPU (simulated)"))
    monkeypatch.setattr(ps, "_warned_fallback", False)
    with pytest.warns(RuntimeWarning, match="simulated missing build") as rec:
        assert ps.resolve_backend() == "numpy"
        st = np.ones((1, 3), np.float32)
        ps.best_pairs(st, -st, np.ones((1, 3), bool))
    assert len([w for w in rec if "native pair search" in str(w.message)]) == 1
    assert "native" not in ps.available_backends()


def test_cpu_and_cuda_share_one_header() -> None:
    """The C++ extension and the CUDA kernels compile the same per-candidate/per-pair code."""
    headers = [*(ROOT / "csrc").glob("*.h"), *(ROOT / "advsal_bench").rglob("*.h")]
    assert [p.relative_to(ROOT).as_posix() for p in headers] == ["advsal_bench/pairsearch/jsma_pairs_core.h"]
    for src in (ROOT / "csrc" / "jsma_pairs.cpp", ROOT / "advsal_bench" / "pairsearch" / "jsma_pairs.cu"):
        assert '#include "jsma_pairs_core.h"' in src.read_text(), src


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_source_compiles_to_ptx(tmp_path) -> None:
    cu = ROOT / "advsal_bench" / "pairsearch" / "jsma_pairs.cu"
    out = tmp_path / "jsma_pairs.ptx"
    res = subprocess.run(
        ["nvcc", "--ptx", "-o", str(out), str(cu), "-I" + str(cu.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    ptx = out.read_text()
    for kernel in ("advsal_prepare", "advsal_sweep", "advsal_search"):
        assert kernel in ptx


def _gpu_ready() -> bool:
    return "cupy" in ps.available_backends()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
def test_cupy_matches_reference() -> None:
    rng = np.random.default_rng(5)
    for trial in range(200):
        st, so, dom = _case(rng, trial % 6, 4, int(rng.integers(1, 300)))
        _check("cupy", st, so, dom, increase=bool(trial % 2))


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
def test_cupy_accepts_tf_tensors_and_matches_native_large() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(6)
    u = rng.normal(size=(4, 150528)).astype(np.float32)
    so = (u + 1e-4 * rng.normal(size=u.shape)).astype(np.float32)
    dom = np.ones(u.shape, bool)
    want = ps.best_pairs(u, so, dom, backend="numpy")
    with tf.device("/GPU:0"):
        got = ps.best_pairs(tf.constant(u), tf.constant(so), tf.constant(dom), backend="cupy")
    np.testing.assert_allclose(got[2], want[2], rtol=1e-9)


def test_env_values_documented() -> None:
    assert set(ps.BACKENDS) == {"reference", "numpy", "native", "cupy"}
    assert os.environ.get(ps.ENV_VAR, "") in ("",) + ps.BACKENDS


@pytest.mark.parametrize("kind", ["anti", "ties", "circle"])
def test_native_radix_path_matches_numpy(kind: str) -> None:
    # n in the thousands: the radix sort, its equal-key fix-up and the pruned
    # search all run; numpy is an independent exact implementation.
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    rng = np.random.default_rng(11)
    n = 6000
    u = rng.normal(size=(3, n))
    if kind == "anti":
        st, so = u, u + 1e-5 * rng.normal(size=u.shape)
    elif kind == "ties":
        st, so = np.round(u * 4), np.round(u * 4) + rng.integers(-1, 2, u.shape)
    else:
        th = rng.uniform(0, np.pi / 2, u.shape)
        st, so = np.cos(th), -np.sin(th)
    st, so = st.astype(np.float32), so.astype(np.float32)
    dom = rng.random(u.shape) < 0.95
    for increase in (True, False):
        got = ps.best_pairs(st, so, dom, increase=increase, backend="native", threads=1)
        want = ps.best_pairs(st, so, dom, increase=increase, backend="numpy")
        for a, b in zip(got, want):  # same candidates and tie-break: identical
            np.testing.assert_array_equal(a, b)


def _large_case(rng: np.random.Generator, kind: str, b: int, n: int):
    """Rows long enough for the native top-sigma search, and inputs that push it onto its fallbacks."""
    if kind == "anti":  # nearly every point on the Pareto front
        st = rng.normal(size=(b, n))
        so = st + 10 ** rng.uniform(-7, -2) * rng.normal(size=(b, n))
    elif kind == "model":  # heavy-tailed, partly correlated, like real gradients
        st = 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
        so = -0.5 * st + 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
    elif kind == "circle":  # every point a candidate
        th = rng.uniform(0, np.pi / 2, (b, n))
        st, so = np.cos(th), -np.sin(th)
    elif kind == "line":  # sigma nearly constant: the top-sigma bound rarely settles it
        t = rng.normal(size=(b, n))
        st, so = t, -(1 - t + 1e-3 * rng.normal(size=(b, n)))
    elif kind == "tiny":  # scores ~1e-60: the bound fails after pairs were found (seeded fallback)
        st = 1e-30 * rng.normal(size=(b, n))
        so = st + 1e-37 * rng.normal(size=(b, n))
    elif kind == "anti_ties":  # anti-correlated integers: many tied scores
        st = rng.integers(-50, 51, (b, n)).astype(float)
        so = st + rng.integers(-1, 2, (b, n))
    elif kind == "ties":  # few distinct sigma values: T floods, the layers take over
        st, so = rng.integers(-3, 4, (b, n)).astype(float), rng.integers(-3, 4, (b, n)).astype(float)
    elif kind == "equal":  # all points identical
        st, so = np.ones((b, n)), -np.ones((b, n))
    elif kind == "two_bands":  # two bands on u + v = sigma, far apart in u, the high-sigma band alone
        # inadmissible: the best pair mixes the bands at S far below 2 x the top sigma, the top-sigma
        # bound fails and its outside pass gives up.
        right = rng.random((b, n)) < 0.5
        t = np.where(right, rng.uniform(10, 20, (b, n)), rng.uniform(-20, -10, (b, n)))
        sig = np.where(right, rng.uniform(1.0, 1.5, (b, n)), rng.uniform(0.0, 0.5, (b, n)))
        st, so = t, t - sig  # u = t, v = sig - t
    else:  # "outlier": one huge point stretches the delta range
        st = rng.normal(size=(b, n))
        so = st + 1e-6 * rng.normal(size=(b, n))
        st[:, 0] = so[:, 0] = 1e30
    st, so = st.astype(np.float32), so.astype(np.float32)
    st[rng.random((b, n)) < 1e-3] = np.nan  # excluded wherever they fall
    dom = rng.random((b, n)) < 0.97
    return st, so, dom


def _native_min_top_sigma() -> int:
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    return int(ps._native._ext.top_sigma_min_features)


@pytest.mark.parametrize("kind", ["anti", "model", "circle", "line", "tiny", "anti_ties", "two_bands", "outlier"])
def test_native_top_sigma_matches_reference(kind: str) -> None:
    n = _native_min_top_sigma() + 111
    rng = np.random.default_rng(sum(map(ord, kind)))  # str hash() is salted per process
    st, so, dom = _large_case(rng, kind, 1, n)
    for increase in (True, False):
        got = ps.best_pairs(st, so, dom, increase=increase, backend="native", threads=1)
        want = best_pairs_reference(st, so, dom, increase=increase)
        for a, b in zip(got, want):  # the smallest optimal (p, q), exactly
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kind", ["anti", "model", "circle", "line", "tiny", "anti_ties", "two_bands", "ties", "equal", "outlier"]
)
def test_native_top_sigma_matches_numpy(kind: str) -> None:
    n0 = _native_min_top_sigma()
    rng = np.random.default_rng(17 + len(kind))
    for n in (n0, 3 * n0 + 5):
        st, so, dom = _large_case(rng, kind, 2, n)
        for increase in (True, False):
            got = ps.best_pairs(st, so, dom, increase=increase, backend="native", threads=1)
            want = ps.best_pairs(st, so, dom, increase=increase, backend="numpy")
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


def test_native_long_rows_small_domains() -> None:
    # Long rows whose domain holds 0, 1, 2, a few hundred or a sampled-out
    # handful of features: the top-sigma search must decline or stay exact.
    n = 2 * _native_min_top_sigma()
    rng = np.random.default_rng(3)
    st = rng.normal(size=(6, n)).astype(np.float32)
    so = (st + 1e-4 * rng.normal(size=(6, n))).astype(np.float32)
    dom = np.zeros((6, n), bool)
    dom[1, 7] = True
    dom[2, [5, n - 1]] = True
    dom[3, rng.choice(n, 300, replace=False)] = True
    dom[4, ::97] = True  # exactly the features a strided sample would see
    dom[5, 1::97] = True  # none of them
    for increase in (True, False):
        got = ps.best_pairs(st, so, dom, increase=increase, backend="native", threads=1)
        want = best_pairs_reference(st, so, dom, increase=increase)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def test_native_top_sigma_one_sided_top_with_outlier() -> None:
    """T (the highest-sigma points) all on one side of delta = 0 with one outlier sigma, the best
    partners outside T: the case the sigma tiers of the outside x T walks were added for (seen on
    224x224x3 CNN gradients)."""
    n = _native_min_top_sigma() * 2 + 7
    rng = np.random.default_rng(35)
    r = rng.random((3, n)) ** 3
    ang = np.where(rng.random((3, n)) < 0.7, rng.uniform(1.0, 1.45, (3, n)), rng.uniform(0.05, 0.6, (3, n)))
    r[ang < 0.7] *= 0.4  # the u-heavy points (positive delta) stay below T
    u, v = r * np.cos(ang), r * np.sin(ang)
    u[:, 5], v[:, 5] = 0.1, 3.0  # the outlier: sigma far above the rest of T
    st, so = u.astype(np.float32), (-v).astype(np.float32)
    dom = rng.random((3, n)) < 0.95
    got = ps.best_pairs(st, so, dom, backend="native", threads=1)
    want = ps.best_pairs(st, so, dom, backend="numpy")
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got[2][:1], best_pairs_reference(st[:1], so[:1], dom[:1])[2])


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_zero_gradient_points_keep_exact_pairs_and_ties(backend: str) -> None:
    """Rows where most features have a zero gradient (MNIST's blank border): the native search keeps
    one point at the origin only, so the best pair and its tie-break (the smallest (p, q)) must still
    be the reference's, including when that pair is a positive point and the first origin point."""
    rng = np.random.default_rng(8)
    for trial in range(300):
        n = int(rng.integers(2, 200))
        st = rng.normal(size=(2, n)).astype(np.float32)
        so = rng.normal(size=(2, n)).astype(np.float32)
        zero = rng.random((2, n)) < rng.uniform(0.3, 0.99)
        st[zero] = 0.0
        so[zero] = -0.0 if trial % 3 == 0 else 0.0
        if trial % 4 == 0:  # one admissible point only: its best partners are the origin points
            st[:, :] = np.where(zero, 0.0, -np.abs(st))
            k = int(rng.integers(0, n))
            st[:, k], so[:, k] = 1.5, -2.0
        dom = rng.random((2, n)) < 0.9
        increase = bool(trial % 2)
        got = ps.best_pairs(st, so, dom, increase=increase, backend=backend)
        want = best_pairs_reference(st, so, dom, increase=increase)
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("increase", [True, False])
def test_point_below_only_one_other_still_wins_the_tie(backend: str, increase: bool) -> None:
    """The native filters drop points strictly below two others.  Here (Q, X) = (1, 2) has the best
    score 2.25 and (Z, Q) = (0, 1) ties it; Z is strictly below Q only (the C's have a larger u but
    a smaller v, X a larger v but a smaller u, 17 points have a larger sigma), so only a filter that
    is strict on both coordinates, and counts two distinct dominators, keeps the smaller tied pair.
    Values are dyadic: every sum and product is exact."""
    u = [0.5, 1.0, 0.125] + [0.75] * 15 + [-0.5] * 60  # Z, Q, X, 15 C's, fillers
    v = [0.5, 1.0, 1.0] + [0.25 + k / 1024 for k in range(1, 16)] + [-0.25] * 60
    u, v = np.array([u], np.float32), np.array([v], np.float32)
    sign = 1.0 if increase else -1.0
    st, so = sign * u, -sign * v  # u = sign * target gradient, v = -sign * other gradient
    dom = np.ones_like(st, dtype=bool)
    p, q, score = ps.best_pairs(st, so, dom, increase=increase, backend=backend)
    assert (int(p[0]), int(q[0]), float(score[0])) == (0, 1, 2.25)
    want = best_pairs_reference(st, so, dom, increase=increase)
    for a, b in zip((p, q, score), want):
        np.testing.assert_array_equal(a, b)


# Each way the native search settles a row, with an input that takes it there.
_PATH_CASES = [
    ("model", "long", "corner_layers"),  # uncorrelated, heavy-tailed: the corners drop nearly all
    ("model", 784, "corner_layers"),  # MNIST-sized rows take the corners too
    ("anti", "long", "top_sigma"),  # every point near the front: corners useless, the bound holds
    ("equal", "long", "layers_after_top_sigma"),  # T floods with tied sigmas: declined
    ("two_bands", "long", "layers_after_give_up"),  # the outside pass gives up
    ("anti", 3000, "layers"),  # short, near the front: pivots and the sort
    ("model", 300, "layers"),  # too short for a sample
]


@pytest.mark.parametrize("kind, n, path", _PATH_CASES)
def test_native_each_row_path_is_taken_and_exact(kind: str, n, path: str) -> None:
    n0 = _native_min_top_sigma()
    n = 3 * n0 + 3 if n == "long" else n
    rng = np.random.default_rng(len(kind) * 7 + 1)
    st, so, dom = _large_case(rng, kind, 1, n)
    for increase in (True, False):
        if not increase:  # the same (u, v) points
            st, so = -st, -so
        got = ps.best_pairs(st, so, dom, increase=increase, backend="native", threads=1)
        assert ps._native._ext.last_path() == path
        want = ps.best_pairs(st, so, dom, increase=increase, backend="numpy")
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


def _filter_case(rng: np.random.Generator, kind: str, n: int):
    """Rows that probe the strictness of the corner and bucket filters: equal u across bucket
    edges, tied v, duplicated points, one outlier u that makes every bucket but one empty, and
    most points at the origin."""
    u, v = rng.normal(size=n), rng.normal(size=n)
    if kind == "int_u":  # many points share a u; ties between buckets
        u = rng.integers(-8, 9, n).astype(float)
    elif kind == "int_uv":  # duplicated points: dominated only by copies (not strictly)
        u, v = rng.integers(-4, 5, n).astype(float), rng.integers(-4, 5, n).astype(float)
    elif kind == "outlier_u":  # one point far right: all others share bucket 0
        u[rng.integers(n)] = 1e6
    elif kind == "outlier_uv":  # one point dominating all: every other point is below it once
        k = rng.integers(n)
        u[k], v[k] = 50.0, 50.0
    elif kind == "origin":
        zero = rng.random(n) < 0.7
        u[zero], v[zero] = 0.0, 0.0
    elif kind == "stairs":  # points exactly on the sample's staircase corners
        u, v = np.round(u, 1), np.round(v, 1)
    return u.astype(np.float32), (-v).astype(np.float32)  # st = u, so = -v (increase=True)


@pytest.mark.parametrize("kind", ["normal", "int_u", "int_uv", "outlier_u", "outlier_uv", "origin", "stairs"])
def test_native_filters_keep_exact_pairs_and_ties(kind: str) -> None:
    """Short and long rows (the corner path from 512 features, the bucket filter past 48 valid
    points) against the reference (short) and the numpy backend (long), smallest pair on ties."""
    n0 = _native_min_top_sigma()
    rng = np.random.default_rng(sum(map(ord, kind)))
    for n in (60, 511, 700, 1500, 4000, n0 + 333):
        st, so = _filter_case(rng, kind, n)
        st, so = st[None], so[None]
        dom = rng.random(st.shape) < 0.9
        want_fn = best_pairs_reference if n <= 1500 else (
            lambda a, b, c, increase: ps.best_pairs(a, b, c, increase=increase, backend="numpy"))
        for increase in (True, False):
            sst, sso = (st, so) if increase else (-st, -so)
            got = ps.best_pairs(sst, sso, dom, increase=increase, backend="native", threads=1)
            want = want_fn(sst, sso, dom, increase=increase)
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("n", [63, 64, 65, 511, 513, 1000, 8192 + 37])
def test_native_pairs_in_a_partial_block_of_flags_are_found(n: int) -> None:
    """The native search visits flagged features 64 at a time, the rest one by one: lengths off
    that block (and off the 512-feature chunk) with the only admissible pair in the tail."""
    if "native" not in ps.available_backends():
        pytest.skip("native extension not built")
    rng = np.random.default_rng(n)
    u = -np.abs(rng.normal(size=n)) - 3.0  # u < -3 everywhere: no pair is admissible...
    v = rng.normal(size=n)
    for p, q in ((n - 2, n - 1), (0, n - 1), (n // 2, n - 1)):
        uu, vv = u.copy(), v.copy()
        uu[p], uu[q] = 2.0, 1.0  # ...except (p, q) itself
        vv[p], vv[q] = 0.5, 0.75
        st, so = uu[None].astype(np.float32), (-vv)[None].astype(np.float32)
        dom = np.ones_like(st, dtype=bool)
        got = ps.best_pairs(st, so, dom, backend="native", threads=1)
        want = ps.best_pairs(st, so, dom, backend="numpy")
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
        assert (int(got[0][0]), int(got[1][0])) == (p, q)

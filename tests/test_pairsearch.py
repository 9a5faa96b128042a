"""Every pair-search backend against brute force, plus dispatch and CUDA source checks.

Imports no TensorFlow (the GPU check runs these on a machine without it).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import advsal_bench.pairsearch as ps
from advsal_bench.pairsearch.reference import best_pairs_reference

ROOT = Path(__file__).resolve().parents[1]
# Backends checked against the reference here; cupy has its gpu-marked tests below.
BACKENDS = [b for b in ps.available_backends() if b not in ("reference", "cupy")]
# The tests with answers known by construction check the reference itself too.
KNOWN_ANSWER_BACKENDS = ["reference", *BACKENDS]
# Above this many valid features per row the brute force is too slow; numpy and native, two
# independent implementations, are then checked against each other.
REFERENCE_MAX = 4000


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


def _large_case(rng: np.random.Generator, kind: str, b: int, n: int):
    """Row shapes of real and adversarial gradients at any length."""
    if kind == "anti":  # nearly every point on the Pareto front
        st = rng.normal(size=(b, n))
        so = st + 10 ** rng.uniform(-7, -2) * rng.normal(size=(b, n))
    elif kind == "model":  # heavy-tailed, partly correlated, like real gradients
        st = 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
        so = -0.5 * st + 1e-3 * rng.normal(size=(b, n)) * rng.random((b, n)) ** 3
    elif kind == "random":
        st, so = rng.normal(size=(b, n)), rng.normal(size=(b, n))
    elif kind == "circle":  # every point a candidate
        th = rng.uniform(0, np.pi / 2, (b, n))
        st, so = np.cos(th), -np.sin(th)
    elif kind == "line":  # sigma nearly constant
        t = rng.normal(size=(b, n))
        st, so = t, -(1 - t + 1e-3 * rng.normal(size=(b, n)))
    elif kind == "tiny":  # scores ~1e-60: no rounding slack may prune them
        st = 1e-30 * rng.normal(size=(b, n))
        so = st + 1e-37 * rng.normal(size=(b, n))
    elif kind == "anti_ties":  # anti-correlated integers: many tied scores
        st = rng.integers(-50, 51, (b, n)).astype(float)
        so = st + rng.integers(-1, 2, (b, n))
    elif kind == "ties":  # few distinct values
        st, so = rng.integers(-3, 4, (b, n)).astype(float), rng.integers(-3, 4, (b, n)).astype(float)
    elif kind == "equal":  # all points identical
        st, so = np.ones((b, n)), -np.ones((b, n))
    elif kind == "two_bands":  # the high-sigma band alone is inadmissible: the best pair mixes the bands
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


LARGE_KINDS = ["anti", "model", "random", "circle", "line", "tiny", "anti_ties", "ties", "equal", "two_bands", "outlier"]


def _expect_equal(got, want) -> None:
    """Same pairs (the smallest optimal (p, q) on ties) and bit-identical scores."""
    for name, a, b in zip(("p", "q", "score"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)


def _oracle(st, so, dom, increase: bool):
    if int(dom.sum(axis=1).max(initial=0)) <= REFERENCE_MAX:
        return best_pairs_reference(st, so, dom, increase=increase)
    return ps.best_pairs(st, so, dom, increase=increase, backend="numpy")


def _check(backend: str, st, so, dom, increase: bool) -> None:
    want = best_pairs_reference(st, so, dom, increase=increase)
    got = ps.best_pairs(st, so, dom, increase=increase, backend=backend)
    assert got[0].dtype == np.int64 and got[1].dtype == np.int64 and got[2].dtype == np.float64
    _expect_equal(got, want)
    sign = 1.0 if increase else -1.0
    for b in np.flatnonzero(got[0] >= 0):  # the pair itself: admissible, in the domain, with its score
        p, q = got[0][b], got[1][b]
        assert 0 <= p < q < st.shape[1] and dom[b, p] and dom[b, q]
        alpha = float(st[b, p]) + float(st[b, q])
        beta = float(so[b, p]) + float(so[b, q])
        assert sign * alpha > 0 and sign * beta < 0 and abs(alpha) * abs(beta) == got[2][b]


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_rows_match_reference(backend: str) -> None:
    rng = np.random.default_rng(1234)
    for trial in range(400):
        st, so, dom = _case(rng, trial % 6, 3, int(rng.integers(1, 48)))
        _check(backend, st, so, dom, increase=bool(trial % 2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_large_fronts_match_reference(backend: str) -> None:
    # Integer ties, anti-correlated rows and a full quarter circle: hundreds to thousands of candidates.
    rng = np.random.default_rng(99)
    for trial in range(24):
        st, so, dom = _case(rng, [1, 2, 4][trial % 3], 2, int(rng.integers(300, 1500)))
        dom |= rng.random(dom.shape) < 0.8
        _check(backend, st, so, dom, increase=bool(trial % 2))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", LARGE_KINDS)
def test_row_shapes_match_reference(backend: str, kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))  # str hash() is salted per process
    for n in (100, 700, 3000):
        st, so, dom = _large_case(rng, kind, 2, n)
        for increase in (True, False):
            _check(backend, st, so, dom, increase)


@pytest.mark.parametrize("kind", LARGE_KINDS)
def test_long_rows_native_matches_numpy(kind: str) -> None:
    if "native" not in BACKENDS:
        pytest.skip("native extension not built")
    rng = np.random.default_rng(17 + len(kind))
    for n in (12288, 40000):
        st, so, dom = _large_case(rng, kind, 2, n)
        for increase in (True, False):
            got = ps.best_pairs(st, so, dom, increase=increase, backend="native")
            _expect_equal(got, ps.best_pairs(st, so, dom, increase=increase, backend="numpy"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n", [5000, 150528])
def test_sparse_long_rows_match_reference(backend: str, n: int) -> None:
    """Long rows whose domain holds 0, 1, 2, a few hundred or a strided handful of features
    (exactly those a strided sample sees, or none of them)."""
    rng = np.random.default_rng(3)
    st = rng.normal(size=(7, n)).astype(np.float32)
    so = (st + 1e-2 * rng.normal(size=(7, n))).astype(np.float32)
    dom = np.zeros((7, n), bool)
    dom[1, 7] = True
    dom[2, [5, n - 1]] = True
    dom[3, rng.choice(n, 300, replace=False)] = True
    dom[4, :: int(np.sqrt(n) / 4)] = True
    dom[5, 1 :: int(np.sqrt(n) / 4)] = True
    dom[6] = rng.random(n) < 1500 / n
    for increase in (True, False):
        _check(backend, st, so, dom, increase)


@pytest.mark.parametrize("backend", KNOWN_ANSWER_BACKENDS)
def test_rows_without_finite_features_have_no_pair(backend: str) -> None:
    st = np.full((2, 3000), np.nan, np.float32)
    so = np.ones((2, 3000), np.float32)
    st[1, 10] = 1.0  # one finite feature: still no pair
    p, q, s = ps.best_pairs(st, -so, np.ones((2, 3000), bool), backend=backend)
    np.testing.assert_array_equal(p, [-1, -1])
    np.testing.assert_array_equal(q, [-1, -1])
    np.testing.assert_array_equal(s, [0.0, 0.0])


@pytest.mark.parametrize("backend", KNOWN_ANSWER_BACKENDS)
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
    # Duplicates: the only admissible pairs involve two equal points; ties go to the smallest pair.
    st = np.array([[1.0, 1.0, 1.0, -5.0]], f)
    so = np.array([[-1.0, -1.0, -1.0, 0.0]], f)
    p, q, s = ps.best_pairs(st, so, np.ones((1, 4), bool), backend=backend)
    assert (p[0], q[0], s[0]) == (0, 1, 4.0)
    # Empty batch and uint8 domain.
    p, q, s = ps.best_pairs(np.zeros((0, 5), f), np.zeros((0, 5), f), np.zeros((0, 5), np.uint8), backend=backend)
    assert p.shape == q.shape == s.shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_gradient_points_keep_exact_pairs_and_ties(backend: str) -> None:
    """Rows where most features have a zero gradient (MNIST's blank border): the best pair and its
    tie-break must be the reference's, including when that pair is a positive point and the first
    origin point, and with -0.0 among the zeros."""
    rng = np.random.default_rng(8)
    for trial in range(300):
        n = int(rng.integers(2, 1200))
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
        _check(backend, st, so, dom, increase=bool(trial % 2))


@pytest.mark.parametrize("backend", KNOWN_ANSWER_BACKENDS)
@pytest.mark.parametrize("increase", [True, False])
def test_point_below_only_one_other_still_wins_the_tie(backend: str, increase: bool) -> None:
    """(Q, X) = (1, 2) has the best score 2.25 and (Z, Q) = (0, 1) ties it; Z is strictly below Q
    only (the C's have a larger u but a smaller v, X a larger v but a smaller u, 17 points have a
    larger sigma), so only a filter that is strict on both coordinates, and counts two distinct
    dominators, keeps the smaller tied pair.  Values are dyadic: every sum and product is exact."""
    u = [0.5, 1.0, 0.125] + [0.75] * 15 + [-0.5] * 600  # Z, Q, X, 15 C's, fillers
    v = [0.5, 1.0, 1.0] + [0.25 + k / 1024 for k in range(1, 16)] + [-0.25] * 600
    u, v = np.array([u], np.float32), np.array([v], np.float32)
    sign = 1.0 if increase else -1.0
    st, so = sign * u, -sign * v  # u = sign * target gradient, v = -sign * other gradient
    dom = np.ones_like(st, dtype=bool)
    p, q, score = ps.best_pairs(st, so, dom, increase=increase, backend=backend)
    assert (int(p[0]), int(q[0]), float(score[0])) == (0, 1, 2.25)
    _check(backend, st, so, dom, increase)


def _filter_case(rng: np.random.Generator, kind: str, n: int):
    """Rows that probe the strictness of a staircase filter: equal u on the sample's points,
    tied v, duplicated points, one outlier u, one point above all, most points at the origin."""
    u, v = rng.normal(size=n), rng.normal(size=n)
    if kind == "int_u":  # many points share a u
        u = rng.integers(-8, 9, n).astype(float)
    elif kind == "int_uv":  # duplicated points: dominated only by copies (not strictly)
        u, v = rng.integers(-4, 5, n).astype(float), rng.integers(-4, 5, n).astype(float)
    elif kind == "outlier_u":  # one point far right
        u[rng.integers(n)] = 1e6
    elif kind == "outlier_uv":  # one point dominating all: every other point is below it once
        k = rng.integers(n)
        u[k], v[k] = 50.0, 50.0
    elif kind == "origin":
        zero = rng.random(n) < 0.7
        u[zero], v[zero] = 0.0, 0.0
    elif kind == "stairs":  # points exactly on the staircase corners
        u, v = np.round(u, 1), np.round(v, 1)
    return u.astype(np.float32)[None], (-v).astype(np.float32)[None]  # st = u, so = -v (increase=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["normal", "int_u", "int_uv", "outlier_u", "outlier_uv", "origin", "stairs"])
def test_staircase_filter_keeps_exact_pairs_and_ties(backend: str, kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))
    for n in (3, 17, 60, 511, 700, 1500, 4000, 20000):
        st, so = _filter_case(rng, kind, n)
        dom = rng.random(st.shape) < 0.9
        for increase in (True, False):
            sst, sso = (st, so) if increase else (-st, -so)
            _expect_equal(ps.best_pairs(sst, sso, dom, increase=increase, backend=backend),
                          _oracle(sst, sso, dom, increase))


@pytest.mark.parametrize(
    "backend, n",  # the brute force on the shorter rows only
    [(b, n) for b in KNOWN_ANSWER_BACKENDS for n in (63, 64, 65, 255, 257, 1000, 8229) if b != "reference" or n <= 1000],
)
def test_the_only_admissible_pair_is_found_anywhere(backend: str, n: int) -> None:
    """Lengths off the native search's 64-feature flag blocks, the only admissible pair at the
    ends or the middle of the row."""
    rng = np.random.default_rng(n)
    u = -np.abs(rng.normal(size=n)) - 3.0  # u < -3 everywhere: no pair is admissible...
    v = rng.normal(size=n)
    for p, q in ((n - 2, n - 1), (0, n - 1), (n // 2, n - 1), (0, 1)):
        uu, vv = u.copy(), v.copy()
        uu[p], uu[q] = 2.0, 1.0  # ...except (p, q) itself
        vv[p], vv[q] = 0.5, 0.75
        st, so = uu[None].astype(np.float32), (-vv)[None].astype(np.float32)
        got = ps.best_pairs(st, so, np.ones_like(st, dtype=bool), backend=backend)
        assert (int(got[0][0]), int(got[1][0]), float(got[2][0])) == (p, q, 3.0 * 1.25)


def test_native_threads_agree() -> None:
    if "native" not in BACKENDS:
        pytest.skip("native extension not built")
    rng = np.random.default_rng(7)
    st, so = rng.normal(size=(16, 5000)).astype(np.float32), rng.normal(size=(16, 5000)).astype(np.float32)
    dom = rng.random((16, 5000)) < 0.9
    one = ps.best_pairs(st, so, dom, backend="native", threads=1)
    for threads in (2, 0):
        _expect_equal(ps.best_pairs(st, so, dom, backend="native", threads=threads), one)
    _expect_equal(one, ps.best_pairs(st, so, dom, backend="numpy"))


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
    assert set(ps.BACKENDS) == {"reference", "numpy", "native", "cupy"}


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
    """The C++ extension and the CUDA kernels compile the same shared steps."""
    headers = [*(ROOT / "csrc").glob("*.h"), *(ROOT / "advsal_bench").rglob("*.h")]
    assert [p.relative_to(ROOT).as_posix() for p in headers] == ["advsal_bench/pairsearch/jsma_pairs_core.h"]
    for src in (ROOT / "csrc" / "jsma_pairs.cpp", ROOT / "advsal_bench" / "pairsearch" / "jsma_pairs.cu"):
        text = src.read_text()
        assert '#include "jsma_pairs_core.h"' in text, src
        for step in ("advsal_sweep(", "advsal_merge(", "advsal_search_from("):
            assert step in text, (src, step)


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
    for kernel in ("advsal_prepare", "advsal_sweep_merge", "advsal_search"):
        assert kernel in ptx


def _gpu_ready() -> bool:
    return "cupy" in ps.available_backends()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
def test_cupy_small_rows_match_reference() -> None:
    rng = np.random.default_rng(5)
    for trial in range(200):
        st, so, dom = _case(rng, trial % 6, 4, int(rng.integers(1, 300)))
        _check("cupy", st, so, dom, increase=bool(trial % 2))


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
@pytest.mark.parametrize("kind", LARGE_KINDS)
def test_cupy_row_shapes_match_reference(kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))
    for n in (100, 700, 3000):
        st, so, dom = _large_case(rng, kind, 2, n)
        for increase in (True, False):
            _check("cupy", st, so, dom, increase)


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
@pytest.mark.parametrize("kind", ["anti", "model", "ties"])
def test_cupy_long_rows_match_numpy(kind: str) -> None:
    rng = np.random.default_rng(6)
    st, so, dom = _large_case(rng, kind, 3, 150528)
    for increase in (True, False):
        got = ps.best_pairs(st, so, dom, increase=increase, backend="cupy")
        _expect_equal(got, ps.best_pairs(st, so, dom, increase=increase, backend="numpy"))


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_ready(), reason="CuPy with a visible GPU needed")
def test_cupy_accepts_tf_tensors() -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(6)
    st, so, dom = _large_case(rng, "model", 4, 3000)
    with tf.device("/GPU:0"):
        got = ps.best_pairs(tf.constant(st), tf.constant(so), tf.constant(dom), backend="cupy")
    _expect_equal(got, best_pairs_reference(st, so, dom))

"""Exact Pareto-layer JSMA pair search, vectorized NumPy (the portable backend).

The native backend's algorithm (see the proof in jsma_pairs_core.h): the
domain's finite points, minus those below the staircase of a strided sample
(below two real points); the candidates, the points with at most one
dominator under (u desc, v desc, index asc); then every candidate pair when
there are few, else pairs searched outwards in delta = u - v from -delta_p,
pruned by (S_max^2 - |D|^2) / 4 against the best score.
"""
from __future__ import annotations

import numpy as np

from .reference import per_row

# Up to this many candidates all pairs are checked as one dense matrix.
_DENSE_CANDIDATES = 256
_EPS = 1e-14  # relative rounding slack, as ADVSAL_EPS


def _below_staircase(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points below two sample points with a strictly larger u and no smaller v (in no best pair)."""
    stride = max(1, int(np.sqrt(u.size) / 4))  # sample size 4 sqrt(n), as kSampleScale
    su, sv = u[::stride], v[::stride]
    order = np.argsort(-su, kind="stable")
    su, sv = su[order], sv[order]
    m1 = np.maximum.accumulate(sv)
    m2 = np.maximum.accumulate(np.minimum(sv, np.concatenate([[-np.inf], m1[:-1]])))  # 2nd largest so far
    above = np.searchsorted(-su, -u, side="left")  # sample points with u strictly above each point
    return v <= np.concatenate([[-np.inf], m2])[above]


def _candidates(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Positions with at most one dominator (exact, vectorized)."""
    order = np.lexsort((-v, -u))  # stable: equal points keep ascending index
    vs = v[order]
    neg = np.array([-np.inf])
    max_before = np.concatenate([neg, np.maximum.accumulate(vs)[:-1]])
    # second largest of a prefix = max_j min(v_j, max_{i<j} v_i)
    paired = np.minimum(vs, max_before)
    second_before = np.concatenate([neg, np.maximum.accumulate(paired)[:-1]])
    return order[vs > second_before]


def _prunable(s: np.ndarray, s_mag: np.ndarray, t: np.ndarray, t_mag: np.ndarray, best: float) -> np.ndarray:
    """Vectorized advsal_prunable: widened bounds so rounding never prunes a winner."""
    su = s + _EPS * s_mag
    tl = np.maximum(t - _EPS * t_mag, 0.0)
    bound = 0.25 * (su - tl) * (su + tl) * (1.0 + 1e-12)
    return ~(su > tl) | (bound < best)


class _Best:
    __slots__ = ("score", "p", "q")

    def __init__(self) -> None:
        self.score, self.p, self.q = 0.0, -1, -1

    def offer(self, score: np.ndarray, i: np.ndarray, j: np.ndarray) -> None:
        """Merge candidate pairs (original indices); ties -> smallest (p, q)."""
        if score.size == 0:
            return
        top = float(score.max())
        if not top > 0.0 or top < self.score:
            return
        hit = score == top
        p = np.minimum(i[hit], j[hit])
        q = np.maximum(i[hit], j[hit])
        k = np.lexsort((q, p))[0]
        pk, qk = int(p[k]), int(q[k])
        if top > self.score or self.p < 0 or (pk, qk) < (self.p, self.q):
            self.score, self.p, self.q = top, pk, qk


def _dense(cu: np.ndarray, cv: np.ndarray, ci: np.ndarray, best: _Best) -> None:
    m = cu.size
    rows = max(1, (1 << 21) // m)
    for i0 in range(0, m, rows):
        i1 = min(m, i0 + rows)
        x = cu[i0:i1, None] + cu[None, :]
        y = cv[i0:i1, None] + cv[None, :]
        ok = (x > 0) & (y > 0)
        ok &= np.arange(i0, i1)[:, None] < np.arange(m)[None, :]
        ii, jj = np.nonzero(ok)
        best.offer(x[ii, jj] * y[ii, jj], ci[i0 + ii], ci[jj])


def _windowed(cu: np.ndarray, cv: np.ndarray, ci: np.ndarray, best: _Best) -> None:
    dl = cu - cv
    order = np.argsort(dl, kind="stable")
    dl, cu, cv, ci = dl[order], cu[order], cv[order], ci[order]
    sg = cu + cv
    m = dl.size
    sigma_max = float(sg.max())
    # Each pair is found from its larger-sigma member: S <= 2 sigma_p (advsal_s_bound).
    s_all = np.minimum(sg + sigma_max, 2.0 * sg)
    s_mag = np.abs(sg) + abs(sigma_max)
    kp = np.arange(m)
    right = np.searchsorted(dl, -dl, side="left")
    left = right - 1
    # Highest-sigma candidates first: a good early best prunes the rest.
    kp = kp[np.argsort(-sg, kind="stable")]
    right, left = right[kp], left[kp]
    while kp.size:
        zero = np.zeros(kp.size)
        keep = ~_prunable(s_all[kp], s_mag[kp], zero, zero, best.score)
        kp, left, right = kp[keep], left[keep], right[keep]
        has_l, has_r = left >= 0, right < m
        alive = has_l | has_r
        kp, left, right, has_l, has_r = kp[alive], left[alive], right[alive], has_l[alive], has_r[alive]
        if not kp.size:
            break
        tl = np.abs(dl[kp] + dl[np.maximum(left, 0)])
        tr = np.abs(dl[kp] + dl[np.minimum(right, m - 1)])
        take_left = has_l & (~has_r | (tl <= tr))
        t = np.where(take_left, tl, tr)
        keep = ~_prunable(s_all[kp], s_mag[kp], t, 2.0 * np.abs(dl[kp]) + t, best.score)
        kp, left, right, take_left = kp[keep], left[keep], right[keep], take_left[keep]
        kq = np.where(take_left, left, right)
        left = left - take_left
        right = right + ~take_left
        ev = kq != kp
        p_, q_ = kp[ev], kq[ev]
        x = cu[p_] + cu[q_]
        y = cv[p_] + cv[q_]
        ok = (x > 0) & (y > 0)
        best.offer(x[ok] * y[ok], ci[p_[ok]], ci[q_[ok]])


def _row(u: np.ndarray, v: np.ndarray, idx: np.ndarray) -> tuple[int, int, float]:
    best = _Best()
    keep = np.flatnonzero(~_below_staircase(u, v))
    u, v, idx = u[keep], v[keep], idx[keep]
    cand = np.sort(_candidates(u, v))  # ascending index: dense argmax ties -> smallest pair
    if cand.size >= 2:
        cu, cv, ci = u[cand], v[cand], idx[cand]
        if cand.size <= _DENSE_CANDIDATES:
            _dense(cu, cv, ci, best)
        else:
            _windowed(cu, cv, ci, best)
    return best.p, best.q, best.score


def best_pairs_layers(target_grad, other_grad, domain, *, increase: bool = True):
    """Per-row exact search; returns (p int64[B], q int64[B], score float64[B])."""
    return per_row(_row, target_grad, other_grad, domain, increase)

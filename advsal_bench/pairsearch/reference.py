"""Brute-force JSMA pair search over all pairs p < q (ground truth for tests)."""
from __future__ import annotations

import numpy as np

# Pairs evaluated per block: bounds memory at ~100 MB of float64 temporaries.
_BLOCK_ELEMENTS = 1 << 22


def uv(target_grad: np.ndarray, other_grad: np.ndarray, domain: np.ndarray, increase: bool):
    """Map gradients to (u, v, valid): maximize (u_p+u_q)(v_p+v_q), both factors > 0."""
    st = np.asarray(target_grad, dtype=np.float32)
    so = np.asarray(other_grad, dtype=np.float32)
    # Non-finite gradients are excluded from the domain in every backend.
    valid = np.asarray(domain, dtype=bool) & np.isfinite(st) & np.isfinite(so)
    if increase:
        u, v = st, -so
    else:
        u, v = -st, so
    return u.astype(np.float64) + 0.0, v.astype(np.float64) + 0.0, valid


def per_row(row_fn, target_grad, other_grad, domain, increase: bool):
    """Shared driver: row_fn(u_row, v_row, idx) -> (p, q, score) over each row's valid features.

    idx holds the original indices of the valid features; rows with fewer than
    two keep p = q = -1, score = 0.
    """
    u, v, valid = uv(target_grad, other_grad, domain, increase)
    batch = u.shape[0]
    p_out = np.full(batch, -1, dtype=np.int64)
    q_out = np.full(batch, -1, dtype=np.int64)
    s_out = np.zeros(batch, dtype=np.float64)
    for b in range(batch):
        idx = np.flatnonzero(valid[b])
        if idx.size < 2:
            continue
        p_out[b], q_out[b], s_out[b] = row_fn(u[b, idx], v[b, idx], idx)
    return p_out, q_out, s_out


def _reference_row(ub: np.ndarray, vb: np.ndarray, idx: np.ndarray) -> tuple[int, int, float]:
    m = idx.size
    rows = max(1, _BLOCK_ELEMENTS // m)
    best, p, q = 0.0, -1, -1
    for i0 in range(0, m - 1, rows):
        i1 = min(m - 1, i0 + rows)
        x = ub[i0:i1, None] + ub[None, :]
        y = vb[i0:i1, None] + vb[None, :]
        upper = np.arange(i0, i1)[:, None] < np.arange(m)[None, :]
        score = np.where((x > 0) & (y > 0) & upper, x * y, 0.0)
        flat = int(np.argmax(score))
        s = float(score.flat[flat])
        if s > best:  # strict: earlier blocks hold lexicographically smaller pairs
            best = s
            i, j = divmod(flat, m)
            p, q = int(idx[i0 + i]), int(idx[j])
    return p, q, best


def best_pairs_reference(target_grad, other_grad, domain, *, increase: bool = True):
    """Exhaustive search; ties go to the lexicographically smallest (p, q)."""
    return per_row(_reference_row, target_grad, other_grad, domain, increase)

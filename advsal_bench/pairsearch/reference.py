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


def best_pairs_reference(target_grad, other_grad, domain, *, increase: bool = True):
    """Exhaustive search; ties go to the lexicographically smallest (p, q)."""
    u, v, valid = uv(target_grad, other_grad, domain, increase)
    batch = u.shape[0]
    p_out = np.full(batch, -1, dtype=np.int64)
    q_out = np.full(batch, -1, dtype=np.int64)
    s_out = np.zeros(batch, dtype=np.float64)
    for b in range(batch):
        idx = np.flatnonzero(valid[b])
        m = idx.size
        if m < 2:
            continue
        ub, vb = u[b, idx], v[b, idx]
        rows = max(1, _BLOCK_ELEMENTS // m)
        best = 0.0
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
                p_out[b], q_out[b], s_out[b] = idx[i0 + i], idx[j], s
    return p_out, q_out, s_out

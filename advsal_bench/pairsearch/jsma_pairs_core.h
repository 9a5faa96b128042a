// Exact JSMA pair search: per-candidate and per-pair logic shared by the C++
// extension (csrc/jsma_pairs.cpp) and the CUDA kernels
// (advsal_bench/pairsearch/jsma_pairs.cu), so CPU tests exercise GPU code.
//
// Problem (after advsal_uv): maximize (u_p+u_q)(v_p+v_q) over p != q in the
// domain, subject to u_p+u_q > 0 and v_p+v_q > 0.
//
// Candidates: order points by r > i  iff  u_r >= u_i, v_r >= v_i and
// ((u_r,v_r) != (u_i,v_i) or r < i)  (a strict partial order; the index breaks
// ties between equal points).  If p has two distinct dominators, one of them,
// r, differs from q, and (r, q) is admissible with a score >= (p, q); repeating
// climbs a finite poset, so an optimal pair exists among points with at most
// one dominator.  Sorting by (u desc, v desc, index asc) puts every dominator of
// i before i, and a preceding point dominates i iff its v >= v_i, so "at most
// one dominator" is "v_i > second largest v seen so far" (AdvsalTop2).
//
// Pair search: with S = sigma_p + sigma_q, D = delta_p + delta_q (sigma = u+v,
// delta = u-v), score = (S^2 - D^2)/4 and admissible iff S > |D|.  For fixed p,
// walking q outwards from delta_q = -delta_p makes |D| grow, so
// (min(sigma_p + sigma_max, 2 sigma_p)^2 - |D|^2)/4 bounds every remaining q
// (see advsal_s_bound): stop when it drops below the best score.  Pruning is strict (bound < best), so every pair
// tying the final best is evaluated and tie-breaking is deterministic.
#ifndef ADVSAL_JSMA_PAIRS_CORE_H
#define ADVSAL_JSMA_PAIRS_CORE_H

#ifdef __CUDACC__
#define ADVSAL_HD __host__ __device__
#else
#define ADVSAL_HD
#endif

typedef long long advsal_i64;

// Relative rounding slack on bounds (>> the 2^-53 per double operation), so
// floating-point error never prunes a pair that beats the best.
#define ADVSAL_EPS 1e-14

struct AdvsalBest {
  double score;  // 0 while no admissible pair was seen (admissible scores are > 0)
  advsal_i64 p;  // p < q, both -1 while none
  advsal_i64 q;
};

struct AdvsalTop2 {
  float m1;   // largest v pushed
  float m2;   // second largest v pushed (with multiplicity)
  int count;  // saturates at 2; avoids needing infinities (absent under NVRTC)
};

ADVSAL_HD inline bool advsal_finite(float x) {
  // NaN and +-inf give NaN; no <cmath> needed on either side.
  return (x - x) == 0.0f;
}

// Increase mode: alpha = s_t[p]+s_t[q] > 0, beta = s_o[p]+s_o[q] < 0;
// decrease mode flips both.  "+ 0.0f" turns -0 into +0 so bit-level sort keys
// agree with float comparisons.
ADVSAL_HD inline void advsal_uv(float st, float so, bool increase, float* u, float* v) {
  if (increase) {
    *u = st + 0.0f;
    *v = -so + 0.0f;
  } else {
    *u = -st + 0.0f;
    *v = so + 0.0f;
  }
}

// score = alpha * |beta| in float64; false when the pair is not admissible.
ADVSAL_HD inline bool advsal_pair_score(float up, float vp, float uq, float vq, double* score) {
  const double x = (double)up + (double)uq;
  const double y = (double)vp + (double)vq;
  if (!(x > 0.0) || !(y > 0.0)) return false;
  *score = x * y;
  return true;
}

ADVSAL_HD inline void advsal_best_reset(AdvsalBest* b) {
  b->score = 0.0;
  b->p = -1;
  b->q = -1;
}

// Higher score wins; equal scores go to the lexicographically smaller (p, q).
ADVSAL_HD inline bool advsal_better(double s, advsal_i64 p, advsal_i64 q, const AdvsalBest* b) {
  if (b->p < 0) return true;
  if (s != b->score) return s > b->score;
  return p < b->p || (p == b->p && q < b->q);
}

ADVSAL_HD inline void advsal_offer(AdvsalBest* b, double s, advsal_i64 i, advsal_i64 j) {
  const advsal_i64 p = i < j ? i : j;
  const advsal_i64 q = i < j ? j : i;
  if (advsal_better(s, p, q, b)) {
    b->score = s;
    b->p = p;
    b->q = q;
  }
}

ADVSAL_HD inline void advsal_merge_best(AdvsalBest* into, const AdvsalBest* other) {
  if (other->p >= 0) advsal_offer(into, other->score, other->p, other->q);
}

ADVSAL_HD inline void advsal_top2_reset(AdvsalTop2* t) {
  t->m1 = 0.0f;
  t->m2 = 0.0f;
  t->count = 0;
}

// Number of already-swept points dominating a point with this v: 0, 1 or 2 (= 2+).
ADVSAL_HD inline int advsal_top2_dominators(const AdvsalTop2* t, float v) {
  if (t->count == 0 || v > t->m1) return 0;
  if (t->count == 1 || v > t->m2) return 1;
  return 2;
}

ADVSAL_HD inline void advsal_top2_push(AdvsalTop2* t, float v) {
  if (t->count == 0) {
    t->m1 = v;
    t->count = 1;
  } else if (t->count == 1) {
    if (v > t->m1) {
      t->m2 = t->m1;
      t->m1 = v;
    } else {
      t->m2 = v;
    }
    t->count = 2;
  } else if (v > t->m1) {
    t->m2 = t->m1;
    t->m1 = v;
  } else if (v > t->m2) {
    t->m2 = v;
  }
}

// Can no pair with S <= s and |D| >= t score above `best`?  One rounded double
// operation errs by at most 2^-53 of its magnitude, so widening s by
// EPS*s_mag (s_mag = |sigma_p| + |sigma_max|) and shrinking t by EPS*t_mag
// (t_mag = 2|delta_p| + t >= |delta_p| + |delta_q|) keeps the test
// conservative; exact zeros stay exact (v = -u prunes everything).
ADVSAL_HD inline bool advsal_prunable(double s, double s_mag, double t, double t_mag, double best) {
  const double su = s + ADVSAL_EPS * s_mag;
  double tl = t - ADVSAL_EPS * t_mag;
  if (tl < 0.0) tl = 0.0;
  if (!(su > tl)) return true;  // S <= |D|: not admissible
  const double bound = 0.25 * (su - tl) * (su + tl) * (1.0 + 1e-12);
  return bound < best;
}

ADVSAL_HD inline double advsal_abs(double x) { return x < 0.0 ? -x : x; }

// Upper bound on S = sigma_p + sigma_q searched from p.  Each pair only needs
// to be found from its member with the larger sigma, so q is taken to have
// sigma_q <= sigma_p and S <= 2 sigma_p: a much tighter bound when sigma_p is
// small (pairs with a larger-sigma q are found from q).
ADVSAL_HD inline double advsal_s_bound(double sigma_p, double sigma_max) {
  const double s = sigma_p + sigma_max;
  return 2.0 * sigma_p < s ? 2.0 * sigma_p : s;
}

// Skip candidate kp altogether (its best possible partner cannot win)?
ADVSAL_HD inline bool advsal_skip_p(double sigma_p, double sigma_max, double best) {
  return advsal_prunable(advsal_s_bound(sigma_p, sigma_max), advsal_abs(sigma_p) + advsal_abs(sigma_max), 0.0, 0.0,
                         best);
}

// First k in [0, m) with dl[k] >= x (dl ascending); m if none.
ADVSAL_HD inline advsal_i64 advsal_lower_bound(const double* dl, advsal_i64 m, double x) {
  advsal_i64 lo = 0, hi = m;
  while (lo < hi) {
    const advsal_i64 mid = lo + (hi - lo) / 2;
    if (dl[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// sigma = u + v and delta = u - v, always computed this way (bit-identical
// wherever they are recomputed).
ADVSAL_HD inline double advsal_sigma(float u, float v) { return (double)u + (double)v; }
ADVSAL_HD inline double advsal_delta(float u, float v) { return (double)u - (double)v; }

// Best partner in a delta-ascending array for a point (dq, uq, vq, iq) that
// may or may not be one of its entries (`self` = its position, or -1).
// s >= S for every partner, s_mag bounds the magnitudes summed into s;
// start = advsal_lower_bound(dl, m, -dq).  `floor` is a score some pair is
// known to reach (0 if none): pruning against it is safe and lets parallel
// searchers share progress.
ADVSAL_HD inline void advsal_walk(double dq, float uq, float vq, advsal_i64 iq, advsal_i64 self, double s,
                                  double s_mag, advsal_i64 start, const double* dl, const float* cu,
                                  const float* cv, const advsal_i64* ci, advsal_i64 m, double floor,
                                  AdvsalBest* best) {
  const double t_mag0 = 2.0 * advsal_abs(dq);
  advsal_i64 right = start;
  advsal_i64 left = right - 1;
  for (;;) {
    const bool has_l = left >= 0, has_r = right < m;
    if (!has_l && !has_r) break;
    const double tl = has_l ? advsal_abs(dq + dl[left]) : 0.0;
    const double tr = has_r ? advsal_abs(dq + dl[right]) : 0.0;
    const bool take_left = has_l && (!has_r || tl <= tr);
    const double t = take_left ? tl : tr;
    const double thr = best->score > floor ? best->score : floor;
    // The nearer side is prunable, so every remaining q (larger |D|) is too.
    if (advsal_prunable(s, s_mag, t, t_mag0 + t, thr)) break;
    const advsal_i64 kq = take_left ? left : right;
    if (take_left) --left; else ++right;
    if (kq == self) continue;
    double sc;
    if (advsal_pair_score(uq, vq, cu[kq], cv[kq], &sc)) advsal_offer(best, sc, iq, ci[kq]);
  }
}

// Best partner for candidate kp.  Candidates are sorted by delta ascending;
// dl holds delta, cu/cv the coordinates, ci the original indices;
// start = advsal_lower_bound(dl, m, -dl[kp]).
ADVSAL_HD inline void advsal_search_from(advsal_i64 kp, advsal_i64 start, const double* dl, const float* cu,
                                         const float* cv, const advsal_i64* ci, advsal_i64 m, double sigma_max,
                                         double floor, AdvsalBest* best) {
  const double sp = advsal_sigma(cu[kp], cv[kp]);
  advsal_walk(dl[kp], cu[kp], cv[kp], ci[kp], kp, advsal_s_bound(sp, sigma_max),
              advsal_abs(sp) + advsal_abs(sigma_max), start, dl, cu, cv, ci, m, floor, best);
}

#endif  // ADVSAL_JSMA_PAIRS_CORE_H

// Exact JSMA pair search: the steps shared by the C++ extension (csrc/jsma_pairs.cpp)
// and the CUDA kernels (jsma_pairs.cu); layers.py is the same algorithm in NumPy.
//
// Problem (after advsal_uv): maximize (u_p+u_q)(v_p+v_q) over p != q in the
// domain, subject to u_p+u_q > 0 and v_p+v_q > 0; ties go to the smallest (p, q).
//
// Candidates (the Pareto layers): order points by r > i iff u_r >= u_i,
// v_r >= v_i and ((u_r,v_r) != (u_i,v_i) or r < i), a strict partial order in
// which the index breaks ties between equal points.  If p has two distinct
// dominators, one of them, r, differs from q, and (r, q) is admissible with a
// score >= (p, q) and a smaller (p, q) on a tie; repeating climbs a finite
// poset, so the best pair, tie-break included, lies among the points with at
// most one dominator.  In the sweep order (u desc, v desc, index asc) every
// dominator of i precedes i, and a preceding point dominates i iff its
// v >= v_i, so "at most one dominator" is "v_i > second largest v so far".
// Any set of points that holds every candidate gives the same answer, which is
// why a pre-filter may drop any point below two others.
//
// Pair search: with S = sigma_p + sigma_q, D = delta_p + delta_q (sigma = u+v,
// delta = u-v), score = (S^2 - D^2)/4 and admissible iff S > |D|.  For fixed p,
// walking q outwards from delta_q = -delta_p makes |D| grow, so
// (S_max^2 - |D|^2)/4 bounds every remaining q: stop when it drops below the
// best score.  Pruning is strict (bound < best), so every pair tying the final
// best is evaluated and the tie-break does not depend on the visiting order.
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

// The two largest v pushed (with multiplicity), -inf while absent.
struct AdvsalTop2 {
  float m1, m2;
};

ADVSAL_HD inline float advsal_neg_inf() {
#ifdef __CUDACC__
  return __int_as_float(0xff800000);  // NVRTC has no <cmath>
#else
  return -__builtin_huge_valf();
#endif
}

ADVSAL_HD inline bool advsal_finite(float x) {
  // NaN and +-inf give NaN; no <cmath> needed on either side.
  return (x - x) == 0.0f;
}

// Increase mode: alpha = s_t[p]+s_t[q] > 0, beta = s_o[p]+s_o[q] < 0;
// decrease mode flips both.  "+ 0.0f" turns -0 into +0 so bit-level sort keys
// agree with float comparisons.
ADVSAL_HD inline void advsal_uv(float st, float so, bool increase, float* u, float* v) {
  const float sign = increase ? 1.0f : -1.0f;
  *u = sign * st + 0.0f;
  *v = -sign * so + 0.0f;
}

// sigma = u + v and delta = u - v, always computed this way (bit-identical
// wherever they are recomputed).
ADVSAL_HD inline double advsal_sigma(float u, float v) { return (double)u + (double)v; }
ADVSAL_HD inline double advsal_delta(float u, float v) { return (double)u - (double)v; }
ADVSAL_HD inline double advsal_abs(double x) { return x < 0.0 ? -x : x; }

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
ADVSAL_HD inline void advsal_offer(AdvsalBest* b, double s, advsal_i64 i, advsal_i64 j) {
  const advsal_i64 p = i < j ? i : j;
  const advsal_i64 q = i < j ? j : i;
  if (b->p < 0 || s > b->score || (s == b->score && (p < b->p || (p == b->p && q < b->q)))) {
    b->score = s;
    b->p = p;
    b->q = q;
  }
}

ADVSAL_HD inline void advsal_top2_reset(AdvsalTop2* t) { t->m1 = t->m2 = advsal_neg_inf(); }

// Branch-free: the sweep and the corner sample push every point.
ADVSAL_HD inline void advsal_top2_push(AdvsalTop2* t, float v) {
  const float lo = t->m1 < v ? t->m1 : v;
  t->m2 = t->m2 < lo ? lo : t->m2;
  t->m1 = t->m1 < v ? v : t->m1;
}

// Swept points with v' >= v (each dominates the point about to be pushed): 0, 1 or 2 (= 2+).
ADVSAL_HD inline int advsal_top2_dominators(const AdvsalTop2* t, float v) {
  return (int)(v <= t->m1) + (int)(v <= t->m2);
}

// The sweep over the points in sweep order (su, sv): positions with no
// dominator go to seq0, with one to seq1, their deltas to d0 and d1.  In
// each sequence u is non-increasing and v strictly increasing, so delta
// strictly decreases.  Stops at the first non-finite u (the CUDA kernels
// sort excluded features last as -inf).
ADVSAL_HD inline void advsal_sweep(advsal_i64 len, const float* su, const float* sv, advsal_i64* seq0, double* d0,
                                   advsal_i64* n0, advsal_i64* seq1, double* d1, advsal_i64* n1) {
  AdvsalTop2 top;
  advsal_top2_reset(&top);
  advsal_i64 a = 0, b = 0;
  for (advsal_i64 k = 0; k < len && advsal_finite(su[k]); ++k) {
    const int d = advsal_top2_dominators(&top, sv[k]);
    const double delta = advsal_delta(su[k], sv[k]);
    seq0[a] = seq1[b] = k;  // branch-free: written always, kept by the count
    d0[a] = d1[b] = delta;
    a += d == 0;
    b += d == 1;
    advsal_top2_push(&top, sv[k]);
  }
  *n0 = a;
  *n1 = b;
}

// Merges the two delta-decreasing sequences into delta-ascending candidate
// arrays: dl = delta, cu/cv the coordinates, ci = sidx[position] (the feature
// index).  Returns their number.
ADVSAL_HD inline advsal_i64 advsal_merge(const float* su, const float* sv, const advsal_i64* sidx,
                                         const advsal_i64* seq0, const double* d0, advsal_i64 n0,
                                         const advsal_i64* seq1, const double* d1, advsal_i64 n1, double* dl,
                                         float* cu, float* cv, advsal_i64* ci) {
  advsal_i64 a = n0 - 1, b = n1 - 1;
  for (advsal_i64 k = 0; k < n0 + n1; ++k) {
    advsal_i64 i;
    if (b < 0 || (a >= 0 && d0[a] <= d1[b])) {
      i = seq0[a];
      dl[k] = d0[a--];
    } else {
      i = seq1[b];
      dl[k] = d1[b--];
    }
    cu[k] = su[i];
    cv[k] = sv[i];
    ci[k] = sidx[i];
  }
  return n0 + n1;
}

// Can no pair with S <= s and |D| >= t score above `best`?  One rounded double
// operation errs by at most 2^-53 of its magnitude, so widening s by
// EPS*s_mag (s_mag = |sigma_p| + |sigma_max|) and shrinking t by EPS*t_mag
// (t_mag = 2|delta_p| + t >= |delta_p| + |delta_q|) keeps the test
// conservative; exact zeros stay exact (v = -u prunes everything).
ADVSAL_HD inline bool advsal_prunable(double s, double s_mag, double t, double t_mag, double best) {
  const double su = s + ADVSAL_EPS * s_mag;
  const double t0 = t - ADVSAL_EPS * t_mag;
  const double tl = t0 < 0.0 ? 0.0 : t0;
  const double bound = 0.25 * (su - tl) * (su + tl) * (1.0 + 1e-12);
  // Branch-free: S <= |D| (not admissible) or the bound below best.
  return (int)!(su > tl) | (int)(bound < best);
}

// Upper bound on S searched from p.  Each pair only needs to be found from its
// member with the larger sigma, so S <= 2 sigma_p as well as sigma_p + sigma_max.
ADVSAL_HD inline double advsal_s_bound(double sigma_p, double sigma_max) {
  const double s = sigma_p + sigma_max;
  return 2.0 * sigma_p < s ? 2.0 * sigma_p : s;
}

// Skip candidate p altogether (its best possible partner cannot win)?
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

// Best partner of candidate kp among the m delta-ascending candidates, merged
// into `best`; start = advsal_lower_bound(dl, m, -dl[kp]).  `floor` is a score
// some pair is known to reach (0 if none): pruning against it is safe and lets
// parallel searchers share progress.
ADVSAL_HD inline void advsal_search_from(advsal_i64 kp, advsal_i64 start, const double* dl, const float* cu,
                                         const float* cv, const advsal_i64* ci, advsal_i64 m, double sigma_max,
                                         double floor, AdvsalBest* best) {
  const double dq = dl[kp], sp = advsal_sigma(cu[kp], cv[kp]);
  const double s = advsal_s_bound(sp, sigma_max), s_mag = advsal_abs(sp) + advsal_abs(sigma_max);
  const double t_mag0 = 2.0 * advsal_abs(dq);
  advsal_i64 right = start, left = start - 1;
  while (left >= 0 || right < m) {
    const double tl = left >= 0 ? advsal_abs(dq + dl[left]) : 0.0;
    const double tr = right < m ? advsal_abs(dq + dl[right]) : 0.0;
    const bool take_left = left >= 0 && (right >= m || tl <= tr);
    const double t = take_left ? tl : tr;
    const double thr = best->score > floor ? best->score : floor;
    // The nearer side is prunable, so every remaining q (larger |D|) is too.
    if (advsal_prunable(s, s_mag, t, t_mag0 + t, thr)) break;
    const advsal_i64 kq = take_left ? left-- : right++;
    double sc;
    if (kq != kp && advsal_pair_score(cu[kp], cv[kp], cu[kq], cv[kq], &sc)) advsal_offer(best, sc, ci[kp], ci[kq]);
  }
}

#endif  // ADVSAL_JSMA_PAIRS_CORE_H

// pybind11 module advsal_bench._jsma_native: the exact JSMA pair search on the CPU.
// Per row (solve_row): corners from a strided sample of the row (a staircase
// every point below which is below two real points), one pass that compacts the
// domain minus the points below a corner, then the Pareto-layer search of
// advsal_bench/pairsearch/jsma_pairs_core.h (sort, sweep, merge by delta,
// pruned walks).  The header holds the steps the CUDA kernels share.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "jsma_pairs_core.h"

namespace py = pybind11;

namespace {

// Corners tested per point in the compaction pass: its per-point cost grows
// with them, and past a few the steps of a sampled staircase add little area.
constexpr int kCorners = 8;
// Sample size = kSampleScale * sqrt(n): the sample costs ~s log s and leaves
// ~n / s points to sort, which balance at s ~ sqrt(n).
constexpr double kSampleScale = 4.0;
// Up to this many points are sorted by rank (m^2 / vector width compares)
// rather than by three radix passes with a 2048-entry counting array each.
constexpr std::int64_t kRankSortMax = 128;

// The loops over every feature or record (the compaction pass, small sorts)
// are also compiled for AVX2 and AVX-512 and the loader picks the widest the
// CPU has (GCC function multiversioning): the x86-64 baseline has 128-bit vectors.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ADVSAL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ADVSAL_CLONES
#endif

// A point as the sorts move it (payload and all: gathering afterwards would
// cost a cache miss per point on long rows).
struct Rec {
  std::uint64_t key;  // sweep_key(u) << 32 | feature index: ascending = u descending, then index ascending
  float v;
};

struct Workspace {
  std::vector<std::uint8_t> flags;
  std::vector<Rec> rec, tmp;
  std::vector<std::uint64_t> keys;
  std::vector<float> su, sv;  // the compacted domain in sweep order
  std::vector<advsal_i64> sidx, seq0, seq1, ci;
  std::vector<double> d0, d1, dl;
  std::vector<float> cu, cv;
};

struct Corners {
  float a[kCorners], b[kCorners];  // drop u < a && v <= b; unused slots (-FLT_MAX) drop nothing
};

// Grows a buffer, never shrinks it: no reallocation or page faults per row.
template <class T>
T* room(std::vector<T>& vec, std::int64_t m) {
  if (static_cast<std::int64_t>(vec.size()) < m) vec.resize(m);
  return vec.data();
}

// Unsigned order of the keys = descending float order (u is never -0: advsal_uv).
inline std::uint64_t sweep_key(float u, std::int64_t idx) {
  std::uint32_t b;
  std::memcpy(&b, &u, sizeof b);
  const std::uint32_t key = ~((b & 0x80000000u) ? ~b : (b | 0x80000000u));
  return static_cast<std::uint64_t>(key) << 32 | static_cast<std::uint32_t>(idx);
}

inline float key_u(std::uint64_t key) {
  const std::uint32_t k = ~static_cast<std::uint32_t>(key >> 32);
  const std::uint32_t b = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float u;
  std::memcpy(&u, &b, sizeof u);
  return u;
}

// Sorts the records by the u half of their key with an LSD radix sort
// (stable: indices stay ascending): 11-bit digits, so that three passes
// cover the key and the counting arrays (all filled in one pass) stay in L1.
// Returns rec or tmp, whichever holds the result.
Rec* radix_sort(Rec* rec, Rec* tmp, std::int64_t m) {
  constexpr int kBits = 11, kBuckets = 1 << kBits, kDigits = 3;
  std::uint32_t count[kDigits * kBuckets] = {};
  for (std::int64_t i = 0; i < m; ++i)
    for (int d = 0; d < kDigits; ++d) ++count[d * kBuckets + ((rec[i].key >> (32 + d * kBits)) & (kBuckets - 1))];
  for (int d = 0; d < kDigits; ++d) {
    std::uint32_t* c = count + d * kBuckets;
    const int shift = 32 + d * kBits;
    if (c[(rec[0].key >> shift) & (kBuckets - 1)] == m) continue;  // one digit value: nothing moves
    for (std::uint32_t b = 0, sum = 0; b < kBuckets; ++b) sum += std::exchange(c[b], sum);
    for (std::int64_t i = 0; i < m; ++i) tmp[c[(rec[i].key >> shift) & (kBuckets - 1)]++] = rec[i];
    std::swap(rec, tmp);
  }
  return rec;
}

// The records sorted by rank (the number of keys below each, all distinct):
// branch-free compares, vectorized, where a comparison sort mispredicts about
// every other branch.
ADVSAL_CLONES
Rec* rank_sort(const Rec* rec, Rec* out, std::uint64_t* keys, std::int64_t m) {
  for (std::int64_t i = 0; i < m; ++i) keys[i] = rec[i].key;
  for (std::int64_t i = 0; i < m; ++i) {
    std::int64_t r = 0;
    for (std::int64_t j = 0; j < m; ++j) r += keys[j] < keys[i];
    out[r] = rec[i];
  }
  return out;
}

// The m records of w.rec in sweep order (u desc, v desc, index asc): sorted
// by u, then runs of equal u by v.  Returns where they are.
Rec* sweep_order(std::int64_t m, Workspace& w) {
  Rec* tmp = room(w.tmp, m);
  Rec* r = m <= kRankSortMax ? rank_sort(w.rec.data(), tmp, room(w.keys, m), m) : radix_sort(w.rec.data(), tmp, m);
  const auto by_v = [](const Rec& a, const Rec& b) { return a.v > b.v || (a.v == b.v && a.key < b.key); };
  for (std::int64_t i = 0, j; i < m; i = j) {
    for (j = i + 1; j < m && (r[j].key >> 32) == (r[i].key >> 32);) ++j;
    // The check keeps long runs of identical points (all-zero gradients) O(run).
    if (j - i > 1 && !std::is_sorted(r + i, r + j, by_v)) std::sort(r + i, r + j, by_v);
  }
  return r;
}

// The corners from a strided sample of the row.  Swept in sweep order, after
// each point (u_k, v_k) the two largest v so far, m1 >= m2, belong to two
// points with u >= u_k, so any point with u < u_k and v <= m2 is below two
// real points (u strict): with q its partner, one of them, r != q, makes
// (r, q) admissible whenever (i, q) is, with a strictly larger u-sum and no
// smaller v-sum, so the point is in no best pair and ties none.  The steps
// where m2 grows form a staircase; kCorners of them, evenly spread, are kept.
Corners sample_corners(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                       Workspace& w) {
  Corners c;
  std::fill(c.a, c.a + kCorners, -FLT_MAX);
  std::fill(c.b, c.b + kCorners, -FLT_MAX);
  const std::int64_t stride = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::sqrt(n) / kSampleScale));
  Rec* rec = room(w.rec, n / stride + 1);
  std::int64_t ns = 0;
  for (std::int64_t j = 0; j < n; j += stride) {
    float u;
    advsal_uv(st[j], so[j], increase, &u, &rec[ns].v);
    rec[ns].key = sweep_key(u, j);
    ns += (dom[j] != 0) & advsal_finite(u) & advsal_finite(rec[ns].v);
  }
  rec = sweep_order(ns, w);
  float* ga = room(w.cu, ns);  // the staircase's steps
  float* gb = room(w.cv, ns);
  AdvsalTop2 top;
  advsal_top2_reset(&top);
  std::int64_t steps = 0;
  for (std::int64_t k = 0; k < ns; ++k) {
    const float m2 = top.m2;
    advsal_top2_push(&top, rec[k].v);
    ga[steps] = key_u(rec[k].key);
    gb[steps] = top.m2;
    steps += top.m2 > m2;
  }
  for (int k = 0; k < kCorners && k < steps; ++k) {
    const std::int64_t at = steps <= kCorners ? k : k * (steps - 1) / (kCorners - 1);
    c.a[k] = ga[at];
    c.b[k] = gb[at];
  }
  return c;
}

ADVSAL_CLONES
void flag_row(const float* __restrict st, const float* __restrict so, const std::uint8_t* __restrict dom,
              std::int64_t n, bool increase, const Corners& corners, std::uint8_t* __restrict flags) {
  float ca[kCorners], cb[kCorners];  // locals: the byte stores cannot alias them
  std::copy(corners.a, corners.a + kCorners, ca);
  std::copy(corners.b, corners.b + kCorners, cb);
  for (std::int64_t k = 0; k < n; ++k) {
    float u, v;
    advsal_uv(st[k], so[k], increase, &u, &v);
    bool below = false;
    for (int j = 0; j < kCorners; ++j) below |= (u < ca[j]) & (v <= cb[j]);
    // Non-finite gradients are excluded from the domain (NaN breaks ordering).
    flags[k] = (dom[k] != 0) & advsal_finite(u) & advsal_finite(v) & !below;
  }
}

// Calls fn(k) for every k < n with flags[k] = 1, in order.  64 flags are
// packed into one word (8 bytes of 0/1 -> 8 bits by one multiply) and its set
// bits visited with ctz: one branch per flagged point, not per feature.
template <class Fn>
void for_flagged(const std::uint8_t* flags, std::int64_t n, Fn&& fn) {
  std::int64_t k = 0;
#if defined(__GNUC__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; k + 64 <= n; k += 64) {
    std::uint64_t bits = 0;
    for (int g = 0; g < 8; ++g) {
      std::uint64_t word;
      std::memcpy(&word, flags + k + 8 * g, sizeof word);
      bits |= ((word * 0x0102040810204080ull) >> 56) << (8 * g);  // byte i lands on bit 56 + i, no carries
    }
    for (; bits; bits &= bits - 1) fn(k + __builtin_ctzll(bits));
  }
#endif
  for (; k < n; ++k)
    if (flags[k]) fn(k);
}

// Compacts the row into w.rec (ascending index): the domain's finite points
// not below a corner, and of the points at the origin only the first.  An
// origin point is admissible only beside a p with u_p > 0 and v_p > 0,
// scoring u_p v_p whichever origin point it is, so the lowest-indexed one
// gives the smallest pair among them (on MNIST the blank border is ~half the
// features).  Returns the number of points kept.
std::int64_t compact(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                     const Corners& corners, Workspace& w) {
  std::uint8_t* flags = room(w.flags, n);
  flag_row(st, so, dom, n, increase, corners, flags);
  Rec* rec = room(w.rec, n);
  std::int64_t m = 0;
  bool origin = false;
  for_flagged(flags, n, [&](std::int64_t k) {
    float u, v;
    advsal_uv(st[k], so[k], increase, &u, &v);
    const bool at0 = u == 0.0f && v == 0.0f;
    if (at0 && origin) return;
    origin |= at0;
    rec[m++] = {sweep_key(u, k), v};
  });
  return m;
}

// The smallest sigma_p that advsal_skip_p keeps, +inf if none up to
// sigma_max: skip_p only grows looser with sigma_p, so a bisection over the
// doubles (in their integer order) finds it, and the candidates are skipped
// by one compare each.
double sigma_floor(double sigma_max, double best) {
  const auto ordered = [](double x) {  // unsigned order = double order
    std::uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return (b >> 63) ? ~b : (b | (1ull << 63));
  };
  const auto value = [](std::uint64_t k) {
    const std::uint64_t b = (k >> 63) ? (k & ~(1ull << 63)) : ~k;
    double x;
    std::memcpy(&x, &b, sizeof x);
    return x;
  };
  if (advsal_skip_p(sigma_max, sigma_max, best)) return HUGE_VAL;
  std::uint64_t lo = ordered(-DBL_MAX), hi = ordered(sigma_max);  // skip_p(lo) holds (S < 0), skip_p(hi) not
  while (hi - lo > 1) {
    const std::uint64_t mid = lo + (hi - lo) / 2;
    (advsal_skip_p(value(mid), sigma_max, best) ? lo : hi) = mid;
  }
  return value(hi);
}

// Exact best pair among the m delta-ascending candidates, merged into `best`.
// The highest-sigma candidate goes first: a strong early best prunes the
// rest.  Then, kp ascending makes -delta_p descending, so each walk's start
// only moves left: a two-pointer pass instead of a binary search per candidate.
void search_sorted(const double* dl, const float* cu, const float* cv, const advsal_i64* ci, std::int64_t m,
                   AdvsalBest& best) {
  std::int64_t top = 0;
  for (std::int64_t k = 1; k < m; ++k)
    if (advsal_sigma(cu[k], cv[k]) > advsal_sigma(cu[top], cv[top])) top = k;
  const double sigma_max = advsal_sigma(cu[top], cv[top]);
  advsal_search_from(top, advsal_lower_bound(dl, m, -dl[top]), dl, cu, cv, ci, m, sigma_max, 0.0, &best);
  double floor = sigma_floor(sigma_max, best.score);
  for (std::int64_t kp = 0, start = m; kp < m; ++kp) {
    if (advsal_sigma(cu[kp], cv[kp]) < floor) continue;
    while (start > 0 && dl[start - 1] >= -dl[kp]) --start;
    const double before = best.score;
    advsal_search_from(kp, start, dl, cu, cv, ci, m, sigma_max, 0.0, &best);
    if (best.score > before) floor = sigma_floor(sigma_max, best.score);
  }
}

AdvsalBest solve_row(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                     Workspace& w) {
  AdvsalBest best;
  advsal_best_reset(&best);
  const Corners corners = sample_corners(st, so, dom, n, increase, w);
  const std::int64_t m0 = compact(st, so, dom, n, increase, corners, w);
  if (m0 < 2) return best;
  const Rec* r = sweep_order(m0, w);
  float* su = room(w.su, m0);
  float* sv = room(w.sv, m0);
  advsal_i64* sidx = room(w.sidx, m0);
  for (std::int64_t k = 0; k < m0; ++k) {
    su[k] = key_u(r[k].key);
    sv[k] = r[k].v;
    sidx[k] = static_cast<std::uint32_t>(r[k].key);
  }
  advsal_i64 n0, n1;
  advsal_sweep(m0, w.su.data(), w.sv.data(), room(w.seq0, m0), room(w.d0, m0), &n0, room(w.seq1, m0),
               room(w.d1, m0), &n1);
  const std::int64_t m = advsal_merge(w.su.data(), w.sv.data(), w.sidx.data(), w.seq0.data(), w.d0.data(), n0,
                                      w.seq1.data(), w.d1.data(), n1, room(w.dl, m0), room(w.cu, m0),
                                      room(w.cv, m0), room(w.ci, m0));
  search_sorted(w.dl.data(), w.cu.data(), w.cv.data(), w.ci.data(), m, best);
  return best;
}

Workspace& thread_workspace() {
  thread_local Workspace w;
  return w;
}

// Runs fn(b, workspace) for b < B on `threads` OpenMP threads (0: the OpenMP
// default); the first error is rethrown after the loop.
template <class Fn>
void for_rows(std::int64_t B, int threads, const Fn& fn) {
  std::string error;
  py::gil_scoped_release release;
#ifdef _OPENMP
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (nt > 1 && B > 1)
#endif
  for (std::int64_t b = 0; b < B; ++b) {
    try {
      fn(b, thread_workspace());
    } catch (const std::exception& e) {
#ifdef _OPENMP
#pragma omp critical
#endif
      error = e.what();
    }
  }
  if (!error.empty()) throw std::runtime_error(error);
}

std::string shape_str(const py::buffer_info& b) {
  std::string s = "(";
  for (std::size_t i = 0; i < b.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(b.shape[i]);
  return s + (b.shape.size() == 1 ? ",)" : ")");
}

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

py::tuple best_pairs(F32 target_grad, F32 other_grad, U8 domain, bool increase, int threads) {
  const auto bt = target_grad.request(), bo = other_grad.request(), bd = domain.request();
  if (bt.ndim != 2) throw py::value_error("target_grad: expected a 2-D array [B, n], got shape " + shape_str(bt));
  if (bo.shape != bt.shape)
    throw py::value_error("other_grad: expected shape " + shape_str(bt) + ", got " + shape_str(bo));
  if (bd.shape != bt.shape)
    throw py::value_error("domain: expected shape " + shape_str(bt) + ", got " + shape_str(bd));
  if (threads < 0) throw py::value_error("threads: expected >= 0 (0 = OpenMP default), got " + std::to_string(threads));
  const std::int64_t B = bt.shape[0], n = bt.shape[1];
  // Sort records carry a position in 32 bits.
  if (n > INT32_MAX) throw py::value_error("n: expected at most 2**31-1 features, got " + std::to_string(n));
  py::array_t<std::int64_t> p(B), q(B);
  py::array_t<double> score(B);
  const auto* st = static_cast<const float*>(bt.ptr);
  const auto* so = static_cast<const float*>(bo.ptr);
  const auto* dm = static_cast<const std::uint8_t*>(bd.ptr);
  std::int64_t* pp = p.mutable_data();
  std::int64_t* qq = q.mutable_data();
  double* ss = score.mutable_data();
  for_rows(B, threads, [&](std::int64_t b, Workspace& w) {
    const AdvsalBest r = solve_row(st + b * n, so + b * n, dm + b * n, n, increase, w);
    pp[b] = r.p;
    qq[b] = r.q;
    ss[b] = r.score;
  });
  return py::make_tuple(p, q, score);
}

}  // namespace

PYBIND11_MODULE(_jsma_native, m) {
  m.doc() = "Exact JSMA pair search (C++/OpenMP); see advsal_bench/pairsearch/jsma_pairs_core.h";
  m.def("best_pairs", &best_pairs, py::arg("target_grad"), py::arg("other_grad"), py::arg("domain"),
        py::arg("increase") = true, py::arg("threads") = 1,
        "Best admissible (p, q) per row: (p int64[B], q int64[B], score float64[B]); -1, -1, 0 when none.");
}

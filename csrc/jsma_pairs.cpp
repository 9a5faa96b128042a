// pybind11 module advsal_bench._jsma_native: exact JSMA pair search on the CPU.
// The per-candidate/per-pair logic lives in advsal_bench/pairsearch/jsma_pairs_core.h, the one header
// the CUDA kernels (jsma_pairs.cu) include too.
// Per row (solve_row): a strided sample gives a few "corners", points below
// which every feature is dominated twice over and can be dropped in the one
// pass over the row; when the sample says they drop most of the row, the
// Pareto-layer search (layers_row) runs on what is left.  Otherwise long rows
// try the top-sigma search (top_sigma_row: every pair with a member among the
// ~2k highest-sigma points, exact when a bound rules out the rest) and fall
// back to the layers seeded with what it found; short rows go to the layers.
// Inside the layers a bucket filter (no sort) drops most remaining points
// before the sort.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cmath>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "jsma_pairs_core.h"

// Build with -DADVSAL_PROFILE to print per-phase times of each row to stderr.
#ifdef ADVSAL_PROFILE
#include <chrono>
#include <cstdio>
#define PROF(tag)                                                                                               \
  do {                                                                                                          \
    const auto _now = std::chrono::steady_clock::now();                                                         \
    std::fprintf(stderr, "%s %.3f ms\n", tag, std::chrono::duration<double, std::milli>(_now - _t0).count()); \
    _t0 = _now;                                                                                                 \
  } while (0)
#else
#define PROF(tag)
#endif

namespace py = pybind11;

namespace {

// Buckets of the bucket filter at most (m / 8 of them, at least 16).
constexpr std::int64_t kMaxBuckets = 1024;
// Below this many candidates every pair is checked: cheaper than the bounds.
constexpr std::int64_t kBruteForceCandidates = 48;
// Candidates searched first, highest sigma first, to seed a strong best score.
constexpr std::int64_t kWarmup = 16;
// Above this many points, radix sort beats std::sort.
constexpr std::int64_t kRadixThreshold = 2048;
// Points sampled to decide whether the pivot prefilter pays on long rows.
constexpr std::int32_t kPrefilterSample = 1024;
// Rows with at least this many features try the top-sigma search first.
constexpr std::int64_t kTopMinN = 8192;
// Aimed size of T (top sigma): n / kTopShare within [kTopMin, kTopTarget];
// with ~2k of 150k the bound held on real-model, random and anti-correlated
// gradients.  (Short rows stay on the layers: on 784-feature MNIST gradients
// T needs ~15% of the row and the walks against it cost more than the layers.)
constexpr std::int64_t kTopTarget = 2048;
constexpr std::int64_t kTopMin = 64;
constexpr std::int64_t kTopShare = 6;
// Sample setting tau: n / 4 features within [kTopMinSample, kTopSample].
constexpr std::int64_t kTopSample = 4096;
constexpr std::int64_t kTopMinSample = 128;
// Points in T's highest sigma tier; each lower tier holds 3x the points of
// all tiers above it, so that one outlier sigma does not loosen the bound of
// every outside x T walk.
constexpr std::int64_t kTopHigh = 32;
// Cells of the near map (bits) at most.
constexpr std::int64_t kNearCells = 1 << 21;
constexpr std::int64_t kNearPerPoint = 256;
// Fewer features than this in the whole batch: no OpenMP team, even when
// threads are asked for explicitly.
constexpr std::int64_t kParallelMinWork = 1 << 16;
// threads = 0 (the default, used by the JSMA attack): serial below this many
// features in the batch.  Measured on 2 shared, loaded cores (load ~4-5),
// batch 64, median ms serial / 2 threads: 2.7 / 12.0 at n = 3,072, 20.7 / 27.9
// at n = 12,288: a team only pays when every thread gets milliseconds of work.
constexpr std::int64_t kParallelMinWorkAuto = 1 << 22;

// How a row was settled (tests check that each path is exercised).
enum class RowPath { kNone, kTopSigma, kLayersAfterTopSigma, kLayersAfterGiveUp, kLayers, kCornerLayers, kHintLayers };

struct Workspace {
  // The last row this workspace solved (a member, not a thread_local of its
  // own: in a shared library each thread_local access is a call).
  RowPath last_path = RowPath::kNone;
  bool gave_up = false;
  std::vector<float> u, v;             // compacted domain, ascending index
  std::vector<std::int64_t> idx;
  std::vector<std::int32_t> keep;      // prefilter survivors, then sweep order
  std::vector<std::uint8_t> cnt;       // dominating pivots per point
  std::vector<std::uint64_t> rk, rk_tmp;  // radix records: key << 32 | position
  std::vector<float> su, sv;           // survivors gathered in sweep order
  std::vector<std::int64_t> sidx;
  std::vector<std::int32_t> seq0, seq1;
  std::vector<double> dl;
  std::vector<float> cu, cv;
  std::vector<advsal_i64> ci;
  // top-sigma search
  std::vector<double> samp;
  struct TopPoint {
    double d;
    float u, v;
    advsal_i64 i;
  };
  std::vector<TopPoint> top;
  std::vector<double> tdl;
  std::vector<float> tu, tv;
  std::vector<advsal_i64> ti;
  std::vector<double> tsig, tier_min, tsmax;  // T's sigmas (descending); per sigma tier: lower edge, largest sigma
  std::vector<std::int64_t> toff, tpos;        // tier g is [toff[g], toff[g + 1]) of the g* arrays
  std::vector<double> gdl;                     // T by tier, delta-ascending within each tier
  std::vector<float> gu, gv;
  std::vector<advsal_i64> gi;
  std::vector<std::uint64_t> near;
  // corner filter: the sample
  std::vector<float> cu_s, cv_s;
  // bucket filter: per bucket of u, the two largest v
  std::vector<float> bm1, bm2, bthr;
  // the staircase steps pick_hints picks from
  std::vector<std::pair<std::int32_t, std::int32_t>> hint_steps;
};

inline std::uint32_t float_key(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);  // ascending float order
}

// Pivots: maximizers of positive weightings of (u, v), all on the front.
constexpr float kWeights[][2] = {{1, 0}, {0, 1}, {1, 1}, {2, 1}, {1, 2}};
constexpr int kW = sizeof(kWeights) / sizeof(kWeights[0]);

// Adds to cnt[i] the number of pivots dominating point i, one pivot per pass:
// a fixed-shape loop over the points that vectorizes.  Compacted positions
// preserve index order, so pk < i compares indices.
void count_dominating_pivots(const std::int32_t* piv, const float* pu, const float* pv, int np, const float* u,
                             const float* v, std::int32_t begin, std::int32_t end, std::uint8_t* cnt) {
  for (std::int32_t i = begin; i < end; ++i) cnt[i - begin] = 0;
  for (int k = 0; k < np; ++k) {
    const float a = pu[k], b = pv[k];
    const std::int32_t pk = piv[k];
    for (std::int32_t i = begin; i < end; ++i) {
      const float ui = u[i], vi = v[i];
      cnt[i - begin] += (pk != i) & (a >= ui) & (b >= vi) & ((a > ui) | (b > vi) | (pk < i));
    }
  }
}

// Points each dominated by >= 2 pivots cannot be candidates; dropping them is
// O(n) and usually leaves a tiny fraction to sort.  On anti-correlated
// gradients almost nothing is dropped, so on long rows a sample decides
// whether to bother.
void pivot_prefilter(Workspace& w, std::int64_t m0, const std::int32_t* bi, std::int32_t extra) {
  std::int32_t piv[kW + 1];
  float pu[kW + 1], pv[kW + 1];
  int np = 0;
  for (int k = 0; k <= kW; ++k) {
    const std::int32_t c = k < kW ? bi[k] : extra;
    if (c < 0 || std::find(piv, piv + np, c) != piv + np) continue;
    piv[np] = c;
    pu[np] = w.u[c];
    pv[np] = w.v[c];
    ++np;
  }
  w.keep.resize(m0);
  if (static_cast<std::int64_t>(w.cnt.size()) < m0) w.cnt.resize(m0);
  std::uint8_t* cnt = w.cnt.data();
  const std::int32_t m = static_cast<std::int32_t>(m0);
  if (m0 > 4 * kPrefilterSample) {
    count_dominating_pivots(piv, pu, pv, np, w.u.data(), w.v.data(), 0, kPrefilterSample, cnt);
    std::int64_t dropped = 0;
    for (std::int32_t i = 0; i < kPrefilterSample; ++i) dropped += cnt[i] >= 2;
    if (dropped * 4 < kPrefilterSample) {  // < 25% would go: not worth a pass
      for (std::int64_t i = 0; i < m0; ++i) w.keep[i] = static_cast<std::int32_t>(i);
      return;
    }
  }
  count_dominating_pivots(piv, pu, pv, np, w.u.data(), w.v.data(), 0, m, cnt);
  std::int64_t kept = 0;
  for (std::int32_t i = 0; i < m; ++i) {
    w.keep[kept] = i;
    kept += cnt[i] < 2;
  }
  w.keep.resize(kept);
}

// Sort w.keep (ascending positions) into (u desc, v desc, position asc).
void sweep_order(Workspace& w) {
  auto& ord = w.keep;
  const auto cmp = [&w](std::int32_t a, std::int32_t b) {
    if (w.u[a] != w.u[b]) return w.u[a] > w.u[b];
    if (w.v[a] != w.v[b]) return w.v[a] > w.v[b];
    return a < b;
  };
  const std::int64_t m = static_cast<std::int64_t>(ord.size());
  // Records ~float_key(u) << 32 | position: one integer compare orders u
  // descending, positions ascending within equal u (no indirection); runs of
  // equal u are then fixed up by v.
  if (static_cast<std::int64_t>(w.rk.size()) < m) {
    w.rk.resize(m);
    w.rk_tmp.resize(m);
  }
  constexpr int kBits = 11, kBuckets = 1 << kBits, kPasses = 3;
  if (m < kRadixThreshold) {
    for (std::int64_t i = 0; i < m; ++i)
      w.rk[i] = static_cast<std::uint64_t>(~float_key(w.u[ord[i]])) << 32 | static_cast<std::uint32_t>(ord[i]);
    std::sort(w.rk.begin(), w.rk.begin() + m);
  } else {
    // Stable LSD radix sort, 11-bit digits.
    std::uint32_t count[kPasses][kBuckets];
    std::memset(count, 0, sizeof count);
    for (std::int64_t i = 0; i < m; ++i) {
      const std::uint64_t key = ~float_key(w.u[ord[i]]);
      w.rk[i] = key << 32 | static_cast<std::uint32_t>(ord[i]);
      for (int p = 0; p < kPasses; ++p) ++count[p][(key >> (p * kBits)) & (kBuckets - 1)];
    }
    for (int p = 0; p < kPasses; ++p) {
      const int shift = 32 + p * kBits;
      if (count[p][(w.rk[0] >> shift) & (kBuckets - 1)] == static_cast<std::uint32_t>(m)) continue;  // constant digit
      std::uint32_t sum = 0;
      for (auto& c : count[p]) {
        const std::uint32_t c0 = c;
        c = sum;
        sum += c0;
      }
      for (std::int64_t i = 0; i < m; ++i) w.rk_tmp[count[p][(w.rk[i] >> shift) & (kBuckets - 1)]++] = w.rk[i];
      w.rk.swap(w.rk_tmp);
    }
  }
  for (std::int64_t i = 0; i < m; ++i) ord[i] = static_cast<std::int32_t>(w.rk[i] & 0xffffffffu);
  for (std::int64_t i = 0; i < m;) {
    std::int64_t j = i + 1;
    while (j < m && (w.rk[j] >> 32) == (w.rk[i] >> 32)) ++j;
    // The check makes huge runs of identical points (e.g. all-zero gradients) O(run).
    if (j - i > 1 && !std::is_sorted(ord.begin() + i, ord.begin() + j, cmp)) std::sort(ord.begin() + i, ord.begin() + j, cmp);
    i = j;
  }
}

// Keeps the K largest keys pushed so far, descending, with their positions:
// insertion into a tiny sorted array (most pushes fail the first compare).
template <std::size_t K, class Pos>
inline void push_top(double (&key)[K], Pos (&pos)[K], int& n, double s, Pos at) {
  constexpr int k = static_cast<int>(K);
  if (n == k && !(s > key[k - 1])) return;
  int i = n < k ? n++ : n - 1;
  while (i > 0 && key[i - 1] < s) {
    key[i] = key[i - 1];
    pos[i] = pos[i - 1];
    --i;
  }
  key[i] = s;
  pos[i] = at;
}

// Exact best pair among m points sorted by delta ascending (dl), merged into
// `best` (which may already hold a pair found elsewhere: it only prunes more).
void search_sorted(const double* dl, const float* cu, const float* cv, const advsal_i64* ci, std::int64_t m,
                   AdvsalBest& best) {
  if (m < 2) return;
  if (m <= kBruteForceCandidates) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = i + 1; j < m; ++j) {
        double sc;
        if (advsal_pair_score(cu[i], cv[i], cu[j], cv[j], &sc)) advsal_offer(&best, sc, ci[i], ci[j]);
      }
    return;
  }
  const auto sigma = [cu, cv](std::int64_t k) { return advsal_sigma(cu[k], cv[k]); };
  double sigma_max = sigma(0);
  // Top-kWarmup sigma candidates, kept sorted descending by insertion.
  std::int64_t warm[kWarmup];
  double wsig[kWarmup];
  int nw = 0;
  for (std::int64_t k = 0; k < m; ++k) {
    if (k > 0 && dl[k] < dl[k - 1]) throw std::logic_error("jsma_pairs: candidates not sorted by delta (internal error)");
    const double sk = sigma(k);
    sigma_max = std::max(sigma_max, sk);
    push_top(wsig, warm, nw, sk, k);
  }
  // Warm-up on the highest-sigma candidates seeds a strong best score.
  for (int r = 0; r < nw; ++r) {
    const std::int64_t kp = warm[r];
    if (advsal_skip_p(wsig[r], sigma_max, best.score)) break;
    const std::int64_t start = advsal_lower_bound(dl, m, -dl[kp]);
    advsal_search_from(kp, start, dl, cu, cv, ci, m, sigma_max, 0.0, &best);
  }
  // kp ascending makes -delta_p descending, so the start position only moves
  // left: a two-pointer walk instead of a binary search per candidate.
  std::int64_t start = m;
  for (std::int64_t kp = 0; kp < m; ++kp) {
    if (advsal_skip_p(sigma(kp), sigma_max, best.score)) continue;
    const double x = -dl[kp];
    while (start > 0 && dl[start - 1] >= x) --start;
    advsal_search_from(kp, start, dl, cu, cv, ci, m, sigma_max, 0.0, &best);
  }
}

// Features are streamed in chunks of kChunk: a vectorizable loop flags a chunk, then the
// per-point work visits only the flagged features.
constexpr std::int64_t kChunk = 512;

// Calls fn(k) for every flagged k < len (flags are 0 or 1), in order.  64
// flags are packed into one word (8 bytes of 0/1 -> 8 bits by one multiply)
// and its set bits visited with ctz: one branch per flagged point, not per
// flag, which matters when 1-15% of the points are flagged at random.
template <class Fn>
inline void for_flagged(const std::uint8_t* flags, std::int64_t len, Fn&& fn) {
  std::int64_t k = 0;
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  for (; k + 64 <= len; k += 64) {
    std::uint64_t bits = 0;
    for (int g = 0; g < 8; ++g) {
      std::uint64_t word;
      std::memcpy(&word, flags + k + 8 * g, sizeof word);
      // Byte i (0/1) lands on bit 56 + i of the product; no carries, since
      // the partial products never overlap.
      bits |= ((word * 0x0102040810204080ull) >> 56) << (8 * g);
    }
    while (bits) {
      fn(k + __builtin_ctzll(bits));
      bits &= bits - 1;
    }
  }
#endif
  for (; k < len; ++k)
    if (flags[k]) fn(k);
}

// Pivots from a strided sample: any real points are valid pivots, and the
// maxima of ~8k samples already dominate nearly all of a typical cloud.
struct Pivots {
  std::int32_t bi[kW];
  float bv[kW];
  std::int32_t bi2;  // runner-up of u + v, or -1
};

Pivots pick_pivots(const Workspace& w, std::int64_t m) {
  Pivots r;
  for (int k = 0; k < kW; ++k) {
    r.bv[k] = -FLT_MAX;
    r.bi[k] = 0;
  }
  const std::int64_t stride = std::max<std::int64_t>(1, m / 8192);
  // Runner-up of u + v as well: with duplicated maxima (integer-valued or
  // all-zero gradients) every weighting picks the same point, and one pivot
  // alone can never drop anything.
  float bv2 = -FLT_MAX;
  r.bi2 = -1;
  for (std::int64_t i = 0; i < m; i += stride) {
    const float u = w.u[i], v = w.v[i];
    const float sum = u + v;
    if (sum > bv2 && !(sum > r.bv[2])) {
      bv2 = sum;
      r.bi2 = static_cast<std::int32_t>(i);
    }
    for (int k = 0; k < kW; ++k) {
      const float val = kWeights[k][0] * u + kWeights[k][1] * v;
      if (val > r.bv[k]) {
        if (k == 2) {
          bv2 = r.bv[k];
          r.bi2 = r.bi[k];
        }
        r.bv[k] = val;
        r.bi[k] = static_cast<std::int32_t>(i);
      }
    }
  }
  return r;
}

// Drops, in place and in order, the points below two others found in higher
// buckets of u: with kb equal-width buckets over [min u, max u], a point in
// bucket b is dropped when its v is <= the second largest v in buckets > b.
// A monotone bucket index makes a higher bucket a strictly larger u, so the
// point is below two others in the sense of the corner filter (which says
// why it is in no best pair and ties none).  Exact up to the bucket width,
// with no sort: on the rows of a JSMA run on 28x28 inputs ~600 valid points
// leave ~20-60.  Returns the number of points kept.
std::int64_t bucket_filter(Workspace& w, std::int64_t m) {
  float* u = w.u.data();
  float* v = w.v.data();
  std::int64_t* idx = w.idx.data();
  float lo = u[0], hi = u[0];
  for (std::int64_t i = 1; i < m; ++i) {
    lo = std::min(lo, u[i]);
    hi = std::max(hi, u[i]);
  }
  const float width = hi - lo;
  if (!(width > 0.0f) || !std::isfinite(width)) return m;  // one u value (or a span past float): no strict order
  const int kb = static_cast<int>(std::min<std::int64_t>(kMaxBuckets, std::max<std::int64_t>(16, m / 8)));
  // The largest product below kb keeps every index < kb; rounding keeps it monotone in u.
  const float scale = static_cast<float>(kb) / width * (1.0f - 4.0f * FLT_EPSILON);
  const auto bucket = [lo, scale, kb](float x) { return std::min(kb - 1, static_cast<int>((x - lo) * scale)); };
  w.bm1.assign(kb, -INFINITY);
  w.bm2.assign(kb, -INFINITY);
  w.bthr.resize(kb);
  float* m1 = w.bm1.data();
  float* m2 = w.bm2.data();
  float* thr = w.bthr.data();
  for (std::int64_t i = 0; i < m; ++i) {
    const int b = bucket(u[i]);
    const float a = m1[b], x = v[i];
    m2[b] = std::max(m2[b], std::min(a, x));
    m1[b] = std::max(a, x);
  }
  float r1 = -INFINITY, r2 = -INFINITY;  // two largest v in the buckets above
  for (int b = kb - 1; b >= 0; --b) {
    thr[b] = r2;
    r2 = std::max(std::min(r1, m1[b]), std::max(r2, m2[b]));
    r1 = std::max(r1, m1[b]);
  }
  std::int64_t kept = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    const bool keep = !(v[i] <= thr[bucket(u[i])]);
    u[kept] = u[i];
    v[kept] = v[i];
    idx[kept] = idx[i];
    kept += keep;
  }
  return kept;
}

// Corner filter.  A point i below two other points r1, r2 (u_r > u_i and
// v_r >= v_i for both) is in no best pair and ties none: with q its partner,
// one of the two, r != q, makes (r, q) admissible whenever (i, q) is, with a
// strictly larger u-sum and no smaller v-sum, so a strictly better score (the
// candidate rule of jsma_pairs_core.h, with u strict so that no index
// tie-break is needed).  For r1, r2 taken from a strided sample, the points
// this drops lie left of and not above the corners (g, h): g the smallest
// u of a bucket of the sample, h the second largest sample v among u >= g.
// Any subset of corners is sound (it only drops less), so kCorners of them
// are tested per point, in a fixed-shape loop that vectorizes.  On the rows
// of a JSMA run at 224x224x3 with a small CNN (u and v nearly uncorrelated)
// ~150 of 150k points are below no two others; the corners of a 2k sample
// keep ~1-2k, and the layers sort only those.
constexpr int kCorners = 8;
// Buckets of u for the sample's staircase.
constexpr int kCornerBuckets = 128;
// Sample size aimed at (n / stride points), with a stride of at least 8:
// on short rows the sample is paid for on every row, and 1/8 of a 784-
// or 3,072-feature row already finds corners that keep ~5-15% of it.
constexpr std::int64_t kCornerSample = 2048;
constexpr std::int64_t kCornerMinStride = 8;
// Long rows whose sample keeps more than this share skip the filter and try
// the top-sigma search first: nearly all points on the front (anti-correlated
// gradients), where sorting them all is what top-sigma avoids.
constexpr double kCornerMaxShare = 0.125;
// Short rows (kCornerMinN <= n < kTopMinN) have only the plain layers to
// fall back on, so the corners pay up to a larger share.  Measured, rotating
// through the rows of JSMA runs (us per row, plain layers -> corners): small
// CNN 28x28 13.5 -> 4.5, MNIST net 5.9 -> 3.1, CIFAR-10 net 31.8 -> 8.4
// (with the bucket filter in both).
constexpr std::int64_t kCornerMinN = 512;
constexpr double kCornerMaxShareShort = 0.3;

struct Corners {
  float a[kCorners], b[kCorners];  // unused slots hold -FLT_MAX: nothing is below them
  double kept_share = 1.0;         // share of the sample not below any corner
};

Corners sample_corners(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                       Workspace& w) {
  Corners c;
  std::fill(c.a, c.a + kCorners, -FLT_MAX);
  std::fill(c.b, c.b + kCorners, -FLT_MAX);
  const std::int64_t stride = std::max<std::int64_t>(kCornerMinStride, n / kCornerSample);
  const std::int64_t cap = (n + stride - 1) / stride;
  if (static_cast<std::int64_t>(w.cu_s.size()) < cap) {
    w.cu_s.resize(cap);
    w.cv_s.resize(cap);
  }
  float* su = w.cu_s.data();
  float* sv = w.cv_s.data();
  std::int64_t ns = 0;
  for (std::int64_t j = 0; j < n; j += stride) {
    const float u = increase ? st[j] + 0.0f : -st[j] + 0.0f, v = increase ? -so[j] + 0.0f : so[j] + 0.0f;
    su[ns] = u;
    sv[ns] = v;
    ns += (dom[j] != 0) & advsal_finite(u) & advsal_finite(v);
  }
  if (ns < 64) return c;  // sparse domain: the layers are cheap anyway
  // The staircase from buckets of u: going down from the highest bucket,
  // h = second largest v among the buckets so far, paired with the smallest
  // u of the bucket just added (every point counted has u >= it).  h only
  // grows going down; a corner is new where it grows.  ~4 points a bucket:
  // finer buckets only add steps, and only kCorners of them are kept.
  float lo = su[0], hi = su[0];
  for (std::int64_t i = 1; i < ns; ++i) {
    lo = std::min(lo, su[i]);
    hi = std::max(hi, su[i]);
  }
  const float width = hi - lo;
  if (!(width > 0.0f) || !std::isfinite(width)) return c;
  const int kb = static_cast<int>(std::min<std::int64_t>(kCornerBuckets, ns / 4));
  const float scale = static_cast<float>(kb) / width * (1.0f - 4.0f * FLT_EPSILON);
  float m1[kCornerBuckets], m2[kCornerBuckets], umin[kCornerBuckets];
  std::fill(m1, m1 + kb, -INFINITY);
  std::fill(m2, m2 + kb, -INFINITY);
  std::fill(umin, umin + kb, INFINITY);
  for (std::int64_t i = 0; i < ns; ++i) {
    const int b = std::min(kb - 1, static_cast<int>((su[i] - lo) * scale));
    const float a = m1[b], v = sv[i];
    m2[b] = std::max(m2[b], std::min(a, v));
    m1[b] = std::max(a, v);
    umin[b] = std::min(umin[b], su[i]);
  }
  // Going down from the highest bucket, branch-free (the branches
  // mispredicted): an empty bucket changes neither largest v, and r2 only
  // grows, so a step is where it grows.
  float ga[kCornerBuckets], gb[kCornerBuckets];
  int nc = 0;
  float r1 = -INFINITY, r2 = -INFINITY;
  for (int b = kb - 1; b >= 0; --b) {
    const float n2 = std::max(std::min(r1, m1[b]), std::max(r2, m2[b]));
    r1 = std::max(r1, m1[b]);
    ga[nc] = umin[b];
    gb[nc] = n2;
    nc += n2 > r2;
    r2 = n2;
  }
  for (int k = 0; k < std::min(nc, kCorners); ++k) {
    // Evenly spread over the staircase when it has more steps than slots.
    const int at = nc <= kCorners ? k : static_cast<int>((static_cast<std::int64_t>(k) * (nc - 1)) / (kCorners - 1));
    c.a[k] = ga[at];
    c.b[k] = gb[at];
  }
  float ca[kCorners], cb[kCorners];  // locals, so that the loop vectorizes
  std::copy(c.a, c.a + kCorners, ca);
  std::copy(c.b, c.b + kCorners, cb);
  std::int64_t kept = 0;
  for (std::int64_t i = 0; i < ns; ++i) {
    bool below = false;
    for (int k = 0; k < kCorners; ++k) below |= (su[i] < ca[k]) & (sv[i] <= cb[k]);
    kept += !below;
  }
  c.kept_share = static_cast<double>(kept) / static_cast<double>(ns);
  return c;
}

// Corners carried over from the previous JSMA iteration of the same image
// (jsma_step's hints): slot k names two features, and their values in this
// row make the corner (smaller u, smaller v of the two), so each is two real
// points, as the filter needs, however much the gradients moved.  Slots whose
// features left the domain or are not finite are skipped.  The sample costs
// about a third of a 784-feature row; reading 16 features costs nothing.
// Returns the number of corners made.
int hint_corners(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                 const std::int32_t* hint, Corners& c) {
  std::fill(c.a, c.a + kCorners, -FLT_MAX);
  std::fill(c.b, c.b + kCorners, -FLT_MAX);
  int nc = 0;
  for (int k = 0; k < kCorners; ++k) {
    const std::int32_t r1 = hint[2 * k], r2 = hint[2 * k + 1];
    // Two distinct points: one alone could be the partner of the point it drops.
    if (r1 < 0 || r2 < 0 || r1 == r2 || r1 >= n || r2 >= n || !dom[r1] || !dom[r2]) continue;
    float u1, v1, u2, v2;
    advsal_uv(st[r1], so[r1], increase, &u1, &v1);
    advsal_uv(st[r2], so[r2], increase, &u2, &v2);
    if (!(advsal_finite(u1) & advsal_finite(v1) & advsal_finite(u2) & advsal_finite(v2))) continue;
    c.a[nc] = std::min(u1, u2);
    c.b[nc] = std::min(v1, v2);
    ++nc;
  }
  return nc;
}

// The two largest v pushed so far, with their features (-1: none yet): two
// points that make a corner for everything left of and below both.
struct TopTwo {
  float m1 = 0.0f, m2 = 0.0f;
  std::int32_t i1 = -1, i2 = -1;
  // True when the two changed and both exist: a new step of the staircase.
  bool push(float v, std::int32_t i) {
    if (i1 < 0 || v > m1) {
      m2 = m1;
      i2 = i1;
      m1 = v;
      i1 = i;
    } else if (i2 < 0 || v > m2) {
      m2 = v;
      i2 = i;
    } else {
      return false;
    }
    return i2 >= 0;
  }
};

// Writes kCorners of the staircase steps in w.hint_steps, evenly spread, as hints.
void pick_hints(const Workspace& w, std::int32_t* hint) {
  const int ns = static_cast<int>(w.hint_steps.size());
  for (int k = 0; k < kCorners; ++k) {
    if (k >= ns) {
      hint[2 * k] = hint[2 * k + 1] = -1;
      continue;
    }
    const int at = ns <= kCorners ? k : static_cast<int>((static_cast<std::int64_t>(k) * (ns - 1)) / (kCorners - 1));
    hint[2 * k] = w.hint_steps[at].first;
    hint[2 * k + 1] = w.hint_steps[at].second;
  }
}

// Writes the hints for the next iteration: pairs of points on the staircase
// of the points swept (su, sv, sidx at the positions of seq0 and seq1, merged
// in sweep order), without p and q, which leave the domain with this step.
// Walking in sweep order (u descending), the two points with the largest v
// so far have a u no smaller than any point swept later; each time the
// second largest v grows, the two make a corner.  kCorners of them, evenly
// spread, are kept.
void write_hints(const float* sv, const std::int64_t* sidx, const std::int32_t* seq0, std::int64_t n0,
                 const std::int32_t* seq1, std::int64_t n1, advsal_i64 p, advsal_i64 q, Workspace& w,
                 std::int32_t* hint) {
  w.hint_steps.clear();
  TopTwo top;
  for (std::int64_t a = 0, b = 0; a < n0 || b < n1;) {
    const std::int32_t k = (b >= n1 || (a < n0 && seq0[a] < seq1[b])) ? seq0[a++] : seq1[b++];
    if (sidx[k] == p || sidx[k] == q) continue;
    if (top.push(sv[k], static_cast<std::int32_t>(sidx[k]))) w.hint_steps.push_back({top.i1, top.i2});
  }
  pick_hints(w, hint);
}

// The layers' flag pass with corners is the one loop over every feature of
// a long row, so it is also compiled for AVX2 and AVX-512 and the loader
// picks the widest the CPU has (GCC function multiversioning): the portable
// x86-64 baseline (SSE2) tests 4 points per instruction, AVX-512 16.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define ADVSAL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ADVSAL_CLONES
#endif

// Same values as the plain flag pass in layers_row, minus the points below the corners.
ADVSAL_CLONES
void flag_chunk_corners(const float* __restrict st, const float* __restrict so, const std::uint8_t* __restrict dom,
                        std::int64_t len, float sign, const Corners& corners, std::uint8_t* __restrict flags,
                        std::uint8_t* __restrict origin) {
  float ca[kCorners], cb[kCorners];  // locals: the byte stores below cannot alias them
  std::copy(corners.a, corners.a + kCorners, ca);
  std::copy(corners.b, corners.b + kCorners, cb);
  for (std::int64_t k = 0; k < len; ++k) {
    const float u = sign * st[k] + 0.0f, v = -sign * so[k] + 0.0f;
    bool below = false;
    for (int j = 0; j < kCorners; ++j) below |= (u < ca[j]) & (v <= cb[j]);
    const bool valid = (dom[k] != 0) & advsal_finite(u) & advsal_finite(v) & !below;
    const bool at0 = (u == 0.0f) & (v == 0.0f);
    flags[k] = valid & !at0;
    origin[k] = valid & at0;
  }
}

// At most this many points left after the filters: every pair is scored,
// with no sort.  Exact on any set of real points that holds the candidates
// (the best pair and its tie-break are among them, see jsma_pairs_core.h):
// the largest score over the set is the row's, and scanning pairs in
// position order (= index order) finds the smallest (p, q) that reaches it.
// On the rows of a JSMA run at 28x28 the filters leave ~25 points, and
// scoring their ~300 pairs costs less than sorting them.
constexpr std::int64_t kDirectMax = 64;

// Largest admissible score over the pairs (i, j > i) of the m points; pos
// gets the first pair (in position order) that reaches it.  Four partners
// j at a time (an AVX2 register; wider vectors were lowered through the
// stack), from i + 1 on; past m the copies are padded with points that make
// no pair admissible.
#if defined(__GNUC__)
typedef double advsal_v4d __attribute__((vector_size(32)));
#endif

ADVSAL_CLONES
double direct_top(const float* u, const float* v, std::int64_t m, std::int64_t* pos) {
  double du[kDirectMax + 4], dv[kDirectMax + 4];
  for (std::int64_t k = 0; k < m; ++k) {
    du[k] = static_cast<double>(u[k]);
    dv[k] = static_cast<double>(v[k]);
  }
  for (std::int64_t k = m; k < m + 4; ++k) du[k] = dv[k] = -DBL_MAX;
  double top = 0.0;  // admissible scores are > 0 (two positive float sums, multiplied in double)
  std::int64_t ti = -1;
  for (std::int64_t i = 0; i + 1 < m; ++i) {
    double rm = 0.0;
#if defined(__GNUC__)
    using Mask = decltype(advsal_v4d{} > advsal_v4d{});
    const double ui = du[i], vi = dv[i];
    advsal_v4d r = {};
    for (std::int64_t j = i + 1; j < m; j += 4) {
      advsal_v4d a, b;
      std::memcpy(&a, du + j, sizeof a);
      std::memcpy(&b, dv + j, sizeof b);
      const advsal_v4d x = a + ui, y = b + vi;
      // Inadmissible pairs score +0.0 (all bits clear); then the larger per lane.
      const Mask ok = (x > 0.0) & (y > 0.0);
      const advsal_v4d sc = reinterpret_cast<advsal_v4d>(reinterpret_cast<Mask>(x * y) & ok);
      const Mask gt = sc > r;
      r = reinterpret_cast<advsal_v4d>((reinterpret_cast<Mask>(r) & ~gt) | (reinterpret_cast<Mask>(sc) & gt));
    }
    for (int l = 0; l < 4; ++l) rm = rm < r[l] ? r[l] : rm;
#else
    for (std::int64_t j = i + 1; j < m; ++j) {
      double sc;
      if (advsal_pair_score(u[i], v[i], u[j], v[j], &sc)) rm = rm < sc ? sc : rm;
    }
#endif
    if (rm > top) {
      top = rm;
      ti = i;
    }
  }
  pos[0] = pos[1] = -1;
  for (std::int64_t j = ti + 1; ti >= 0 && j < m; ++j) {
    double sc;
    if (advsal_pair_score(u[ti], v[ti], u[j], v[j], &sc) && sc == top) {
      pos[0] = ti;
      pos[1] = j;
      break;
    }
  }
  return top;
}

// Hints from the points of the direct search, with no sort: kCorners
// buckets of u; going down from the highest, the two largest v so far are
// two points right of every lower bucket, so each bucket that changes them
// gives a corner.  The same staircase as write_hints', at bucket resolution.
void direct_hints(const float* u, const float* v, const std::int64_t* idx, std::int64_t m, advsal_i64 p,
                  advsal_i64 q, Workspace& w, std::int32_t* hint) {
  float lo = FLT_MAX, hi = -FLT_MAX;
  for (std::int64_t k = 0; k < m; ++k) {
    lo = std::min(lo, u[k]);
    hi = std::max(hi, u[k]);
  }
  const float width = hi - lo;
  if (!(width > 0.0f) || !std::isfinite(width)) return;  // the caller's -1s stay: no hints
  const float scale = static_cast<float>(kCorners) / width * (1.0f - 4.0f * FLT_EPSILON);
  TopTwo bucket[kCorners];
  for (std::int64_t k = 0; k < m; ++k) {
    if (idx[k] == p || idx[k] == q) continue;  // they leave the domain with this step
    const int b = std::min(kCorners - 1, static_cast<int>((u[k] - lo) * scale));
    bucket[b].push(v[k], static_cast<std::int32_t>(idx[k]));
  }
  w.hint_steps.clear();
  TopTwo top;
  for (int b = kCorners - 1; b >= 0; --b) {
    bool grew = false;
    if (bucket[b].i1 >= 0) grew |= top.push(bucket[b].m1, bucket[b].i1);
    if (bucket[b].i2 >= 0) grew |= top.push(bucket[b].m2, bucket[b].i2);
    if (grew) w.hint_steps.push_back({top.i1, top.i2});
  }
  pick_hints(w, hint);
}

// The Pareto-layer search: exact on any input; `best` may arrive seeded.
// With hint_out, the next iteration's corners are written there (the caller
// fills it with -1 first: rows that end early leave none).  Returns the
// points the flag pass kept (before the bucket filter).
std::int64_t layers_row(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                Workspace& w, AdvsalBest& best, const Corners* corners, std::int32_t* hint_out = nullptr) {
#ifdef ADVSAL_PROFILE
  auto _t0 = std::chrono::steady_clock::now();
#endif
  if (static_cast<std::int64_t>(w.u.size()) < n) {
    w.u.resize(n);
    w.v.resize(n);
    w.idx.resize(n);
  }
  std::int64_t m0 = 0;
  // Only the first point at the origin (u = v = 0) is kept.  Such a point is
  // admissible only beside a p with u_p > 0 and v_p > 0, scoring u_p v_p, the
  // same with every origin point, and the lowest-indexed one gives the
  // smallest pair among them: the others can neither win nor win a tie.  On
  // MNIST about half the features have a zero gradient (the blank border).
  // Chunk by chunk: one vectorizable loop flags the valid points (in the
  // domain, finite, not at the origin), the first origin point is flagged
  // too, and only the flagged ones are copied.  With corners, the points
  // below them are not flagged at all (an origin point below them included).
  bool origin_seen = false;
  std::uint8_t flags[kChunk], origin[kChunk];
  const float sign = increase ? 1.0f : -1.0f;
  for (std::int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const std::int64_t len = std::min(kChunk, n - c0);
    if (corners) {
      flag_chunk_corners(st + c0, so + c0, dom + c0, len, sign, *corners, flags, origin);
    } else {
      for (std::int64_t k = 0; k < len; ++k) {
        const float u = sign * st[c0 + k] + 0.0f, v = -sign * so[c0 + k] + 0.0f;  // advsal_uv, branch-free
        // Non-finite gradients are excluded from the domain (NaN breaks ordering).
        const bool valid = (dom[c0 + k] != 0) & advsal_finite(u) & advsal_finite(v);
        const bool at0 = (u == 0.0f) & (v == 0.0f);
        flags[k] = valid & !at0;
        origin[k] = valid & at0;
      }
    }
    if (!origin_seen) {
      if (const void* hit = std::memchr(origin, 1, static_cast<std::size_t>(std::max<std::int64_t>(len, 0)))) {
        flags[static_cast<const std::uint8_t*>(hit) - origin] = 1;
        origin_seen = true;
      }
    }
    for_flagged(flags, len, [&](std::int64_t k) {
      advsal_uv(st[c0 + k], so[c0 + k], increase, &w.u[m0], &w.v[m0]);
      w.idx[m0] = c0 + k;
      ++m0;
    });
  }
  // The bucket filter is one pass with no sort and leaves few points on
  // every row shape measured (28x28 to 224x224x3 JSMA rows); after it the
  // pivots rarely drop enough to pay for their passes when the corners have
  // already run (measured on 224x224x3 CNN rows: 2.8k -> 2.7k for 40 us).
  const std::int64_t flagged = m0;
  if (m0 > kBruteForceCandidates) m0 = bucket_filter(w, m0);
  PROF("compact");
  if (m0 < 2) return flagged;
  if (m0 <= kDirectMax) {
    std::int64_t pos[2];
    const double top = direct_top(w.u.data(), w.v.data(), m0, pos);
    if (pos[0] >= 0) advsal_offer(&best, top, w.idx[pos[0]], w.idx[pos[1]]);
    PROF("direct");
    if (hint_out) direct_hints(w.u.data(), w.v.data(), w.idx.data(), m0, best.p, best.q, w, hint_out);
    return flagged;
  }
  if (!corners && m0 > kBruteForceCandidates) {
    const Pivots piv = pick_pivots(w, m0);
    pivot_prefilter(w, m0, piv.bi, piv.bi2);
  } else {
    w.keep.resize(m0);
    for (std::int64_t i = 0; i < m0; ++i) w.keep[i] = static_cast<std::int32_t>(i);
  }
  PROF("prefilter");
  sweep_order(w);
  PROF("sort");

  // Points with 0 dominators (seq0) and exactly 1 (seq1): in sweep order each
  // sequence has u non-increasing and v strictly increasing, so delta = u - v
  // strictly decreasing, and the candidates sorted by delta are a merge.
  const std::int64_t ns = static_cast<std::int64_t>(w.keep.size());
  if (static_cast<std::int64_t>(w.su.size()) < ns) {
    w.su.resize(ns);
    w.sv.resize(ns);
    w.sidx.resize(ns);
    w.seq0.resize(ns);
    w.seq1.resize(ns);
  }
  float* su = w.su.data();
  float* sv = w.sv.data();
  std::int64_t* sidx = w.sidx.data();
  std::int32_t* seq0 = w.seq0.data();
  std::int32_t* seq1 = w.seq1.data();
  AdvsalTop2 top;
  advsal_top2_reset(&top);
  std::int64_t n0 = 0, n1 = 0;
  for (std::int64_t k = 0; k < ns; ++k) {
    const std::int32_t i = w.keep[k];
    su[k] = w.u[i];
    sv[k] = w.v[i];
    sidx[k] = w.idx[i];
    const int d = advsal_top2_dominators(&top, sv[k]);
    seq0[n0] = static_cast<std::int32_t>(k);
    seq1[n1] = static_cast<std::int32_t>(k);
    n0 += d == 0;
    n1 += d == 1;
    advsal_top2_push(&top, sv[k]);
  }
  const std::int64_t m = n0 + n1;
  PROF("sweep");
  if (m < 2) return flagged;
  if (static_cast<std::int64_t>(w.dl.size()) < m) {  // grow only: no re-zeroing per row
    w.dl.resize(m);
    w.cu.resize(m);
    w.cv.resize(m);
    w.ci.resize(m);
  }
  {
    std::int64_t a = n0 - 1, b = n1 - 1;
    const auto delta = [su, sv](std::int32_t k) { return advsal_delta(su[k], sv[k]); };
    double da = a >= 0 ? delta(seq0[a]) : 0.0, db = b >= 0 ? delta(seq1[b]) : 0.0;
    double* dl = w.dl.data();
    float* cu = w.cu.data();
    float* cv = w.cv.data();
    advsal_i64* ci = w.ci.data();
    for (std::int64_t k = 0; k < m; ++k) {
      std::int32_t i;
      double d;
      if (b < 0 || (a >= 0 && da <= db)) {
        i = seq0[a--];
        d = da;
        if (a >= 0) da = delta(seq0[a]);
      } else {
        i = seq1[b--];
        d = db;
        if (b >= 0) db = delta(seq1[b]);
      }
      dl[k] = d;
      cu[k] = su[i];
      cv[k] = sv[i];
      ci[k] = sidx[i];
    }
  }
  PROF("merge");
  search_sorted(w.dl.data(), w.cu.data(), w.cv.data(), w.ci.data(), m, best);
  PROF("search");
  if (hint_out) write_hints(sv, sidx, seq0, n0, seq1, n1, best.p, best.q, w, hint_out);
  return flagged;
}

// Top-sigma search.  Split the domain by T = {sigma >= tau}: a pair with both
// members outside T has S <= 2 sigma_out (sigma_out = largest sigma outside
// T), so score <= sigma_out^2.  The pairs with a member in T are searched
// exactly (T x T by the delta-sorted search, then every outside point against
// T), so the result is exact, ties included, whenever sigma_out^2 is strictly
// below the best score found; otherwise returns false with `best` holding a
// real pair or none, and the caller finishes with the layers.  On
// anti-correlated gradients nearly every point is on the Pareto front: this
// avoids sorting them all.  With |T| ~ 2k of 150k the bound held on
// real-model, random and anti-correlated gradients alike.
// Features are streamed in chunks: one vectorizable loop flags a chunk, then
// the per-point work visits only the flagged features.
// The outside pass gives up (the layers finish, seeded with the best pair so
// far) after walking this many times |T| outside points while the final
// bound is not secured (best <= sigma_out^2 so far).  Late in long JSMA runs
// the gate lets nearly every point through and the bound fails at the end
// anyway (measured at n = 150,528: 2-3.5 ms of walks, then the layers).  Not
// with the near map, which anti-correlated rows use: their layers cost the
// most and their pass usually settles it.
constexpr std::int64_t kOutsideBudget = 4;

// flags[k] = feature k is in the domain, finite, and lo <= sigma < hi.  The
// same values as advsal_uv/advsal_sigma (a product by +-1 is exact), written
// branch-free so the loop vectorizes.
void chunk_flags(const float* st, const float* so, const std::uint8_t* dom, std::int64_t len, bool increase,
                 double lo, double hi, std::uint8_t* flags) {
  const float sign = increase ? 1.0f : -1.0f;
  for (std::int64_t k = 0; k < len; ++k) {
    const float u = sign * st[k] + 0.0f;
    const float v = -sign * so[k] + 0.0f;
    const double s = advsal_sigma(u, v);
    flags[k] = (dom[k] != 0) & advsal_finite(u) & advsal_finite(v) & (s >= lo) & (s < hi);
  }
}

Workspace& thread_workspace();

const char* last_path_name() {
  switch (thread_workspace().last_path) {
    case RowPath::kTopSigma: return "top_sigma";
    case RowPath::kLayersAfterTopSigma: return "layers_after_top_sigma";
    case RowPath::kLayersAfterGiveUp: return "layers_after_give_up";
    case RowPath::kLayers: return "layers";
    case RowPath::kCornerLayers: return "corner_layers";
    case RowPath::kHintLayers: return "hint_layers";
    default: return "none";
  }
}

bool top_sigma_row(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                   Workspace& w, AdvsalBest& best) {
#ifdef ADVSAL_PROFILE
  auto _t0 = std::chrono::steady_clock::now();
#endif
  // tau: a sample quantile leaving about `target` features in T.
  const std::int64_t target = std::min(kTopTarget, std::max(kTopMin, n / kTopShare));
  const std::int64_t top_max = 4 * target;
  const std::int64_t stride = std::max<std::int64_t>(1, n / std::min(kTopSample, std::max(kTopMinSample * 2, n / 4)));
  w.samp.clear();
  std::int64_t sampled = 0;
  for (std::int64_t j = 0; j < n; j += stride, ++sampled) {
    float u, v;
    advsal_uv(st[j], so[j], increase, &u, &v);
    if ((dom[j] != 0) & advsal_finite(u) & advsal_finite(v)) w.samp.push_back(advsal_sigma(u, v));
  }
  const std::int64_t ns = static_cast<std::int64_t>(w.samp.size());
  if (ns < kTopMinSample) return false;  // sparse domain: the layers are cheap
  const double valid_est = static_cast<double>(ns) * static_cast<double>(n) / static_cast<double>(sampled);
  const std::int64_t r = static_cast<std::int64_t>(static_cast<double>(ns) * target / valid_est) + 1;
  if (r * 4 > ns) return false;  // T would be a large share of the domain
  std::nth_element(w.samp.begin(), w.samp.begin() + (ns - r), w.samp.end());
  const double tau = w.samp[ns - r];
  PROF("top_sample");

  std::uint8_t flags[kChunk];
  w.top.clear();
  bool flooded = false;
  for (std::int64_t j0 = 0; j0 < n && !flooded; j0 += kChunk) {
    const std::int64_t len = std::min(kChunk, n - j0);
    chunk_flags(st + j0, so + j0, dom + j0, len, increase, tau, DBL_MAX, flags);
    for_flagged(flags, len, [&](std::int64_t k) {
      // Ties at tau (e.g. integer gradients) can flood T: the layers handle those.
      if (static_cast<std::int64_t>(w.top.size()) >= top_max) {
        flooded = true;
        return;
      }
      float u, v;
      advsal_uv(st[j0 + k], so[j0 + k], increase, &u, &v);
      w.top.push_back({advsal_delta(u, v), u, v, j0 + k});
    });
  }
  if (flooded) return false;
  PROF("top_pass1");
  const std::int64_t mt = static_cast<std::int64_t>(w.top.size());
  std::sort(w.top.begin(), w.top.end(), [](const Workspace::TopPoint& a, const Workspace::TopPoint& b) {
    return a.d < b.d || (a.d == b.d && a.i < b.i);
  });
  w.tdl.resize(mt);
  w.tu.resize(mt);
  w.tv.resize(mt);
  w.ti.resize(mt);
  double sigma_top = tau;
  for (std::int64_t k = 0; k < mt; ++k) {
    w.tdl[k] = w.top[k].d;
    w.tu[k] = w.top[k].u;
    w.tv[k] = w.top[k].v;
    w.ti[k] = w.top[k].i;
    sigma_top = std::max(sigma_top, advsal_sigma(w.tu[k], w.tv[k]));
  }
  PROF("top collect");
  search_sorted(w.tdl.data(), w.tu.data(), w.tv.data(), w.ti.data(), mt, best);
  PROF("top x top");

  // Outside points (sigma < tau) pair with T at S <= tau + sigma_top; 1e-9
  // relative margins throughout dwarf the rounding of these sums.
  const double top_mag = advsal_abs(sigma_top);
  const double s_max = tau + sigma_top + 1e-9 * (advsal_abs(tau) + top_mag);
  // Largest sigma among the outside points the gate let through; the others
  // satisfy 2 sigma < sigma + sigma_top < 2 sqrt(best) already.
  double sigma_out = -DBL_MAX;
  if (s_max > 0.0) {
    // Sigma tiers: T cut by sigma rank into tiers of 32, 96, 384, 1536, ...
    // points (each 4x the points above it), each kept delta-sorted and
    // walked by an outside q with its own bound S <= sigma_q + (the tier's
    // largest sigma).  One bound for all of T (sigma_top) lets every q walk a
    // wide delta window of T, though most of T has a sigma far below
    // sigma_top: late in long JSMA runs (the top of the sigma range eaten by
    // earlier steps) that cost 2-16 ms per row at n = 27k-150k.  With tiers,
    // the bulk of T (sigmas near tau) gets a window near zero width, and a
    // q skips every tier from the first whose bound cannot beat best.
    w.tsig.resize(mt);
    for (std::int64_t k = 0; k < mt; ++k) w.tsig[k] = advsal_sigma(w.tu[k], w.tv[k]);
    std::sort(w.tsig.begin(), w.tsig.end(), std::greater<double>());
    w.tier_min.clear();  // tier g holds sigma >= tier_min[g] (and < tier_min[g - 1])
    for (std::int64_t top = kTopHigh; top < mt; top *= 4) w.tier_min.push_back(w.tsig[top - 1]);
    w.tier_min.push_back(-DBL_MAX);
    const int ng = static_cast<int>(w.tier_min.size());
    auto tier_of = [&](double sk) {
      int g = 0;
      while (sk < w.tier_min[g]) ++g;
      return g;
    };
    w.toff.assign(ng + 1, 0);
    w.tsmax.assign(ng, -DBL_MAX);
    for (std::int64_t k = 0; k < mt; ++k) {
      const double sk = advsal_sigma(w.tu[k], w.tv[k]);
      const int g = tier_of(sk);
      ++w.toff[g + 1];
      w.tsmax[g] = std::max(w.tsmax[g], sk);
    }
    for (int g = 0; g < ng; ++g) w.toff[g + 1] += w.toff[g];
    w.gdl.resize(mt); w.gu.resize(mt); w.gv.resize(mt); w.gi.resize(mt);
    {
      std::vector<std::int64_t>& pos = w.tpos;
      pos.assign(w.toff.begin(), w.toff.end() - 1);
      for (std::int64_t k = 0; k < mt; ++k) {  // in delta order: each tier stays delta-sorted
        const std::int64_t at = pos[tier_of(advsal_sigma(w.tu[k], w.tv[k]))]++;
        w.gdl[at] = w.tdl[k]; w.gu[at] = w.tu[k]; w.gv[at] = w.tv[k]; w.gi[at] = w.ti[k];
      }
    }

    // Near map: cells of width cw >= the largest admissible |D| (< S), with
    // the cells next to every T delta marked, so an outside q whose -delta
    // lands on an unmarked cell (or off the map) has no admissible partner in
    // T.  Worth it when S is tiny against the delta range (anti-correlated
    // gradients).  The 1e-12 term covers the rounding of delta and of the
    // differences for any -delta on the map (|x| <= dT + 4 cw).
    // Over all of T (all tiers).
    const double t_lo = w.tdl[0], t_hi = w.tdl[mt - 1];
    const double span = t_hi - t_lo;
    const double dT = std::max(advsal_abs(t_lo), advsal_abs(t_hi));
    double cw = (s_max + 1e-12 * (dT + 8.0 * s_max)) * (1.0 + 1e-6);
    // ~3 of every kNearPerPoint cells marked: clearing a bigger map costs more than it filters.
    cw = std::max(cw, span / static_cast<double>(std::min(kNearCells, kNearPerPoint * mt)));
    const double base = t_lo - 2.0 * cw;
    const std::int64_t nc = static_cast<std::int64_t>((span + 4.0 * cw) / cw) + 2;
    const bool use_near = nc >= 64;
    if (use_near) {
      w.near.assign((nc + 63) / 64, 0ull);
      for (std::int64_t k = 0; k < mt; ++k) {
        const std::int64_t c = static_cast<std::int64_t>((w.tdl[k] - base) / cw);
        for (std::int64_t e = c - 1; e <= c + 1; ++e) w.near[e >> 6] |= 1ull << (e & 63);
      }
    }
    const std::uint64_t* near = w.near.data();
    const double near_end = static_cast<double>(nc);
    PROF("top_index");

    // The gate skips q when even S = sigma_q + sigma_top cannot reach
    // 2 sqrt(best): sigma_q + sigma_top + 1e-9 (|sigma_q| + |sigma_top|) <
    // 2 sqrt(best) (1 - 1e-9), solved for sigma_q with a 2e-9 margin.  A gate
    // from an earlier (lower) best is still safe.
    std::int64_t visited = 0;
    const std::int64_t budget = kOutsideBudget * mt;
    for (std::int64_t j0 = 0; j0 < n; j0 += kChunk) {
      if (!use_near && visited > budget &&
          !advsal_prunable(2.0 * sigma_out, 2.0 * advsal_abs(sigma_out), 0.0, 0.0, best.score)) {
        PROF("outside x top (gave up)");
        w.gave_up = true;
        return false;
      }
      const std::int64_t len = std::min(kChunk, n - j0);
      const double c = 2.0 * std::sqrt(best.score) * (1.0 - 1e-9) - sigma_top - 1e-9 * top_mag;
      const double thr = c > 0.0 ? c / (1.0 + 2e-9) : c * (1.0 + 2e-9);
      chunk_flags(st + j0, so + j0, dom + j0, len, increase, thr, tau, flags);
      for_flagged(flags, len, [&](std::int64_t k) {
        const std::int64_t j = j0 + k;
        float u, v;
        advsal_uv(st[j], so[j], increase, &u, &v);
        const double sq = advsal_sigma(u, v), dq = advsal_delta(u, v);
        sigma_out = std::max(sigma_out, sq);
        ++visited;
        const double x = -dq;
        if (use_near) {
          const double cell = (x - base) / cw;
          if (!(cell >= 0.0 && cell < near_end)) return;
          const std::int64_t ci = static_cast<std::int64_t>(cell);
          if (!((near[ci >> 6] >> (ci & 63)) & 1ull)) return;
        }
        for (int g = 0; g < ng; ++g) {
          const std::int64_t o = w.toff[g], mg = w.toff[g + 1] - o;
          if (mg == 0) continue;
          const double sg = sq + w.tsmax[g], sg_mag = advsal_abs(sq) + advsal_abs(w.tsmax[g]);
          // Lower tiers have smaller sigmas: once a tier cannot beat best, none below can.
          if (advsal_prunable(sg, sg_mag, 0.0, 0.0, best.score)) break;
          const double* gdl = w.gdl.data() + o;
          advsal_walk(dq, u, v, j, -1, sg, sg_mag, advsal_lower_bound(gdl, mg, x), gdl, w.gu.data() + o,
                      w.gv.data() + o, w.gi.data() + o, mg, 0.0, &best);
        }
      });
    }
  } else {
    sigma_out = tau;  // no admissible outside x T pair; bound the outside pairs by tau
  }
  PROF("outside x top");
  // Pairs with both members outside T: S <= 2 sigma_out.
  if (sigma_out == -DBL_MAX) return true;  // none let through: every outside pair is below best
  return advsal_prunable(2.0 * sigma_out, 2.0 * advsal_abs(sigma_out), 0.0, 0.0, best.score);
}

// hint: null, or the image's 2 * kCorners hint slots (jsma_step): corners
// carried from the image's previous step, read, then rewritten for its next.
AdvsalBest solve_row(const float* st, const float* so, const std::uint8_t* dom, std::int64_t n, bool increase,
                     Workspace& w, std::int32_t* hint = nullptr) {
  w.gave_up = false;
  AdvsalBest best;
  advsal_best_reset(&best);
  const bool short_row = n < kTopMinN;
  const double max_share = short_row ? kCornerMaxShareShort : kCornerMaxShare;
  Corners corners;
  const bool hinted = hint && n >= kCornerMinN && hint_corners(st, so, dom, n, increase, hint, corners) > 0;
  // Read; from here on the slots hold what this row leaves for the next step.
  if (hint) std::fill(hint, hint + 2 * kCorners, -1);
  if (hinted) {
    // The previous step's corners instead of the sample's (a third of a
    // 784-feature row's cost, ~8% of a 150k one); hints only follow rows the
    // corners settled, so they are as good unless the gradients moved a lot.
    w.last_path = RowPath::kHintLayers;
    const std::int64_t flagged = layers_row(st, so, dom, n, increase, w, best, &corners, hint);
    // Stale corners that kept too much: the next step samples again.
    if (static_cast<double>(flagged) > max_share * static_cast<double>(n)) std::fill(hint, hint + 2 * kCorners, -1);
    return best;
  }
  if (short_row) {
    // Short rows: the sample's corners when it says they drop most points,
    // else the plain layers (pivots, then the sort).
    if (n >= kCornerMinN) {
      corners = sample_corners(st, so, dom, n, increase, w);
      if (corners.kept_share <= max_share) {
        w.last_path = RowPath::kCornerLayers;
        layers_row(st, so, dom, n, increase, w, best, &corners, hint);
        return best;
      }
    }
    w.last_path = RowPath::kLayers;
    layers_row(st, so, dom, n, increase, w, best, nullptr, hint);
    return best;
  }
  corners = sample_corners(st, so, dom, n, increase, w);
  if (corners.kept_share <= max_share) {
    w.last_path = RowPath::kCornerLayers;
  } else if (top_sigma_row(st, so, dom, n, increase, w, best)) {
    w.last_path = RowPath::kTopSigma;
    return best;
  } else {
    w.last_path = w.gave_up ? RowPath::kLayersAfterGiveUp : RowPath::kLayersAfterTopSigma;
  }
#ifdef ADVSAL_PROFILE
  std::fprintf(stderr, "path %s (seeded: %d, corner share %.4f)\n", last_path_name(), best.p >= 0 ? 1 : 0,
               corners.kept_share);
#endif
  // Weak corners (the fallbacks) would cost a pass and leave the bucket
  // filter and the pivots to do the dropping anyway; and no hints: the next
  // step samples again rather than try corners like these.
  const bool corner = w.last_path == RowPath::kCornerLayers;
  layers_row(st, so, dom, n, increase, w, best, corner ? &corners : nullptr, corner ? hint : nullptr);
  return best;
}

// Reused across calls: no reallocation or page faults per iteration of an attack.
Workspace& thread_workspace() {
  thread_local Workspace w;
  return w;
}

using F32 = py::array_t<float, py::array::c_style | py::array::forcecast>;
using U8 = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>;

std::string shape_str(const py::buffer_info& b) {
  std::string s = "(";
  for (std::size_t i = 0; i < b.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(b.shape[i]);
  return s + (b.shape.size() == 1 ? ",)" : ")");
}

// Runs fn(b, workspace) for b < B, over an OpenMP team when the batch is big
// enough; the first exception thrown is rethrown after the loop.
template <class Fn>
void for_rows(std::int64_t B, std::int64_t n, int threads, const Fn& fn) {
  std::string error;
  {
    py::gil_scoped_release release;
#ifdef _OPENMP
    const int nt = threads > 0 ? threads : omp_get_max_threads();
    // Small batches stay serial: waking a team costs more than it saves,
    // and far more when the cores are shared with TF's thread pools.
    if (nt > 1 && B > 1 && B * n >= (threads > 0 ? kParallelMinWork : kParallelMinWorkAuto)) {
#pragma omp parallel num_threads(nt)
      {
        Workspace& w = thread_workspace();
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t b = 0; b < B; ++b) {
          try {
            fn(b, w);
          } catch (const std::exception& e) {
#pragma omp critical
            error = e.what();
          }
        }
      }
    } else
#endif
    {
      Workspace& w = thread_workspace();
      try {
        for (std::int64_t b = 0; b < B; ++b) fn(b, w);
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
  }
  if (!error.empty()) throw std::runtime_error(error);
}

void check_threads(int threads) {
  if (threads < 0) throw py::value_error("threads: expected >= 0 (0 = OpenMP default), got " + std::to_string(threads));
}

py::tuple best_pairs(F32 target_grad, F32 other_grad, U8 domain, bool increase, int threads) {
  const auto bt = target_grad.request(), bo = other_grad.request(), bd = domain.request();
  if (bt.ndim != 2) throw py::value_error("target_grad: expected a 2-D array [B, n], got shape " + shape_str(bt));
  if (bo.shape != bt.shape)
    throw py::value_error("other_grad: expected shape " + shape_str(bt) + ", got " + shape_str(bo));
  if (bd.shape != bt.shape)
    throw py::value_error("domain: expected shape " + shape_str(bt) + ", got " + shape_str(bd));
  check_threads(threads);
  const std::int64_t B = bt.shape[0], n = bt.shape[1];
  if (n > INT32_MAX) throw py::value_error("n: expected at most 2**31-1 features, got " + std::to_string(n));
  py::array_t<std::int64_t> p(B), q(B);
  py::array_t<double> score(B);
  const float* st = static_cast<const float*>(bt.ptr);
  const float* so = static_cast<const float*>(bo.ptr);
  const std::uint8_t* dm = static_cast<const std::uint8_t*>(bd.ptr);
  std::int64_t* pp = p.mutable_data();
  std::int64_t* qq = q.mutable_data();
  double* ss = score.mutable_data();
  for_rows(B, n, threads, [&](std::int64_t b, Workspace& w) {
    const AdvsalBest r = solve_row(st + b * n, so + b * n, dm + b * n, n, increase, w);
    pp[b] = r.p;
    qq[b] = r.q;
    ss[b] = r.score;
  });
  return py::make_tuple(p, q, score);
}

// A writable C-contiguous 2-D array of the given dtype kind and item size.
void check_inplace(const py::array& a, const char* name, char kind, py::ssize_t itemsize, const char* what) {
  if (a.ndim() != 2 || a.dtype().kind() != kind || a.itemsize() != itemsize || !a.writeable() ||
      !(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": expected a writable C-contiguous " + what + " array [B, n], got " +
                          std::string(py::str(a.dtype())) + " with " + std::to_string(a.ndim()) + " dims" +
                          (a.writeable() ? "" : ", read-only") + ((a.flags() & py::array::c_style) ? "" : ", strided"));
}

// Iteration `it` of JSMA's host work, in place, for the active images
// rows[k]: a row whose image is done (done[k]) or has no admissible pair
// takes no step and leaves; every other row gets the best pair of (st[k],
// so[k]) over the domain of image rows[k], both features of x moved by delta
// and clipped to [lo, hi], and both taken out of the domain, and stays
// active unless this is the last iteration.  steps[rows[k]] becomes the
// image's step count (it or it + 1).  Returns the rows still active.  The same as best_pairs on the gathered domain rows
// followed by the update and the bookkeeping, with no gather, no search for
// done images and no NumPy calls: right after TensorFlow's pass has evicted
// the caches, each costs 10-35 us (measured: ~stepped, active[mask]).
py::array_t<std::int64_t> jsma_step(F32 target_grad, F32 other_grad, py::array domain, py::array done, py::array x,
                                    py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> rows,
                                    py::array steps, std::int64_t it, bool last, float delta, float lo, float hi,
                                    bool increase, int threads, std::optional<py::array> hints) {
  const auto bt = target_grad.request(), bo = other_grad.request();
  if (bt.ndim != 2) throw py::value_error("target_grad: expected a 2-D array [K, n], got shape " + shape_str(bt));
  if (bo.shape != bt.shape)
    throw py::value_error("other_grad: expected shape " + shape_str(bt) + ", got " + shape_str(bo));
  check_inplace(domain, "domain", 'b', 1, "bool");
  check_inplace(x, "x", 'f', 4, "float32");
  check_threads(threads);
  const std::int64_t K = bt.shape[0], n = bt.shape[1], B = x.shape(0);
  if (domain.shape(0) != B || domain.shape(1) != n || x.shape(1) != n)
    throw py::value_error("domain, x: expected shape (" + std::to_string(B) + ", " + std::to_string(n) +
                          ") both, got (" + std::to_string(domain.shape(0)) + ", " + std::to_string(domain.shape(1)) +
                          ") and (" + std::to_string(B) + ", " + std::to_string(x.shape(1)) + ")");
  if (done.ndim() != 1 || done.shape(0) != K || done.dtype().kind() != 'b')
    throw py::value_error("done: expected a bool array of shape (" + std::to_string(K) + ",), got " +
                          std::string(py::str(done.dtype())) + " with shape " + shape_str(done.request()));
  if (rows.ndim() != 1 || rows.shape(0) != K)
    throw py::value_error("rows: expected shape (" + std::to_string(K) + ",), got " + shape_str(rows.request()));
  if (steps.ndim() != 1 || steps.shape(0) != B || steps.dtype().kind() != 'i' || steps.itemsize() != 8 ||
      !steps.writeable() || !(steps.flags() & py::array::c_style))
    throw py::value_error("steps: expected a writable int64 array of shape (" + std::to_string(B) + ",), got " +
                          std::string(py::str(steps.dtype())) + " with shape " + shape_str(steps.request()) +
                          (steps.writeable() ? "" : ", read-only"));
  if (n > INT32_MAX) throw py::value_error("n: expected at most 2**31-1 features, got " + std::to_string(n));
  std::int32_t* hp = nullptr;
  if (hints) {
    check_inplace(*hints, "hints", 'i', 4, "int32");
    if (hints->shape(0) != B || hints->shape(1) != 2 * kCorners)
      throw py::value_error("hints: expected shape (" + std::to_string(B) + ", " + std::to_string(2 * kCorners) +
                            "), got " + shape_str(hints->request()));
    hp = static_cast<std::int32_t*>(hints->mutable_data());
  }
  const std::int64_t* rw = rows.data();
  for (std::int64_t k = 0; k < K; ++k) {
    if (rw[k] < 0 || rw[k] >= B)
      throw py::value_error("rows: expected indices in [0, " + std::to_string(B) + "), got " + std::to_string(rw[k]));
    if (k > 0 && rw[k] <= rw[k - 1])  // distinct rows: the team may update them concurrently
      throw py::value_error("rows: expected strictly increasing indices, got " + std::to_string(rw[k - 1]) + " then " +
                            std::to_string(rw[k]));
  }
  const py::array done_c = py::array::ensure(done, py::array::c_style);
  const std::uint8_t* dn = static_cast<const std::uint8_t*>(done_c.data());
  const float* st = static_cast<const float*>(bt.ptr);
  const float* so = static_cast<const float*>(bo.ptr);
  std::uint8_t* dm = static_cast<std::uint8_t*>(domain.mutable_data());
  float* xs = static_cast<float*>(x.mutable_data());
  std::int64_t* sc = static_cast<std::int64_t*>(steps.mutable_data());
  std::vector<std::uint8_t> stepped(K, 0);
  for_rows(K, n, threads, [&](std::int64_t k, Workspace& w) {
    if (dn[k]) return;
    std::uint8_t* dom = dm + rw[k] * n;
    const AdvsalBest r = solve_row(st + k * n, so + k * n, dom, n, increase, w, hp ? hp + rw[k] * 2 * kCorners : nullptr);
    if (r.p < 0) return;
    float* xr = xs + rw[k] * n;
    for (const advsal_i64 j : {r.p, r.q}) {
      xr[j] = std::min(std::max(xr[j] + delta, lo), hi);
      dom[j] = 0;
    }
    stepped[k] = 1;
  });
  std::int64_t count = 0;
  for (std::int64_t k = 0; k < K; ++k) {
    sc[rw[k]] = it + stepped[k];
    count += stepped[k] && !last;
  }
  py::array_t<std::int64_t> next(count);
  std::int64_t* nx = next.mutable_data();
  if (!last)
    for (std::int64_t k = 0, at = 0; k < K; ++k)
      if (stepped[k]) nx[at++] = rw[k];
  return next;
}

}  // namespace

PYBIND11_MODULE(_jsma_native, m) {
  m.doc() = "Exact JSMA pair search (C++/OpenMP); see advsal_bench/pairsearch/jsma_pairs_core.h";
  m.def("best_pairs", &best_pairs, py::arg("target_grad"), py::arg("other_grad"), py::arg("domain"),
        py::arg("increase") = true, py::arg("threads") = 0,
        "Best admissible (p, q) per row: (p int64[B], q int64[B], score float64[B]); -1, -1, 0 when none.");
  // Rows at least this long try the top-sigma search first (tests aim above it).
  m.attr("top_sigma_min_features") = kTopMinN;
  m.def("jsma_step", &jsma_step, py::arg("target_grad"), py::arg("other_grad"), py::arg("domain"), py::arg("done"),
        py::arg("x"), py::arg("rows"), py::arg("steps"), py::arg("it"), py::arg("last"), py::arg("delta"),
        py::arg("lo"), py::arg("hi"), py::arg("increase") = true, py::arg("threads") = 0,
        py::arg("hints") = py::none(),
        "JSMA iteration `it` in place on x and domain (both [B, n]) for the images rows[k] with gradient rows k; "
        "images that leave get their step count in steps (int64 [B]); returns the rows still active.  hints: None "
        "or int32 [B, hint_width], -1 at the start of an attack, carried between its steps (corners for the next "
        "step's filter; any values give the same pairs).");
  m.attr("hint_width") = 2 * kCorners;
  m.def("last_path", &last_path_name,
        "How this thread's last solved row was settled: corner_layers (the sample's corners dropped most points "
        "before the layers), hint_layers (in jsma_step: the previous step's corners did), top_sigma, "
        "layers_after_top_sigma (the top-sigma search declined or its bound failed), layers_after_give_up (the "
        "outside pass gave up), layers (short row) or none.");
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
}

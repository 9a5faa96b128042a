// CUDA kernels of the cupy pair-search backend (compiled by cupy.RawModule).
// All per-candidate/per-pair logic comes from jsma_pairs_core.h, the same code
// the C++ extension runs (and the CPU tests check against brute force).
// Pipeline per batch, the native search's minus its corner pre-filter (sorting
// the whole domain is what a GPU does well): advsal_prepare (the domain,
// excluded features as -inf) -> two stable cupy argsorts giving the sweep
// order (u desc, v desc, index asc) -> advsal_sweep_merge (one thread per row)
// -> advsal_search (one block per row).
#include "jsma_pairs_core.h"

#define ADVSAL_SEARCH_THREADS 256

extern "C" __global__ void advsal_prepare(const float* st, const float* so, const unsigned char* dom,
                                          long long total, int increase, float* u, float* v) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
       i += (long long)gridDim.x * blockDim.x) {
    float ui, vi;
    advsal_uv(st[i], so[i], increase != 0, &ui, &vi);
    const bool ok = dom[i] != 0 && advsal_finite(ui) && advsal_finite(vi);
    // -inf sorts excluded features after every valid one; the sweep stops there.
    u[i] = ok ? ui : advsal_neg_inf();
    v[i] = ok ? vi : advsal_neg_inf();
  }
}

// One thread per row: the sweep over the row in sweep order (su, sv; sidx
// the feature indices), then the merge into delta-ascending candidate arrays.
// seq0/seq1 and d0/d1 are scratch rows.
extern "C" __global__ void advsal_sweep_merge(const float* su, const float* sv, const long long* sidx, long long batch,
                                              long long n, long long* seq0, double* d0, long long* seq1, double* d1,
                                              double* dl, float* cu, float* cv, long long* ci, long long* count) {
  const long long b = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const long long o = b * n;
  advsal_i64 n0, n1;
  advsal_sweep(n, su + o, sv + o, seq0 + o, d0 + o, &n0, seq1 + o, d1 + o, &n1);
  count[b] = advsal_merge(su + o, sv + o, sidx + o, seq0 + o, d0 + o, n0, seq1 + o, d1 + o, n1, dl + o, cu + o,
                          cv + o, ci + o);
}

// One block per row; threads stride over candidates p and share the best
// score through an atomicMax on its bits (scores are >= 0, so their IEEE bits
// order like the values).  Pruning is strict, so the winner (ties to the
// smallest (p, q)) does not depend on thread timing.
extern "C" __global__ void __launch_bounds__(ADVSAL_SEARCH_THREADS)
advsal_search(const double* dl, const float* cu, const float* cv, const long long* ci,
              const long long* count, long long n, long long* p_out, long long* q_out, double* s_out) {
  __shared__ double red[ADVSAL_SEARCH_THREADS];
  __shared__ long long rp[ADVSAL_SEARCH_THREADS], rq[ADVSAL_SEARCH_THREADS];
  __shared__ unsigned long long best_bits;
  const long long b = blockIdx.x;
  const int tid = threadIdx.x;
  const long long off = b * n;
  const long long m = count[b];
  if (m < 2) {
    if (tid == 0) {
      p_out[b] = -1;
      q_out[b] = -1;
      s_out[b] = 0.0;
    }
    return;
  }
  const double* rdl = dl + off;
  const float* rcu = cu + off;
  const float* rcv = cv + off;
  double smax = advsal_sigma(rcu[0], rcv[0]);
  for (long long k = tid; k < m; k += blockDim.x) {
    const double sk = advsal_sigma(rcu[k], rcv[k]);
    smax = sk > smax ? sk : smax;
  }
  red[tid] = smax;
  if (tid == 0) best_bits = 0ull;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s && red[tid + s] > red[tid]) red[tid] = red[tid + s];
    __syncthreads();
  }
  const double sigma_max = red[0];
  __syncthreads();
  AdvsalBest best;
  advsal_best_reset(&best);
  for (long long kp = tid; kp < m; kp += blockDim.x) {
    const double shared_best = __longlong_as_double((long long)*(volatile unsigned long long*)&best_bits);
    const double thr = best.score > shared_best ? best.score : shared_best;
    if (advsal_skip_p(advsal_sigma(rcu[kp], rcv[kp]), sigma_max, thr)) continue;
    const long long start = advsal_lower_bound(rdl, m, -rdl[kp]);
    const double before = best.score;
    advsal_search_from(kp, start, rdl, rcu, rcv, ci + off, m, sigma_max, shared_best, &best);
    if (best.score > before) atomicMax(&best_bits, (unsigned long long)__double_as_longlong(best.score));
  }
  red[tid] = best.score;
  rp[tid] = best.p;
  rq[tid] = best.q;
  __syncthreads();
  if (tid == 0) {
    AdvsalBest all;
    advsal_best_reset(&all);
    for (int t = 0; t < (int)blockDim.x; ++t) {
      AdvsalBest o;
      o.score = red[t];
      o.p = rp[t];
      o.q = rq[t];
      if (o.p >= 0) advsal_offer(&all, o.score, o.p, o.q);
    }
    p_out[b] = all.p;
    q_out[b] = all.q;
    s_out[b] = all.score;
  }
}

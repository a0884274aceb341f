// APRNet operation kernels; see apr_ops.hpp for the contract of each function.
#include "apr_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace aprops {

namespace {
// Measured with benchmarks/bench_threads.py on a 2-core machine shared with other busy processes
// (2026-11-30): a parallel region costs up to a scheduler slice (~10 ms) when the second core is
// busy, so two threads paid only from about 4M entries x channels (gather, scatter-add) and never
// lost from there on.
int64_t g_parallel_threshold = int64_t(1) << 22;
}  // namespace

int64_t parallel_threshold() { return g_parallel_threshold; }
void set_parallel_threshold(int64_t work) { g_parallel_threshold = work; }

namespace {

// Batch row of local value row v of a table (-1: out of range).
inline int64_t translate(const TableRef& r, int64_t v, int64_t zero) {
    if (v < 0) return -1;
    if (v < r.n) return r.pbase + v;
    if (v < r.n + r.t) return r.tbase + v - r.n;
    return v == r.n + r.t ? zero : -1;
}

// Row starts of the segments in the output (S + 1), and the number of bad segments.
int64_t segment_starts(const TableRef* refs, int64_t n_refs, const int64_t* segs, int64_t S,
                       std::vector<int64_t>& start) {
    int64_t bad = 0;
    start.assign(S + 1, 0);
    for (int64_t s = 0; s < S; ++s) {
        const int64_t ref = segs[3 * s], a = segs[3 * s + 1], b = segs[3 * s + 2];
        const bool ok = ref >= 0 && ref < n_refs && a >= 0 && a <= b && b <= refs[ref].rows;
        if (!ok) ++bad;
        start[s + 1] = start[s] + (ok ? b - a : 0);
    }
    return bad;
}

// Channels per thread of the scatter-adds: one contiguous block per thread, a multiple of 16
// channels (a 64-byte cache line of floats) so that threads never share a line; a single block
// (serial) for few channels.
int64_t channel_block(int64_t C) {
#ifdef _OPENMP
    const int64_t threads = omp_get_max_threads();
#else
    const int64_t threads = 1;
#endif
    return std::max<int64_t>(16, ((C + threads - 1) / threads + 15) / 16 * 16);
}

}  // namespace

template <typename F>
int64_t tree_fill(F* vals, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                  int levels, const int32_t* children, int64_t width, const int32_t* counts) {
    int64_t bad = 0;
    for (int l = levels - 1; l >= 0; --l) {  // finest tree level first
        const int64_t t0 = offsets[l], t1 = offsets[l + 1];
#pragma omp parallel for schedule(static) reduction(+ : bad) if ((t1 - t0) * C * width >= g_parallel_threshold)
        for (int64_t o = t0; o < t1; ++o) {
            const int64_t t = order[o];
            if (t < 0 || t >= T || counts[t] < 1 || counts[t] > width) { ++bad; continue; }
            F* dst = vals + (N + t) * C;
            std::fill(dst, dst + C, F(0));
            for (int64_t j = 0; j < counts[t]; ++j) {
                const int64_t ch = children[width * t + j];
                if (ch < 0 || ch >= N + T) { ++bad; continue; }
                const F* src = vals + ch * C;
                for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
            }
            const F inv = F(1) / static_cast<F>(counts[t]);
            for (int64_t c = 0; c < C; ++c) dst[c] *= inv;
        }
    }
    return bad;
}

template <typename F>
int64_t tree_unfill(F* grad, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                    int levels, const int32_t* children, int64_t width, const int32_t* counts) {
    int64_t bad = 0;
    for (int l = 0; l < levels; ++l) {  // coarsest tree level first
        const int64_t t0 = offsets[l], t1 = offsets[l + 1];
#pragma omp parallel for schedule(static) reduction(+ : bad) if ((t1 - t0) * C * width >= g_parallel_threshold)
        for (int64_t o = t0; o < t1; ++o) {
            const int64_t t = order[o];
            if (t < 0 || t >= T || counts[t] < 1 || counts[t] > width) { ++bad; continue; }
            const F* src = grad + (N + t) * C;
            const F inv = F(1) / static_cast<F>(counts[t]);
            for (int64_t j = 0; j < counts[t]; ++j) {  // each child has exactly this one parent
                const int64_t ch = children[width * t + j];
                if (ch < 0 || ch >= N + T) { ++bad; continue; }
                F* dst = grad + ch * C;
                for (int64_t c = 0; c < C; ++c) dst[c] += src[c] * inv;
            }
        }
    }
    return bad;
}

template <typename F>
int64_t gather_rows(const F* vals, int64_t n_vals, int64_t C, const int32_t* table, int64_t K, int64_t n,
                    F* cols) {
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n * K * C >= g_parallel_threshold)
    for (int64_t i = 0; i < n; ++i) {
        const int32_t* nb = table + i * K;
        F* dst = cols + i * K * C;
        for (int64_t j = 0; j < K; ++j) {
            if (nb[j] < 0 || nb[j] >= n_vals) {
                ++bad;
                std::fill(dst + j * C, dst + (j + 1) * C, F(0));
                continue;
            }
            std::memcpy(dst + j * C, vals + nb[j] * C, sizeof(F) * C);
        }
    }
    return bad;
}

template <typename F>
int64_t scatter_add_rows(const F* grad_cols, int64_t C, const int32_t* table, int64_t K, int64_t n, int64_t n_vals,
                         F* grad_vals) {
    int64_t bad = 0;
    const int64_t block = channel_block(C);
    const int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (nblocks > 1 && n * K * C >= g_parallel_threshold)
    for (int64_t cb = 0; cb < nblocks; ++cb) {
        const int64_t c0 = cb * block, c1 = std::min(C, c0 + block);
        for (int64_t i = 0; i < n; ++i) {
            const int32_t* nb = table + i * K;
            const F* src = grad_cols + i * K * C;
            for (int64_t j = 0; j < K; ++j) {
                const int64_t r = nb[j];
                if (r < 0 || r >= n_vals) {
                    if (cb == 0) ++bad;
                    continue;
                }
                F* dst = grad_vals + r * C;
                const F* sj = src + j * C;
                for (int64_t c = c0; c < c1; ++c) dst[c] += sj[c];
            }
        }
    }
    return bad;
}

template <typename F>
int64_t gather_segments(const F* vals, int64_t n_vals, int64_t C, int64_t K, const TableRef* refs, int64_t n_refs,
                        const int64_t* segs, int64_t S, int64_t zero, F* cols) {
    std::vector<int64_t> start;
    int64_t bad = segment_starts(refs, n_refs, segs, S, start);
    const int64_t n = start[S];
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad) if (n * K * C >= g_parallel_threshold)
    for (int64_t s = 0; s < S; ++s) {
        if (start[s + 1] == start[s]) continue;
        const TableRef& r = refs[segs[3 * s]];
        const int64_t a = segs[3 * s + 1], b = segs[3 * s + 2];
        F* dst = cols + start[s] * K * C;
        if (C == 1) {  // one channel (a network's input): a plain indexed load per entry
            for (int64_t e = a * K; e < b * K; ++e) {
                const int64_t v = translate(r, r.table[e], zero);
                const bool ok = v >= 0 && v < n_vals;
                bad += !ok;
                *dst++ = ok ? vals[v] : F(0);
            }
            continue;
        }
        for (int64_t i = a; i < b; ++i) {
            const int32_t* nb = r.table + i * K;
            for (int64_t j = 0; j < K; ++j, dst += C) {
                const int64_t v = translate(r, nb[j], zero);
                if (v < 0 || v >= n_vals) {
                    ++bad;
                    std::fill(dst, dst + C, F(0));
                    continue;
                }
                std::memcpy(dst, vals + v * C, sizeof(F) * C);
            }
        }
    }
    return bad;
}

template <typename F>
int64_t scatter_add_segments(const F* grad_cols, int64_t C, int64_t K, const TableRef* refs, int64_t n_refs,
                             const int64_t* segs, int64_t S, int64_t zero, int64_t n_vals, F* grad_vals) {
    std::vector<int64_t> start;
    int64_t bad = segment_starts(refs, n_refs, segs, S, start);
    const int64_t block = channel_block(C);
    const int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (nblocks > 1 && start[S] * K * C >= g_parallel_threshold)
    for (int64_t cb = 0; cb < nblocks; ++cb) {
        const int64_t c0 = cb * block, c1 = std::min(C, c0 + block);
        for (int64_t s = 0; s < S; ++s) {
            if (start[s + 1] == start[s]) continue;
            const TableRef& r = refs[segs[3 * s]];
            const int64_t a = segs[3 * s + 1], b = segs[3 * s + 2];
            const F* src = grad_cols + start[s] * K * C;
            for (int64_t i = a; i < b; ++i) {
                const int32_t* nb = r.table + i * K;
                for (int64_t j = 0; j < K; ++j, src += C) {
                    const int64_t v = translate(r, nb[j], zero);
                    if (v < 0 || v >= n_vals) {
                        if (cb == 0) ++bad;
                        continue;
                    }
                    F* dst = grad_vals + v * C;
                    for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
                }
            }
        }
    }
    return bad;
}

template <typename F>
int64_t pool_forward(const F* x, int64_t n_x, int64_t C, const int32_t* table, int64_t width, int64_t M, F* out,
                     int64_t* argmax) {
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (M * C >= g_parallel_threshold)
    for (int64_t i = 0; i < M; ++i) {
        F* o = out + i * C;
        int64_t* a = argmax + i * C;
        const int64_t first = table[width * i];
        if (first < 0 || first >= n_x) {  // every output row has at least its first input
            ++bad;
            std::fill(o, o + C, F(0));
            std::fill(a, a + C, int64_t(0));
            continue;
        }
        for (int64_t c = 0; c < C; ++c) {
            o[c] = x[first * C + c];
            a[c] = first;
        }
        for (int64_t j = 1; j < width; ++j) {
            const int64_t src = table[width * i + j];
            if (src < 0) continue;
            if (src >= n_x) { ++bad; continue; }
            const F* xs = x + src * C;
            // NaN propagates as in torch (torch.max over a dim, F.max_pool2d): the first NaN of the
            // window wins and keeps its index, as the torch backend's max(dim=1) does.
            for (int64_t c = 0; c < C; ++c)
                if (xs[c] > o[c] || (std::isnan(xs[c]) && !std::isnan(o[c]))) {
                    o[c] = xs[c];
                    a[c] = src;
                }
        }
    }
    return bad;
}

template <typename F>
int64_t pool_backward(const F* grad_out, int64_t C, const int64_t* argmax, int64_t M, int64_t n_x,
                      F* grad_x) {
    // Every input row feeds at most one output row, so each grad_x row is written by one i only.
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (M * C >= g_parallel_threshold)
    for (int64_t i = 0; i < M; ++i)
        for (int64_t c = 0; c < C; ++c) {
            const int64_t src = argmax[i * C + c];
            if (src < 0 || src >= n_x) { ++bad; continue; }
            grad_x[src * C + c] += grad_out[i * C + c];
        }
    return bad;
}


#define APROPS_INSTANTIATE(F)                                                                               \
    template int64_t tree_fill<F>(F*, int64_t, int64_t, int64_t, const int64_t*, const int64_t*, int,           \
                                  const int32_t*, int64_t, const int32_t*);                                    \
    template int64_t tree_unfill<F>(F*, int64_t, int64_t, int64_t, const int64_t*, const int64_t*, int,         \
                                    const int32_t*, int64_t, const int32_t*);                                           \
    template int64_t gather_rows<F>(const F*, int64_t, int64_t, const int32_t*, int64_t, int64_t, F*);          \
    template int64_t gather_segments<F>(const F*, int64_t, int64_t, int64_t, const TableRef*, int64_t,          \
                                        const int64_t*, int64_t, int64_t, F*);                                 \
    template int64_t scatter_add_rows<F>(const F*, int64_t, const int32_t*, int64_t, int64_t, int64_t, F*);      \
    template int64_t scatter_add_segments<F>(const F*, int64_t, int64_t, const TableRef*, int64_t,              \
                                             const int64_t*, int64_t, int64_t, int64_t, F*);                   \
    template int64_t pool_forward<F>(const F*, int64_t, int64_t, const int32_t*, int64_t, int64_t, F*, int64_t*);         \
    template int64_t pool_backward<F>(const F*, int64_t, const int64_t*, int64_t, int64_t, F*);
APROPS_INSTANTIATE(float)
APROPS_INSTANTIATE(double)
#undef APROPS_INSTANTIATE

}  // namespace aprops

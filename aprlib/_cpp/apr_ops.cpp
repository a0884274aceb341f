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

using aprcore::kMinParallelWork;

namespace {

// Dense per-level maps from cell to row of `vals`: particle index, N + tree index, or -1 (the cell
// is not in the APR at that level: it lies inside a coarser particle).
std::vector<std::vector<int64_t>> row_maps(const Structure& s) {
    const Geometry& g = s.g;
    const int64_t N = static_cast<int64_t>(s.y.size());
    std::vector<std::vector<int64_t>> maps(g.level_max + 1);
    for (int l = g.level_min; l <= g.level_max; ++l) maps[l].assign(g.rows(l) * g.cols(l), -1);
    for (int64_t i = 0; i < N; ++i) {
        const int l = s.level[i];
        maps[l][int64_t(s.y[i]) * g.cols(l) + s.x[i]] = i;
    }
    for (size_t t = 0; t < s.tree_y.size(); ++t) {
        const int l = s.tree_level[t];
        maps[l][int64_t(s.tree_y[t]) * g.cols(l) + s.tree_x[t]] = N + static_cast<int64_t>(t);
    }
    return maps;
}

}  // namespace

bool structure_from_cells(const CellView& v, Structure& out, std::string& error) {
    const Geometry& g = v.g;
    const int L = g.level_max, lmin = g.level_min;
    std::vector<std::vector<uint8_t>> leaf(L + 1), split(L + 1);
    for (int l = 0; l <= L; ++l) {
        const int64_t n = l >= lmin ? g.rows(l) * g.cols(l) : 0;
        leaf[l].assign(n, 0);
        split[l].assign(n, 0);
    }
    for (int64_t i = 0; i < v.n; ++i) {
        const int l = v.level[i];
        if (l < lmin || l > L || v.y[i] < 0 || v.x[i] < 0 || v.y[i] >= g.rows(l) || v.x[i] >= g.cols(l)) {
            error = "cell " + std::to_string(i) + " is outside the image at its level (levels " +
                    std::to_string(lmin) + ".." + std::to_string(L) + ")";
            return false;
        }
        uint8_t& m = leaf[l][int64_t(v.y[i]) * g.cols(l) + v.x[i]];
        if (m) {
            error = "cell " + std::to_string(i) + " appears twice";
            return false;
        }
        m = 1;
    }
    // split[l] = some child is a leaf or split (bottom-up)
    for (int l = L - 1; l >= lmin; --l) {
        const int64_t Cf = g.cols(l + 1), C = g.cols(l);
        for (int64_t r = 0; r < g.rows(l + 1); ++r)
            for (int64_t c = 0; c < Cf; ++c)
                if (leaf[l + 1][r * Cf + c] || split[l + 1][r * Cf + c]) split[l][(r >> 1) * C + (c >> 1)] = 1;
    }
    // a partition: no leaf inside another leaf, every child of a split cell present, no gaps at lmin
    for (int l = lmin; l <= L; ++l) {
        const int64_t C = g.cols(l);
        for (int64_t r = 0; r < g.rows(l); ++r)
            for (int64_t c = 0; c < C; ++c) {
                const bool is_leaf = leaf[l][r * C + c], is_split = split[l][r * C + c];
                const bool parent_split = l == lmin || split[l - 1][(r >> 1) * g.cols(l - 1) + (c >> 1)];
                if (is_leaf && is_split) {
                    error = "particle cells overlap (a cell at level " + std::to_string(l) + " contains finer cells)";
                    return false;
                }
                if (parent_split && !is_leaf && !is_split) {
                    error = "particle cells leave a gap at level " + std::to_string(l) + " (row " +
                            std::to_string(r) + ", column " + std::to_string(c) + ")";
                    return false;
                }
            }
    }
    out = aprcore::structure_from_split(split, g);
    return true;
}

void child_table(const Structure& s, int64_t* children, int64_t* counts) {
    const int64_t N = static_cast<int64_t>(s.y.size()), T = static_cast<int64_t>(s.tree_y.size());
    std::fill(children, children + 4 * T, int64_t(-1));
    std::fill(counts, counts + T, int64_t(0));
    for (int64_t i = 0; i < N; ++i)
        if (s.parent[i] >= 0) {
            const int64_t t = s.parent[i];
            children[4 * t + counts[t]++] = i;
        }
    for (int64_t i = 0; i < T; ++i)
        if (s.tree_parent[i] >= 0) {
            const int64_t t = s.tree_parent[i];
            children[4 * t + counts[t]++] = N + i;
        }
}

void neighbour_table(const Structure& s, int k, int64_t* table) {
    const Geometry& g = s.g;
    const int64_t N = static_cast<int64_t>(s.y.size()), T = static_cast<int64_t>(s.tree_y.size());
    const int64_t zero = N + T, K = int64_t(k) * k, r = k / 2;
    auto maps = row_maps(s);
    // resolve, top-down, the cells that are not in the APR at their level to the coarser particle
    // covering them, so that every look-up below is a single read
    for (int l = g.level_min + 1; l <= g.level_max; ++l) {
        const int64_t C = g.cols(l), Cp = g.cols(l - 1);
        const int64_t* up = maps[l - 1].data();
        int64_t* m = maps[l].data();
        for (int64_t yy = 0; yy < g.rows(l); ++yy)
            for (int64_t xx = 0; xx < C; ++xx)
                if (m[yy * C + xx] < 0) m[yy * C + xx] = up[(yy >> 1) * Cp + (xx >> 1)];
    }
#pragma omp parallel for schedule(static) if (N * K >= kMinParallelWork)
    for (int64_t i = 0; i < N; ++i) {
        const int l = s.level[i];
        const int64_t R = g.rows(l), C = g.cols(l);
        const int64_t* m = maps[l].data();
        int64_t* out = table + i * K;
        for (int64_t dy = -r; dy <= r; ++dy) {
            const int64_t yy = s.y[i] + dy;
            const bool row_in = yy >= 0 && yy < R;
            for (int64_t dx = -r; dx <= r; ++dx) {
                const int64_t xx = s.x[i] + dx;
                *out++ = (row_in && xx >= 0 && xx < C) ? m[yy * C + xx] : zero;
            }
        }
    }
}

void offset_rows(const int64_t* local, int64_t count, int64_t n, int64_t t, int64_t particle_offset,
                 int64_t tree_offset, int64_t zero, int64_t* out) {
#pragma omp parallel for schedule(static) if (count > 65536)
    for (int64_t e = 0; e < count; ++e) {
        const int64_t v = local[e];
        out[e] = v < 0 ? -1 : (v < n ? v + particle_offset : (v < n + t ? v - n + tree_offset : zero));
    }
}

template <typename F>
int64_t tree_fill(F* vals, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                  int levels, const int64_t* children, const int64_t* counts) {
    int64_t bad = 0;
    for (int l = levels - 1; l >= 0; --l) {  // finest tree level first
        const int64_t t0 = offsets[l], t1 = offsets[l + 1];
#pragma omp parallel for schedule(static) reduction(+ : bad) if (t1 - t0 > 256)
        for (int64_t o = t0; o < t1; ++o) {
            const int64_t t = order[o];
            if (t < 0 || t >= T || counts[t] < 1 || counts[t] > 4) { ++bad; continue; }
            F* dst = vals + (N + t) * C;
            std::fill(dst, dst + C, F(0));
            for (int64_t j = 0; j < counts[t]; ++j) {
                const int64_t ch = children[4 * t + j];
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
                    int levels, const int64_t* children, const int64_t* counts) {
    int64_t bad = 0;
    for (int l = 0; l < levels; ++l) {  // coarsest tree level first
        const int64_t t0 = offsets[l], t1 = offsets[l + 1];
#pragma omp parallel for schedule(static) reduction(+ : bad) if (t1 - t0 > 256)
        for (int64_t o = t0; o < t1; ++o) {
            const int64_t t = order[o];
            if (t < 0 || t >= T || counts[t] < 1 || counts[t] > 4) { ++bad; continue; }
            const F* src = grad + (N + t) * C;
            const F inv = F(1) / static_cast<F>(counts[t]);
            for (int64_t j = 0; j < counts[t]; ++j) {  // each child has exactly this one parent
                const int64_t ch = children[4 * t + j];
                if (ch < 0 || ch >= N + T) { ++bad; continue; }
                F* dst = grad + ch * C;
                for (int64_t c = 0; c < C; ++c) dst[c] += src[c] * inv;
            }
        }
    }
    return bad;
}

template <typename F>
int64_t gather_rows(const F* vals, int64_t n_vals, int64_t C, const int64_t* table, int64_t K, int64_t n,
                    F* cols) {
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (n * K * C >= kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) {
        const int64_t* nb = table + i * K;
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
int64_t scatter_add_rows(const F* grad_cols, int64_t C, const int64_t* table, int64_t K, int64_t n, int64_t n_vals,
                         F* grad_vals) {
    int64_t bad = 0;
    // one contiguous channel block per thread, a multiple of 16 channels (a 64-byte cache line of
    // floats) so that threads never share a line; a single block (serial) for few channels
#ifdef _OPENMP
    const int64_t threads = omp_get_max_threads();
#else
    const int64_t threads = 1;
#endif
    const int64_t block = std::max<int64_t>(16, ((C + threads - 1) / threads + 15) / 16 * 16);
    const int64_t nblocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (nblocks > 1)
    for (int64_t cb = 0; cb < nblocks; ++cb) {
        const int64_t c0 = cb * block, c1 = std::min(C, c0 + block);
        for (int64_t i = 0; i < n; ++i) {
            const int64_t* nb = table + i * K;
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
int64_t pool_forward(const F* x, int64_t n_x, int64_t C, const int64_t* table, int64_t M, F* out,
                     int64_t* argmax) {
    int64_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad) if (M * C >= kMinParallelWork)
    for (int64_t i = 0; i < M; ++i) {
        F* o = out + i * C;
        int64_t* a = argmax + i * C;
        const int64_t first = table[4 * i];
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
        for (int64_t j = 1; j < 4; ++j) {
            const int64_t src = table[4 * i + j];
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
#pragma omp parallel for schedule(static) reduction(+ : bad) if (M * C >= kMinParallelWork)
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
                                  const int64_t*, const int64_t*);                                             \
    template int64_t tree_unfill<F>(F*, int64_t, int64_t, int64_t, const int64_t*, const int64_t*, int,         \
                                    const int64_t*, const int64_t*);                                           \
    template int64_t gather_rows<F>(const F*, int64_t, int64_t, const int64_t*, int64_t, int64_t, F*);          \
    template int64_t scatter_add_rows<F>(const F*, int64_t, const int64_t*, int64_t, int64_t, int64_t, F*);      \
    template int64_t pool_forward<F>(const F*, int64_t, int64_t, const int64_t*, int64_t, F*, int64_t*);         \
    template int64_t pool_backward<F>(const F*, int64_t, const int64_t*, int64_t, int64_t, F*);
APROPS_INSTANTIATE(float)
APROPS_INSTANTIATE(double)
#undef APROPS_INSTANTIATE

}  // namespace aprops

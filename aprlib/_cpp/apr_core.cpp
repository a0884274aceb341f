// APR formation kernels; see apr_core.hpp for the contract of each function.
#include "apr_core.hpp"
#include "apr_core3d.hpp"
#include "apr_detail.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <cstdlib>
#include <memory>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace aprcore {

namespace {

using namespace detail;  // shared helpers (apr_detail.hpp)

constexpr int64_t kLanes = 16;  // lines filtered together (one SIMD-friendly block)

// kLanes doubles as 4 vectors of 4 (GCC/Clang vector extensions: element-wise IEEE operations,
// the same results as the scalar code, in SIMD registers).
typedef double v4d __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

// The smoothing B-spline's causal then anti-causal 2nd-order recursion
// y[i] = x[i] + b1 y[i-1] + b2 y[i-2] (in double, from a zero state) over kLanes lines of m samples:
// sample i of line j is the float in[src[i] * stride + j]. The causal results go to t
// (m * kLanes doubles); the anti-causal pass runs from the end down to sample `first`, and the
// samples i in [first, end) are written, times `norm` and rounded to float, to
// res[(i - first) * res_stride + j].
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
// Two builds picked at load time (GCC function multi-versioning): with AVX2 the 16 lanes' state
// fits in registers. Neither build has FMA, so no multiply-add is fused: the same roundings.
#define APRCORE_IIR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define APRCORE_IIR_CLONES
#endif
APRCORE_IIR_CLONES
void iir_block(const float* in, const int64_t* src, int64_t stride, int64_t m, int64_t first, int64_t end,
               double b1, double b2, double norm, double* t, float* res, int64_t res_stride) {
    const v4d B1 = {b1, b1, b1, b1}, B2 = {b2, b2, b2, b2}, NRM = {norm, norm, norm, norm};
    v4d y1[4], y2[4];
    for (int q = 0; q < 4; ++q) y1[q] = y2[q] = v4d{0.0, 0.0, 0.0, 0.0};
    constexpr int64_t kAhead = 24;  // samples prefetched ahead (strided lines cross pages: no
                                    // hardware prefetch)
    for (int64_t i = 0; i < m; ++i) {
        const float* x = in + src[i] * stride;
        if (i + kAhead < m) __builtin_prefetch(in + src[i + kAhead] * stride);
        double* row = t + i * kLanes;
        for (int q = 0; q < 4; ++q) {
            v4f xf;
            std::memcpy(&xf, x + 4 * q, sizeof xf);
            const v4d v = __builtin_convertvector(xf, v4d) + B1 * y1[q] + B2 * y2[q];
            std::memcpy(row + 4 * q, &v, sizeof v);
            y2[q] = y1[q];
            y1[q] = v;
        }
    }
    for (int q = 0; q < 4; ++q) y1[q] = y2[q] = v4d{0.0, 0.0, 0.0, 0.0};
    for (int64_t i = m - 1; i >= first; --i) {
        const double* row = t + i * kLanes;
        for (int q = 0; q < 4; ++q) {
            v4d x;
            std::memcpy(&x, row + 4 * q, sizeof x);
            const v4d v = x + B1 * y1[q] + B2 * y2[q];
            y2[q] = y1[q];
            y1[q] = v;
        }
        if (i - kAhead >= first && i - kAhead < end) __builtin_prefetch(res + (i - kAhead - first) * res_stride, 1);
        if (i < end) {
            float* o = res + (i - first) * res_stride;
            for (int q = 0; q < 4; ++q) {
                const v4f f = __builtin_convertvector(NRM * y1[q], v4f);
                std::memcpy(o + 4 * q, &f, sizeof f);
            }
        }
    }
}

}  // namespace

Geometry make_geometry(int64_t H, int64_t W) {
    Geometry g;
    g.H = H;
    g.W = W;
    g.level_min = 1;
    g.level_max = std::max(ceil_log2(std::max(H, W)), 2);
    return g;
}

void bspline_smooth(const float* img, int64_t H, int64_t W, const Params& p, float* out) {
    // Each line is extended by k mirrored samples at both ends (so the recursions start from a
    // zero state far enough out), filtered, and the central part kept: rows first (rounded to
    // float, into `out`), then columns, in place in `out` (a block of columns is read whole by
    // the causal pass before the anti-causal pass writes it). Lines are processed kLanes at a
    // time (sample i of the kLanes lines side by side).
    detail::bspline_rows(img, H, W, p, out);
    detail::bspline_cols(out, H, W, p);
}

void detail::bspline_rows(const float* img, int64_t H, int64_t W, const Params& p, float* out, bool mirror_ends) {
    const int64_t k = p.bspline_k;
    const double b1 = p.b1, b2 = p.b2, norm = p.norm;
    float* rows = out;
    {
        const int64_t m = W + 2 * k;
        std::vector<int64_t> src(m), ident(m);  // source column of each extended sample
        for (int64_t i = 0; i < m; ++i) {
            src[i] = mirror_ends ? mirror(i - k, W) : reflect(i - k, W);
            ident[i] = i;
        }
#pragma omp parallel if (H * W >= kMinParallelSpline)
        {
            // A block of rows is transposed into `in` (sample i of row j at in[i * kLanes + j]) and
            // the results out of `res` tile by tile (kLanes columns at a time), so that each
            // cache line of the image is used whole at once.
            Scratch<double> t(m * kLanes);
            Scratch<float> in(m * kLanes), res(W * kLanes);
#pragma omp for schedule(static)
            for (int64_t r0 = 0; r0 < H; r0 += kLanes) {
                const int64_t nb = std::min(kLanes, H - r0);
                for (int64_t j = 0; j < kLanes; ++j) {  // lanes past the last row repeat it
                    const float* line = img + (r0 + std::min(j, nb - 1)) * W;
                    for (int64_t i = 0; i < k; ++i) {
                        in[i * kLanes + j] = line[src[i]];
                        in[(k + W + i) * kLanes + j] = line[src[k + W + i]];
                    }
                }
                for (int64_t x0 = 0; x0 < W; x0 += kLanes) {
                    const int64_t nx = std::min(kLanes, W - x0);
                    float* tile = in.data() + (k + x0) * kLanes;
                    for (int64_t j = 0; j < kLanes; ++j) {
                        const float* line = img + (r0 + std::min(j, nb - 1)) * W + x0;
                        for (int64_t xx = 0; xx < nx; ++xx) tile[xx * kLanes + j] = line[xx];
                    }
                }
                iir_block(in.data(), ident.data(), kLanes, m, k, k + W, b1, b2, norm, t.data(), res.data(), kLanes);
                for (int64_t x0 = 0; x0 < W; x0 += kLanes) {
                    const int64_t nx = std::min(kLanes, W - x0);
                    const float* tile = res.data() + x0 * kLanes;
                    for (int64_t j = 0; j < nb; ++j) {
                        float* d = rows + (r0 + j) * W + x0;
                        for (int64_t xx = 0; xx < nx; ++xx) d[xx] = tile[xx * kLanes + j];
                    }
                }
            }
        }
    }
}

void detail::bspline_cols(float* out, int64_t H, int64_t W, const Params& p, bool mirror_ends) {
    const int64_t k = p.bspline_k;
    const double b1 = p.b1, b2 = p.b2, norm = p.norm;
    const float* rows = out;
    const int64_t m = H + 2 * k;
    std::vector<int64_t> src(m), ident(m);  // source row of each extended sample
    for (int64_t i = 0; i < m; ++i) {
        src[i] = mirror_ends ? mirror(i - k, H) : reflect(i - k, H);
        ident[i] = i;
    }
    const int64_t full = W / kLanes * kLanes;  // columns in full blocks
#pragma omp parallel if (H * W >= kMinParallelSpline)
    {
        Scratch<double> t(m * kLanes);
#pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < full; c0 += kLanes)  // straight from the rows, into the output
            iir_block(rows + c0, src.data(), W, m, k, k + H, b1, b2, norm, t.data(), out + c0, W);
    }
    if (full < W) {  // the last, partial block of columns, through zero-padded buffers
        const int64_t nb = W - full;
        Scratch<double> t(m * kLanes);
        Scratch<float> in(m * kLanes), res(H * kLanes);
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < kLanes; ++j) in[i * kLanes + j] = j < nb ? rows[src[i] * W + full + j] : 0.0f;
        iir_block(in.data(), ident.data(), kLanes, m, k, k + H, b1, b2, norm, t.data(), res.data(), kLanes);
        for (int64_t y = 0; y < H; ++y)
            for (int64_t j = 0; j < nb; ++j) out[y * W + full + j] = res[y * kLanes + j];
    }
}

namespace {

// One row of the [1, 4, 1] / 6 kernel with whole-sample mirror borders.
inline void bspline_eval_row(const float* c, int64_t W, float* o) {
    if (W == 1) {
        o[0] = (c[0] + 4.0f * c[0] + c[0]) / 6.0f;
        return;
    }
    o[0] = (c[1] + 4.0f * c[0] + c[1]) / 6.0f;
    for (int64_t x = 1; x + 1 < W; ++x) o[x] = (c[x - 1] + 4.0f * c[x] + c[x + 1]) / 6.0f;
    o[W - 1] = (c[W - 2] + 4.0f * c[W - 1] + c[W - 2]) / 6.0f;
}

}  // namespace

void bspline_evaluate(const float* coef, int64_t H, int64_t W, float* out) {
    Scratch<float> tmp(H * W);
#pragma omp parallel for schedule(static) if (H * W >= kMinParallelFormation)
    for (int64_t y = 0; y < H; ++y) bspline_eval_row(coef + y * W, W, tmp.data() + y * W);
#pragma omp parallel for schedule(static) if (H * W >= kMinParallelFormation)
    for (int64_t y = 0; y < H; ++y) {
        const float* a = tmp.data() + mirror(y - 1, H) * W;
        const float* b = tmp.data() + y * W;
        const float* c = tmp.data() + mirror(y + 1, H) * W;
        float* o = out + y * W;
        for (int64_t x = 0; x < W; ++x) o[x] = (a[x] + 4.0f * b[x] + c[x]) / 6.0f;
    }
}

void gradient_magnitude_ds(const float* coef, int64_t H, int64_t W, float* out_half) {
    // max(sqrt(a), sqrt(b)) == sqrt(max(a, b)) (sqrt is correctly rounded, hence monotone), so the
    // squared magnitudes are max-reduced and one square root taken per half-grid sample.
    const int64_t Wh = (W + 1) / 2;
#pragma omp parallel if (H * W >= kMinParallelFormation)
    {
        Scratch<float> m2(2 * Wh);
#pragma omp for schedule(static)
        for (int64_t yh = 0; yh < (H + 1) / 2; ++yh) {
            float* o = out_half + yh * Wh;
            for (int64_t xh = 0; xh < Wh; ++xh) o[xh] = 0.0f;
            for (int64_t y = 2 * yh; y < std::min(2 * yh + 2, H); ++y) {
                // squared |grad| of one row (central differences, replicated borders) ...
                const float* up = coef + std::max<int64_t>(y - 1, 0) * W;
                const float* dn = coef + std::min<int64_t>(y + 1, H - 1) * W;
                const float* row = coef + y * W;
                float* g = m2.data();
                g[2 * Wh - 1] = 0.0f;  // W odd: the last half column has one pixel
                if (W == 1) {
                    const float gy = 0.5f * (dn[0] - up[0]);
                    const float gx = 0.5f * (row[0] - row[0]);
                    g[0] = gx * gx + gy * gy;
                } else {
                    {
                        const float gx = 0.5f * (row[1] - row[0]), gy = 0.5f * (dn[0] - up[0]);
                        g[0] = gx * gx + gy * gy;
                    }
                    for (int64_t x = 1; x + 1 < W; ++x) {
                        const float gx = 0.5f * (row[x + 1] - row[x - 1]);
                        const float gy = 0.5f * (dn[x] - up[x]);
                        g[x] = gx * gx + gy * gy;
                    }
                    {
                        const float gx = 0.5f * (row[W - 1] - row[W - 2]), gy = 0.5f * (dn[W - 1] - up[W - 1]);
                        g[W - 1] = gx * gx + gy * gy;
                    }
                }
                // ... max-reduced into the half row
                for (int64_t xh = 0; xh < Wh; ++xh) o[xh] = std::max(o[xh], std::max(g[2 * xh], g[2 * xh + 1]));
            }
            for (int64_t xh = 0; xh < Wh; ++xh) o[xh] = std::sqrt(o[xh]);
        }
    }
}
void threshold_gradient(float* grad_half, const float* image_half, int64_t n, const Params& p) {
#pragma omp parallel for schedule(static) if (n >= kMinParallelFormation)
    for (int64_t i = 0; i < n; ++i)
        if (grad_half[i] < p.grad_th || image_half[i] <= p.Ip_th) grad_half[i] = 0.0f;
}

namespace {
// One half row of 2x2 means from NR (2, or 1 at an odd bottom border) image rows starting at `a`
// (row stride W): Wp cells of 2 x NR pixels, then, if W is odd, the last cell's NR pixels; summed
// in double from 0.0 in row-major order.
template <int NR>
void half_row(const float* a, int64_t W, int64_t Wp, int64_t Wh, float* o) {
    for (int64_t xh = 0; xh < Wp; ++xh) {
        double s = 0.0;
        for (int r = 0; r < NR; ++r) {
            s += a[r * W + 2 * xh];
            s += a[r * W + 2 * xh + 1];
        }
        o[xh] = static_cast<float>(s / (2 * NR));
    }
    if (Wp < Wh) {
        double s = 0.0;
        for (int r = 0; r < NR; ++r) s += a[r * W + W - 1];
        o[Wh - 1] = static_cast<float>(s / NR);
    }
}
}  // namespace

void half_image(const float* img, int64_t H, int64_t W, bool from_bspline, float* out_half) {
    // 2x2 means summed in double in the order (y, x) row-major from 0.0; cells cut by an odd
    // border hold 2 or 1 pixels.
    const int64_t Hh = (H + 1) / 2, Wh = (W + 1) / 2, Wp = W / 2;  // Wp: half columns with 2 pixels
    Scratch<float> means(from_bspline ? Hh * Wh : 0);
    float* dst_all = from_bspline ? means.data() : out_half;
#pragma omp parallel for schedule(static) if (Hh * Wh >= kMinParallelFormation)
    for (int64_t yh = 0; yh < Hh; ++yh) {
        const float* a = img + 2 * yh * W;
        float* o = dst_all + yh * Wh;
        if (2 * yh + 1 < H)
            half_row<2>(a, W, Wp, Wh, o);
        else
            half_row<1>(a, W, Wp, Wh, o);
    }
    // `img` holds B-spline coefficients: evaluate the spline on the half grid, as LibAPR does
    // (kernel [1, 4, 1] / 6 per axis, whole-sample mirror borders).
    if (from_bspline) bspline_evaluate(means.data(), Hh, Wh, out_half);
}

void box_mean(const float* in, int64_t H, int64_t W, int width, float* out) {
    // Running sums over mirror-padded lines: O(1) per sample whatever the width.
    const int64_t r = width / 2;
    const double inv = 1.0 / static_cast<double>(width);
    Scratch<float> tmp(H * W);
    std::vector<int64_t> pad_src(2 * r);  // source column of the r padded samples at each end
    for (int64_t i = 0; i < r; ++i) {
        pad_src[i] = mirror(i - r, W);
        pad_src[r + i] = mirror(W + i, W);
    }
#pragma omp parallel if (H * W >= kMinParallelFormation)
    {
        Scratch<double> line(W + 2 * r);
#pragma omp for schedule(static)
        for (int64_t y = 0; y < H; ++y) {
            const float* row = in + y * W;
            for (int64_t i = 0; i < r; ++i) {
                line[i] = row[pad_src[i]];
                line[W + r + i] = row[pad_src[r + i]];
            }
            for (int64_t x = 0; x < W; ++x) line[r + x] = row[x];
            double s = 0.0;
            for (int64_t i = 0; i < width; ++i) s += line[i];
            float* t = tmp.data() + y * W;
            for (int64_t x = 0; x + 1 < W; ++x) {
                t[x] = static_cast<float>(s * inv);
                s += line[x + width] - line[x];
            }
            t[W - 1] = static_cast<float>(s * inv);
        }
    }
    // along columns: a running sum of rows, a block of columns per thread
    const int64_t B = 256;
#pragma omp parallel if (H * W >= kMinParallelFormation)
    {
        double acc[B];
#pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < W; c0 += B) {
            const int64_t nb = std::min(B, W - c0);
            for (int64_t j = 0; j < nb; ++j) acc[j] = 0.0;
            for (int64_t d = -r; d <= r; ++d) {
                const float* t = tmp.data() + mirror(d, H) * W + c0;
                for (int64_t j = 0; j < nb; ++j) acc[j] += t[j];
            }
            for (int64_t y = 0; y < H; ++y) {
                float* o = out + y * W + c0;
                for (int64_t j = 0; j < nb; ++j) o[j] = static_cast<float>(acc[j] * inv);
                if (y + 1 < H) {
                    const float* add = tmp.data() + mirror(y + r + 1, H) * W + c0;
                    const float* sub = tmp.data() + mirror(y - r, H) * W + c0;
                    for (int64_t j = 0; j < nb; ++j) acc[j] += add[j] - sub[j];
                }
            }
        }
    }
}

void local_intensity_scale(const float* half, int64_t Hh, int64_t Wh, const Params& p, float* out_half) {
    const int64_t n = Hh * Wh;
    Scratch<float> work(n);
    box_mean(half, Hh, Wh, 3, work.data());
    for (int64_t i = 0; i < n; ++i) work[i] = std::fabs(half[i] - work[i]);
    box_mean(work.data(), Hh, Wh, 7, out_half);
    const float infinite = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) {
        float v = p.scale_const * out_half[i];
        if (v < p.sigma_th) v = (v < p.sigma_th_max) ? infinite : p.sigma_th;
        out_half[i] = v;
    }
}

void required_levels(const float* grad_half, const float* sigma_half, const Geometry& g,
                     float rel_error, uint8_t* req_half) {
    const int64_t n = g.rows(g.level_max - 1) * g.cols(g.level_max - 1);
    const double factor = std::ldexp(1.0, g.level_max) / rel_error;
    const int lo = g.level_min, hi = g.level_max - 1;
#pragma omp parallel for schedule(static) if (n >= kMinParallelFormation)
    for (int64_t i = 0; i < n; ++i) {
        const double ratio = static_cast<double>(grad_half[i]) / sigma_half[i] * factor;
        req_half[i] = static_cast<uint8_t>(required_level_of_ratio(ratio, lo, hi));
    }
}

namespace {

// The sorted particle and tree arrays from split masks split[l] (rows(l) x cols(l), l in
// [level_min, level_max]; split[level_max] may be null: no pixel is split): the 3D builder's
// (build_structure3: tree nodes and particles read off the split rows, parents by merging each row
// with its parent row) on the geometry of one plane, Z = 1.
Structure build_structure(const std::vector<const uint8_t*>& split, const Geometry& g) {
    Geometry3 g3;
    g3.Z = 1;
    g3.Y = g.H;
    g3.X = g.W;
    g3.level_min = g.level_min;
    g3.level_max = g.level_max;
    Structure3 s = build_structure3(split, g3);
    Structure out;
    out.g = g;
    out.level_offsets = std::move(s.level_offsets);
    out.y = std::move(s.y);
    out.x = std::move(s.x);
    out.level = std::move(s.level);
    out.tree_offsets = std::move(s.tree_offsets);
    out.tree_y = std::move(s.tree_y);
    out.tree_x = std::move(s.tree_x);
    out.tree_level = std::move(s.tree_level);
    out.parent = std::move(s.parent);
    out.tree_parent = std::move(s.tree_parent);
    return out;
}

}  // namespace

Structure structure_from_split(const std::vector<std::vector<uint8_t>>& split, const Geometry& g) {
    std::vector<const uint8_t*> masks(g.level_max + 1, nullptr);
    for (int l = g.level_min; l <= g.level_max; ++l) masks[l] = split[l].data();
    return build_structure(masks, g);
}

Structure pulling_scheme(const uint8_t* req_half, const Geometry& g, bool minimal) {
    const int L = g.level_max, lmin = g.level_min;
    // req[l]: max required level over each level-l cell (req[L-1] is req_half itself);
    // split[l]: the cell has children (no pixel has: split[L] stays empty).
    std::vector<std::vector<uint8_t>> req(L), split(L + 1);
    std::vector<const uint8_t*> rq_of(L, nullptr);
    rq_of[L - 1] = req_half;
    for (int l = L - 2; l >= lmin; --l) {
        const int64_t R = g.rows(l), C = g.cols(l), Rf = g.rows(l + 1), Cf = g.cols(l + 1);
        req[l].resize(R * C);
        const uint8_t* f = rq_of[l + 1];
        uint8_t* d = req[l].data();
        const int64_t Cp = Cf / 2;  // cells with two children columns
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
        for (int64_t r = 0; r < R; ++r) {
            const uint8_t* a = f + 2 * r * Cf;
            const uint8_t* b = 2 * r + 1 < Rf ? a + Cf : a;  // one child row at an odd border
            uint8_t* o = d + r * C;
            for (int64_t c = 0; c < Cp; ++c)
                o[c] = std::max(std::max(a[2 * c], a[2 * c + 1]), std::max(b[2 * c], b[2 * c + 1]));
            if (Cp < C) o[C - 1] = std::max(a[Cf - 1], b[Cf - 1]);
        }
        rq_of[l] = d;
    }
    for (int l = L - 1; l >= lmin; --l) {
        const int64_t R = g.rows(l), C = g.cols(l);
        split[l].resize(R * C);
        const uint8_t* rq = rq_of[l];
        uint8_t* sp = split[l].data();
        if (!minimal) {
            // a cell is split if it must hold finer particles (req > l: seed or ascendant) or,
            // as in LibAPR, if one of its 3x3 neighbours (at level l, itself included) must hold
            // particles two or more levels finer (req > l + 1): the 3x3 max, separably.
            const uint8_t l1 = static_cast<uint8_t>(l), l2 = static_cast<uint8_t>(l + 1);
#pragma omp parallel if (R * C >= kMinParallelFormation)
            {
                Scratch<uint8_t> vm(C);
#pragma omp for schedule(static)
                for (int64_t r = 0; r < R; ++r) {
                    const uint8_t* a = rq + std::max<int64_t>(r - 1, 0) * C;
                    const uint8_t* b = rq + r * C;
                    const uint8_t* c = rq + std::min<int64_t>(r + 1, R - 1) * C;
                    for (int64_t x = 0; x < C; ++x) vm[x] = std::max(std::max(a[x], b[x]), c[x]);
                    uint8_t* o = sp + r * C;
                    if (C == 1) {
                        o[0] = (b[0] > l1) | (vm[0] > l2);
                        continue;
                    }
                    o[0] = (b[0] > l1) | (std::max(vm[0], vm[1]) > l2);
                    for (int64_t x = 1; x + 1 < C; ++x)
                        o[x] = (b[x] > l1) | (std::max(std::max(vm[x - 1], vm[x]), vm[x + 1]) > l2);
                    o[C - 1] = (b[C - 1] > l1) | (std::max(vm[C - 2], vm[C - 1]) > l2);
                }
            }
        } else {
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
            for (int64_t r = 0; r < R; ++r)
                for (int64_t c = 0; c < C; ++c) {
                    uint8_t s = rq[r * C + c] > l;  // must hold finer particles (seed or ascendant)
                    if (!s && l + 1 < L) {
                        // Minimal grading: split only if a child of this cell is an 8-neighbour of a
                        // split cell at level l+1 (whose leaves would otherwise touch a coarser leaf).
                        const uint8_t* sf = split[l + 1].data();
                        const int64_t Rf = g.rows(l + 1), Cf = g.cols(l + 1);
                        for (int64_t y = std::max<int64_t>(2 * r - 1, 0); !s && y < std::min(2 * r + 3, Rf); ++y)
                            for (int64_t x = std::max<int64_t>(2 * c - 1, 0); x < std::min(2 * c + 3, Cf); ++x)
                                if (sf[y * Cf + x]) { s = 1; break; }
                    }
                    sp[r * C + c] = s;
                }
        }
    }
    std::vector<const uint8_t*> masks(L + 1, nullptr);
    for (int l = lmin; l < L; ++l) masks[l] = split[l].data();
    return build_structure(masks, g);
}

Structure form_structure(const float* img, int64_t H, int64_t W, const Params& p) {
    const Geometry g = make_geometry(H, W);
    const int64_t Hh = (H + 1) / 2, Wh = (W + 1) / 2;
    Scratch<float> grad(Hh * Wh), half(Hh * Wh), sigma(Hh * Wh);
    {
        Scratch<float> smoothed(p.smooth ? H * W : 0);
        const float* coef = img;  // without smoothing the gradient is that of the image
        if (p.smooth) {
            bspline_smooth(img, H, W, p, smoothed.data());
            coef = smoothed.data();
        }
        gradient_magnitude_ds(coef, H, W, grad.data());
        half_image(coef, H, W, p.smooth, half.data());
    }
    threshold_gradient(grad.data(), half.data(), Hh * Wh, p);
    local_intensity_scale(half.data(), Hh, Wh, p, sigma.data());
    Scratch<uint8_t> req(Hh * Wh);
    required_levels(grad.data(), sigma.data(), g, p.rel_error, req.data());
    return pulling_scheme(req.data(), g, p.minimal_grading);
}

float max_abs_finite(const float* img, int64_t n, int64_t* first_nonfinite) {
    constexpr uint32_t kMag = 0x7fffffffu, kInf = 0x7f800000u;
    uint32_t m = 0;
#pragma omp parallel for schedule(static) reduction(max : m) if (n >= kMinParallelFormation)
    for (int64_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, img + i, sizeof b);
        m = std::max(m, b & kMag);
    }
    *first_nonfinite = -1;
    if (m >= kInf) {
        for (int64_t i = 0; i < n; ++i) {
            uint32_t b;
            std::memcpy(&b, img + i, sizeof b);
            if ((b & kMag) >= kInf) {
                *first_nonfinite = i;
                break;
            }
        }
        return std::numeric_limits<float>::quiet_NaN();
    }
    float out;
    std::memcpy(&out, &m, sizeof out);
    return out;
}

CellView view_of(const Structure& s) {
    CellView v;
    v.g = s.g;
    v.level = s.level.data();
    v.y = s.y.data();
    v.x = s.x.data();
    v.n = static_cast<int64_t>(s.y.size());
    return v;
}

int64_t first_invalid_cell(const CellView& v) {
    // Per-level grid sizes once; blocks of cells checked without early exit (vectorisable), the
    // first bad cell then searched in the first block that has one.
    const int L = v.g.level_max;
    int64_t rows[128], cols[128];  // levels 0..L (L <= 64 for any int64 image size)
    for (int l = 0; l <= L; ++l) {
        rows[l] = v.g.rows(l);
        cols[l] = v.g.cols(l);
    }
    auto bad = [&](int64_t i) {
        const int l = v.level[i];
        if (l < 0 || l > L) return true;
        return v.y[i] < 0 || v.x[i] < 0 || v.y[i] >= rows[l] || v.x[i] >= cols[l];
    };
    constexpr int64_t kBlock = 4096;
    for (int64_t b0 = 0; b0 < v.n; b0 += kBlock) {
        const int64_t b1 = std::min(v.n, b0 + kBlock);
        bool any = false;
        const int l0 = v.level[b0];
        bool one_level = true;  // the usual case (cells sorted by level): constant bounds
        for (int64_t i = b0; i < b1; ++i) one_level &= v.level[i] == l0;
        if (one_level && l0 >= 0 && l0 <= L) {
            const int32_t R = static_cast<int32_t>(std::min<int64_t>(rows[l0], INT32_MAX));
            const int32_t C = static_cast<int32_t>(std::min<int64_t>(cols[l0], INT32_MAX));
            for (int64_t i = b0; i < b1; ++i)  // unsigned compare: negative -> huge
                any |= (static_cast<uint32_t>(v.y[i]) >= static_cast<uint32_t>(R)) |
                       (static_cast<uint32_t>(v.x[i]) >= static_cast<uint32_t>(C));
        } else {
            for (int64_t i = b0; i < b1; ++i) {
                const int l = v.level[i];
                const bool level_ok = l >= 0 && l <= L;
                const int lc = level_ok ? l : 0;
                any |= !level_ok | (v.y[i] < 0) | (v.x[i] < 0) | (v.y[i] >= rows[lc]) | (v.x[i] >= cols[lc]);
            }
        }
        if (any)
            for (int64_t i = b0; i < b1; ++i)
                if (bad(i)) return i;
    }
    return -1;
}

namespace {

// Mean of the pixels of cell i (clipped to the image) for C channels; acc holds C doubles.
inline void cell_mean(const CellView& v, const float* img, int64_t C, int64_t i, double* acc, float* out) {
    const int64_t H = v.g.H, W = v.g.W;
    const int sh = v.g.level_max - v.level[i];
    if (sh == 0 && C == 1) {
        // one pixel: what the grayscale path below computes, ((0.0f + p) in double) * 1.0
        // rounded to float, is 0.0f + p (-0.0 becomes +0.0 there too)
        out[i] = 0.0f + img[int64_t(v.y[i]) * W + v.x[i]];
        return;
    }
    const int64_t y0 = int64_t(v.y[i]) << sh, x0 = int64_t(v.x[i]) << sh;
    const int64_t y1 = std::min(y0 + (int64_t(1) << sh), H), x1 = std::min(x0 + (int64_t(1) << sh), W);
    const double inv = 1.0 / static_cast<double>((y1 - y0) * (x1 - x0));
    if (C == 1) {  // grayscale fast path
        double s = 0.0;
        for (int64_t y = y0; y < y1; ++y) {
            const float* row = img + y * W;
            float rs = 0.0f;
            for (int64_t x = x0; x < x1; ++x) rs += row[x];
            s += rs;
        }
        if (!std::isfinite(s)) {
            // a float row sum overflowed (pixels near the float32 maximum): sum in double,
            // where the mean of finite pixels is always finite (the fast path's results
            // are unchanged for every other cell)
            s = 0.0;
            for (int64_t y = y0; y < y1; ++y)
                for (int64_t x = x0; x < x1; ++x) s += img[y * W + x];
        }
        out[i] = static_cast<float>(s * inv);
        return;
    }
    std::fill(acc, acc + C, 0.0);
    for (int64_t y = y0; y < y1; ++y)
        for (int64_t x = x0; x < x1; ++x) {
            const float* px = img + (y * W + x) * C;
            for (int64_t c = 0; c < C; ++c) acc[c] += px[c];
        }
    for (int64_t c = 0; c < C; ++c) out[i * C + c] = static_cast<float>(acc[c] * inv);
}

}  // namespace

void cell_means(const CellView& v, const float* img, int64_t C, float* out) {
    // Blocks of cells; a grayscale block whose cells are all pixels (level_max) or all 2x2 cells
    // (level_max - 1), the bulk of a dense image's particles, takes a loop specialised to them
    // (the same operations, in the same order, as cell_mean's for each cell: the same results).
    const int64_t W = v.g.W, H = v.g.H;
    const int L = v.g.level_max;
    constexpr int64_t kBlock = 1024;
    const int64_t blocks = (v.n + kBlock - 1) / kBlock;
#pragma omp parallel if (v.g.H * v.g.W >= kMinParallelSpline)
    {
        std::vector<double> acc(C);
#pragma omp for schedule(dynamic, 1)
        for (int64_t blk = 0; blk < blocks; ++blk) {
            const int64_t b0 = blk * kBlock, b1 = std::min(v.n, b0 + kBlock);
            if (C == 1) {
                bool pixels = true, quads = true;
                for (int64_t i = b0; i < b1; ++i) {
                    pixels &= v.level[i] == L;
                    quads &= v.level[i] == L - 1;
                }
                if (pixels) {
                    for (int64_t i = b0; i < b1; ++i) out[i] = 0.0f + img[int64_t(v.y[i]) * W + v.x[i]];
                    continue;
                }
                if (quads) {
                    for (int64_t i = b0; i < b1; ++i) {
                        const int64_t y0 = int64_t(v.y[i]) << 1, x0 = int64_t(v.x[i]) << 1;
                        if (y0 + 1 < H && x0 + 1 < W) {  // a whole 2x2 cell
                            const float* a = img + y0 * W + x0;
                            const float* b = a + W;
                            float r0 = 0.0f, r1 = 0.0f;
                            r0 += a[0];
                            r0 += a[1];
                            r1 += b[0];
                            r1 += b[1];
                            double s = 0.0;
                            s += r0;
                            s += r1;
                            if (std::isfinite(s)) {
                                out[i] = static_cast<float>(s * 0.25);  // 0.25 == 1.0 / 4, exactly
                                continue;
                            }
                        }
                        cell_mean(v, img, C, i, acc.data(), out);
                    }
                    continue;
                }
            }
            for (int64_t i = b0; i < b1; ++i) cell_mean(v, img, C, i, acc.data(), out);
        }
    }
}

void reconstruct(const CellView& v, const float* values, int64_t C, float* out) {
    const int64_t H = v.g.H, W = v.g.W;
#pragma omp parallel for schedule(dynamic, 1024) if (v.g.H * v.g.W >= kMinParallelWork)
    for (int64_t i = 0; i < v.n; ++i) {
        const int sh = v.g.level_max - v.level[i];
        const int64_t y0 = int64_t(v.y[i]) << sh, x0 = int64_t(v.x[i]) << sh;
        const int64_t y1 = std::min(y0 + (int64_t(1) << sh), H), x1 = std::min(x0 + (int64_t(1) << sh), W);
        const float* val = values + i * C;
        for (int64_t y = y0; y < y1; ++y)
            for (int64_t x = x0; x < x1; ++x) {
                float* px = out + (y * W + x) * C;
                for (int64_t c = 0; c < C; ++c) px[c] = val[c];
            }
    }
}

}  // namespace aprcore

// APR formation kernels; see apr_core.hpp for the contract of each function.
#include "apr_core.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace aprcore {

namespace {

// Reflective ('d c b a | a b c d') index into [0, n).
inline int64_t reflect(int64_t i, int64_t n) {
    if (n == 1) return 0;
    const int64_t period = 2 * n;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - 1 - i;
}

// Whole-sample mirror ('d c b | a b c d') index into [0, n), as LibAPR pads its box filters.
inline int64_t mirror(int64_t i, int64_t n) {
    if (n == 1) return 0;
    const int64_t period = 2 * n - 2;
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}

inline int ceil_log2(int64_t v) {
    int l = 0;
    while ((int64_t(1) << l) < v) ++l;
    return l;
}

constexpr int64_t kLanes = 16;  // lines filtered together (one SIMD-friendly block)

// One 2nd-order recursion y[i] = x[i] + b1 y[i-1] + b2 y[i-2] over kLanes interleaved lines of
// length m stored as t[i * kLanes + j] (sample i of line j), in place, from a zero state; run
// from the end (anti-causal) when `backward`.
void recurse_lanes(double* t, int64_t m, double b1, double b2, bool backward) {
    double y1[kLanes] = {0}, y2[kLanes] = {0};
    for (int64_t n = 0; n < m; ++n) {
        double* row = t + (backward ? m - 1 - n : n) * kLanes;
        for (int64_t j = 0; j < kLanes; ++j) {
            const double v = row[j] + b1 * y1[j] + b2 * y2[j];
            row[j] = v;
            y2[j] = y1[j];
            y1[j] = v;
        }
    }
}

// Causal then anti-causal recursion (the smoothing B-spline's two passes).
void iir_lanes(double* t, int64_t m, double b1, double b2) {
    recurse_lanes(t, m, b1, b2, false);
    recurse_lanes(t, m, b1, b2, true);
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
    // zero state far enough out), filtered, and the central part kept. Lines are processed
    // kLanes at a time: rows through a transposed block, columns directly.
    const int64_t k = p.bspline_k;
    std::vector<float> rows(H * W);
#pragma omp parallel if (H * W >= kMinParallelWork)
    {
        std::vector<double> t((W + 2 * k) * kLanes);
#pragma omp for schedule(static)
        for (int64_t r0 = 0; r0 < H; r0 += kLanes) {
            const int64_t nb = std::min(kLanes, H - r0);
            std::fill(t.begin(), t.end(), 0.0);
            for (int64_t i = 0; i < W + 2 * k; ++i) {
                const int64_t x = reflect(i - k, W);
                for (int64_t j = 0; j < nb; ++j) t[i * kLanes + j] = img[(r0 + j) * W + x];
            }
            iir_lanes(t.data(), W + 2 * k, p.b1, p.b2);
            for (int64_t j = 0; j < nb; ++j)
                for (int64_t x = 0; x < W; ++x) rows[(r0 + j) * W + x] = static_cast<float>(p.norm * t[(x + k) * kLanes + j]);
        }
    }
#pragma omp parallel if (H * W >= kMinParallelWork)
    {
        std::vector<double> t((H + 2 * k) * kLanes);
#pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < W; c0 += kLanes) {
            const int64_t nb = std::min(kLanes, W - c0);
            std::fill(t.begin(), t.end(), 0.0);
            for (int64_t i = 0; i < H + 2 * k; ++i) {
                const float* src = rows.data() + reflect(i - k, H) * W + c0;
                for (int64_t j = 0; j < nb; ++j) t[i * kLanes + j] = src[j];
            }
            iir_lanes(t.data(), H + 2 * k, p.b1, p.b2);
            for (int64_t y = 0; y < H; ++y) {
                float* dst = out + y * W + c0;
                for (int64_t j = 0; j < nb; ++j) dst[j] = static_cast<float>(p.norm * t[(y + k) * kLanes + j]);
            }
        }
    }
}

void bspline_evaluate(const float* coef, int64_t H, int64_t W, float* out) {
    std::vector<float> tmp(H * W);
#pragma omp parallel for schedule(static) if (H * W >= kMinParallelWork)
    for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
            tmp[y * W + x] = (coef[y * W + mirror(x - 1, W)] + 4.0f * coef[y * W + x] + coef[y * W + mirror(x + 1, W)]) / 6.0f;
#pragma omp parallel for schedule(static) if (H * W >= kMinParallelWork)
    for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
            out[y * W + x] = (tmp[mirror(y - 1, H) * W + x] + 4.0f * tmp[y * W + x] + tmp[mirror(y + 1, H) * W + x]) / 6.0f;
}

void gradient_magnitude_ds(const float* coef, int64_t H, int64_t W, float* out_half) {
    const int64_t Wh = (W + 1) / 2;
#pragma omp parallel if (H * W >= kMinParallelWork)
    {
        std::vector<float> mag(W);
#pragma omp for schedule(static)
        for (int64_t yh = 0; yh < (H + 1) / 2; ++yh) {
            float* o = out_half + yh * Wh;
            std::fill(o, o + Wh, 0.0f);
            for (int64_t y = 2 * yh; y < std::min(2 * yh + 2, H); ++y) {
                // |grad| of one row (central differences, replicated borders) ...
                const float* up = coef + std::max<int64_t>(y - 1, 0) * W;
                const float* dn = coef + std::min<int64_t>(y + 1, H - 1) * W;
                const float* row = coef + y * W;
                for (int64_t x = 0; x < W; ++x) {
                    const float gx = 0.5f * (row[x + 1 < W ? x + 1 : W - 1] - row[x > 0 ? x - 1 : 0]);
                    const float gy = 0.5f * (dn[x] - up[x]);
                    mag[x] = std::sqrt(gx * gx + gy * gy);
                }
                // ... max-reduced into the half row
                for (int64_t x = 0; x < W; ++x) o[x >> 1] = std::max(o[x >> 1], mag[x]);
            }
        }
    }
}

void threshold_gradient(float* grad_half, const float* image_half, int64_t n, const Params& p) {
#pragma omp parallel for schedule(static) if (n >= kMinParallelWork)
    for (int64_t i = 0; i < n; ++i)
        if (grad_half[i] < p.grad_th || image_half[i] <= p.Ip_th) grad_half[i] = 0.0f;
}

void half_image(const float* img, int64_t H, int64_t W, bool from_bspline, float* out_half) {
    const int64_t Hh = (H + 1) / 2, Wh = (W + 1) / 2;
#pragma omp parallel for schedule(static) if (Hh * Wh >= kMinParallelWork)
    for (int64_t yh = 0; yh < Hh; ++yh) {
        for (int64_t xh = 0; xh < Wh; ++xh) {
            double s = 0.0;
            int cnt = 0;
            for (int64_t y = 2 * yh; y < std::min(2 * yh + 2, H); ++y)
                for (int64_t x = 2 * xh; x < std::min(2 * xh + 2, W); ++x) {
                    s += img[y * W + x];
                    ++cnt;
                }
            out_half[yh * Wh + xh] = static_cast<float>(s / cnt);
        }
    }
    if (from_bspline) {
        // `img` holds B-spline coefficients: evaluate the spline on the half grid, as LibAPR
        // does (kernel [1, 4, 1] / 6 per axis, whole-sample mirror borders).
        std::vector<float> tmp(out_half, out_half + Hh * Wh);
        bspline_evaluate(tmp.data(), Hh, Wh, out_half);
    }
}

void box_mean(const float* in, int64_t H, int64_t W, int width, float* out) {
    // Running sums over mirror-padded lines: O(1) per sample whatever the width.
    const int64_t r = width / 2;
    const double inv = 1.0 / static_cast<double>(width);
    std::vector<float> tmp(H * W);
#pragma omp parallel if (H * W >= kMinParallelWork)
    {
        std::vector<double> line(W + 2 * r);
#pragma omp for schedule(static)
        for (int64_t y = 0; y < H; ++y) {
            const float* row = in + y * W;
            for (int64_t i = 0; i < W + 2 * r; ++i) line[i] = row[mirror(i - r, W)];
            double s = 0.0;
            for (int64_t i = 0; i < width; ++i) s += line[i];
            float* t = tmp.data() + y * W;
            for (int64_t x = 0; x < W; ++x) {
                t[x] = static_cast<float>(s * inv);
                if (x + 1 < W) s += line[x + width] - line[x];
            }
        }
    }
    // along columns: a running sum of rows, a block of columns per thread
    const int64_t B = 256;
#pragma omp parallel if (H * W >= kMinParallelWork)
    {
        std::vector<double> acc(B);
#pragma omp for schedule(static)
        for (int64_t c0 = 0; c0 < W; c0 += B) {
            const int64_t nb = std::min(B, W - c0);
            std::fill(acc.begin(), acc.end(), 0.0);
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
    std::vector<float> smooth(Hh * Wh), diff(Hh * Wh);
    box_mean(half, Hh, Wh, 3, smooth.data());
    for (int64_t i = 0; i < Hh * Wh; ++i) diff[i] = std::fabs(half[i] - smooth[i]);
    box_mean(diff.data(), Hh, Wh, 7, out_half);
    const float infinite = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < Hh * Wh; ++i) {
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
#pragma omp parallel for schedule(static) if (n >= kMinParallelWork)
    for (int64_t i = 0; i < n; ++i) {
        const double ratio = static_cast<double>(grad_half[i]) / sigma_half[i] * factor;
        int l;
        if (!(ratio > 0.0)) l = lo;            // zero gradient (or infinite scale)
        else if (std::isinf(ratio)) l = hi;    // zero scale with a gradient
        else l = std::clamp(std::ilogb(ratio), lo, hi);  // ilogb = floor(log2) for normal doubles
        req_half[i] = static_cast<uint8_t>(l + 1);
    }
}

namespace {

// Row-parallel extraction of the set cells of a level-l mask, sorted row-major.
// Appends coordinates and returns, in `index` (if non-null), each set cell's position.
void extract_level(const uint8_t* mask, int64_t R, int64_t C, int l, std::vector<int32_t>& ys,
                   std::vector<int32_t>& xs, std::vector<int8_t>& ls, int64_t* index) {
    std::vector<int64_t> row_count(R + 1, 0);
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelWork)
    for (int64_t r = 0; r < R; ++r) {
        int64_t c = 0;
        for (int64_t x = 0; x < C; ++x) c += mask[r * C + x] != 0;
        row_count[r + 1] = c;
    }
    for (int64_t r = 0; r < R; ++r) row_count[r + 1] += row_count[r];
    const int64_t base = static_cast<int64_t>(ys.size());
    ys.resize(base + row_count[R]);
    xs.resize(base + row_count[R]);
    ls.resize(base + row_count[R], static_cast<int8_t>(l));
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelWork)
    for (int64_t r = 0; r < R; ++r) {
        int64_t k = base + row_count[r];
        for (int64_t x = 0; x < C; ++x) {
            if (mask[r * C + x]) {
                ys[k] = static_cast<int32_t>(r);
                xs[k] = static_cast<int32_t>(x);
                if (index) index[r * C + x] = k;
                ++k;
            } else if (index) {
                index[r * C + x] = -1;
            }
        }
    }
}

}  // namespace

Structure structure_from_split(const std::vector<std::vector<uint8_t>>& split, const Geometry& g) {
    const int L = g.level_max, lmin = g.level_min;
    Structure out;
    out.g = g;
    // Tree nodes: the split cells, with their indices for parent look-ups.
    std::vector<std::vector<int64_t>> tree_index(L);
    out.tree_offsets.assign(L + 2, 0);
    for (int l = 0; l <= L + 1; ++l) {
        if (l >= lmin && l < L) {
            tree_index[l].resize(split[l].size());
            out.tree_offsets[l] = static_cast<int64_t>(out.tree_y.size());
            extract_level(split[l].data(), g.rows(l), g.cols(l), l, out.tree_y, out.tree_x, out.tree_level,
                          tree_index[l].data());
        } else {
            out.tree_offsets[l] = static_cast<int64_t>(out.tree_y.size());
        }
    }
    // Particles: cells that are not split and whose parent is split (all at level_min).
    out.level_offsets.assign(L + 2, 0);
    std::vector<uint8_t> leaf;
    for (int l = 0; l <= L + 1; ++l) {
        out.level_offsets[l] = static_cast<int64_t>(out.y.size());
        if (l < lmin || l > L) continue;
        const int64_t R = g.rows(l), C = g.cols(l);
        leaf.assign(R * C, 0);
        const uint8_t* sp = split[l].data();
        const uint8_t* pp = l > lmin ? split[l - 1].data() : nullptr;
        const int64_t Cp = l > lmin ? g.cols(l - 1) : 0;
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelWork)
        for (int64_t r = 0; r < R; ++r)
            for (int64_t c = 0; c < C; ++c)
                leaf[r * C + c] = !sp[r * C + c] && (pp == nullptr || pp[(r >> 1) * Cp + (c >> 1)]);
        extract_level(leaf.data(), R, C, l, out.y, out.x, out.level, nullptr);
    }
    // Parent indices.
    const int64_t N = static_cast<int64_t>(out.y.size()), T = static_cast<int64_t>(out.tree_y.size());
    out.parent.assign(N, -1);
    out.tree_parent.assign(T, -1);
#pragma omp parallel for schedule(static) if (N >= kMinParallelWork)
    for (int64_t i = 0; i < N; ++i) {
        const int l = out.level[i];
        if (l > lmin) out.parent[i] = tree_index[l - 1][(out.y[i] >> 1) * g.cols(l - 1) + (out.x[i] >> 1)];
    }
#pragma omp parallel for schedule(static) if (T >= kMinParallelWork)
    for (int64_t i = 0; i < T; ++i) {
        const int l = out.tree_level[i];
        if (l > lmin) out.tree_parent[i] = tree_index[l - 1][(out.tree_y[i] >> 1) * g.cols(l - 1) + (out.tree_x[i] >> 1)];
    }
    return out;
}

Structure pulling_scheme(const uint8_t* req_half, const Geometry& g, bool minimal) {
    const int L = g.level_max, lmin = g.level_min;
    // req[l]: max required level over each level-l cell; split[l]: cell has children.
    std::vector<std::vector<uint8_t>> req(L), split(L + 1);
    req[L - 1].assign(req_half, req_half + g.rows(L - 1) * g.cols(L - 1));
    for (int l = L - 2; l >= lmin; --l) {
        const int64_t R = g.rows(l), C = g.cols(l), Rf = g.rows(l + 1), Cf = g.cols(l + 1);
        req[l].assign(R * C, 0);
        const uint8_t* f = req[l + 1].data();
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelWork)
        for (int64_t r = 0; r < R; ++r)
            for (int64_t c = 0; c < C; ++c) {
                uint8_t m = 0;
                for (int64_t y = 2 * r; y < std::min(2 * r + 2, Rf); ++y)
                    for (int64_t x = 2 * c; x < std::min(2 * c + 2, Cf); ++x) m = std::max(m, f[y * Cf + x]);
                req[l][r * C + c] = m;
            }
    }
    split[L].assign(g.rows(L) * g.cols(L), 0);  // pixels never split
    for (int l = L - 1; l >= lmin; --l) {
        const int64_t R = g.rows(l), C = g.cols(l);
        split[l].assign(R * C, 0);
        const uint8_t* rq = req[l].data();
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelWork)
        for (int64_t r = 0; r < R; ++r)
            for (int64_t c = 0; c < C; ++c) {
                uint8_t s = rq[r * C + c] > l;  // must hold finer particles (seed or ascendant)
                if (!minimal) {
                    // LibAPR: the 3x3 neighbours (at level l) of an ascendant, i.e. of a cell that
                    // must hold particles two or more levels finer, are split too.
                    for (int64_t y = std::max<int64_t>(r - 1, 0); !s && y < std::min(r + 2, R); ++y)
                        for (int64_t x = std::max<int64_t>(c - 1, 0); x < std::min(c + 2, C); ++x)
                            if (rq[y * C + x] > l + 1) { s = 1; break; }
                } else if (!s && l + 1 < L) {
                    // Minimal grading: split only if a child of this cell is an 8-neighbour of a
                    // split cell at level l+1 (whose leaves would otherwise touch a coarser leaf).
                    const uint8_t* sf = split[l + 1].data();
                    const int64_t Rf = g.rows(l + 1), Cf = g.cols(l + 1);
                    for (int64_t y = std::max<int64_t>(2 * r - 1, 0); !s && y < std::min(2 * r + 3, Rf); ++y)
                        for (int64_t x = std::max<int64_t>(2 * c - 1, 0); x < std::min(2 * c + 3, Cf); ++x)
                            if (sf[y * Cf + x]) { s = 1; break; }
                }
                split[l][r * C + c] = s;
            }
    }

    return structure_from_split(split, g);
}

Structure form_structure(const float* img, int64_t H, int64_t W, const Params& p) {
    const Geometry g = make_geometry(H, W);
    const int64_t Hh = (H + 1) / 2, Wh = (W + 1) / 2;
    std::vector<float> coef(H * W), grad(Hh * Wh), half(Hh * Wh), sigma(Hh * Wh);
    if (p.smooth) bspline_smooth(img, H, W, p, coef.data());
    else std::memcpy(coef.data(), img, sizeof(float) * H * W);
    gradient_magnitude_ds(coef.data(), H, W, grad.data());
    half_image(coef.data(), H, W, p.smooth, half.data());
    threshold_gradient(grad.data(), half.data(), Hh * Wh, p);
    local_intensity_scale(half.data(), Hh, Wh, p, sigma.data());
    std::vector<uint8_t> req(Hh * Wh);
    required_levels(grad.data(), sigma.data(), g, p.rel_error, req.data());
    return pulling_scheme(req.data(), g, p.minimal_grading);
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
    for (int64_t i = 0; i < v.n; ++i) {
        const int l = v.level[i];
        if (l < 0 || l > v.g.level_max) return i;
        if (v.y[i] < 0 || v.x[i] < 0 || v.y[i] >= v.g.rows(l) || v.x[i] >= v.g.cols(l)) return i;
    }
    return -1;
}

void cell_means(const CellView& v, const float* img, int64_t C, float* out) {
    const int64_t H = v.g.H, W = v.g.W;
#pragma omp parallel if (v.g.H * v.g.W >= kMinParallelWork)
    {
        std::vector<double> acc(C);
#pragma omp for schedule(dynamic, 1024)
        for (int64_t i = 0; i < v.n; ++i) {
            const int sh = v.g.level_max - v.level[i];
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
                continue;
            }
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int64_t y = y0; y < y1; ++y)
                for (int64_t x = x0; x < x1; ++x) {
                    const float* px = img + (y * W + x) * C;
                    for (int64_t c = 0; c < C; ++c) acc[c] += px[c];
                }
            for (int64_t c = 0; c < C; ++c) out[i * C + c] = static_cast<float>(acc[c] * inv);
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

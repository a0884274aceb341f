// APR formation of 3D volumes; see apr_core3d.hpp for the contract. The 2D kernels (apr_core.cpp)
// are untouched; the smoothing B-spline's line passes, the padding rules, the scratch buffers and
// the level formula are shared with them (apr_detail.hpp).
#include "apr_core3d.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "apr_detail.hpp"

namespace aprcore {

using namespace detail;

namespace {

// LibAPR's local intensity scale constants (LocalIntensityScale::get_window_alt, psf = 2 voxels:
// box widths 3 and 7) by the number of axes the boxes run along.
constexpr float kScale3D = 26.1256f, kScale2D = 28.7069f, kScale1D = 31.2843f;
constexpr int64_t kLisPad = 3;  // LibAPR pads by max(width1, width2) / 2 = 3 samples per side

// The cubic B-spline evaluated at its knots along one axis: out[o, i, j] = (a[o, i-1, j] +
// 4 a[o, i, j] + a[o, i+1, j]) / 6 with whole-sample mirror borders, for `outer` blocks of n x inner.
void bspline_eval_axis(const float* a, int64_t outer, int64_t n, int64_t inner, float* out) {
    if (inner == 1) {  // along contiguous lines: the borders apart, a vectorisable loop
        for (int64_t o = 0; o < outer; ++o) {
            const float* c = a + o * n;
            float* d = out + o * n;
            if (n == 1) {
                d[0] = (c[0] + 4.0f * c[0] + c[0]) / 6.0f;
                continue;
            }
            d[0] = (c[1] + 4.0f * c[0] + c[1]) / 6.0f;
            for (int64_t i = 1; i + 1 < n; ++i) d[i] = (c[i - 1] + 4.0f * c[i] + c[i + 1]) / 6.0f;
            d[n - 1] = (c[n - 2] + 4.0f * c[n - 1] + c[n - 2]) / 6.0f;
        }
        return;
    }
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < n; ++i) {
            const float* p = a + (o * n + mirror(i - 1, n)) * inner;
            const float* c = a + (o * n + i) * inner;
            const float* q = a + (o * n + mirror(i + 1, n)) * inner;
            float* d = out + (o * n + i) * inner;
            for (int64_t j = 0; j < inner; ++j) d[j] = (p[j] + 4.0f * c[j] + q[j]) / 6.0f;
        }
}

// Box means along one axis with LibAPR's truncated windows (calc_sat_mean_*): the mean of the
// samples [max(i - r, 0), min(i + r, n - 1)], for `outer` blocks of n x inner; sums in double.
void box_trunc_axis(const float* a, int64_t outer, int64_t n, int64_t inner, int64_t r, float* out) {
    if (inner == 1) {
        for (int64_t o = 0; o < outer; ++o) {
            const float* line = a + o * n;
            float* d = out + o * n;
            double s = 0.0;
            for (int64_t i = 0; i <= std::min(r, n - 1); ++i) s += line[i];
            for (int64_t i = 0; i < n; ++i) {
                const int64_t lo = std::max<int64_t>(i - r, 0), hi = std::min(i + r, n - 1);
                d[i] = static_cast<float>(s / static_cast<double>(hi - lo + 1));
                if (i + r + 1 < n) s += line[i + r + 1];
                if (i - r >= 0) s -= line[i - r];
            }
        }
        return;
    }
    Scratch<double> acc(inner);
    for (int64_t o = 0; o < outer; ++o) {
        const float* blk = a + o * n * inner;
        float* dblk = out + o * n * inner;
        for (int64_t j = 0; j < inner; ++j) acc[j] = 0.0;
        for (int64_t i = 0; i <= std::min(r, n - 1); ++i) {
            const float* row = blk + i * inner;
            for (int64_t j = 0; j < inner; ++j) acc[j] += row[j];
        }
        for (int64_t i = 0; i < n; ++i) {
            const int64_t lo = std::max<int64_t>(i - r, 0), hi = std::min(i + r, n - 1);
            const double cnt = static_cast<double>(hi - lo + 1);
            float* d = dblk + i * inner;
            for (int64_t j = 0; j < inner; ++j) d[j] = static_cast<float>(acc[j] / cnt);
            if (i + r + 1 < n) {
                const float* add = blk + (i + r + 1) * inner;
                for (int64_t j = 0; j < inner; ++j) acc[j] += add[j];
            }
            if (i - r >= 0) {
                const float* sub = blk + (i - r) * inner;
                for (int64_t j = 0; j < inner; ++j) acc[j] -= sub[j];
            }
        }
    }
}

// Max over 3 neighbours (clamped borders) along one axis, for `outer` blocks of n x inner.
void max3_axis(const uint8_t* a, int64_t outer, int64_t n, int64_t inner, uint8_t* out) {
    for (int64_t o = 0; o < outer; ++o) {
        const uint8_t* blk = a + o * n * inner;
        uint8_t* d = out + o * n * inner;
        if (inner == 1) {
            for (int64_t i = 0; i < n; ++i) {
                uint8_t m = blk[i];
                if (i > 0) m = std::max(m, blk[i - 1]);
                if (i + 1 < n) m = std::max(m, blk[i + 1]);
                d[i] = m;
            }
            continue;
        }
        for (int64_t i = 0; i < n; ++i) {
            const uint8_t* p = blk + std::max<int64_t>(i - 1, 0) * inner;
            const uint8_t* c = blk + i * inner;
            const uint8_t* q = blk + std::min(i + 1, n - 1) * inner;
            uint8_t* di = d + i * inner;
            for (int64_t j = 0; j < inner; ++j) di[j] = std::max(std::max(p[j], c[j]), q[j]);
        }
    }
}

// 3x3x3 max (clamped borders) of a (nz, ny, nx) byte grid, separably; tmp has the grid's size.
void max27(const uint8_t* a, int64_t nz, int64_t ny, int64_t nx, uint8_t* tmp, uint8_t* out) {
    max3_axis(a, nz * ny, nx, 1, out);
    max3_axis(out, nz, ny, nx, tmp);
    max3_axis(tmp, 1, nz, ny * nx, out);
}

// Max over the 2x2x2 children (clipped at odd borders) of each cell of the coarser grid
// (nz, ny, nx) from the finer grid (fz, fy, fx).
void max_children(const uint8_t* f, int64_t fz, int64_t fy, int64_t fx, int64_t nz, int64_t ny, int64_t nx,
                  uint8_t* out) {
    const int64_t px = fx / 2;  // coarse cells with two children columns
    for (int64_t z = 0; z < nz; ++z)
        for (int64_t y = 0; y < ny; ++y) {
            uint8_t* o = out + (z * ny + y) * nx;
            const int64_t z1 = std::min(2 * z + 1, fz - 1), y1 = std::min(2 * y + 1, fy - 1);
            const uint8_t* r0 = f + (2 * z * fy + 2 * y) * fx;
            const uint8_t* r1 = f + (2 * z * fy + y1) * fx;
            const uint8_t* r2 = f + (z1 * fy + 2 * y) * fx;
            const uint8_t* r3 = f + (z1 * fy + y1) * fx;
            for (int64_t x = 0; x < px; ++x) {
                const uint8_t a = std::max(std::max(r0[2 * x], r0[2 * x + 1]), std::max(r1[2 * x], r1[2 * x + 1]));
                const uint8_t b = std::max(std::max(r2[2 * x], r2[2 * x + 1]), std::max(r3[2 * x], r3[2 * x + 1]));
                o[x] = std::max(a, b);
            }
            if (px < nx)
                o[nx - 1] = std::max(std::max(r0[fx - 1], r1[fx - 1]), std::max(r2[fx - 1], r3[fx - 1]));
        }
}

}  // namespace

Geometry3 make_geometry3(int64_t Z, int64_t Y, int64_t X) {
    Geometry3 g;
    g.Z = Z;
    g.Y = Y;
    g.X = X;
    g.level_min = 1;
    g.level_max = std::max(ceil_log2(std::max(std::max(Z, Y), X)), 2);
    return g;
}

namespace {

// LibAPR's smoothing B-spline (ComputeGradient::bspline_filt_rec_*) of lines of n samples, as the
// n x n matrix (row-major, double) that maps a line to its coefficients. LibAPR starts the causal
// recursion from sums of the first k0 samples weighted by its impulse response and the
// anti-causal one from sums of the last k0 samples weighted by the symmetric filter's
// (k0 = ceil(|ln 1e-4 / ln rho|)), i.e. from the whole-sample mirrored line; for a line shorter than
// k0 the weights of the missing samples are added to the last one (the line is extended by its
// end sample rather than mirrored). For long lines that is the mirror extension up to the 1e-4
// truncation, which bspline_rows/cols reproduce (tolerance 1e-7); for short ones it is not, so
// their lines go through this matrix. The recursion's poles come from b1 = 2 rho cos(omega) and
// b2 = -rho^2 (LibAPR computes them from lambda, in float).
std::vector<double> libapr_short_line_matrix(int64_t n, const Params& p) {
    const double rho = std::sqrt(-p.b2), omg = std::acos(std::clamp(p.b1 / (2.0 * rho), -1.0, 1.0));
    const double b1 = p.b1, b2 = p.b2;
    const double c0 = (1 + rho * rho) / (1 - rho * rho) * (1 - 2 * rho * std::cos(omg) + rho * rho) /
                      (1 + 2 * rho * std::cos(omg) + rho * rho);
    const double gamma = (1 - rho * rho) / (1 + rho * rho) / std::tan(omg);
    const double denom = std::pow(1 - 2 * rho * std::cos(omg) + rho * rho, 2);
    const double norm = denom;  // LibAPR's norm_factor
    const int64_t k0 = static_cast<int64_t>(std::ceil(std::fabs(std::log(1e-4) / std::log(rho))));
    const int64_t minlen = std::min(k0, n);
    std::vector<double> h(k0 + 3), hb(k0 + 3);
    for (int64_t k = 0; k < k0 + 3; ++k) {
        h[k] = std::pow(rho, double(k)) * std::sin((k + 1) * omg) / std::sin(omg);
        hb[k] = c0 * std::pow(rho, double(k)) * (std::cos(omg * k) + gamma * std::sin(omg * k)) / denom;
    }
    std::vector<double> bc1(k0, 0.0), bc2(k0, 0.0), bc3(k0, 0.0), bc4(k0, 0.0);
    if (k0 > 1) bc1[1] = h[0];
    for (int64_t k = 0; k < k0; ++k) bc1[k] += h[k + 1];
    for (int64_t k = 0; k < k0; ++k) bc2[k] = h[k];
    bc3[0] = hb[1];
    for (int64_t k = 0; k + 1 < k0; ++k) bc3[k + 1] += hb[k] + hb[k + 2];
    bc4[0] = hb[0];
    for (int64_t k = 1; k < k0; ++k) bc4[k] += 2 * hb[k];
    for (auto* bc : {&bc1, &bc2, &bc3, &bc4})
        for (int64_t k = minlen; k < k0; ++k) (*bc)[minlen - 1] += (*bc)[k];
    std::vector<double> M(n * n), x(n), y(n), o(n);
    for (int64_t j = 0; j < n; ++j) {  // column j: the response to the unit line e_j
        std::fill(x.begin(), x.end(), 0.0);
        x[j] = 1.0;
        double t1 = 0, t2 = 0, t3 = 0, t4 = 0;
        for (int64_t k = 0; k < minlen; ++k) {
            t1 += bc1[k] * x[k];
            t2 += bc2[k] * x[k];
            t3 += bc3[k] * x[n - 1 - k];
            t4 += bc4[k] * x[n - 1 - k];
        }
        y[0] = t2;
        y[1] = t1;
        for (int64_t i = 2; i < n; ++i) {
            const double t = t1 * b1 + t2 * b2 + x[i];
            y[i] = t;
            t2 = t1;
            t1 = t;
        }
        o[n - 2] = t3 * norm;
        o[n - 1] = t4 * norm;
        double u2 = o[n - 1] / norm, u1 = o[n - 2] / norm;
        for (int64_t i = n - 3; i >= 0; --i) {
            const double t = u1 * b1 + u2 * b2 + y[i];
            o[i] = t * norm;
            u2 = u1;
            u1 = t;
        }
        for (int64_t i = 0; i < n; ++i) M[i * n + j] = o[i];
    }
    return M;
}

// Lines of k0 or more samples take the mirrored recursions; shorter ones LibAPR's matrix. LibAPR's
// formulas need complex-conjugate poles (lambda > 1/144; below, its omega is NaN): with real poles
// the mirrored recursions are used at every length.
bool libapr_short_line(int64_t n, const Params& p) {
    if (!(p.b1 * p.b1 + 4.0 * p.b2 < 0.0)) return false;
    const double rho = std::sqrt(-p.b2);
    return n > 2 && rho > 0.0 && rho < 1.0 && n < std::ceil(std::fabs(std::log(1e-4) / std::log(rho)));
}

// out[o, i, j] = sum_k M[i, k] in[o, k, j] for `outer` blocks of n x inner (out may not alias in).
void apply_axis_matrix(const float* in, int64_t outer, int64_t n, int64_t inner, const std::vector<double>& M,
                       float* out) {
    Scratch<double> acc(inner);
    for (int64_t o = 0; o < outer; ++o) {
        const float* blk = in + o * n * inner;
        for (int64_t i = 0; i < n; ++i) {
            for (int64_t j = 0; j < inner; ++j) acc[j] = 0.0;
            for (int64_t k = 0; k < n; ++k) {
                const double m = M[i * n + k];
                const float* r = blk + k * inner;
                for (int64_t j = 0; j < inner; ++j) acc[j] += m * r[j];
            }
            float* d = out + (o * n + i) * inner;
            for (int64_t j = 0; j < inner; ++j) d[j] = static_cast<float>(acc[j]);
        }
    }
}

// Smoothing B-spline coefficients of the volume, along x, y and z, with LibAPR's boundary
// conditions: whole-sample mirroring (bspline_filt_rec_*'s initial values are those of the
// mirrored line), and LibAPR's own initialisation for lines shorter than its window
// (libapr_short_line_matrix); axes of <= 2 voxels are left as they are, as LibAPR does.
void bspline_smooth3d(const float* img, int64_t Z, int64_t Y, int64_t X, const Params& p, float* out) {
    if (X > 2 && libapr_short_line(X, p))
        apply_axis_matrix(img, Z * Y, X, 1, libapr_short_line_matrix(X, p), out);
    else if (X > 2)
        bspline_rows(img, Z * Y, X, p, out, true);
    else
        std::memcpy(out, img, sizeof(float) * Z * Y * X);
    if (Y > 2 && libapr_short_line(Y, p)) {
        const std::vector<double> M = libapr_short_line_matrix(Y, p);
        Scratch<float> slice(Y * X);
        for (int64_t z = 0; z < Z; ++z) {
            std::memcpy(slice.data(), out + z * Y * X, sizeof(float) * Y * X);
            apply_axis_matrix(slice.data(), 1, Y, X, M, out + z * Y * X);
        }
    } else if (Y > 2) {
        for (int64_t z = 0; z < Z; ++z) bspline_cols(out + z * Y * X, Y, X, p, true);
    }
    if (Z > 2 && libapr_short_line(Z, p)) {
        Scratch<float> copy(Z * Y * X);
        std::memcpy(copy.data(), out, sizeof(float) * Z * Y * X);
        apply_axis_matrix(copy.data(), 1, Z, Y * X, libapr_short_line_matrix(Z, p), out);
    } else if (Z > 2) {
        bspline_cols(out, Z, Y * X, p, true);
    }
}

// |grad| by central differences (replicated borders), max over 2x2x2 blocks (clipped at odd
// borders), on the half grid (Zh, Yh, Xh). Squared magnitudes are max-reduced, one sqrt each.
void gradient_ds3d(const float* c, int64_t Z, int64_t Y, int64_t X, float* out) {
    const int64_t Zh = (Z + 1) / 2, Yh = (Y + 1) / 2, Xh = (X + 1) / 2;
    const int64_t plane = Y * X;
#pragma omp parallel if (Z * Y * X >= kMinParallelSpline)
    {
        Scratch<float> g(2 * Xh);
#pragma omp for schedule(static)
        for (int64_t zh = 0; zh < Zh; ++zh) {
            float* oz = out + zh * Yh * Xh;
            std::fill(oz, oz + Yh * Xh, 0.0f);
            for (int64_t z = 2 * zh; z < std::min(2 * zh + 2, Z); ++z) {
                const float* bk = c + std::max<int64_t>(z - 1, 0) * plane;
                const float* fw = c + std::min<int64_t>(z + 1, Z - 1) * plane;
                const float* cz = c + z * plane;
                for (int64_t y = 0; y < Y; ++y) {
                    const float* row = cz + y * X;
                    const float* up = cz + std::max<int64_t>(y - 1, 0) * X;
                    const float* dn = cz + std::min<int64_t>(y + 1, Y - 1) * X;
                    const float* b = bk + y * X;
                    const float* f = fw + y * X;
                    g[2 * Xh - 1] = 0.0f;  // X odd: the last half column has one voxel
                    auto mag2 = [&](int64_t x, int64_t xm, int64_t xp) {
                        const float gx = 0.5f * (row[xp] - row[xm]);
                        const float gy = 0.5f * (dn[x] - up[x]);
                        const float gz = 0.5f * (f[x] - b[x]);
                        return gx * gx + gy * gy + gz * gz;
                    };
                    g[0] = mag2(0, 0, std::min<int64_t>(1, X - 1));
                    for (int64_t x = 1; x + 1 < X; ++x) {  // interior: vectorisable
                        const float gx = 0.5f * (row[x + 1] - row[x - 1]);
                        const float gy = 0.5f * (dn[x] - up[x]);
                        const float gz = 0.5f * (f[x] - b[x]);
                        g[x] = gx * gx + gy * gy + gz * gz;
                    }
                    if (X > 1) g[X - 1] = mag2(X - 1, X - 2, X - 1);
                    float* o = oz + (y / 2) * Xh;
                    for (int64_t xh = 0; xh < Xh; ++xh) o[xh] = std::max(o[xh], std::max(g[2 * xh], g[2 * xh + 1]));
                }
            }
            for (int64_t i = 0; i < Yh * Xh; ++i) oz[i] = std::sqrt(oz[i]);
        }
    }
}

// The volume on the half grid: means of 2x2x2 blocks (clipped at odd borders), summed in double
// in (z, y, x) order; with from_bspline the spline is then evaluated there along every axis of
// more than 2 voxels (LibAPR's calc_inv_bspline_*).
void half_volume(const float* img, int64_t Z, int64_t Y, int64_t X, bool from_bspline, float* out) {
    const int64_t Zh = (Z + 1) / 2, Yh = (Y + 1) / 2, Xh = (X + 1) / 2, Xp = X / 2;  // Xp: pairs
#pragma omp parallel if (Z * Y * X >= kMinParallelFormation)
    {
        Scratch<double> acc(Xh);
#pragma omp for schedule(static)
        for (int64_t zh = 0; zh < Zh; ++zh)
            for (int64_t yh = 0; yh < Yh; ++yh) {
                float* o = out + (zh * Yh + yh) * Xh;
                const int64_t z1 = std::min(2 * zh + 2, Z), y1 = std::min(2 * yh + 2, Y);
                for (int64_t xh = 0; xh < Xh; ++xh) acc[xh] = 0.0;
                // summed in (z, y, x) order, row by row
                for (int64_t z = 2 * zh; z < z1; ++z)
                    for (int64_t y = 2 * yh; y < y1; ++y) {
                        const float* r = img + (z * Y + y) * X;
                        for (int64_t xh = 0; xh < Xp; ++xh) {
                            acc[xh] += r[2 * xh];
                            acc[xh] += r[2 * xh + 1];
                        }
                        if (Xp < Xh) acc[Xh - 1] += r[X - 1];
                    }
                const int64_t rows = (z1 - 2 * zh) * (y1 - 2 * yh);
                const double full = static_cast<double>(rows * 2);
                for (int64_t xh = 0; xh < Xp; ++xh) o[xh] = static_cast<float>(acc[xh] / full);
                if (Xp < Xh) o[Xh - 1] = static_cast<float>(acc[Xh - 1] / static_cast<double>(rows));
            }
    }
    if (!from_bspline) return;
    const int64_t n = Zh * Yh * Xh;
    Scratch<float> tmp(n);
    float* a = out;
    float* b = tmp.data();
    if (X > 2) {
        bspline_eval_axis(a, Zh * Yh, Xh, 1, b);
        std::swap(a, b);
    }
    if (Y > 2) {
        bspline_eval_axis(a, Zh, Yh, Xh, b);
        std::swap(a, b);
    }
    if (Z > 2) {
        bspline_eval_axis(a, 1, Zh, Yh * Xh, b);
        std::swap(a, b);
    }
    if (a != out) std::memcpy(out, a, sizeof(float) * n);
}

// LibAPR's local intensity scale of the half-grid volume (nz, ny, nx): see form_structure3d.
void local_intensity_scale3d(const float* half, int64_t nz, int64_t ny, int64_t nx, const Params& p, float* out) {
    const int64_t n = nz * ny * nx;
    const bool ax = nx > kLisPad, ay = ny > kLisPad, az = nz > kLisPad;  // LibAPR: n > max window half-width
    const int na = int(ax) + int(ay) + int(az);
    const float infinite = std::numeric_limits<float>::infinity();
    auto floor_scale = [&](float v) { return v < p.sigma_th ? (v < p.sigma_th_max ? infinite : p.sigma_th) : v; };
    if (na == 0) {  // LibAPR's constant scale for tiny volumes: mean - min
        double s = 0.0;
        float mn = std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < n; ++i) {
            s += half[i];
            mn = std::min(mn, half[i]);
        }
        const float v = floor_scale(static_cast<float>(s / static_cast<double>(n) - mn));
        std::fill(out, out + n, v);
        return;
    }
    const float c = na == 3 ? kScale3D : (na == 2 ? kScale2D : kScale1D);
    const int64_t pz = az ? kLisPad : 0, py = ay ? kLisPad : 0, px = ax ? kLisPad : 0;
    const int64_t NZ = nz + 2 * pz, NY = ny + 2 * py, NX = nx + 2 * px, N = NZ * NY * NX;
    Scratch<float> padded(N), a(N), b(N);
    // mirror padding ('d c b | a b c d') of the axes the boxes run along
    std::vector<int64_t> sx(NX);
    for (int64_t i = 0; i < NX; ++i) sx[i] = mirror(i - px, nx);
    for (int64_t z = 0; z < NZ; ++z)
        for (int64_t y = 0; y < NY; ++y) {
            const float* src = half + (mirror(z - pz, nz) * ny + mirror(y - py, ny)) * nx;
            float* d = padded.data() + (z * NY + y) * NX;
            for (int64_t i = 0; i < NX; ++i) d[i] = src[sx[i]];
        }
    // box means of width 2r + 1 along x, y, z (LibAPR's order), ping-ponging between a and b;
    // returns the buffer holding the result
    auto boxes = [&](const float* in, int64_t r) -> float* {
        const float* cur = in;
        float* dst = a.data();
        float* other = b.data();
        bool any = false;
        if (ax) {
            box_trunc_axis(cur, NZ * NY, NX, 1, r, dst);
            cur = dst;
            std::swap(dst, other);
            any = true;
        }
        if (ay) {
            box_trunc_axis(cur, NZ, NY, NX, r, dst);
            cur = dst;
            std::swap(dst, other);
            any = true;
        }
        if (az) {
            box_trunc_axis(cur, 1, NZ, NY * NX, r, dst);
            cur = dst;
            std::swap(dst, other);
            any = true;
        }
        (void)any;
        return const_cast<float*>(cur);
    };
    float* m1 = boxes(padded.data(), 1);
    // |I - box3(I)| into padded (the padded image is not needed after this)
    for (int64_t i = 0; i < N; ++i) padded[i] = std::fabs(m1[i] - padded[i]);
    float* m2 = boxes(padded.data(), 3);
    for (int64_t z = 0; z < nz; ++z)
        for (int64_t y = 0; y < ny; ++y) {
            const float* s = m2 + ((z + pz) * NY + (y + py)) * NX + px;
            float* d = out + (z * ny + y) * nx;
            for (int64_t x = 0; x < nx; ++x) d[x] = floor_scale(c * s[x]);
        }
}

}  // namespace

// The sorted particle and tree arrays from the split masks split[l] (nz(l) x ny(l) x nx(l), l in
// [level_min, level_max]; split[level_max] may be null: no voxel is split), read row by row: the rows
// (z, y) of each level, the row (z, y) of level l having the parent row (z >> 1, y >> 1). A 2D
// structure is the case Z = 1 (build_structure in apr_core.cpp).
//
// Tree nodes are the split cells of levels level_min..level_max-1, row by row. They are exactly the
// ancestors of the particles because every split cell of level l > level_min has a split parent:
// LibAPR's scheme splits a cell whose required level exceeds l (then its parent's exceeds l - 1)
// or one with a 27-neighbour n whose required level exceeds l + 1 (then parent(n), a 27-neighbour
// of the parent or the parent itself, has one above l + 1 too); the minimal scheme also splits a
// cell with a child that is a 27-neighbour of a split cell s of level l + 1 (then, by induction
// from the finest level, parent(s) is split and is the cell or a 27-neighbour of it, so the same
// holds one level down). Tree nodes are listed row by row, so the nodes of one row are contiguous
// (row_start). Particles of level l > level_min are the children of split cells of level l - 1 that are not split
// themselves: each row of level l is read off the tree nodes of its parent row, in increasing x,
// with the parent index at hand; only the level_min grid is scanned whole. Parents of tree nodes
// are found by merging a row's nodes with its parent row's (-1 if the parent is not split).
// Costs the split grids' cells once (counting and listing the tree nodes) plus O(N + T).
Structure3 build_structure3(const std::vector<const uint8_t*>& split, const Geometry3& g) {
    const int L = g.level_max, lmin = g.level_min;
    Structure3 out;
    out.g = g;
    // parent row of row r = z * ny + y of level l (l > level_min)
    auto parent_row = [&](int l, int64_t r) {
        const int64_t ny = g.ny(l), z = r / ny, y = r - z * ny;
        return (z >> 1) * g.ny(l - 1) + (y >> 1);
    };
    // --- tree nodes
    std::vector<std::vector<int64_t>> row_start(L);  // row_start[l][r]: first tree node of row r
    out.tree_offsets.assign(L + 2, 0);
    int64_t T = 0;
    for (int l = lmin; l < L; ++l) {
        const int64_t R = g.nz(l) * g.ny(l), C = g.nx(l);
        std::vector<int64_t>& rs = row_start[l];
        rs.assign(R + 1, 0);
        const uint8_t* sp = split[l];
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
        for (int64_t r = 0; r < R; ++r) rs[r + 1] = count_set(sp + r * C, C);
        rs[0] = T;
        for (int64_t r = 0; r < R; ++r) rs[r + 1] += rs[r];
        out.tree_offsets[l] = T;
        T = rs[R];
    }
    for (int l = L; l <= L + 1; ++l) out.tree_offsets[l] = T;
    resize_for_fill(out.tree_z, T);
    resize_for_fill(out.tree_y, T);
    resize_for_fill(out.tree_x, T);
    resize_for_fill(out.tree_level, T);
    resize_for_fill(out.tree_parent, T);
    for (int l = lmin; l < L; ++l) {
        const int64_t ny = g.ny(l), R = g.nz(l) * ny, C = g.nx(l);
        const std::vector<int64_t>& rs = row_start[l];
        const uint8_t* sp = split[l];
        std::fill(out.tree_level.begin() + rs[0], out.tree_level.begin() + rs[R], static_cast<int8_t>(l));
        int32_t* tz = out.tree_z.data();
        int32_t* ty = out.tree_y.data();
        int32_t* tx = out.tree_x.data();
        int64_t* tp = out.tree_parent.data();
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
        for (int64_t r = 0; r < R; ++r) {
            if (rs[r + 1] == rs[r]) continue;
            int64_t k = rs[r];
            const int32_t z = static_cast<int32_t>(r / ny), y = static_cast<int32_t>(r - (r / ny) * ny);
            for_each_set(sp + r * C, C, [&](int64_t x) {
                tz[k] = z;
                ty[k] = y;
                tx[k] = static_cast<int32_t>(x);
                ++k;
            });
            // parents: merge with the parent row (both sorted by x); the parent row's nodes are of
            // level l - 1, listed in an earlier pass
            int64_t q = 0, q_end = 0;
            if (l > lmin) {
                const int64_t pr = parent_row(l, r);
                q = row_start[l - 1][pr];
                q_end = row_start[l - 1][pr + 1];
            }
            for (int64_t j = rs[r]; j < rs[r + 1]; ++j) {
                const int32_t px = tx[j] >> 1;
                while (q < q_end && tx[q] < px) ++q;
                tp[j] = (q < q_end && tx[q] == px) ? q : -1;
            }
        }
    }
    // --- particles: per row counts, then the arrays
    std::vector<std::vector<int64_t>> prow(L + 1);  // prow[l][r]: first particle of row r
    out.level_offsets.assign(L + 2, 0);
    int64_t N = 0;
    for (int l = 0; l <= L + 1; ++l) {
        out.level_offsets[l] = N;
        if (l < lmin || l > L) continue;
        const int64_t R = g.nz(l) * g.ny(l), C = g.nx(l);
        std::vector<int64_t>& pr = prow[l];
        pr.assign(R + 1, 0);
        const uint8_t* sp = split[l];
        if (l == lmin) {
            for (int64_t r = 0; r < R; ++r) pr[r + 1] = C - count_set(sp + r * C, C);
        } else {
            const std::vector<int64_t>& prs = row_start[l - 1];
            const int32_t* tx = out.tree_x.data();
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
            for (int64_t r = 0; r < R; ++r) {
                const int64_t par = parent_row(l, r);
                pr[r + 1] = count_leaf_children(tx, prs[par], prs[par + 1], sp ? sp + r * C : nullptr, C);
            }
        }
        pr[0] = N;
        for (int64_t r = 0; r < R; ++r) pr[r + 1] += pr[r];
        N = pr[R];
    }
    out.level_offsets[L + 1] = N;
    resize_for_fill(out.z, N);
    resize_for_fill(out.y, N);
    resize_for_fill(out.x, N);
    resize_for_fill(out.level, N);
    resize_for_fill(out.parent, N);
    for (int l = lmin; l <= L; ++l) {
        const int64_t ny = g.ny(l), R = g.nz(l) * ny, C = g.nx(l);
        const std::vector<int64_t>& pr = prow[l];
        std::fill(out.level.begin() + pr[0], out.level.begin() + pr[R], static_cast<int8_t>(l));
        int32_t* pz = out.z.data();
        int32_t* py = out.y.data();
        int32_t* px = out.x.data();
        int64_t* pp = out.parent.data();
        const uint8_t* sp = split[l];
        if (l == lmin) {
            int64_t k = pr[0];
            for (int64_t r = 0; r < R; ++r) {
                const int32_t z = static_cast<int32_t>(r / ny), y = static_cast<int32_t>(r - (r / ny) * ny);
                for (int64_t x = 0; x < C; ++x)
                    if (!sp[r * C + x]) {
                        pz[k] = z;
                        py[k] = y;
                        px[k] = static_cast<int32_t>(x);
                        pp[k] = -1;
                        ++k;
                    }
            }
            continue;
        }
        const std::vector<int64_t>& prs = row_start[l - 1];
        const int32_t* tx = out.tree_x.data();
#pragma omp parallel for schedule(static) if (R * C >= kMinParallelFormation)
        for (int64_t r = 0; r < R; ++r) {
            if (pr[r + 1] == pr[r]) continue;
            const int64_t par = parent_row(l, r);
            const int32_t z = static_cast<int32_t>(r / ny), y = static_cast<int32_t>(r - (r / ny) * ny);
            emit_leaf_children(tx, prs[par], prs[par + 1], sp ? sp + r * C : nullptr, C, pr[r],
                               [&](int64_t k, int64_t x, int64_t q) {
                                   pz[k] = z;
                                   py[k] = y;
                                   px[k] = static_cast<int32_t>(x);
                                   pp[k] = q;
                               });
        }
    }
    return out;
}

namespace {

// The pulling scheme on the half grid (level_max - 1) and the sorted particle cells.
Structure3 pulling_scheme3d(const uint8_t* req_half, const Geometry3& g, bool minimal) {
    const int L = g.level_max, lmin = g.level_min;
    std::vector<std::vector<uint8_t>> req(L), split(L);
    std::vector<const uint8_t*> rq(L, nullptr);
    rq[L - 1] = req_half;
    for (int l = L - 2; l >= lmin; --l) {
        req[l].resize(g.nz(l) * g.ny(l) * g.nx(l));
        max_children(rq[l + 1], g.nz(l + 1), g.ny(l + 1), g.nx(l + 1), g.nz(l), g.ny(l), g.nx(l), req[l].data());
        rq[l] = req[l].data();
    }
    for (int l = L - 1; l >= lmin; --l) {
        const int64_t nz = g.nz(l), ny = g.ny(l), nx = g.nx(l), n = nz * ny * nx;
        split[l].resize(n);
        uint8_t* sp = split[l].data();
        const uint8_t* r = rq[l];
        const uint8_t l1 = static_cast<uint8_t>(l), l2 = static_cast<uint8_t>(l + 1);
        if (!minimal) {
            // LibAPR: a cell is split if it must hold finer particles (req > l: seed or ascendant) or
            // if one of its 27 neighbours (itself included) must hold particles two or more levels
            // finer (req > l + 1: its ascendant neighbours are refined).
            std::vector<uint8_t> tmp(n), m(n);
            max27(r, nz, ny, nx, tmp.data(), m.data());
            for (int64_t i = 0; i < n; ++i) sp[i] = (r[i] > l1) | (m[i] > l2);
        } else {
            for (int64_t i = 0; i < n; ++i) sp[i] = r[i] > l1;
            if (l + 1 < L) {
                // minimal grading: split if a child is a 27-neighbour of a split cell at level l + 1
                const int64_t fz = g.nz(l + 1), fy = g.ny(l + 1), fx = g.nx(l + 1), nf = fz * fy * fx;
                std::vector<uint8_t> tmp(nf), dil(nf), any(n);
                max27(split[l + 1].data(), fz, fy, fx, tmp.data(), dil.data());
                max_children(dil.data(), fz, fy, fx, nz, ny, nx, any.data());
                for (int64_t i = 0; i < n; ++i) sp[i] |= any[i];
            }
        }
    }
    std::vector<const uint8_t*> masks(L + 1, nullptr);
    for (int l = lmin; l < L; ++l) masks[l] = split[l].data();
    return build_structure3(masks, g);
}

}  // namespace

Structure3 form_structure3d(const float* img, int64_t Z, int64_t Y, int64_t X, const Params& p) {
    const Geometry3 g = make_geometry3(Z, Y, X);
    const int64_t Zh = (Z + 1) / 2, Yh = (Y + 1) / 2, Xh = (X + 1) / 2, nh = Zh * Yh * Xh;
    Scratch<float> grad(nh), half(nh), sigma(nh);
    {
        Scratch<float> smoothed(p.smooth ? Z * Y * X : 0);
        const float* coef = img;  // without smoothing the gradient is that of the volume
        if (p.smooth) {
            bspline_smooth3d(img, Z, Y, X, p, smoothed.data());
            coef = smoothed.data();
        }
        gradient_ds3d(coef, Z, Y, X, grad.data());
        half_volume(coef, Z, Y, X, p.smooth, half.data());
    }
    threshold_gradient(grad.data(), half.data(), nh, p);
    local_intensity_scale3d(half.data(), Zh, Yh, Xh, p, sigma.data());
    Scratch<uint8_t> req(nh);
    const double factor = std::ldexp(1.0, g.level_max) / p.rel_error;
    const int lo = g.level_min, hi = g.level_max - 1;
    for (int64_t i = 0; i < nh; ++i) {
        const double ratio = static_cast<double>(grad[i]) / sigma[i] * factor;
        req[i] = static_cast<uint8_t>(required_level_of_ratio(ratio, lo, hi));
    }
    return pulling_scheme3d(req.data(), g, p.minimal_grading);
}

void cell_means3d(const Structure3& s, const float* img, float* out) {
    const int64_t Z = s.g.Z, Y = s.g.Y, X = s.g.X, n = static_cast<int64_t>(s.level.size());
    const int L = s.g.level_max;
#pragma omp parallel for schedule(dynamic, 4096) if (Z * Y * X >= kMinParallelSpline)
    for (int64_t i = 0; i < n; ++i) {
        const int sh = L - s.level[i];
        const int64_t z0 = int64_t(s.z[i]) << sh, y0 = int64_t(s.y[i]) << sh, x0 = int64_t(s.x[i]) << sh;
        if (sh == 0) {
            out[i] = 0.0f + img[(z0 * Y + y0) * X + x0];
            continue;
        }
        const int64_t side = int64_t(1) << sh;
        const int64_t z1 = std::min(z0 + side, Z), y1 = std::min(y0 + side, Y), x1 = std::min(x0 + side, X);
        double acc = 0.0;
        for (int64_t z = z0; z < z1; ++z)
            for (int64_t y = y0; y < y1; ++y) {
                const float* row = img + (z * Y + y) * X;
                float rs = 0.0f;
                for (int64_t x = x0; x < x1; ++x) rs += row[x];
                acc += rs;
            }
        if (!std::isfinite(acc)) {  // a float row sum overflowed: sum in double
            acc = 0.0;
            for (int64_t z = z0; z < z1; ++z)
                for (int64_t y = y0; y < y1; ++y)
                    for (int64_t x = x0; x < x1; ++x) acc += img[(z * Y + y) * X + x];
        }
        out[i] = static_cast<float>(acc / static_cast<double>((z1 - z0) * (y1 - y0) * (x1 - x0)));
    }
}

}  // namespace aprcore

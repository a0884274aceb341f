// APR formation, structure and reconstruction kernels (2D).
//
// Plain C++17 + OpenMP, no Python objects: raw pointers and sizes in, std::vectors out.
// Callers (the pybind11 bindings) validate shapes, dtypes and parameters first.
// Images are row-major (H, W) float32; coordinates are (y = row, x = column).
#pragma once
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

namespace aprcore {

// Work (elements) below which a loop runs on one thread: a parallel region costs microseconds, and
// far more when the cores are shared with another busy process (libgomp then waits on descheduled
// threads at every barrier, which made table building ~100x slower next to a training process).
constexpr int64_t kMinParallelWork = int64_t(1) << 18;

// Level geometry of an H x W image: the domain is padded to 2^level_max per side.
struct Geometry {
    int64_t H = 0, W = 0;
    int level_min = 1, level_max = 2;
    // Number of cell rows / columns at level l (cells that intersect the image).
    int64_t rows(int l) const { return (H + (int64_t(1) << (level_max - l)) - 1) >> (level_max - l); }
    int64_t cols(int l) const { return (W + (int64_t(1) << (level_max - l)) - 1) >> (level_max - l); }
};
Geometry make_geometry(int64_t H, int64_t W);

struct Params {
    float rel_error = 0.1f;      // E
    float grad_th = 0.0f;        // |grad I| below this is set to 0
    float Ip_th = 0.0f;          // |grad I| is set to 0 where I <= Ip_th (half grid)
    float sigma_th = 0.0f;       // local intensity scale floor
    float sigma_th_max = 0.0f;   // LibAPR: scales below this are treated as "infinite" (coarsest level)
    // Recursive smoothing B-spline (Unser et al. 1993): causal/anti-causal 2nd-order IIR with
    // coefficients b1 = 2 rho cos(omega), b2 = -rho^2 and gain `norm`; `bspline_k` samples of
    // mirrored boundary are run in to initialise the recursions. smooth = false disables it.
    bool smooth = true;
    double b1 = 0.0, b2 = 0.0, norm = 1.0;
    int bspline_k = 0;
    float scale_const = 28.7069f; // c of the local intensity scale in 2D
    bool minimal_grading = false; // pulling scheme variant, see pulling_scheme()
};

// Smoothing B-spline coefficients of img (H x W), written to out (H x W). Separable.
void bspline_smooth(const float* img, int64_t H, int64_t W, const Params& p, float* out);

// |grad| of `coef` by central differences (replicated borders), max-downsampled to the half grid
// (ceil(H/2) x ceil(W/2)).
void gradient_magnitude_ds(const float* coef, int64_t H, int64_t W, float* out_half);

// Value of a cubic B-spline at its knots from coefficients: [1, 4, 1] / 6 per axis, whole-sample
// mirror borders. (H, W) -> (H, W).
void bspline_evaluate(const float* coef, int64_t H, int64_t W, float* out);

// The image on the half grid: 2x2 means of `img` (H x W); with from_bspline, `img` holds B-spline
// coefficients and the spline is evaluated on the half grid (as LibAPR does).
void half_image(const float* img, int64_t H, int64_t W, bool from_bspline, float* out_half);

// LibAPR's thresholds on the half grid: |grad| = 0 where |grad| < grad_th or image <= Ip_th.
void threshold_gradient(float* grad_half, const float* image_half, int64_t n, const Params& p);

// Local intensity scale from the half-grid image (Hh x Wh): c * box7(|I2 - box3(I2)|), mirror
// borders, floored at sigma_th (and "infinite" below sigma_th_max).
void local_intensity_scale(const float* half, int64_t Hh, int64_t Wh, const Params& p, float* out_half);

// Separable box mean with odd width and whole-sample mirror ('d c b | a b c d') padding, as
// LibAPR pads its local-intensity-scale windows.
void box_mean(const float* in, int64_t H, int64_t W, int width, float* out);

// std::allocator whose resize(n) leaves new elements of trivial types uninitialised (default-
// rather than value-initialised): the structure's arrays are written whole right after they are
// sized, so zero-filling them first (hundreds of MB for a dense 4096 x 4096 image) is wasted.
template <typename T>
struct NoInitAllocator : std::allocator<T> {
    template <typename U>
    struct rebind {
        using other = NoInitAllocator<U>;
    };
    NoInitAllocator() noexcept = default;
    template <typename U>
    NoInitAllocator(const NoInitAllocator<U>&) noexcept {}
    template <typename U>
    void construct(U* p) noexcept(std::is_nothrow_default_constructible<U>::value) {
        ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... Args>
    void construct(U* p, Args&&... args) {
        ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
};
template <typename T>
using Buffer = std::vector<T, NoInitAllocator<T>>;

// Particle cell set and tree (ancestors), both sorted by (level, y, x).
struct Structure {
    Geometry g;
    std::vector<int64_t> level_offsets;  // size level_max + 2; particles of level l: [off[l], off[l+1])
    Buffer<int32_t> y, x;                // particle cell coordinates at their level
    Buffer<int8_t> level;
    std::vector<int64_t> tree_offsets;   // same layout for tree nodes (levels level_min..level_max-1)
    Buffer<int32_t> tree_y, tree_x;
    Buffer<int8_t> tree_level;
    Buffer<int64_t> parent;              // tree index of each particle's parent (-1 at level_min)
    Buffer<int64_t> tree_parent;         // tree index of each tree node's parent (-1 at level_min)
};

// Required particle level on the half grid: floor(log2(grad/sigma * 2^Lmax / E)) clipped to
// [level_min, level_max - 1], plus one (the "equivalence optimisation").
void required_levels(const float* grad_half, const float* sigma_half, const Geometry& g,
                     float rel_error, uint8_t* req_half);

// Pulling scheme: cells no larger than required whose face- and corner-neighbours differ by at
// most one level; builds the sorted particle and tree arrays. minimal = false follows LibAPR
// (pyapr 1.0.7), which also splits the 3x3 neighbours of every ascendant; minimal = true gives
// the smallest such cell set (split only what the one-level grading forces).
Structure pulling_scheme(const uint8_t* req_half, const Geometry& g, bool minimal);

// Sorted particles (cells not split whose parent is split, or level_min cells not split), tree
// (the split cells) and parent indices from per-level split masks split[l], l in
// [level_min, level_max], each of size rows(l) * cols(l) (split[level_max] all zero).
Structure structure_from_split(const std::vector<std::vector<uint8_t>>& split, const Geometry& g);

// Full pipeline (gradient, scale, levels, pulling scheme).
Structure form_structure(const float* img, int64_t H, int64_t W, const Params& p);

// Largest magnitude of n floats, in one pass: max |img[i]| over the finite values when all are
// finite; *first_nonfinite is set to the index of the first NaN or infinity, or -1 if none.
// (For finite floats |a| < |b| exactly when (bits(a) & 0x7fffffff) < (bits(b) & 0x7fffffff) as
// unsigned integers, and NaN or infinity is >= 0x7f800000: one integer max reduction does both.)
float max_abs_finite(const float* img, int64_t n, int64_t* first_nonfinite);

// Non-owning view of particle cells (any order), as passed in from Python.
struct CellView {
    Geometry g;
    const int8_t* level = nullptr;
    const int32_t* y = nullptr;
    const int32_t* x = nullptr;
    int64_t n = 0;
};
CellView view_of(const Structure& s);

// Checks that every cell lies inside the padded level grid and intersects the image.
// Returns the index of the first bad cell, or -1 if all are valid.
int64_t first_invalid_cell(const CellView& v);

// Mean of the pixels of each particle cell (clipped to the image), for C channels:
// img is (H, W, C) row-major; out is (N, C). Finite pixels give finite means (sums that would
// overflow float32 are taken in double).
void cell_means(const CellView& v, const float* img, int64_t C, float* out);

// Piecewise-constant reconstruction: values (N, C) -> out (H, W, C). Pixels covered by no
// cell are left untouched.
void reconstruct(const CellView& v, const float* values, int64_t C, float* out);

}  // namespace aprcore

// Helpers shared by the 2D (apr_core.cpp) and 3D (apr_core3d.cpp) formation kernels: index
// padding rules, scratch buffers, thresholds for parallel loops, and the smoothing B-spline's
// line passes. Internal to the C++ sources (not part of the documented kernel interface).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "apr_core.hpp"

namespace aprcore {
namespace detail {

// Work (elements) below which a formation loop runs on one thread. Every parallel region (fork,
// barriers, join) stalls whenever a team thread is descheduled: on a 2-core machine shared with
// other busy processes, the ~25 short regions of one formation made two threads slower than one
// at every image size. So only the compute-bound passes, the B-spline's two and the cell means,
// run in parallel, from 2048 x 2048 images on; the other loops are memory-bound (a second thread
// gains little) and run in parallel only from 8192 x 8192 images on.
constexpr int64_t kMinParallelSpline = int64_t(1) << 22;
constexpr int64_t kMinParallelFormation = int64_t(1) << 24;

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

// Uninitialised, 64-byte aligned scratch buffer (std::vector would zero-fill what is overwritten
// anyway). Large ones are 2 MiB aligned and, on Linux, advised to use transparent huge pages:
// the B-spline's column pass reads and writes one line per image row (one 4 KiB page each),
// which without huge pages costs a TLB miss per sample.
template <typename T>
struct Scratch {
    struct Free {
        void operator()(T* q) const { std::free(q); }
    };
    std::unique_ptr<T, Free> p;
    explicit Scratch(int64_t n) {
        constexpr size_t kHuge = size_t(1) << 21;
        size_t bytes = sizeof(T) * static_cast<size_t>(std::max<int64_t>(n, 1));
        const size_t align = bytes >= 2 * kHuge ? kHuge : 64;
        bytes = (bytes + align - 1) / align * align;
        p.reset(static_cast<T*>(std::aligned_alloc(align, bytes)));
        if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
        if (align == kHuge) madvise(p.get(), bytes, MADV_HUGEPAGE);  // advice only: errors ignored
#endif
    }
    T* data() { return p.get(); }
    const T* data() const { return p.get(); }
    T& operator[](int64_t i) { return p.get()[i]; }
    const T& operator[](int64_t i) const { return p.get()[i]; }
};

// v.resize(n) for a vector about to be filled; large buffers are advised to use transparent huge
// pages first (on Linux), which spares most of the page faults of first touching them.
template <typename V>
void resize_for_fill(V& v, int64_t n) {
    using T = typename V::value_type;
#ifdef MADV_HUGEPAGE
    constexpr uintptr_t kHuge = uintptr_t(1) << 21;
    if (v.capacity() < static_cast<size_t>(n) && sizeof(T) * static_cast<size_t>(n) >= 2 * kHuge) {
        v.reserve(static_cast<size_t>(n));
        const uintptr_t a = (reinterpret_cast<uintptr_t>(v.data()) + kHuge - 1) & ~(kHuge - 1);
        const uintptr_t b = (reinterpret_cast<uintptr_t>(v.data() + n)) & ~(kHuge - 1);
        if (b > a) madvise(reinterpret_cast<void*>(a), b - a, MADV_HUGEPAGE);  // advice only
    }
#endif
    v.resize(static_cast<size_t>(n));
}

// Calls f(x) for each x in [0, n) with p[x] != 0, in increasing order; skips zero runs 8 bytes
// at a time.
template <typename F>
inline void for_each_set(const uint8_t* p, int64_t n, F f) {
    int64_t x = 0;
    for (; x + 8 <= n; x += 8) {
        uint64_t w;
        std::memcpy(&w, p + x, 8);
        if (w == 0) continue;
        for (int64_t j = 0; j < 8; ++j)
            if (p[x + j]) f(x + j);
    }
    for (; x < n; ++x)
        if (p[x]) f(x);
}

inline int64_t count_set(const uint8_t* p, int64_t n) {
    int64_t c = 0;
    for (int64_t x = 0; x < n; ++x) c += p[x] != 0;
    return c;
}

// The particle cells of one row of a level above the coarsest: the children (columns 2 tx[q] and
// 2 tx[q] + 1, clipped to the row's C cells) of the tree nodes q0 .. q1 - 1 of its parent row that
// are not split further (split_row: the row's split flags, C of them; nullptr: none is split).
// emit(k, x, q) for each of them in order: the k-th cell from k0 on, at column x, child of the parent
// row's tree node q. Returns the next k.
template <typename Emit>
inline int64_t emit_leaf_children(const int32_t* tx, int64_t q0, int64_t q1, const uint8_t* split_row, int64_t C,
                                  int64_t k0, Emit&& emit) {
    int64_t k = k0;
    for (int64_t q = q0; q < q1; ++q) {
        const int64_t x0 = int64_t(tx[q]) << 1;
        const int64_t x1 = std::min(x0 + 2, C);
        for (int64_t x = x0; x < x1; ++x)
            if (!(split_row && split_row[x])) emit(k++, x, q);
    }
    return k;
}

// How many there are.
inline int64_t count_leaf_children(const int32_t* tx, int64_t q0, int64_t q1, const uint8_t* split_row, int64_t C) {
    return emit_leaf_children(tx, q0, q1, split_row, C, 0, [](int64_t, int64_t, int64_t) {});
}

// The smoothing B-spline (Params b1, b2, norm, bspline_k) along the rows of the row-major H x W
// array img, written to out (H x W; may not alias img): each row is extended by bspline_k
// samples at both ends, reflected ('d c b a | a b c d', the 2D kernels' rule) or, with
// mirror_ends, mirrored about the end samples ('d c b | a b c d', LibAPR's boundary conditions),
// and filtered by the causal and anti-causal recursions.
void bspline_rows(const float* img, int64_t H, int64_t W, const Params& p, float* out, bool mirror_ends = false);

// The same along the columns of the H x W array data, in place.
void bspline_cols(float* data, int64_t H, int64_t W, const Params& p, bool mirror_ends = false);

// floor(log2(ratio)) clipped to [lo, hi], plus one (LibAPR's level formula with the equivalence
// optimisation): lo for a ratio that is not > 0 (NaN included), hi + 1 for an infinite one.
inline int required_level_of_ratio(double ratio, int lo, int hi) {
    int l;
    if (!(ratio > 0.0)) {
        l = lo;  // zero gradient (or infinite scale)
    } else if (std::isinf(ratio)) {
        l = hi;  // zero scale with a gradient
    } else {
        // floor(log2(ratio)): the exponent field of the (positive, finite) double; a subnormal
        // ratio gives -1023, below level_min like its true exponent.
        uint64_t bits;
        std::memcpy(&bits, &ratio, sizeof bits);
        l = std::clamp(static_cast<int>((bits >> 52) & 0x7ff) - 1023, lo, hi);
    }
    return l + 1;
}

}  // namespace detail
}  // namespace aprcore

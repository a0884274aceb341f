// APRNet operation kernels (thesis 3.2-3.3): index tables built once per APR structure, and the
// data-dependent passes (tree means, im2col-style gathers, scatter-adds, max pooling).
//
// Value-array convention: a layer's input values live in one array `vals` of shape (N + T + 1, C):
// N particle rows, then T tree-node rows (means of their children), then one zero row (the padding
// outside the image). Tables index rows of this array. Plain C++17 + OpenMP; the bindings validate
// every index before these functions run.
#pragma once
#include <cstdint>
#include <vector>

#include "apr_core.hpp"

namespace aprops {

// Work (table entries x channels) below which a data kernel or table builder runs on one thread
// (default 2^22, measured: see apr_ops.cpp); settable at run time so that a benchmark can measure where a second
// thread starts to pay (benchmarks/bench_threads.py).
int64_t parallel_threshold();
void set_parallel_threshold(int64_t work);

// One APR's table in a batch: its local (n_rows, K) table of value rows and the map from its
// value rows to the batch's: v < n -> pbase + v, n <= v < n + t -> tbase + v - n, v == n + t (its
// zero row) -> the batch's zero row. The batch's tables are never copied: the kernels translate.
struct TableRef {
    const int32_t* table = nullptr;
    int64_t rows = 0;
    int64_t n = 0, t = 0, pbase = 0, tbase = 0;
};

// The data kernels are instantiated for F = float and double (double for gradient checks).
// Tree means, bottom-up: for each level from finest to coarsest (order[offsets[l]:offsets[l+1]]
// are the tree nodes, 0..T-1, of the l-th tree level, coarsest first), vals row N + t <- mean of
// its children rows (children (T, width), -1 padded, width = 2^ndim; counts (T) in [1, width]).
// Returns the number of invalid indices met (nothing is read or written through them).
template <typename F>
int64_t tree_fill(F* vals, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                  int levels, const int32_t* children, int64_t width, const int32_t* counts);
// Transpose of tree_fill, top-down: each tree row's gradient is split equally among its children
// (added to their rows). Same validation as tree_fill.
template <typename F>
int64_t tree_unfill(F* grad, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                    int levels, const int32_t* children, int64_t width, const int32_t* counts);

// cols (n, K * C) <- vals rows (n_vals, C): cols[i, j*C + c] = vals[table[i, j], c] for the (n, K)
// table. Out-of-range entries are counted and their columns zeroed.
template <typename F>
int64_t gather_rows(const F* vals, int64_t n_vals, int64_t C, const int32_t* table, int64_t K, int64_t n,
                    F* cols);

// gather_rows over segments of APR tables: segs (S, 3) = (ref, start, stop) lists rows
// [start, stop) of refs[ref].table in output order; entries are translated to batch rows (zero: the
// batch's zero row). Out-of-range entries are counted and their columns zeroed.
template <typename F>
int64_t gather_segments(const F* vals, int64_t n_vals, int64_t C, int64_t K, const TableRef* refs, int64_t n_refs,
                        const int64_t* segs, int64_t S, int64_t zero, F* cols);

// Transpose of gather_rows: grad_vals[table[i, j], c] += grad_cols[i, j*C + c] for the (n, K)
// table. Threads split the channels, so no two threads write the same value. Out-of-range
// entries are counted and skipped.
template <typename F>
int64_t scatter_add_rows(const F* grad_cols, int64_t C, const int32_t* table, int64_t K, int64_t n, int64_t n_vals,
                         F* grad_vals);
// Transpose of gather_segments (same channel split as scatter_add_rows).
template <typename F>
int64_t scatter_add_segments(const F* grad_cols, int64_t C, int64_t K, const TableRef* refs, int64_t n_refs,
                             const int64_t* segs, int64_t S, int64_t zero, int64_t n_vals, F* grad_vals);

// Max pooling: out[i, c] = max_j x[table[i, j], c] over the valid (>= 0) entries of the (M, width)
// table (x has n_x rows), argmax[i, c] = that input row (the first one on ties). NaN propagates as
// in torch: a window holding a NaN gives NaN, and argmax is its first NaN. Backward: grad_x[argmax[i, c], c] +=
// grad_out[i, c]. Each input row must feed at most one output row.
template <typename F>
int64_t pool_forward(const F* x, int64_t n_x, int64_t C, const int32_t* table, int64_t width, int64_t M, F* out,
                     int64_t* argmax);
template <typename F>
int64_t pool_backward(const F* grad_out, int64_t C, const int64_t* argmax, int64_t M, int64_t n_x,
                      F* grad_x);

}  // namespace aprops

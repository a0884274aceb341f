// APRNet operation kernels (thesis 3.2-3.3): index tables built once per APR structure, and the
// data-dependent passes (tree means, im2col-style gathers, scatter-adds, max pooling).
//
// Value-array convention: a layer's input values live in one array `vals` of shape (N + T + 1, C):
// N particle rows, then T tree-node rows (means of their children), then one zero row (the padding
// outside the image). Tables index rows of this array. Plain C++17 + OpenMP; the bindings validate
// every index before these functions run.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apr_core.hpp"

namespace aprops {

using aprcore::CellView;
using aprcore::Geometry;
using aprcore::Structure;

// Structure (sorted particles, tree, parents) of an arbitrary set of particle cells. Returns false
// and sets `error` if the cells do not partition the image (overlaps, gaps, out-of-range cells).
bool structure_from_cells(const CellView& v, Structure& out, std::string& error);

// Children of every tree node as rows of `vals`: children (T, 4), -1 padded, and counts (T).
void child_table(const Structure& s, int64_t* children, int64_t* counts);

// Neighbourhood table (N, k*k): for particle p at level l and offset (dy, dx) in [-k/2, k/2]^2,
// the row of `vals` holding the value at cell (y + dy, x + dx) of level l: the particle there,
// the tree node there (mean of finer particles), the coarser particle that covers it, or the zero
// row (N + T) if the cell lies outside the image.
void neighbour_table(const Structure& s, int k, int64_t* table);

// Rows of one APR's value array -> rows of a batch's: v < n -> v + particle_offset, n <= v < n + t ->
// v - n + tree_offset, v >= n + t (its zero row) -> zero, -1 (padding) stays -1.
void offset_rows(const int64_t* local, int64_t count, int64_t n, int64_t t, int64_t particle_offset,
                 int64_t tree_offset, int64_t zero, int64_t* out);

// The data kernels are instantiated for F = float and double (double for gradient checks).
// Tree means, bottom-up: for each level from finest to coarsest (order[offsets[l]:offsets[l+1]]
// are the tree nodes, 0..T-1, of the l-th tree level, coarsest first), vals row N + t <- mean of
// its children rows (children (T, 4), -1 padded; counts (T) in [1, 4]).
// Returns the number of invalid indices met (nothing is read or written through them).
template <typename F>
int64_t tree_fill(F* vals, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                  int levels, const int64_t* children, const int64_t* counts);
// Transpose of tree_fill, top-down: each tree row's gradient is split equally among its children
// (added to their rows). Same validation as tree_fill.
template <typename F>
int64_t tree_unfill(F* grad, int64_t N, int64_t T, int64_t C, const int64_t* order, const int64_t* offsets,
                    int levels, const int64_t* children, const int64_t* counts);

// cols (n, K * C) <- vals rows (n_vals, C): cols[i, j*C + c] = vals[table[i, j], c] for the (n, K)
// table. Out-of-range entries are counted and their columns zeroed.
template <typename F>
int64_t gather_rows(const F* vals, int64_t n_vals, int64_t C, const int64_t* table, int64_t K, int64_t n,
                    F* cols);

// Transpose of gather_rows: grad_vals[table[i, j], c] += grad_cols[i, j*C + c] for the (n, K)
// table. Threads split the channels, so no two threads write the same value. Out-of-range
// entries are counted and skipped.
template <typename F>
int64_t scatter_add_rows(const F* grad_cols, int64_t C, const int64_t* table, int64_t K, int64_t n, int64_t n_vals,
                         F* grad_vals);

// Max pooling: out[i, c] = max_j x[table[i, j], c] over the valid (>= 0) entries of the (M, 4)
// table (x has n_x rows), argmax[i, c] = that input row (the first one on ties). NaN propagates as
// in torch: a window holding a NaN gives NaN, and argmax is its first NaN. Backward: grad_x[argmax[i, c], c] +=
// grad_out[i, c]. Each input row must feed at most one output row.
template <typename F>
int64_t pool_forward(const F* x, int64_t n_x, int64_t C, const int64_t* table, int64_t M, F* out,
                     int64_t* argmax);
template <typename F>
int64_t pool_backward(const F* grad_out, int64_t C, const int64_t* argmax, int64_t M, int64_t n_x,
                      F* grad_x);

}  // namespace aprops

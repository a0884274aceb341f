// Sparse APR structures and the index tables of the APRNet operations, in time and memory
// proportional to the number of particles (up to a log factor): no dense H x W (or per-level) map.
//
// A sorted Structure (particles and tree nodes sorted by (level, y, x)) is searched through a
// RowIndex: for every level, where each cell row starts in the particle and tree arrays (O(rows)
// per level, O(H) in all), and a binary search along the row (as LibAPR's per-row access does).
// Tables are int32 rows of a value array [particles (N); tree nodes (T); zero row], local to one APR.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "apr_core.hpp"

namespace aprtables {

using aprcore::CellView;
using aprcore::Geometry;
using aprcore::Structure;

// A sorted APR structure in 2D or 3D, by pointers (no copy): particles and tree nodes sorted by
// (level, z, y, x); z and tree_z null in 2D (one plane, Z = 1). The cells of level l are listed row by
// row, row (z, y) = z * ny(l) + y, and along x within a row. The dimension is this parameter: the
// tables below are one code path for both.
struct SortedView {
    int level_min = 1, level_max = 2;
    int64_t Z = 1, Y = 0, X = 0;  // the image's (H, W) is (Y, X)
    int64_t N = 0, T = 0;
    const int8_t* level = nullptr;
    const int32_t *z = nullptr, *y = nullptr, *x = nullptr;
    const int8_t* tree_level = nullptr;
    const int32_t *tree_z = nullptr, *tree_y = nullptr, *tree_x = nullptr;
    // Cells of level l along an axis of n pixels / voxels (cells that intersect the image).
    int64_t n_at(int l, int64_t n) const { return (n + (int64_t(1) << (level_max - l)) - 1) >> (level_max - l); }
    int64_t nz(int l) const { return z ? n_at(l, Z) : 1; }
    int64_t ny(int l) const { return n_at(l, Y); }
    int64_t nx(int l) const { return n_at(l, X); }
    int64_t rows(int l) const { return nz(l) * ny(l); }
    static int64_t row(int64_t zz, int64_t yy, int64_t ny) { return zz * ny + yy; }  // ny = ny(l)
};

// Where each cell row of each level starts in a sorted structure's particle and tree arrays:
// particles of level l, row r are [prow[l][r], prow[l][r + 1]) (absolute indices), tree nodes
// likewise with trow. Levels below level_min have empty vectors.
struct RowIndex {
    std::vector<std::vector<int64_t>> prow, trow;
};
RowIndex row_index(const SortedView& v);

// Row of the value array holding level-l cell (z, y, x) (z = 0 in 2D): the particle there (index),
// the tree node there (N + index), else the coarser particle covering it; `zero` (N + T) outside the
// image. Returns -1 only if the structure does not cover the cell (not an APR).
int64_t value_row(const SortedView& v, const RowIndex& ri, int l, int64_t z, int64_t y, int64_t x);

// Sorted structure (particles, tree of their ancestors, parent indices) of particle cells in any
// order. Returns false with `error` set unless the cells partition the image (cells outside the
// image, duplicates, overlaps, gaps). O(n log n) time, O(n) memory.
bool structure_from_cells(const CellView& v, Structure& out, std::string& error);

// Max pooling of an APR: the particles of its finest level present (`top` > level_min) merge into
// their parent cells (the tree nodes of level top - 1 become particles), the others are kept.
// Derived from the parent structure in O(N + T). `table` (M, 4): for each pooled particle the input
// particle rows it pools (a kept particle: itself), -1 padded.
void pool_structure(const Structure& s, Structure& out, std::vector<int32_t>& table);

// Children (T, 4) of every tree node as value rows (-1 padded) and their counts (T).
void child_table(const Structure& s, int32_t* children, int32_t* counts);

// Neighbourhood table (N, k^d) of value rows: for particle p at level l and offset (dz, dy, dx) in
// [-k/2, k/2]^d (row-major; no dz in 2D), value_row(l, z + dz, y + dy, x + dx). Returns the number of
// entries the structure does not cover (0 for an APR).
int64_t neighbour_table(const SortedView& v, int k, int32_t* table);

}  // namespace aprtables

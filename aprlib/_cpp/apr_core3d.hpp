// APR formation of 3D volumes (LibAPR's pipeline, as in apr_core.hpp for 2D).
//
// Volumes are row-major (Z, Y, X) float32: voxel (z, y, x) at index (z * Y + y) * X + x.
// Plain C++17 + OpenMP, no Python objects; callers (the bindings) validate shapes and parameters.
#pragma once
#include <cstdint>
#include <vector>

#include "apr_core.hpp"

namespace aprcore {

// Level geometry of a Z x Y x X volume: the domain is padded to 2^level_max per side;
// level_max = max(ceil(log2(max(Z, Y, X))), 2), level_min = 1 (the 2D rule of make_geometry with
// the third axis; LibAPR's GenInfo takes ceil(log2) of the largest of its three dimensions too).
struct Geometry3 {
    int64_t Z = 0, Y = 0, X = 0;
    int level_min = 1, level_max = 2;
    // Cells of level l along an axis of n voxels (cells that intersect the volume).
    int64_t n_at(int l, int64_t n) const { return (n + (int64_t(1) << (level_max - l)) - 1) >> (level_max - l); }
    int64_t nz(int l) const { return n_at(l, Z); }
    int64_t ny(int l) const { return n_at(l, Y); }
    int64_t nx(int l) const { return n_at(l, X); }
};
Geometry3 make_geometry3(int64_t Z, int64_t Y, int64_t X);

// Particle cells of a volume and the tree of their ancestors, both sorted by (level, z, y, x).
struct Structure3 {
    Geometry3 g;
    std::vector<int64_t> level_offsets;  // size level_max + 2; particles of level l: [off[l], off[l+1])
    Buffer<int8_t> level;
    Buffer<int32_t> z, y, x;             // cell indices at their level
    std::vector<int64_t> tree_offsets;   // same layout for tree nodes (levels level_min..level_max-1)
    Buffer<int8_t> tree_level;
    Buffer<int32_t> tree_z, tree_y, tree_x;
    Buffer<int64_t> parent;              // tree index of each particle's parent (-1 at level_min)
    Buffer<int64_t> tree_parent;         // tree index of each tree node's parent (-1 at level_min)
};

// Particle cells of the float32 volume img (Z, Y, X) by LibAPR's pipeline in 3D:
// smoothing B-spline along x, y, z with LibAPR's boundary conditions (whole-sample mirroring; lines
// shorter than LibAPR's initialisation window take its own initialisation; an axis of <= 2 voxels
// is not smoothed) ->
// |grad| by central differences (replicated borders), max over 2x2x2 blocks -> the half-resolution
// volume (2x2x2 means; with smoothing, the spline evaluated there) -> thresholds -> local intensity
// scale (LibAPR's: mirror padding by 3, truncated box means of width 3 then 7 along each axis of
// more than 3 half-resolution samples, c = 26.1256 with three such axes, 28.7069 with two, 31.2843
// with one, mean - min when none) -> required levels -> pulling scheme (LibAPR's 27-neighbour
// scheme, or the minimal graded set) -> particle cells, tree nodes (the ancestors of the particles)
// and parent indices.
Structure3 form_structure3d(const float* img, int64_t Z, int64_t Y, int64_t X, const Params& p);

// The sorted particle cells and tree nodes of the split masks split[l] (nz(l) x ny(l) x nx(l) flags, l
// in [level_min, level_max]; split[level_max] may be null: no voxel is split) of geometry g, listed
// row by row (rows (z, y)); split must hold level_max + 1 entries. With Z = 1 it builds 2D
// structures too (rows y).
Structure3 build_structure3(const std::vector<const uint8_t*>& split, const Geometry3& g);

// Mean of the voxels of each particle cell (clipped to the volume), in the order of s: out (N,).
void cell_means3d(const Structure3& s, const float* img, float* out);

}  // namespace aprcore

"""The geometry of particle cells in any dimension (2D images, 3D volumes), in numpy: the level range,
the sorted structure (particles and the tree of their ancestors) of a set of cells, and the index
tables of the APRNet operations (children, neighbourhoods, pooling), the voxel -> particle map, cell
means and reconstruction.

Conventions (those of :mod:`.structure`, with the dimension ``d`` a parameter): ``shape`` is the image's
``(H, W)`` or the volume's ``(Z, Y, X)`` in pixels / voxels; ``L = level_max = max(ceil(log2(max(shape))),
2)``, ``level_min = 1``. A cell at level ``l`` with integer indices ``c = (c_0, ..., c_{d-1})`` covers
pixels ``[c_i 2^(L-l), (c_i + 1) 2^(L-l))`` along axis ``i``, clipped to the image; level ``l`` has
``ceil(shape_i / 2^(L-l))`` cells along axis ``i``. Particles and tree nodes are sorted by (level, c_0,
..., c_{d-1}). Value rows: ``[particles (N); tree nodes (T); zero row]``, as in :mod:`aprlib.ops.plans`.

Every function here costs time and memory proportional to the particles (times a log factor for the
sorted-key searches), except the voxel maps (:func:`owner_map`, :func:`cell_means`, :func:`reconstruct`),
which cost what the image costs. aprlib's 2D APRs use the C++ kernels of ``aprlib._core`` for the same
tables, and its 3D APRs the C++ neighbourhood table (``_core.neighbour_table3d``, the 2D kernel's code
path with a z axis); ``tests/test_cells.py`` checks that both give identical tables (in 2D all of them,
in 3D the neighbourhoods), so this module is their oracle.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["level_range", "level_shape", "cell_keys", "Cells", "structure_from_cells", "child_table",
           "neighbour_table", "pool_structure", "owner_map", "cell_means", "reconstruct"]

_BITS_MAX = 62  # cell keys are int64: level and coordinates packed in at most 62 bits


def level_range(shape) -> tuple[int, int]:
    """(level_min, level_max) of an image or volume of ``shape``: the one rule of ``_core.level_range``
    in any dimension, ``level_max = max(ceil(log2(max(shape))), 2)``, ``level_min = 1``."""
    m = max(int(s) for s in shape)
    return 1, max((m - 1).bit_length(), 2)


def level_shape(shape, level_max: int, level: int) -> tuple[int, ...]:
    """Cells along each axis at ``level``: ceil(shape_i / 2^(level_max - level))."""
    step = level_max - int(level)
    return tuple(-(-int(s) >> step) for s in shape)


def cell_keys(level: np.ndarray, coords, level_max: int) -> np.ndarray:
    """int64 keys of cells, ordered as (level, c_0, ..., c_{d-1}): ``level`` and each coordinate packed
    in ``level_max + 1`` bits (so the order of keys is the sort order of the structure)."""
    bits = level_max + 1
    if (len(coords) + 1) * bits > _BITS_MAX:
        raise ValueError(f"cells of level_max {level_max} in {len(coords)}D do not fit int64 keys")
    k = np.asarray(level, np.int64).copy()
    for c in coords:
        k <<= bits
        k |= np.asarray(c, np.int64)
    return k


class Cells:
    """A sorted APR structure in any dimension (numpy arrays): ``level`` (N,) int8, ``coords`` (d arrays
    (N,) int32), ``parent`` (N,) int64 (tree index, -1 at level_min), ``tree_level`` (T,) int8,
    ``tree_coords`` (d arrays (T,) int32), ``tree_parent`` (T,) int64; ``shape`` and the level range."""

    def __init__(self, shape, level, coords, parent, tree_level, tree_coords, tree_parent):
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)
        self.level_min, self.level_max = level_range(self.shape)
        self.level, self.coords, self.parent = level, tuple(coords), parent
        self.tree_level, self.tree_coords, self.tree_parent = tree_level, tuple(tree_coords), tree_parent

    @property
    def n(self) -> int:
        return len(self.level)

    @property
    def t(self) -> int:
        return len(self.tree_level)

    def keys(self) -> np.ndarray:
        return cell_keys(self.level, self.coords, self.level_max)

    def tree_keys(self) -> np.ndarray:
        return cell_keys(self.tree_level, self.tree_coords, self.level_max)


def _find(sorted_keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Index of each query key in ``sorted_keys``, -1 where absent."""
    if len(sorted_keys) == 0:
        return np.full(len(query), -1, np.int64)
    i = np.searchsorted(sorted_keys, query)
    i = np.minimum(i, len(sorted_keys) - 1)
    return np.where(sorted_keys[i] == query, i, -1).astype(np.int64)


def structure_from_cells(shape, level, coords, check: bool = True) -> Cells:
    """The sorted structure of particle cells given in any order: particles sorted by (level, coords),
    the tree of all their ancestors down to level_min, the parent indices.

    With ``check`` (the default), ValueError ("not a valid APR: ...") unless the cells partition the
    image: levels in [level_min, level_max], cells inside the image, no duplicates, no cell inside
    another, every pixel covered."""
    shape = tuple(int(s) for s in shape)
    d = len(shape)
    lmin, lmax = level_range(shape)
    level = np.asarray(level).astype(np.int64)
    coords = [np.asarray(c).astype(np.int64) for c in coords]
    if len(coords) != d:
        raise ValueError(f"a {d}D APR needs {d} coordinate arrays, got {len(coords)}")
    n = len(level)
    if n == 0:
        raise ValueError("an APR needs at least one particle")
    if any(len(c) != n for c in coords):
        raise ValueError("level and the coordinate arrays must have the same length")
    if check:
        if level.min() < lmin or level.max() > lmax:
            raise ValueError(f"not a valid APR: levels must lie in [{lmin}, {lmax}], got [{level.min()}, {level.max()}]")
        for axis, c in enumerate(coords):
            size = -(-shape[axis] >> (lmax - level))  # cells along the axis at each particle's level
            if np.any(c < 0) or np.any(c >= size):
                raise ValueError(f"not a valid APR: cells outside the image along axis {axis}")
    keys = cell_keys(level, coords, lmax)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    level = level[order]
    coords = [c[order] for c in coords]
    if check:
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError("not a valid APR: duplicate particle cells")
        # no particle inside another: no ancestor of a particle is a particle
        for up in range(1, lmax - lmin + 1):
            fine = level - up >= lmin
            if not fine.any():
                break
            anc = cell_keys(level[fine] - up, [c[fine] >> up for c in coords], lmax)
            if np.any(_find(keys, anc) >= 0):
                raise ValueError("not a valid APR: overlapping particle cells (a cell inside another)")
        # disjoint cells cover the image iff their clipped volumes add up to the image's
        covered = np.ones(n, np.int64)
        for axis, c in enumerate(coords):
            side = np.left_shift(1, lmax - level)
            covered *= np.minimum((c + 1) * side, shape[axis]) - c * side
        if int(covered.sum()) != math.prod(shape):
            raise ValueError("not a valid APR: the particle cells leave gaps")
    # the tree: all ancestors, level by level from the finest, as linear indices in each level's grid
    starts = np.searchsorted(level, np.arange(lmax + 2))
    tree_lin = {}  # level -> sorted linear indices of its tree nodes
    for lev in range(lmax, lmin, -1):  # the parents of the particles and tree nodes of each level
        a, b = starts[lev], starts[lev + 1]
        grid = level_shape(shape, lmax, lev)
        src = [c[a:b] for c in coords]
        if lev in tree_lin:
            tc = np.unravel_index(tree_lin[lev], grid)
            src = [np.concatenate([s_, t_]) for s_, t_ in zip(src, tc)]
        if len(src[0]):
            up = level_shape(shape, lmax, lev - 1)
            tree_lin[lev - 1] = _unique_cells(np.ravel_multi_index([c >> 1 for c in src], up), math.prod(up))
    levels = sorted(tree_lin)
    tree_level = np.concatenate([np.full(len(tree_lin[lv]), lv, np.int64) for lv in levels]) if levels else np.zeros(0, np.int64)
    tree_coords = [np.concatenate(parts) if levels else np.zeros(0, np.int64) for parts in zip(
        *[np.unravel_index(tree_lin[lv], level_shape(shape, lmax, lv)) for lv in levels])] if levels else [
        np.zeros(0, np.int64) for _ in range(d)]
    tstart = dict(zip(levels, np.concatenate([[0], np.cumsum([len(tree_lin[lv]) for lv in levels])])))

    def parents(lev, cs):  # tree indices of the parents of level-lev cells
        up = level_shape(shape, lmax, lev - 1)
        lin = np.ravel_multi_index([c >> 1 for c in cs], up)
        nodes = tree_lin[lev - 1]
        if math.prod(up) <= max(_DENSE_CELLS_PER_LOOKUP * len(lin), 1 << 22):  # a dense rank map
            rank = np.empty(math.prod(up), np.int64)
            rank[nodes] = np.arange(len(nodes))
            return tstart[lev - 1] + rank[lin]
        return tstart[lev - 1] + np.searchsorted(nodes, lin)

    parent = np.full(n, -1, np.int64)
    tree_parent = np.full(len(tree_level), -1, np.int64)
    for lev in range(lmin + 1, lmax + 1):
        a, b = starts[lev], starts[lev + 1]
        if b > a:
            parent[a:b] = parents(lev, [c[a:b] for c in coords])
        if lev in tree_lin:
            t0 = tstart[lev]
            tree_parent[t0:t0 + len(tree_lin[lev])] = parents(lev, np.unravel_index(tree_lin[lev],
                                                                                   level_shape(shape, lmax, lev)))
    return Cells(shape, level.astype(np.int8), [c.astype(np.int32) for c in coords], parent,
                 tree_level.astype(np.int8), [c.astype(np.int32) for c in tree_coords], tree_parent)


#: a level's tree nodes are found on a dense boolean grid (one byte per cell of the level) when the
#: grid has at most this many cells per cell looked up (or fewer than 2^22 cells), else by sorting
_DENSE_CELLS_PER_LOOKUP = 64


def _unique_cells(lin: np.ndarray, grid_cells: int) -> np.ndarray:
    """Sorted unique values of the linear cell indices ``lin`` (in [0, grid_cells))."""
    if grid_cells <= max(_DENSE_CELLS_PER_LOOKUP * len(lin), 1 << 22):
        mark = np.zeros(grid_cells, bool)
        mark[lin] = True
        return np.flatnonzero(mark)
    return np.unique(lin)


def _unpack_keys(keys: np.ndarray, d: int, level_max: int):
    bits = level_max + 1
    mask = (1 << bits) - 1
    coords = []
    k = keys.copy()
    for _ in range(d):
        coords.append(k & mask)
        k >>= bits
    return k, coords[::-1]


def _parent_keys(keys: np.ndarray, d: int, level_max: int) -> np.ndarray:
    """Keys of the parent cells (level - 1, coords >> 1) of cells given by their keys."""
    lv, coords = _unpack_keys(keys, d, level_max)
    return cell_keys(lv - 1, [c >> 1 for c in coords], level_max)


def child_table(s: Cells) -> tuple[np.ndarray, np.ndarray]:
    """Children of each tree node as value rows, (T, 2^d) int32 -1 padded, and counts (T,) int32: the
    child particles in particle order, then the child tree nodes (rows N + t) in tree order."""
    width = 1 << s.ndim
    src_parent = np.concatenate([s.parent, s.tree_parent])
    rows = np.concatenate([np.arange(s.n), s.n + np.arange(s.t)])
    has = src_parent >= 0
    src_parent, rows = src_parent[has], rows[has]
    order = np.argsort(src_parent, kind="stable")
    src_parent, rows = src_parent[order], rows[order]
    counts = np.bincount(src_parent, minlength=s.t).astype(np.int32)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(rows)) - first[src_parent]
    children = np.full((s.t, width), -1, np.int32)
    children[src_parent, slot] = rows
    return children, counts


def neighbour_table(s: Cells, k: int) -> np.ndarray:
    """(N, k^d) int32 value rows of each particle's k^d neighbourhood at its own level, offsets in
    row-major order over (-k//2 .. k//2)^d: the particle there, else the tree node there (row N + t), else
    the coarser particle covering it; the zero row (N + T) outside the image."""
    k = int(k)
    if k < 1 or k % 2 != 1:
        raise ValueError(f"kernel size must be a positive odd integer, got {k}")
    r = k // 2
    n, t, d, lmax = s.n, s.t, s.ndim, s.level_max
    zero = n + t
    keys, tkeys = s.keys(), s.tree_keys()
    level = s.level.astype(np.int64)
    coords = [c.astype(np.int64) for c in s.coords]
    sizes = [-(-s.shape[a] >> (lmax - level)) for a in range(d)]  # cells per axis at each particle's level
    table = np.empty((n, k ** d), np.int32)
    for j, off in enumerate(itertools.product(range(-r, r + 1), repeat=d)):
        c = [coords[a] + off[a] for a in range(d)]
        inside = np.ones(n, bool)
        for a in range(d):
            inside &= (c[a] >= 0) & (c[a] < sizes[a])
        out = np.full(n, zero, np.int64)
        idx = np.flatnonzero(inside)
        lv = level[idx]
        cc = [x[idx] for x in c]
        q = cell_keys(lv, cc, lmax)
        p = _find(keys, q)
        found = p >= 0
        out[idx[found]] = p[found]
        rest = ~found
        tr = _find(tkeys, q[rest])
        out[idx[rest][tr >= 0]] = n + tr[tr >= 0]
        todo = idx[rest][tr < 0]
        lv, cc = lv[rest][tr < 0], [x[rest][tr < 0] for x in cc]
        while len(todo):  # the coarser particle covering the cell
            lv = lv - 1
            cc = [x >> 1 for x in cc]
            p = _find(keys, cell_keys(lv, cc, lmax))
            hit = p >= 0
            out[todo[hit]] = p[hit]
            if np.any(~hit & (lv <= s.level_min)):
                raise ValueError("not a valid APR: a neighbour cell is covered by no particle")
            todo, lv, cc = todo[~hit], lv[~hit], [x[~hit] for x in cc]
        table[:, j] = out
    return table


def pool_structure(s: Cells) -> tuple[Cells, np.ndarray]:
    """Max pooling of an APR: the particles of its finest level present (``top`` > level_min) merge into
    their parent cells (the tree nodes of level top - 1 become particles), the others are kept. Returns
    the pooled structure and its (M, 2^d) int32 table of input particle rows, -1 padded (a kept particle:
    itself; a merged cell: its children in particle order). When top = level_min nothing is pooled and
    the structure is returned as it is."""
    width = 1 << s.ndim
    top = int(s.level[-1])
    if top <= s.level_min:
        table = np.full((s.n, width), -1, np.int32)
        table[:, 0] = np.arange(s.n)
        return s, table
    kept = np.flatnonzero(s.level < top)
    fine = np.flatnonzero(s.level == top)
    merged = np.flatnonzero(s.tree_level == top - 1)
    level = np.concatenate([s.level[kept], s.tree_level[merged]]).astype(np.int64)
    coords = [np.concatenate([c[kept], tc[merged]]) for c, tc in zip(s.coords, s.tree_coords)]
    pooled = structure_from_cells(s.shape, level, coords, check=False)
    rows = np.full((len(level), width), -1, np.int64)
    rows[:len(kept), 0] = kept
    # children of each merged tree node: the particles of level top whose parent it is, in order
    slot_of_tree = np.full(s.t, -1, np.int64)
    slot_of_tree[merged] = len(kept) + np.arange(len(merged))
    owner = slot_of_tree[s.parent[fine]]
    order = np.argsort(owner, kind="stable")
    owner, kids = owner[order], fine[order]
    counts = np.bincount(owner - len(kept), minlength=len(merged))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows[owner, np.arange(len(kids)) - first[owner - len(kept)]] = kids
    # the unsorted rows (kept, then merged) in the pooled structure's sorted order
    keys_unsorted = cell_keys(level, coords, s.level_max)
    perm = np.argsort(keys_unsorted, kind="stable")
    return pooled, rows[perm].astype(np.int32)


def owner_map(s: Cells) -> np.ndarray:
    """``shape`` int64 array: the index of the particle whose cell holds each pixel / voxel. O(pixels)."""
    out = np.full(s.shape, -1, np.int64)
    lmax = s.level_max
    for lev in np.unique(s.level):
        lev = int(lev)
        step = 1 << (lmax - lev)
        grid_shape = level_shape(s.shape, lmax, lev)
        grid = np.full(grid_shape, -1, np.int64)
        sel = np.flatnonzero(s.level == lev)
        grid[tuple(c[sel] for c in s.coords)] = sel
        full = grid
        for a in range(s.ndim):
            full = np.repeat(full, step, axis=a)
        full = full[tuple(slice(0, n) for n in s.shape)]
        np.copyto(out, full, where=full >= 0)
    return out


def cell_means(s: Cells, image: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """Mean of ``image`` (shape + (C,)) over each particle cell -> (N, C) float32 (sums in float64)."""
    owner = owner_map(s) if owner is None else owner
    flat = owner.ravel()
    counts = np.bincount(flat, minlength=s.n).astype(np.float64)
    img = image.reshape(flat.size, -1)
    out = np.empty((s.n, img.shape[1]), np.float32)
    for c in range(img.shape[1]):
        out[:, c] = np.bincount(flat, weights=img[:, c].astype(np.float64), minlength=s.n) / counts
    return out


def reconstruct(s: Cells, values: np.ndarray, owner: np.ndarray | None = None) -> np.ndarray:
    """Piecewise-constant image (shape + (C,)) from particle values (N, C)."""
    owner = owner_map(s) if owner is None else owner
    return values[owner]

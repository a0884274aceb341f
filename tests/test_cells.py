"""The dimension-generic geometry of :mod:`aprlib.apr.cells`: in 2D it gives exactly the C++ kernels'
structure and tables; in 3D its neighbourhood tables equal the C++ kernel's, and the tables are checked
against their definitions on dense voxel maps."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import aprlib
from aprlib.apr import cells


def random_cells(shape, seed: int, p_split: float = 0.5):
    """Particle cells (level, coords) of a random partition of ``shape``: from level_min, each cell
    inside the image splits into its 2^d children with probability ``p_split`` until level_max."""
    rng = np.random.default_rng(seed)
    lmin, lmax = cells.level_range(shape)
    d = len(shape)
    grid = cells.level_shape(shape, lmax, lmin)
    cur = [np.array(c).ravel() for c in np.meshgrid(*[np.arange(g) for g in grid], indexing="ij")]
    levels, coords = [], [[] for _ in range(d)]
    for lev in range(lmin, lmax + 1):
        split = rng.random(len(cur[0])) < p_split if lev < lmax else np.zeros(len(cur[0]), bool)
        levels.append(np.full((~split).sum(), lev))
        for a in range(d):
            coords[a].append(cur[a][~split])
        nxt = [[] for _ in range(d)]
        size = cells.level_shape(shape, lmax, lev + 1) if lev < lmax else None
        for off in itertools.product((0, 1), repeat=d):
            c = [2 * cur[a][split] + off[a] for a in range(d)]
            ok = np.ones(len(c[0]), bool)
            for a in range(d):
                ok &= c[a] < size[a] if size else False
            for a in range(d):
                nxt[a].append(c[a][ok])
        cur = [np.concatenate(x) if x else np.zeros(0, np.int64) for x in nxt]
    return np.concatenate(levels), [np.concatenate(c) for c in coords]


def dense_apr(shape):
    """The APR of ``shape`` whose particles are all at the finest level (one per pixel / voxel)."""
    lmax = cells.level_range(shape)[1]
    coords = [c.ravel() for c in np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")]
    return aprlib.APR.from_cells(shape, np.full(len(coords[0]), lmax), coords)


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), seed=st.integers(0, 2**31), p=st.floats(0.2, 0.8))
def test_generic_tables_equal_the_cpp_kernels_in_2d(h, w, seed, p):
    level, (y, x) = random_cells((h, w), seed, p)
    ref = aprlib.APR.from_structure(aprlib._core.structure_from_cells(level.astype(np.int8), y.astype(np.int32),
                                                                      x.astype(np.int32), h, w))
    gen = cells.structure_from_cells((h, w), level, [y, x])
    for a, b in [(ref.level, gen.level), (ref.y, gen.coords[0]), (ref.x, gen.coords[1]), (ref.parent, gen.parent),
                 (ref.tree_level, gen.tree_level), (ref.tree_y, gen.tree_coords[0]), (ref.tree_x, gen.tree_coords[1]),
                 (ref.tree_parent, gen.tree_parent)]:
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref.children(), cells.child_table(gen)):
        np.testing.assert_array_equal(a, b)
    for k in (1, 3, 5):
        np.testing.assert_array_equal(ref.neighbourhood(k), cells.neighbour_table(gen, k))
    pooled, table = ref.pooled()
    gp, gt = cells.pool_structure(gen)
    np.testing.assert_array_equal(table, gt)
    np.testing.assert_array_equal(pooled.level, gp.level)
    np.testing.assert_array_equal(pooled.y, gp.coords[0])
    np.testing.assert_array_equal(pooled.tree_parent, gp.tree_parent)
    np.testing.assert_array_equal(ref.pixel_owner(), cells.owner_map(gen))


def _table(apr, k, **change):
    """``_core.neighbour_table`` (2D) or ``neighbour_table3d`` of an APR's arrays, some of them replaced by
    ``change``."""
    if apr.ndim == 3:
        args = dict(level=apr.level, z=apr.z, y=apr.y, x=apr.x, tree_level=apr.tree_level, tree_z=apr.tree_z,
                    tree_y=apr.tree_y, tree_x=apr.tree_x, depth=apr.shape[0], height=apr.shape[1],
                    width=apr.shape[2], k=k)
        return aprlib._core.neighbour_table3d(**{**args, **change})
    args = dict(level=apr.level, y=apr.y, x=apr.x, parent=apr.parent, tree_level=apr.tree_level, tree_y=apr.tree_y,
                tree_x=apr.tree_x, tree_parent=apr.tree_parent, height=apr.height, width=apr.width, k=k)
    return aprlib._core.neighbour_table(**{**args, **change})


@settings(max_examples=25, deadline=None)
@given(shape=st.tuples(st.integers(1, 18), st.integers(1, 18), st.integers(1, 18)), seed=st.integers(0, 2**31),
       p=st.floats(0.2, 0.8))
def test_cpp_neighbourhoods_equal_the_generic_ones_in_3d(shape, seed, p):
    level, coords = random_cells(shape, seed, p)
    apr = aprlib.APR.from_cells(shape, level, coords)
    gen = apr._cell_structure()
    for k in (1, 3, 5):
        table = apr.neighbourhood(k)  # the C++ kernel
        assert table.dtype == np.int32 and table.shape == (apr.n_particles, k ** 3)
        np.testing.assert_array_equal(table, cells.neighbour_table(gen, k))


@pytest.mark.parametrize("shape", [(13, 11), (6, 7, 5)], ids=["2d", "3d"])
def test_cpp_neighbourhoods_check_their_input(shape):
    """Both dimensions go through one checked view of the arrays (``sorted_view`` in bindings_ops.cpp)."""
    level, coords = random_cells(shape, 3, 0.6)
    apr = aprlib.APR.from_cells(shape, level, coords)
    assert apr.n_tree > 1 and len(set(apr.level)) > 1
    np.testing.assert_array_equal(_table(apr, 3), apr.neighbourhood(3))
    np.testing.assert_array_equal(_table(apr, 3), cells.neighbour_table(apr._cell_structure(), 3))
    space = "volume" if apr.ndim == 3 else "image"
    axes = ("z", "y", "x")[3 - apr.ndim:]
    with pytest.raises(ValueError, match="positive odd"):
        _table(apr, 4)
    with pytest.raises(ValueError, match=f"{axes[0]} must be 1D of length"):
        _table(apr, 3, **{axes[0]: getattr(apr, axes[0])[:-1]})
    if apr.ndim == 2:
        with pytest.raises(ValueError, match="parent must be 1D of length"):
            _table(apr, 3, parent=apr.parent[:-1])
    x = apr.x.copy()
    x[-1] = 1 << 20
    with pytest.raises(ValueError, match=f"outside the {space}"):
        _table(apr, 3, x=x)
    lv = apr.level.copy()
    lv[0] = apr.level_max + 1
    with pytest.raises(ValueError, match="level"):
        _table(apr, 3, level=lv)
    with pytest.raises(ValueError, match="sorted by"):
        _table(apr, 3, level=apr.level[::-1].copy(), **{a: getattr(apr, a)[::-1].copy() for a in axes})
    with pytest.raises(ValueError, match="tree node .* level"):
        _table(apr, 3, tree_level=np.full_like(apr.tree_level, apr.level_max))
    with pytest.raises(TypeError):
        _table(apr, 3, **{axes[0]: getattr(apr, axes[0]).astype(np.int64)})
    with pytest.raises(ValueError, match="at least one particle"):
        _table(apr, 3, level=apr.level[:0], **{a: getattr(apr, a)[:0] for a in axes},
               **({"parent": apr.parent[:0]} if apr.ndim == 2 else {}))
    # cells that leave a gap: a particle removed is a neighbour no particle covers
    keep = np.ones(apr.n_particles, bool)
    keep[apr.n_particles // 2] = False
    with pytest.raises(ValueError, match=f"do not cover the {space}"):
        _table(apr, 3, level=apr.level[keep], **{a: getattr(apr, a)[keep] for a in axes},
               **({"parent": apr.parent[keep]} if apr.ndim == 2 else {}))


def _value_row_dense(apr, lev, c):
    """Reference value row of the level-``lev`` cell ``c`` by its definition, on dense maps."""
    lmax = apr.level_max
    size = cells.level_shape(apr.shape, lmax, lev)
    if any(ci < 0 or ci >= s for ci, s in zip(c, size)):
        return apr.n_particles + apr.n_tree
    for i in range(apr.n_particles):
        if apr.level[i] == lev and tuple(int(v[i]) for v in apr.coords) == tuple(c):
            return i
    for t in range(apr.n_tree):
        if apr.tree_level[t] == lev and tuple(int(v[t]) for v in apr.tree_coords) == tuple(c):
            return apr.n_particles + t
    # the particle covering the cell's first voxel
    step = 1 << (lmax - lev)
    return int(apr.pixel_owner()[tuple(ci * step for ci in c)])


@pytest.mark.parametrize("shape,seed", [((5, 6, 7), 0), ((8, 8, 8), 1), ((3, 9, 4), 2), ((1, 1, 1), 3)])
def test_3d_tables_by_their_definitions(shape, seed):
    level, coords = random_cells(shape, seed, 0.5)
    apr = aprlib.APR.from_cells(shape, level, coords)
    assert apr.ndim == 3 and apr.shape == shape
    # the cells partition the volume: every voxel owned once, by a cell that holds it
    owner = apr.pixel_owner()
    assert owner.min() >= 0
    for vox in itertools.product(*[range(s) for s in shape]):
        i = owner[vox]
        step = 1 << (apr.level_max - int(apr.level[i]))
        assert all(int(c[i]) == v // step for c, v in zip(apr.coords, vox))
    for k in (1, 3):
        table = apr.neighbourhood(k)
        assert table.shape == (apr.n_particles, k ** 3)
        r = k // 2
        for i in range(0, apr.n_particles, max(1, apr.n_particles // 40)):
            for j, off in enumerate(itertools.product(range(-r, r + 1), repeat=3)):
                c = [int(v[i]) + o for v, o in zip(apr.coords, off)]
                assert table[i, j] == _value_row_dense(apr, int(apr.level[i]), c)
    children, counts = apr.children()
    assert children.shape == (apr.n_tree, 8)
    for t in range(apr.n_tree):
        kids = children[t, :counts[t]]
        assert np.all(children[t, counts[t]:] == -1)
        for v in kids:
            parent = apr.parent[v] if v < apr.n_particles else apr.tree_parent[v - apr.n_particles]
            assert parent == t
    assert counts.sum() == (apr.parent >= 0).sum() + (apr.tree_parent >= 0).sum()


def test_3d_pooling_merges_the_finest_level():
    level, coords = random_cells((6, 7, 8), 4, 0.6)
    apr = aprlib.APR.from_cells((6, 7, 8), level, coords)
    pooled, table = apr.pooled()
    top = int(apr.level.max())
    assert int(pooled.level.max()) == top - 1
    assert table.shape == (pooled.n_particles, 8)
    used = table[table >= 0]
    assert np.array_equal(np.sort(used), np.arange(apr.n_particles))  # each input pooled exactly once
    for m in range(pooled.n_particles):
        for i in table[m][table[m] >= 0]:
            up = int(pooled.level[m]) - int(apr.level[i])
            assert up in (0, -1)
            assert all(int(c[i]) >> (-up) == int(pc[m]) for c, pc in zip(apr.coords, pooled.coords))


def test_3d_all_finest_apr_is_the_voxel_volume():
    rng = np.random.default_rng(0)
    vol = rng.random((4, 5, 6)).astype(np.float32)
    apr = dense_apr(vol.shape)
    assert apr.n_particles == vol.size and apr.computational_ratio == 1.0
    vals = apr.sample(vol)
    np.testing.assert_array_equal(apr.reconstruct(vals), vol)
    np.testing.assert_array_equal(vals, vol.ravel())  # sorted (level, z, y, x) = C order


def test_3d_cell_means_and_reconstruction():
    level, coords = random_cells((7, 6, 5), 5, 0.5)
    apr = aprlib.APR.from_cells((7, 6, 5), level, coords)
    vol = np.random.default_rng(1).random((7, 6, 5, 2)).astype(np.float32)
    means = apr.sample(vol)
    owner = apr.pixel_owner()
    for i in range(0, apr.n_particles, 7):
        np.testing.assert_allclose(means[i], vol[owner == i].mean(0), rtol=1e-6)
    rec = apr.reconstruct(means)
    assert rec.shape == vol.shape
    np.testing.assert_array_equal(rec[owner == 3], np.broadcast_to(means[3], rec[owner == 3].shape))
    tm = apr.tree_means(means[:, 0])
    assert tm.shape == (apr.n_tree,)


def test_3d_apr_round_trips_through_save_and_load(tmp_path):
    level, coords = random_cells((5, 4, 6), 6)
    apr = aprlib.APR.from_cells((5, 4, 6), level, coords, intensities=np.arange(len(level), dtype=np.float32))
    apr.save(tmp_path / "a.npz")
    back = aprlib.APR.load(tmp_path / "a.npz")
    assert back.ndim == 3 and back.shape == apr.shape
    for name in ("level", "z", "y", "x", "parent", "tree_z", "tree_parent", "intensities"):
        np.testing.assert_array_equal(getattr(back, name), getattr(apr, name))


def test_from_cells_reorders_the_intensities_with_the_cells():
    level, coords = random_cells((6, 5, 4), 7)
    perm = np.random.default_rng(0).permutation(len(level))
    values = np.arange(len(level), dtype=np.float32)
    a = aprlib.APR.from_cells((6, 5, 4), level, coords, intensities=values)
    b = aprlib.APR.from_cells((6, 5, 4), level[perm], [c[perm] for c in coords], intensities=values[perm])
    np.testing.assert_array_equal(a.intensities, b.intensities)


@pytest.mark.parametrize("change,message", [
    ("duplicate", "duplicate"), ("outside", "outside the image"), ("gap", "gaps"), ("overlap", "overlapping"),
    ("level", "levels must lie")])
def test_3d_cells_that_are_not_an_apr_are_refused(change, message):
    level, coords = random_cells((4, 4, 4), 8, 0.5)
    level, coords = level.copy(), [c.copy() for c in coords]
    if change == "duplicate":
        level, coords = np.append(level, level[0]), [np.append(c, c[0]) for c in coords]
    elif change == "outside":
        coords[0][0] = 99
    elif change == "gap":
        level, coords = level[1:], [c[1:] for c in coords]
    elif change == "overlap":
        level, coords = np.append(level, 1), [np.append(c, 0) for c in coords]
    else:
        level[0] = 0
    with pytest.raises(ValueError, match=message):
        aprlib.APR.from_cells((4, 4, 4), level, coords)


def test_3d_apr_needs_all_three_3d_fields():
    with pytest.raises(ValueError, match="depth, z and tree_z"):
        aprlib.APR(2, 2, [2], [0], [0], [-1], [], [], [], [], depth=2)

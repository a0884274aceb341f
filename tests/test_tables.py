"""Sparse APR structures and index tables (``aprlib._core``: structure_from_cells, neighbour_table,
child_table, pool_structure, gather_segments / scatter_add_segments) against dense brute-force
references on random partitions, and an APR on a canvas far too large for any dense map."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aprlib import _core
from aprlib.apr import APR, APRBatch, apr_children, apr_neighbours, apr_pooled
from aprlib.models import apr_network
from aprlib.nn.prepare import prepare
from aprlib.ops import conv_plan


def level_max(H, W):
    return max(int(np.ceil(np.log2(max(H, W)))), 2)


def quadtree_cells(H, W, split) -> np.ndarray:
    """Leaves (level, y, x) of the quadtree over an H x W image (cells that intersect it) whose cell
    (lv, y, x) is split where ``split(lv, y, x, size)`` is true (size: its side in pixels)."""
    L = level_max(H, W)
    cells = []

    def rec(lv, y, x):
        s = 2 ** (L - lv)
        if y * s >= H or x * s >= W:
            return
        if lv < L and split(lv, y, x, s):
            for dy in (0, 1):
                for dx in (0, 1):
                    rec(lv + 1, 2 * y + dy, 2 * x + dx)
        else:
            cells.append((lv, y, x))

    for y in (0, 1):
        for x in (0, 1):
            rec(1, y, x)
    return np.array(cells, np.int64)


def random_cells(H, W, seed, p_split=0.55):
    """Leaves of a random quadtree over an H x W image (cells that intersect it), unsorted."""
    rng = np.random.default_rng(seed)
    cells = quadtree_cells(H, W, lambda lv, y, x, s: rng.random() < p_split)
    rng.shuffle(cells)
    return cells


def apr_of(cells, H, W) -> APR:
    s = _core.structure_from_cells(cells[:, 0].astype(np.int8), cells[:, 1].astype(np.int32),
                                   cells[:, 2].astype(np.int32), H, W)
    return APR.from_structure(s)


shapes = st.sampled_from([(4, 4), (5, 7), (20, 30), (33, 17), (64, 64)])


@settings(max_examples=25, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_structure_from_cells_sorts_and_links_any_partition(shape, seed):
    H, W = shape
    cells = random_cells(H, W, seed)
    apr = apr_of(cells, H, W)  # validates against the same function: check it independently here
    order = np.lexsort((cells[:, 2], cells[:, 1], cells[:, 0]))
    np.testing.assert_array_equal(apr.level, cells[order, 0])
    np.testing.assert_array_equal(apr.y, cells[order, 1])
    np.testing.assert_array_equal(apr.x, cells[order, 2])
    # the tree is exactly the set of strict ancestors, sorted, and parents point at them
    anc = set()
    for lv, y, x in cells.tolist():
        while lv > 1:
            lv, y, x = lv - 1, y >> 1, x >> 1
            anc.add((lv, y, x))
    tree = sorted(anc)
    assert list(zip(apr.tree_level.tolist(), apr.tree_y.tolist(), apr.tree_x.tolist())) == tree
    pos = {c: i for i, c in enumerate(tree)}
    for i in range(apr.n_particles):
        lv, y, x = int(apr.level[i]), int(apr.y[i]), int(apr.x[i])
        assert apr.parent[i] == (pos[(lv - 1, y >> 1, x >> 1)] if lv > 1 else -1)
    for i, (lv, y, x) in enumerate(tree):
        assert apr.tree_parent[i] == (pos[(lv - 1, y >> 1, x >> 1)] if lv > 1 else -1)


def test_structure_from_cells_names_what_is_wrong():
    H = W = 16
    cells = random_cells(H, W, seed=3)
    fine = cells[np.argmax(cells[:, 0])]
    with pytest.raises(ValueError, match="appears twice"):
        apr_of(np.vstack([cells, fine]), H, W)
    with pytest.raises(ValueError, match="gap"):
        apr_of(np.delete(cells, np.argmax(cells[:, 0]), 0), H, W)
    parent = fine.copy()
    parent[0] -= 1
    parent[1:] >>= 1
    with pytest.raises(ValueError, match="overlap"):
        apr_of(np.vstack([cells, parent]), H, W)
    with pytest.raises(ValueError, match="outside"):
        apr_of(np.vstack([cells, [[4, 16, 0]]]), H, W)


def dense_neighbours(apr: APR, k: int) -> np.ndarray:
    """Brute force: a pixel map of particle indices and dictionaries of cells."""
    L, H, W = apr.level_max, apr.height, apr.width
    owner = apr.reconstruct(np.arange(apr.n_particles, dtype=np.float32)).astype(np.int64)
    part = {(int(l), int(y), int(x)): i for i, (l, y, x) in enumerate(zip(apr.level, apr.y, apr.x))}
    tree = {(int(l), int(y), int(x)): apr.n_particles + i
            for i, (l, y, x) in enumerate(zip(apr.tree_level, apr.tree_y, apr.tree_x))}
    zero, r = apr.n_particles + apr.n_tree, k // 2
    out = np.empty((apr.n_particles, k * k), np.int64)
    for i in range(apr.n_particles):
        lv, y, x = int(apr.level[i]), int(apr.y[i]), int(apr.x[i])
        s = 2 ** (L - lv)
        rows, cols = -(-H // s), -(-W // s)
        j = 0
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                yy, xx = y + dy, x + dx
                if not (0 <= yy < rows and 0 <= xx < cols):
                    out[i, j] = zero
                elif (lv, yy, xx) in part:
                    out[i, j] = part[(lv, yy, xx)]
                elif (lv, yy, xx) in tree:
                    out[i, j] = tree[(lv, yy, xx)]
                else:  # inside a coarser particle: the one at the cell's first pixel
                    out[i, j] = owner[yy * s, xx * s]
                j += 1
    return out


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), k=st.sampled_from([1, 3, 5]))
def test_neighbour_table_matches_dense_reference(shape, seed, k):
    apr = apr_of(random_cells(*shape, seed), *shape)
    table = apr_neighbours(apr, k)
    assert table.dtype == np.int32 and table.shape == (apr.n_particles, k * k)
    np.testing.assert_array_equal(table, dense_neighbours(apr, k))


@settings(max_examples=20, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000))
def test_pool_structure_matches_the_pooled_cells(shape, seed):
    apr = apr_of(random_cells(*shape, seed), *shape)
    pooled, table = apr_pooled(apr)
    assert table.dtype == np.int32 and table.shape == (pooled.n_particles, 4)
    top = int(apr.level.max())
    if top <= apr.level_min:
        assert pooled is apr
        return
    # the same cells, rebuilt and validated from scratch
    keep = apr.level < top
    cells = np.concatenate([np.stack([apr.level[keep], apr.y[keep], apr.x[keep]], 1),
                            np.stack([apr.tree_level, apr.tree_y, apr.tree_x], 1)[apr.tree_level == top - 1]])
    ref = apr_of(cells.astype(np.int64), *shape)
    for f in ("level", "y", "x", "parent", "tree_level", "tree_y", "tree_x", "tree_parent"):
        np.testing.assert_array_equal(getattr(pooled, f), getattr(ref, f), err_msg=f)
    # each pooled particle reads itself (kept) or its fine children, in order
    for m in range(pooled.n_particles):
        rows = table[m][table[m] >= 0]
        if pooled.level[m] == top - 1 and len(rows) and apr.level[rows[0]] == top:
            assert (apr.level[rows] == top).all() and list(rows) == sorted(rows)
            assert ((apr.y[rows] >> 1) == pooled.y[m]).all() and ((apr.x[rows] >> 1) == pooled.x[m]).all()
        else:
            assert len(rows) == 1 and (apr.level[rows[0]], apr.y[rows[0]], apr.x[rows[0]]) == \
                (pooled.level[m], pooled.y[m], pooled.x[m])


def test_child_table_is_int32_and_complete():
    apr = apr_of(random_cells(33, 17, seed=5), 33, 17)
    children, counts = apr_children(apr)
    assert children.dtype == np.int32 and counts.dtype == np.int32
    n = apr.n_particles
    for t in range(apr.n_tree):
        kids = children[t, :counts[t]]
        assert (children[t, counts[t]:] == -1).all()
        for v in kids:
            par = apr.parent[v] if v < n else apr.tree_parent[v - n]
            assert par == t


def test_segment_kernels_match_global_tables():
    aprs = [apr_of(random_cells(20, 30, seed=s), 20, 30) for s in (1, 2, 3)]
    batch = APRBatch(aprs)
    plan = conv_plan(batch, 3, 2)
    vals = np.random.default_rng(0).standard_normal((plan.n_vals, 4)).astype(np.float32)
    vals[-1] = 0
    for (i, rows_t, table), (_, segs, rows) in zip(plan.torch_groups("cpu"), plan.groups):
        got = _core.gather_segments(vals, plan.tables, plan.maps, segs, plan.zero)
        np.testing.assert_array_equal(got, _core.gather_rows(vals, table.numpy().astype(np.int32)))
        g = np.random.default_rng(i).standard_normal(got.shape).astype(np.float32)
        a, b = np.zeros_like(vals), np.zeros_like(vals)
        _core.scatter_add_segments(g, plan.tables, plan.maps, segs, plan.zero, a)
        _core.scatter_add_rows(g, table.numpy().astype(np.int32), b)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    segs = plan.groups[0][1].copy()
    with pytest.raises(ValueError, match="out of range"):  # a segment beyond its table
        bad = segs.copy()
        bad[0, 2] = aprs[int(bad[0, 0])].n_particles + 1
        _core.gather_segments(vals, plan.tables, plan.maps, bad, plan.zero)
    with pytest.raises(ValueError, match="out of range"):  # rows translated past the value array
        _core.gather_segments(vals[:5], plan.tables, plan.maps, segs, plan.zero)
    with pytest.raises(ValueError, match="maps"):
        _core.gather_segments(vals, plan.tables, plan.maps[:1], segs, plan.zero)


def test_tables_refuse_unsorted_structures():
    apr = apr_of(random_cells(20, 30, seed=4), 20, 30)
    y = apr.y.copy()
    i = int(np.argmax(apr.level))
    y[i], y[i - 1] = y[i - 1], y[i] + 1
    with pytest.raises(ValueError, match="sorted"):
        _core.neighbour_table(apr.level, y, apr.x, apr.parent, apr.tree_level, apr.tree_y, apr.tree_x,
                              apr.tree_parent, apr.height, apr.width, 3)


def test_a_canvas_no_dense_map_could_hold():
    """65536 x 65536 pixels (a dense int64 map of one level would take 34 GB): cells refined towards
    two corners and the centre. Validation, every table of APR_B and a forward pass work on the
    particles alone."""
    H = W = 65536
    targets = [(0, 0), (H - 1, W - 1), (H // 2, W // 3)]
    cells = quadtree_cells(H, W, lambda lv, y, x, s: any(y * s <= ty < (y + 1) * s and x * s <= tx < (x + 1) * s
                                                         for ty, tx in targets))
    apr = apr_of(cells, H, W)  # validated
    assert apr.n_particles < 300 and apr.computational_ratio > 1e7
    apr.intensities = np.linspace(0, 1, apr.n_particles, dtype=np.float32)
    batch = APRBatch([apr])
    torch.manual_seed(0)
    net = apr_network("B").eval()
    prepare(batch, net)
    with torch.no_grad():
        out = net(batch)
    assert out.shape[0] == 1 and torch.isfinite(out).all()
    table_bytes = sum(v.nbytes for k, v in apr._tables.items() if isinstance(v, np.ndarray))
    assert table_bytes < 1 << 20


def test_results_do_not_depend_on_threads_or_the_parallel_threshold():
    from aprlib.ops import apr_conv2d, apr_max_pool2d
    aprs = [apr_of(random_cells(33, 17, seed=s), 33, 17) for s in (7, 8)]
    x = torch.randn(sum(a.n_particles for a in aprs), 64, dtype=torch.float64, requires_grad=True)  # 64: threads split the channels
    w = torch.randn(8, 64, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    results = []
    old_threads, old_work = _core.num_threads(), _core.parallel_threshold()
    try:
        for threads, work in ((1, 1 << 62), (2, 0)):
            _core.set_num_threads(threads)
            _core.set_parallel_threshold(work)
            batch = APRBatch([APR.from_dict(a.to_dict()) for a in aprs])  # tables built afresh
            y = apr_conv2d(x, batch, w)
            p, _ = apr_max_pool2d(y, batch)
            gx, gw = torch.autograd.grad(p.square().sum(), (x, w))
            results.append((y.detach(), p.detach(), gx, gw, apr_neighbours(batch.aprs[0], 3).copy()))
    finally:
        _core.set_num_threads(old_threads)
        _core.set_parallel_threshold(old_work)
    for a, b in zip(*results):
        assert (a == b).all() if isinstance(a, np.ndarray) else torch.equal(a, b)
    with pytest.raises(ValueError, match="threshold"):
        _core.set_parallel_threshold(-1)

"""Index tables of the APRNet operations, built once per APR structure and cached (thesis 3.3;
``reproduction-spec.md`` section 4).

A layer's input lives in one value array ``[particle values (N); tree means (T); zero row]``.
Per APR (cached on the APR object): the children of each tree node, the neighbourhood table of
each kernel size, and the pooled structure with its pooling table. Per batch (cached on the
APRBatch): the same tables with rows shifted into the batch's value array, where the particles of
all APRs come first, then all tree nodes, then one zero row.
"""
from __future__ import annotations

import numpy as np
import torch

from . import _core
from .apr import APR

__all__ = ["apr_children", "apr_neighbours", "apr_pooled", "TreePlan", "ConvPlan", "PoolPlan", "tree_plan",
           "conv_plan", "pool_plan", "prepare"]


def _structure_args(apr: APR):
    return (apr.level, apr.y, apr.x, apr.parent, apr.tree_level, apr.tree_y, apr.tree_x, apr.tree_parent,
            apr.height, apr.width)


def _cache(apr: APR) -> dict:
    cache = apr.__dict__.get("_plan_cache")
    if cache is None:
        cache = apr.__dict__["_plan_cache"] = {}
    return cache


def apr_children(apr: APR) -> tuple[np.ndarray, np.ndarray]:
    """Children of each tree node as local value rows, (T, 4) -1 padded, and counts (T,)."""
    c = _cache(apr)
    if "children" not in c:
        c["children"] = _core.child_table(*_structure_args(apr))
    return c["children"]


def apr_neighbours(apr: APR, k: int) -> np.ndarray:
    """(N, k*k) local value rows of each particle's k x k neighbourhood (zero row = N + T)."""
    c = _cache(apr)
    key = ("nbr", int(k))
    if key not in c:
        c[key] = _core.neighbour_table(*_structure_args(apr), int(k))
    return c[key]


def top_level(apr: APR) -> int:
    """Finest level present: the level the next pooling pools and kernel 0 applies to."""
    return int(apr.level[-1])  # particles are sorted by level


def apr_pooled(apr: APR) -> tuple[APR, np.ndarray]:
    """Max-pooling plan: the pooled APR and its (M, 4) table of input particle rows (-1 padded).

    The particles of the finest level present are pooled into their parent cells; the others are
    copied. When the finest level is already ``level_min`` nothing is pooled (every row copies).
    """
    c = _cache(apr)
    if "pooled" in c:
        return c["pooled"]
    top = top_level(apr)
    keep = apr.level < top
    if top <= apr.level_min:
        pooled, table = apr, np.full((apr.n_particles, 4), -1, np.int64)
        table[:, 0] = np.arange(apr.n_particles)
        c["pooled"] = (pooled, table)
        return c["pooled"]
    fine = np.flatnonzero(~keep)
    parents = apr.parent[fine]  # tree nodes at level top - 1, all of whose children are fine particles
    t = apr.tree_at(top - 1)
    new_level = np.concatenate([apr.level[keep], apr.tree_level[t]])
    new_y = np.concatenate([apr.y[keep], apr.tree_y[t]])
    new_x = np.concatenate([apr.x[keep], apr.tree_x[t]])
    s = _core.structure_from_cells(new_level, new_y, new_x, apr.height, apr.width)
    pooled = APR.from_structure(s, params=apr.params, validate=False)  # the kernels' own output
    # map each pooled particle back to its source: a kept particle or a level top-1 tree node
    L = apr.level_max
    key = lambda lv, yy, xx: (lv.astype(np.int64) << (2 * L + 2)) | (yy.astype(np.int64) << (L + 1)) | xx  # noqa: E731
    src_keys = key(new_level, new_y, new_x)
    order = np.argsort(src_keys)
    pos = order[np.searchsorted(src_keys[order], key(pooled.level, pooled.y, pooled.x))]
    n_keep = int(keep.sum())
    table = np.full((pooled.n_particles, 4), -1, np.int64)
    from_keep = pos < n_keep
    table[from_keep, 0] = np.flatnonzero(keep)[pos[from_keep]]
    # children of each pooled tree node, in order of appearance
    tree_rank = np.full(apr.n_tree, -1, np.int64)
    tree_rank[np.arange(t.start, t.stop)] = np.arange(t.stop - t.start)
    rank = tree_rank[parents]
    srt = np.argsort(rank, kind="stable")
    rank_sorted = rank[srt]
    first = np.searchsorted(rank_sorted, rank_sorted, side="left")
    slot = np.arange(len(rank_sorted)) - first
    child_tab = np.full((t.stop - t.start, 4), -1, np.int64)
    child_tab[rank_sorted, slot] = fine[srt]
    table[~from_keep] = child_tab[pos[~from_keep] - n_keep]
    c["pooled"] = (pooled, table)
    return c["pooled"]


# --- batch plans --------------------------------------------------------------------------------
class _Layout:
    """Row layout of a batch's value array: particles of every APR, then tree nodes, then zero."""

    def __init__(self, aprs):
        self.n = np.array([a.n_particles for a in aprs], np.int64)
        self.t = np.array([a.n_tree for a in aprs], np.int64)
        self.poff = np.concatenate([[0], np.cumsum(self.n)])
        self.toff = np.concatenate([[0], np.cumsum(self.t)])
        self.N, self.T = int(self.poff[-1]), int(self.toff[-1])
        self.zero = self.N + self.T

    def globalise(self, b: int, rows: np.ndarray) -> np.ndarray:
        """Local value rows of APR b -> rows of the batch value array (-1 padding stays -1)."""
        return _core.offset_rows(np.ascontiguousarray(rows, np.int64), int(self.n[b]), int(self.t[b]),
                                 int(self.poff[b]), int(self.N + self.toff[b]), int(self.zero))


class TreePlan:
    """Tree means of a batch: children (T, 4) and counts (T,) in batch rows, and the tree nodes
    grouped by level (order, offsets) so that finer levels are filled first."""

    def __init__(self, aprs):
        lay = _Layout(aprs)
        self.N, self.T = lay.N, lay.T
        kids, counts, levels = [], [], []
        for b, a in enumerate(aprs):
            ch, cn = apr_children(a)
            kids.append(lay.globalise(b, ch))
            counts.append(cn)
            levels.append(a.tree_level.astype(np.int64))
        self.children = np.ascontiguousarray(np.concatenate(kids)) if kids else np.zeros((0, 4), np.int64)
        self.counts = np.ascontiguousarray(np.concatenate(counts)).astype(np.int64)
        lv = np.concatenate(levels) if levels else np.zeros(0, np.int64)
        self.order = np.argsort(lv, kind="stable").astype(np.int64)
        top = int(lv.max()) + 1 if len(lv) else 1
        self.offsets = np.searchsorted(lv[self.order], np.arange(top + 1)).astype(np.int64)
        self._torch = {}

    def torch_levels(self, device):
        """Per tree level, finest first: (tree rows, children rows (n, 4) with -1 -> zero row, counts)."""
        key = str(device)
        if key not in self._torch:
            out = []
            zero = self.N + self.T
            for lv in range(len(self.offsets) - 2, -1, -1):
                idx = self.order[self.offsets[lv]:self.offsets[lv + 1]]
                if len(idx) == 0:
                    continue
                ch = self.children[idx]
                out.append((torch.as_tensor(idx, device=device), torch.as_tensor(np.where(ch < 0, zero, ch), device=device),
                            torch.as_tensor(self.counts[idx], device=device)))
            self._torch[key] = out
        return self._torch[key]


class ConvPlan:
    """Neighbourhood tables of a batch for kernel size k and n_kernels level-specific kernels:
    for each kernel index i, the particle rows using it (kernel i for the i-th level below the
    APR's finest level, the last kernel for all coarser ones) and their (n_i, k*k) table."""

    def __init__(self, aprs, k: int, n_kernels: int):
        lay = _Layout(aprs)
        self.k, self.n_kernels, self.N, self.T = k, n_kernels, lay.N, lay.T
        self.n_vals = lay.zero + 1
        tables, kidx = [], []
        for b, a in enumerate(aprs):
            if k > 1:  # a 1x1 convolution reads each particle itself: no table needed
                tables.append(lay.globalise(b, apr_neighbours(a, k)))
            kidx.append(np.minimum(top_level(a) - a.level.astype(np.int64), n_kernels - 1))
        table = np.concatenate(tables) if k > 1 else np.arange(lay.N, dtype=np.int64)[:, None]
        kidx = np.concatenate(kidx)
        self.groups = []
        for i in range(n_kernels):
            rows = np.flatnonzero(kidx == i).astype(np.int64)
            self.groups.append((i, rows, np.ascontiguousarray(table[rows])))
        self._torch = {}

    def torch_groups(self, device):
        key = str(device)
        if key not in self._torch:
            self._torch[key] = [(i, torch.as_tensor(rows, device=device), torch.as_tensor(tab, device=device))
                                for i, rows, tab in self.groups]
        return self._torch[key]


class PoolPlan:
    """Max pooling of a batch: the pooled batch and the (M, 4) table of input particle rows."""

    def __init__(self, aprs):
        from .batch import APRBatch
        pooled, tables = [], []
        poff = 0
        for a in aprs:
            p, tab = apr_pooled(a)
            pooled.append(p)
            tables.append(np.where(tab < 0, -1, tab + poff))
            poff += a.n_particles
        self.n_in = poff
        self.out = APRBatch(pooled)
        self.table = np.ascontiguousarray(np.concatenate(tables))
        self._torch = {}

    def torch_table(self, device):
        """(M, 4) table with -1 replaced by n_in (a -inf row appended to the input)."""
        key = str(device)
        if key not in self._torch:
            self._torch[key] = torch.as_tensor(np.where(self.table < 0, self.n_in, self.table), device=device)
        return self._torch[key]


def _batch_cache(batch) -> dict:
    cache = batch.__dict__.get("_plan_cache")
    if cache is None:
        cache = batch.__dict__["_plan_cache"] = {}
    return cache


def tree_plan(batch) -> TreePlan:
    c = _batch_cache(batch)
    if "tree" not in c:
        c["tree"] = TreePlan(batch.aprs)
    return c["tree"]


def conv_plan(batch, k: int, n_kernels: int) -> ConvPlan:
    c = _batch_cache(batch)
    key = ("conv", int(k), int(n_kernels))
    if key not in c:
        c[key] = ConvPlan(batch.aprs, int(k), int(n_kernels))
    return c[key]


def pool_plan(batch) -> PoolPlan:
    c = _batch_cache(batch)
    if "pool" not in c:
        c["pool"] = PoolPlan(batch.aprs)
    return c["pool"]


def prepare(batch, network) -> None:
    """Build (and cache) every index table ``network`` will need on ``batch``: the tree, the
    neighbourhood table of each convolution and the pooled structure of each pooling, in layer
    order. Call it in DataLoader workers (or before timing) so the forward pass only computes."""
    from .layers import APRConv2d, APRMaxPool2d
    for module in network.modules():
        if isinstance(module, APRConv2d):
            conv_plan(batch, module.kernel_size, module.n_level_kernels)
            tree_plan(batch)
        elif isinstance(module, APRMaxPool2d):
            batch = pool_plan(batch).out

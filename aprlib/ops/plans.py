"""Batch index plans of the APRNet operations, built once per batch and cached (thesis 3.3;
``reproduction-spec.md`` section 4).

A layer's input lives in one value array ``[particle values (N); tree means (T); zero row]``.
Per APR (built and cached by the APR's own methods, :mod:`aprlib.apr.structure`): the children of
each tree node, the neighbourhood table of each kernel size, and the pooled structure with its
pooling table. Per batch (the plan classes here; :func:`tree_plan`, :func:`conv_plan` and :func:`pool_plan` get them
through the batch's own cache, :meth:`APRBatch.plan`): the same tables with rows shifted into the batch's
value array, where the particles of all APRs come first, then all tree nodes, then one zero row.
Nothing here writes into an APR or a batch.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _core
from ..apr.batch import APRBatch
from ..apr.structure import APR, top_level

__all__ = ["TreePlan", "ConvPlan", "PoolPlan", "tree_plan", "conv_plan", "pool_plan"]


_POOL = {"size": 0, "executor": None}


def _map(fn, items: list) -> list:
    """``[fn(a) for a in items]``, spread over the C++ kernels' thread count (their calls release the
    GIL) when it is above one and there is more than one item."""
    n = _core.num_threads()
    if n <= 1 or len(items) <= 1:
        return [fn(a) for a in items]
    if _POOL["size"] != n:
        from concurrent.futures import ThreadPoolExecutor
        if _POOL["executor"] is not None:
            _POOL["executor"].shutdown(wait=False)
        _POOL.update(size=n, executor=ThreadPoolExecutor(n, thread_name_prefix="aprlib-tables"))
    return list(_POOL["executor"].map(fn, items))


def _on_device(cache: dict, key, tensors, device):
    """``tensors`` (CPU tensors, possibly in tuples and lists) on ``device``: themselves on the CPU (or
    device None), a copy cached in ``cache`` under (key, device) on other devices, and an uncached meta
    copy on ``meta`` (shapes only: nothing of a shape pass stays in a plan)."""
    if device is None:
        return tensors
    device = torch.device(device)
    if device.type == "cpu":
        return tensors

    def move(v):
        if isinstance(v, (tuple, list)):
            return type(v)(move(u) for u in v)
        return v.to(device)
    if device.type == "meta":
        return move(tensors)
    k = (key, str(device))
    if k not in cache:
        cache[k] = move(tensors)
    return cache[k]


# --- batch plans --------------------------------------------------------------------------------
_INT32_MAX = np.iinfo(np.int32).max


class _Layout:
    """Row layout of a batch's value array: particles of every APR, then tree nodes, then zero."""

    def __init__(self, aprs):
        self.n = np.array([a.n_particles for a in aprs], np.int64)
        self.t = np.array([a.n_tree for a in aprs], np.int64)
        self.poff = np.concatenate([[0], np.cumsum(self.n)])
        self.toff = np.concatenate([[0], np.cumsum(self.t)])
        self.N, self.T = int(self.poff[-1]), int(self.toff[-1])
        self.zero = self.N + self.T
        if self.zero >= _INT32_MAX:
            raise ValueError(f"a batch of {self.N} particles and {self.T} tree nodes has more value rows than "
                             f"int32 tables can index ({_INT32_MAX}): use smaller batches")

    def maps(self) -> np.ndarray:
        """(B, 4) int64: each APR's (n, t, first particle row, first tree row) in the batch."""
        return np.ascontiguousarray(np.stack([self.n, self.t, self.poff[:-1], self.N + self.toff[:-1]], 1))

    def globalise(self, b: int, rows: np.ndarray, dtype=np.int32) -> np.ndarray:
        """Local value rows of APR b -> rows of the batch value array (-1 padding stays -1)."""
        v = rows.astype(np.int64)
        n, t = int(self.n[b]), int(self.t[b])
        out = np.where(v < n, v + self.poff[b], np.where(v < n + t, v - n + self.N + self.toff[b], self.zero))
        return np.where(v < 0, -1, out).astype(dtype)


class TreePlan:
    """Tree means of a batch: children (T, 4) int32 and counts (T,) int32 in batch rows, and the
    tree nodes grouped by level (order, offsets) so that finer levels are filled first."""

    def __init__(self, aprs):
        lay = _Layout(aprs)
        self.N, self.T = lay.N, lay.T
        kids, counts, levels = [], [], []
        for b, (a, (ch, cn)) in enumerate(zip(aprs, _map(APR.children, aprs))):
            kids.append(lay.globalise(b, ch))
            counts.append(cn)
            levels.append(a.tree_level.astype(np.int64))
        self.children = np.ascontiguousarray(np.concatenate(kids))  # (T, 2^ndim); a batch has >= 1 APR
        self.counts = np.ascontiguousarray(np.concatenate(counts)).astype(np.int32)
        lv = np.concatenate(levels) if levels else np.zeros(0, np.int64)
        self.order = np.argsort(lv, kind="stable").astype(np.int64)
        top = int(lv.max()) + 1 if len(lv) else 1
        self.offsets = np.searchsorted(lv[self.order], np.arange(top + 1)).astype(np.int64)
        self._torch = {}

    def op_tensors(self, device=None) -> tuple:
        """(order (T,) int64, offsets (L + 1,) int64, children (T, n_children) int32, counts (T,) int32),
        the arguments of ``torch.ops.aprlib.tree_means`` and ``tree_means_transpose``: CPU tensors sharing
        the plan's arrays (zero-copy), or copies on ``device`` (cached; meta ones not)."""
        if "op" not in self._torch:
            self._torch["op"] = tuple(torch.from_numpy(a) for a in (self.order, self.offsets, self.children,
                                                                    self.counts))
        return _on_device(self._torch, "op", self._torch["op"], device)


class ConvPlan:
    """Neighbourhood tables of a batch for kernel size k and n_kernels level-specific kernels.

    Kernel i applies to the i-th level below each APR's finest level (the last kernel to all coarser
    ones): in each APR a contiguous run of particles. ``groups[i] = (i, segs, rows)``: ``segs``
    (S, 3) int64 = (APR, first, stop) local particle ranges in output order, ``rows`` their batch
    rows. The batch keeps no copy of the tables: ``tables`` are the APRs' own (N_b, k^ndim) int32 tables
    and ``maps`` (B, 4) translates their rows in the kernels (``_core.gather_segments``).
    """

    def __init__(self, aprs, k: int, n_kernels: int):
        lay = _Layout(aprs)
        self.k, self.n_kernels, self.N, self.T = k, n_kernels, lay.N, lay.T
        self.ndim = aprs[0].ndim
        self.zero = lay.zero
        self.n_vals = lay.zero + 1
        self._layout, self.maps = lay, lay.maps()
        self.tables = _map(lambda a: a.neighbourhood(k), aprs) if k > 1 else None
        self.groups = []
        for i in range(n_kernels):
            segs = []
            for b, a in enumerate(aprs):
                lv = top_level(a) - i
                if i < n_kernels - 1:  # one level
                    start, stop = (a.level_offsets[lv], a.level_offsets[lv + 1]) if lv >= 0 else (0, 0)
                else:  # this level and every coarser one
                    start, stop = 0, (a.level_offsets[lv + 1] if lv >= 0 else 0)
                if stop > start:
                    segs.append((b, int(start), int(stop)))
            segs = np.array(segs, np.int64).reshape(-1, 3)
            rows = (np.concatenate([np.arange(s, e) + lay.poff[b] for b, s, e in segs]) if len(segs)
                    else np.zeros(0, np.int64)).astype(np.int64)
            self.groups.append((i, segs, rows))
        self._chunks = {}
        self._torch = {}

    def chunks(self, i: int, step: int):
        """Group i cut into pieces of at most ``step`` rows: [(segs (S, 3), slice of the group's rows)]."""
        key = (i, int(step))
        if key not in self._chunks:
            _, segs, rows = self.groups[i]
            out, cur, start, filled = [], [], 0, 0
            for b, s, e in segs.tolist():
                while s < e:
                    take = min(e - s, step - filled)
                    cur.append((b, s, s + take))
                    s += take
                    filled += take
                    if filled == step:
                        out.append((np.array(cur, np.int64), slice(start, start + filled)))
                        cur, start, filled = [], start + filled, 0
            if cur:
                out.append((np.array(cur, np.int64), slice(start, start + filled)))
            self._chunks[key] = out
        return self._chunks[key]

    def op_tensors(self, step: int, device=None) -> tuple:
        """The arguments of ``torch.ops.aprlib.conv`` and ``conv_backward`` for chunks of at most ``step``
        rows (cached): ``tables`` (list of the APRs' own (N_b, k^ndim) int32 tables, zero-copy; empty for
        k = 1), ``maps`` (B, 4) int64, ``rows`` (N,) int64 the groups' batch rows one after the other,
        ``segs`` (S, 3) int64 every chunk's segments one after the other, ``chunks`` (n_chunks, 5) int64
        = (kernel, first seg, stop seg, first row, stop row) with rows indexing ``rows``, in group order.
        CPU tensors, or copies on ``device`` (cached; meta ones not)."""
        key = ("op", int(step))
        if key not in self._torch:
            rows, segs, chunks, r0, s0 = [], [], [], 0, 0
            for i, _, grows in self.groups:
                for sg, sl in self.chunks(i, step):
                    chunks.append((i, s0, s0 + len(sg), r0 + sl.start, r0 + sl.stop))
                    segs.append(sg)
                    s0 += len(sg)
                rows.append(grows)
                r0 += len(grows)
            tables = [torch.from_numpy(t) for t in self.tables] if self.k > 1 else []
            self._torch[key] = (tables, torch.from_numpy(self.maps),
                                torch.from_numpy(np.concatenate(rows).astype(np.int64)),
                                torch.from_numpy(np.concatenate(segs) if segs else np.zeros((0, 3), np.int64)),
                                torch.from_numpy(np.array(chunks, np.int64).reshape(-1, 5)))
        return _on_device(self._torch, key, self._torch[key], device)

    def rows_tensor(self, i: int, device="cpu") -> torch.Tensor:
        key = ("rows", i, str(device))
        if key not in self._torch:
            self._torch[key] = torch.as_tensor(self.groups[i][2], device=device)
        return self._torch[key]

    def torch_groups(self, device):
        """[(i, rows (n_i,), table (n_i, k*k))] int64 tensors in batch rows, for the torch backend
        (built on first use: a copy of the tables, which the C++ backend never makes)."""
        key = ("groups", str(device))
        if key not in self._torch:
            out = []
            for i, segs, rows in self.groups:
                if self.k == 1:
                    table = rows[:, None]
                else:
                    parts = [self._layout.globalise(b, self.tables[b][s:e], np.int64) for b, s, e in segs.tolist()]
                    table = np.concatenate(parts) if parts else np.zeros((0, self.k ** self.ndim), np.int64)
                out.append((i, self.rows_tensor(i, device), torch.as_tensor(table, device=device)))
            self._torch[key] = out
        return self._torch[key]


class PoolPlan:
    """Max pooling of a batch: the pooled batch and the (M, n_in) int32 table of input particle rows
    (n_in = 4 in 2D)."""

    def __init__(self, aprs):
        pooled, tables = [], []
        poff = 0
        for a, (p, tab) in zip(aprs, _map(APR.pooled, aprs)):
            # an APR with nothing to pool is its own pooled APR: in the pooled batch, as its structure
            # only, like the other pooled APRs (a batch's APRs all have intensities or none)
            pooled.append(p._structure_only() if p is a and a.intensities is not None else p)
            tables.append(np.where(tab < 0, -1, tab.astype(np.int64) + poff))
            poff += a.n_particles
        if poff >= _INT32_MAX:
            raise ValueError(f"a batch of {poff} particles has more rows than int32 tables can index")
        self.n_in = poff
        self.out = APRBatch(pooled)
        self.table = np.ascontiguousarray(np.concatenate(tables)).astype(np.int32)
        self._up = None
        self._torch = {}

    def op_tensor(self, device=None) -> torch.Tensor:
        """The (M, n_in) int32 table (``torch.ops.aprlib.pool``): a CPU tensor sharing the plan's array,
        or a copy on ``device`` (cached; a meta one not)."""
        if "op" not in self._torch:
            self._torch["op"] = torch.from_numpy(self.table)
        return _on_device(self._torch, "op", self._torch["op"], device)

    @property
    def up_index(self) -> np.ndarray:
        """(n_in,) int32: the pooled row each input particle row was pooled into (or copied to), the
        inverse of :attr:`table` (every input row appears in it exactly once). Built on first use and
        held by the plan (so in the batch's cache with it)."""
        if getattr(self, "_up", None) is None:  # (plans pickled before it existed)
            m, n_in = self.table.shape
            valid = self.table >= 0
            rows = self.table[valid].astype(np.int64)
            up = np.full(self.n_in, -1, np.int64)
            up[rows] = np.repeat(np.arange(m, dtype=np.int64), valid.sum(1))
            if len(rows) != self.n_in or (up < 0).any():
                raise RuntimeError("the pooling table does not hold every input row exactly once")
            self._up = np.ascontiguousarray(up.astype(np.int32))
        return self._up

    def up_tensor(self, device=None) -> torch.Tensor:
        """:attr:`up_index` as an (n_in,) int32 tensor (``torch.ops.aprlib.upsample``): a CPU tensor
        sharing the plan's array, or a copy on ``device`` (cached; a meta one not)."""
        if "up" not in self._torch:
            self._torch["up"] = torch.from_numpy(self.up_index)
        return _on_device(self._torch, "up", self._torch["up"], device)


def tree_plan(batch) -> TreePlan:
    """The batch's tree plan (built once, held in the batch's cache: :meth:`APRBatch.plan`)."""
    return batch.plan(("tree",), TreePlan)


def conv_plan(batch, k: int, n_kernels: int) -> ConvPlan:
    """The batch's convolution plan for kernel size ``k`` and ``n_kernels`` level-specific kernels
    (built once per (k, n_kernels), held in the batch's cache: :meth:`APRBatch.plan`)."""
    k, n_kernels = int(k), int(n_kernels)
    return batch.plan(("conv", k, n_kernels), lambda aprs: ConvPlan(aprs, k, n_kernels))


def pool_plan(batch) -> PoolPlan:
    """The batch's pooling plan: the pooled batch and its table (built once, held in the batch's cache:
    :meth:`APRBatch.plan`)."""
    return batch.plan(("pool",), PoolPlan)

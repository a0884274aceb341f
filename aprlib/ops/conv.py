"""APR convolution (thesis eq. 3.3): features (N, C) -> (N, D) at the particles.

One op, one place: its C++ kernel binding, its pure-torch implementation, its ``torch.library``
registration (``torch.ops.aprlib.conv`` and its backward ``conv_backward``: the C++ kernels for the
CPU dispatch key, the pure-torch ones as the default for every other device, fake implementations for
meta/fake tensors, autograd) and its public function :func:`apr_conv2d`.

Shapes. ``vals`` (V, C): the value array the neighbourhoods index (the features, V = N, for k = 1;
else ``tree_means`` of them, V = N + T + 1, last row zero). ``weight`` (D, C, n_kernels, *K): one
kernel of K = (k, k) (2D; (k, k, k) in 3D) per level group; ``kk`` = prod(K) neighbours per particle,
taken from the weight's shape. Plan tensors (:meth:`aprlib.ops.plans.ConvPlan.op_tensors`): ``tables``
the APRs' own (N_b, kk) int32 neighbourhood tables (local value rows, -1 outside the image; empty list
for k = 1), ``maps`` (B, 4) int64 (n, t, first particle row, first tree row) of each APR in the batch,
``rows`` (N,) int64 the output rows of the kernel groups one after the other, ``segs`` (S, 3) int64
(APR, first, stop) local particle ranges, ``chunks`` (n_chunks, 5) int64 (kernel, first seg, stop seg,
first row, stop row) with rows indexing ``rows``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.utils.checkpoint
from torch.library import custom_op, register_autograd, register_fake

from .. import _core
from .common import CPP_DTYPES, check_batch, check_features, use_operator
from .plans import conv_plan, tree_plan
from .tree_means import _tree_means_torch

__all__ = ["apr_conv2d", "conv", "conv_backward", "chunk_rows"]

_CHUNK_FLOATS = 1 << 20  # C++ path: gathered columns per chunk (4 MB in float32): they stay in cache
_TORCH_CHUNK_BYTES = 64 << 20  # pure-torch path: gathered columns per chunk (64 MB)


def chunk_rows(width: int) -> int:
    """Rows per chunk of gathered columns of ``width`` (= kk*C) values (the C++ path's chunks)."""
    return max(1, _CHUNK_FLOATS // max(width, 1))


def _kk(weight: torch.Tensor) -> int:
    """Neighbours per particle: prod of the kernel's spatial shape (weight (D, C, n, *K))."""
    return math.prod(weight.shape[3:])


def _weight_matrix(weight: torch.Tensor, i: int) -> torch.Tensor:
    """Kernel i of a (D, C, n, *K) bank as a (D, kk*C) matrix matching the gathered columns
    (neighbour-major, channel-minor)."""
    return weight[:, :, i].movedim(1, -1).reshape(weight.shape[0], -1)


def _weight_grad(gw: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A (D, kk*C) gradient of :func:`_weight_matrix` back to the (D, C, *K) kernel's layout."""
    d, c = weight.shape[:2]
    return gw.reshape(d, *weight.shape[3:], c).movedim(-1, 1)


def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


# --- pure torch (any device) ----------------------------------------------------------------------
def _groups_torch(vals, kk: int, tables, maps, rows, segs, chunks) -> list:
    """Per kernel group with rows: (i, rows_i (n_i,) int64 output rows, table (n_i, kk) int64 value rows,
    -1 outside the image = the zero row, the last of ``vals``), on the plan tensors' device."""
    spans = {}  # kernel -> [first seg, stop seg, first row, stop row] of its chunks (consecutive)
    for i, s0, s1, r0, r1 in chunks.tolist():
        if i in spans:
            spans[i][1], spans[i][3] = s1, r1
        else:
            spans[i] = [s0, s1, r0, r1]
    m = maps.tolist()
    zero = vals.shape[0] - 1
    out = []
    for i, (s0, s1, r0, r1) in spans.items():
        r = rows[r0:r1]
        if kk == 1:
            table = r[:, None]
        else:
            parts = []
            for b, s, e in segs[s0:s1].tolist():
                n, t, poff, toff = m[b]
                v = tables[b][s:e].long()
                g = torch.where(v < n, v + poff, torch.where(v < n + t, v - n + toff, zero))
                parts.append(torch.where(v < 0, -1, g))
            table = torch.cat(parts)
        out.append((i, r, table))
    return out


def _torch_step(width: int, element_size: int) -> int:
    return max(1, _TORCH_CHUNK_BYTES // (width * element_size))


def _conv_torch(vals, weight, bias, tables, maps, rows, segs, chunks, checkpoint: bool = True) -> torch.Tensor:
    """(N, D): per kernel group, gather the neighbourhoods (n_i, kk, C) and multiply by the kernel.
    Large groups go in chunks of at most ``_TORCH_CHUNK_BYTES`` of gathered columns, each recomputed in
    the backward pass (activation checkpointing), so the full (N, kk, C) temporary never exists."""
    kk = _kk(weight)
    out = vals.new_zeros(rows.shape[0], weight.shape[0])
    step = _torch_step(kk * vals.shape[1], vals.element_size())
    for i, r, table in _groups_torch(vals, kk, tables, maps, rows, segs, chunks):
        wm = _weight_matrix(weight, i).t()
        if len(r) <= step:
            out = out.index_copy(0, r, vals[table].reshape(len(r), -1) @ wm)
            continue
        for s in range(0, len(r), step):
            tab = table[s:s + step]
            if checkpoint:
                part = torch.utils.checkpoint.checkpoint(
                    lambda v, w, tab=tab: v[tab].reshape(len(tab), -1) @ w, vals, wm, use_reentrant=False)
            else:
                part = vals[tab].reshape(len(tab), -1) @ wm
            out = out.index_copy(0, r[s:s + step], part)
    return out if bias is None else out + bias


def _conv_backward_torch(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight,
                         need_bias):
    """Gradients of :func:`_conv_torch` (value array, weight, bias; None where not asked), by the
    transposed gathers (``index_add_``), in the same chunks. As in the C++ kernel, neighbours outside
    the image add their gradient to the zero row (which the tree means' transpose drops)."""
    kk, c = _kk(weight), vals.shape[1]
    zero = vals.shape[0] - 1
    grad_vals = torch.zeros_like(vals) if need_vals else None
    grad_w = torch.zeros_like(weight) if need_weight else None
    step = _torch_step(kk * c, vals.element_size())
    for i, r, table in _groups_torch(vals, kk, tables, maps, rows, segs, chunks):
        wm = _weight_matrix(weight, i)
        gw = weight.new_zeros(wm.shape) if need_weight else None
        for s in range(0, len(r), step):
            tab, g = table[s:s + step], grad_out[r[s:s + step]]
            if need_weight:
                gw += g.t() @ vals[tab].reshape(len(tab), -1)
            if need_vals:
                idx = torch.where(tab < 0, zero, tab).reshape(-1)
                grad_vals.index_add_(0, idx, (g @ wm).reshape(-1, c))
        if need_weight:
            grad_w[:, :, i] = _weight_grad(gw, weight)
    return grad_vals, grad_w, (grad_out.sum(0) if need_bias else None)


# --- the C++ kernels (CPU) ------------------------------------------------------------------------
def _chunk_groups(chunks: torch.Tensor, n_kernels: int) -> list:
    """Per kernel i: [(first seg, stop seg, first row, stop row)] of its chunks."""
    out = [[] for _ in range(n_kernels)]
    for i, s0, s1, r0, r1 in chunks.tolist():
        out[i].append((s0, s1, r0, r1))
    return out


class _Gather:
    """Columns (n, kk*C) of a chunk: rows of the value array (kk = 1) or neighbourhoods gathered
    straight from the APRs' int32 tables (``_core.gather_segments``)."""

    def __init__(self, vals, kk, tables, maps, segs):
        self.vals, self.kk = vals, kk
        if kk > 1:
            self.vals_np, self.tables, self.maps, self.segs = vals.numpy(), [_np(t) for t in tables], _np(maps), _np(segs)
            self.zero = vals.shape[0] - 1

    def __call__(self, s0, s1, rows):
        if self.kk == 1:
            return self.vals.index_select(0, rows)
        return torch.from_numpy(_core.gather_segments(self.vals_np, self.tables, self.maps, self.segs[s0:s1], self.zero))


def _conv_cpp(vals, weight, bias, tables, maps, rows, segs, chunks) -> torch.Tensor:
    """Per kernel group and chunk of particles: a gather (``_core.gather_segments``; rows for k = 1), a
    GEMM and an ``index_copy_``."""
    vals = vals.detach().contiguous()
    w = weight.detach()
    out = vals.new_empty(rows.shape[0], w.shape[0])
    gather = _Gather(vals, _kk(w), tables, maps, segs)
    for i, group in enumerate(_chunk_groups(chunks, w.shape[2])):
        wm = _weight_matrix(w, i).t()
        for s0, s1, r0, r1 in group:
            r = rows[r0:r1]
            out.index_copy_(0, r, gather(s0, s1, r) @ wm)
    if bias is not None:
        out += bias.detach()
    return out


def _conv_backward_cpp(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight, need_bias):
    """Per chunk the gather again and the weight-gradient GEMM, the column-gradient GEMM and its
    scatter-add into the value array (``_core.scatter_add_segments``; ``index_add_`` for k = 1)."""
    w = weight.detach()
    vals = vals.detach().contiguous()
    kk = _kk(w)
    grad_out = grad_out.detach().contiguous()
    gather = _Gather(vals, kk, tables, maps, segs)
    grad_vals = torch.zeros_like(vals) if need_vals else None
    grad_w = torch.zeros_like(w) if need_weight else None
    for i, group in enumerate(_chunk_groups(chunks, w.shape[2])):
        if not group:
            continue
        g0, g1 = group[0][2], group[-1][3]
        rows_t = rows[g0:g1]
        g = grad_out[rows_t]
        wm = _weight_matrix(w, i)
        if grad_w is not None:
            gw = w.new_zeros(wm.shape)
            for s0, s1, r0, r1 in group:
                gw += g[r0 - g0:r1 - g0].t() @ gather(s0, s1, rows[r0:r1])
            grad_w[:, :, i] = _weight_grad(gw, w)
        if grad_vals is not None:
            if kk == 1:
                grad_vals.index_add_(0, rows_t, g @ wm)
            else:
                for s0, s1, r0, r1 in group:
                    _core.scatter_add_segments((g[r0 - g0:r1 - g0] @ wm).contiguous().numpy(), gather.tables,
                                               gather.maps, gather.segs[s0:s1], gather.zero, grad_vals.numpy())
    return grad_vals, grad_w, (grad_out.sum(0) if need_bias else None)


# --- torch.library registration -------------------------------------------------------------------
@custom_op("aprlib::conv", mutates_args=())
def conv(vals: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], tables: list[torch.Tensor],
         maps: torch.Tensor, rows: torch.Tensor, segs: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """APR convolution of a value array ``vals`` (V, C) with ``weight`` (D, C, n_kernels, *K) and ``bias``
    (D,) or None -> (N, D), N = len(rows); plan tensors as in the module's docstring. This body is the
    kernel of every device but the CPU (pure torch)."""
    return _conv_torch(vals, weight, bias, tables, maps, rows, segs, chunks, checkpoint=False)


@conv.register_kernel("cpu")
def _(vals, weight, bias, tables, maps, rows, segs, chunks):
    if vals.dtype not in CPP_DTYPES:  # the C++ kernels take float32/float64 only
        return _conv_torch(vals, weight, bias, tables, maps, rows, segs, chunks, checkpoint=False)
    return _conv_cpp(vals, weight, bias, tables, maps, rows, segs, chunks)


@register_fake("aprlib::conv")
def _(vals, weight, bias, tables, maps, rows, segs, chunks):
    return vals.new_empty(rows.shape[0], weight.shape[0])


def _filled(grads, vals, weight):
    """(value array, weight, bias) gradients with an empty (0,) tensor for each one not asked for."""
    empty = vals.new_empty(0)
    return tuple(empty.clone() if g is None else g for g in grads)


@custom_op("aprlib::conv_backward", mutates_args=())
def conv_backward(grad_out: torch.Tensor, vals: torch.Tensor, weight: torch.Tensor, tables: list[torch.Tensor],
                  maps: torch.Tensor, rows: torch.Tensor, segs: torch.Tensor, chunks: torch.Tensor, need_vals: bool,
                  need_weight: bool, need_bias: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``conv`` from ``grad_out`` (N, D): (value array (V, C), weight, bias (D,)); those not
    asked for are empty (0,) tensors. This body is the kernel of every device but the CPU (pure torch)."""
    return _filled(_conv_backward_torch(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals,
                                        need_weight, need_bias), vals, weight)


@conv_backward.register_kernel("cpu")
def _(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight, need_bias):
    impl = _conv_backward_cpp if vals.dtype in CPP_DTYPES else _conv_backward_torch
    return _filled(impl(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight,
                        need_bias), vals, weight)


@register_fake("aprlib::conv_backward")
def _(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight, need_bias):
    return (vals.new_empty(vals.shape if need_vals else (0,)), weight.new_empty(weight.shape if need_weight else (0,)),
            weight.new_empty((weight.shape[0],) if need_bias else (0,)))


def _setup_context(ctx, inputs, output):
    vals, weight, bias, tables, maps, rows, segs, chunks = inputs
    ctx.has_bias, ctx.n_tables = bias is not None, len(tables)
    ctx.save_for_backward(vals, weight, maps, rows, segs, chunks, *tables)


def _backward(ctx, grad_out):
    vals, weight, maps, rows, segs, chunks, *tables = ctx.saved_tensors
    need = ctx.needs_input_grad
    gv, gw, gb = torch.ops.aprlib.conv_backward(grad_out, vals, weight, tables, maps, rows, segs, chunks, need[0],
                                                need[1], ctx.has_bias and need[2])
    return (gv if need[0] else None, gw if need[1] else None, gb if ctx.has_bias and need[2] else None,
            [None] * ctx.n_tables, None, None, None, None)


register_autograd("aprlib::conv", _backward, setup_context=_setup_context)


# --- public function ------------------------------------------------------------------------------
@torch.compiler.disable
def _conv_setup(x, batch, weight, bias, backend, ndim=None):
    """Checks and the plans' tensors on x's device (eager under torch.compile): (whether to call the
    operators, the conv plan's tensors, the tree plan's tensors or None for k = 1)."""
    check_batch(batch, ndim)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    d = batch.ndim
    if weight.ndim != 3 + d or len(set(weight.shape[3:])) != 1:
        ks = ", ".join(["k"] * d)
        raise ValueError(f"weight must be (D, C, n_kernels, {ks}) for {d}D APRs, got {tuple(weight.shape)}")
    k = weight.shape[3]
    if k % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {k}")
    if weight.shape[2] < 1 or weight.shape[0] < 1:
        raise ValueError(f"weight needs at least one output channel and one level kernel, got shape "
                         f"{tuple(weight.shape)}")
    plan = conv_plan(batch, k, weight.shape[2])
    check_features(x, plan.N)
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"features have {x.shape[1]} channels but the weight expects {weight.shape[1]}")
    if x.dtype != weight.dtype:
        raise TypeError(f"features are {x.dtype} but the weight is {weight.dtype}")
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if bias.dtype != weight.dtype:
            raise TypeError(f"bias is {bias.dtype} but the weight is {weight.dtype}")
    kk = _kk(weight)
    tree = tree_plan(batch).op_tensors(x.device) if kk > 1 else None
    return use_operator(backend, x), plan.op_tensors(chunk_rows(kk * x.shape[1]), x.device), tree


def apr_conv(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
             backend: str = "auto", *, ndim: int | None = None) -> torch.Tensor:
    """APR convolution (thesis eq. 3.3) of 2D or 3D APRs: (N, C) features -> (N, D), outputs at the
    particles.

    weight: (D, C, n_kernels, k, k) for 2D APRs, (D, C, n_kernels, k, k, k) for 3D ones, k odd; kernel
    0 for each APR's finest level present, kernel i for the i-th level below it, the last kernel for
    all coarser levels. Neighbourhoods are reconstructed through the tree (means of finer particles,
    piecewise-constant copies of coarser ones, zero outside the image). bias: (D,) or None.
    ``backend``: :mod:`aprlib.ops.common`. ``ndim`` (2 or 3), if given, is checked against the batch's
    (:func:`apr_conv2d`, :func:`apr_conv3d`).
    """
    op, args, tree = _conv_setup(x, batch, weight, bias, backend, ndim)
    if op:
        vals = x if tree is None else torch.ops.aprlib.tree_means(x, *tree)
        return torch.ops.aprlib.conv(vals, weight, bias, *args)
    vals = x if tree is None else _tree_means_torch(x, *tree)
    return _conv_torch(vals, weight, bias, *args)


def apr_conv2d(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
               backend: str = "auto") -> torch.Tensor:
    """:func:`apr_conv` of 2D APRs: weight (D, C, n_kernels, k, k)."""
    return apr_conv(x, batch, weight, bias, backend, ndim=2)


def apr_conv3d(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
               backend: str = "auto") -> torch.Tensor:
    """:func:`apr_conv` of 3D APRs: weight (D, C, n_kernels, k, k, k)."""
    return apr_conv(x, batch, weight, bias, backend, ndim=3)

"""The C++ APR kernels registered as torch operators (``torch.ops.aprlib.*``, ``torch.library.custom_op``).

Each operator takes tensors (and bools) only: the features and the int index tables of a batch plan
(:mod:`.plans`, shared with the plan's numpy arrays without a copy), so that torch can trace them
(``torch.compile``, ``torch.export``) with their fake (shape) implementations and differentiate them
through the registered backward operators:

==========================  =====================================================================
``tree_means``              value array (N + T + 1, C): features, tree means (finest level first), 0
``tree_means_transpose``    its backward: tree-row gradients split among the children, rows [:N]
``conv``                    APR convolution of a value array: per kernel group and chunk of
                            particles a gather (``_core.gather_segments``; rows for k = 1) and a GEMM
``conv_backward``           gradients of the value array (scatter-adds), the weight and the bias
``pool``                    APR max pooling: (pooled (M, C), argmax (M, C) int64)
``pool_backward``           gradient routed to the argmax rows
==========================  =====================================================================

The kernels, their order and the chunking are those of the former ``torch.autograd.Function``s, so
results are bitwise unchanged. The convolution with k > 1 is ``conv(tree_means(x), ...)``: autograd
chains ``conv_backward`` and ``tree_means_transpose``. CPU float32/float64 tensors only.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch.library import custom_op, register_autograd, register_fake

from .. import _core

__all__ = ["tree_means", "tree_means_transpose", "conv", "conv_backward", "pool", "pool_backward",
           "chunk_rows", "OPS"]

_CHUNK_FLOATS = 1 << 20  # gathered columns per chunk (4 MB in float32): they stay in cache


def chunk_rows(width: int) -> int:
    """Rows per chunk of gathered columns of ``width`` (= k*k*C) values."""
    return max(1, _CHUNK_FLOATS // max(width, 1))


def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def _weight_matrix(weight: torch.Tensor, i: int) -> torch.Tensor:
    """Kernel i of a (D, C, n, k, k) (2D) or (D, C, n, k, k, k) (3D) bank as a (D, k^ndim*C) matrix
    matching the gathered columns (offsets in row-major order, then channels)."""
    d, w = weight.shape[0], weight[:, :, i]
    return w.permute(0, *range(2, w.ndim), 1).reshape(d, -1)


def _weight_grad(gw: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_weight_matrix` for one kernel: (D, k^ndim*C) -> (D, C, k, ... k)."""
    d, c, ks = weight.shape[0], weight.shape[1], weight.shape[3:]
    nd = len(ks)
    return gw.reshape(d, *ks, c).permute(0, nd + 1, *range(1, nd + 1))


# --- tree means ---------------------------------------------------------------------------------
@custom_op("aprlib::tree_means", mutates_args=(), device_types="cpu")
def tree_means(x: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor, children: torch.Tensor,
               counts: torch.Tensor) -> torch.Tensor:
    """(N + T + 1, C): the N rows of x, the means of the T tree nodes' children (rows of ``children``
    (T, 4) int32, -1 none; ``counts`` (T,) int32), filled level by level (``order``, ``offsets`` int64),
    and a zero row."""
    n, t = x.shape[0], children.shape[0]
    vals = x.new_zeros(n + t + 1, x.shape[1])
    vals[:n] = x.detach()
    _core.tree_fill(vals.numpy(), n, t, order.numpy(), offsets.numpy(), children.numpy(), counts.numpy())
    return vals


@register_fake("aprlib::tree_means")
def _(x, order, offsets, children, counts):
    return x.new_empty(x.shape[0] + children.shape[0] + 1, x.shape[1])


@custom_op("aprlib::tree_means_transpose", mutates_args=(), device_types="cpu")
def tree_means_transpose(grad: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor, children: torch.Tensor,
                         counts: torch.Tensor) -> torch.Tensor:
    """The transpose of ``tree_means``: (N + T + 1, C) gradients -> (N, C)."""
    t = children.shape[0]
    n = grad.shape[0] - t - 1
    g = grad.detach().clone().contiguous()
    _core.tree_fill(g.numpy(), n, t, order.numpy(), offsets.numpy(), children.numpy(), counts.numpy(), transpose=True)
    return g[:n]


@register_fake("aprlib::tree_means_transpose")
def _(grad, order, offsets, children, counts):
    return grad.new_empty(grad.shape[0] - children.shape[0] - 1, grad.shape[1])


def _tree_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[1:])


def _tree_backward(ctx, grad):
    return (torch.ops.aprlib.tree_means_transpose(grad, *ctx.saved_tensors), None, None, None, None)


register_autograd("aprlib::tree_means", _tree_backward, setup_context=_tree_setup)


# --- convolution --------------------------------------------------------------------------------
def _groups(chunks: torch.Tensor, n_kernels: int) -> list:
    """Per kernel i: [(first seg, stop seg, first row, stop row)] of its chunks."""
    out = [[] for _ in range(n_kernels)]
    for i, s0, s1, r0, r1 in chunks.tolist():
        out[i].append((s0, s1, r0, r1))
    return out


class _Gather:
    """Columns (n, k*k*C) of a chunk: rows of the value array (k = 1) or neighbourhoods gathered
    straight from the APRs' int32 tables (``_core.gather_segments``)."""

    def __init__(self, vals, k, tables, maps, segs):
        self.vals, self.k = vals, k
        if k > 1:
            self.vals_np, self.tables, self.maps, self.segs = vals.numpy(), [_np(t) for t in tables], _np(maps), _np(segs)
            self.zero = vals.shape[0] - 1

    def __call__(self, s0, s1, rows):
        if self.k == 1:
            return self.vals.index_select(0, rows)
        return torch.from_numpy(_core.gather_segments(self.vals_np, self.tables, self.maps, self.segs[s0:s1], self.zero))


@custom_op("aprlib::conv", mutates_args=(), device_types="cpu")
def conv(vals: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], tables: list[torch.Tensor],
         maps: torch.Tensor, rows: torch.Tensor, segs: torch.Tensor, chunks: torch.Tensor) -> torch.Tensor:
    """APR convolution of a value array ``vals`` (the features for k = 1, else ``tree_means`` of them, the
    last row zero) with ``weight`` (D, C, n_kernels, k, k) or (D, C, n_kernels, k, k, k) -> (N, D), N = len(rows); plan tensors as
    :meth:`~aprlib.ops.plans.ConvPlan.op_tensors`. Per kernel group and chunk: gather, GEMM, index_copy_."""
    vals = vals.detach().contiguous()
    w = weight.detach()
    k = w.shape[3]
    out = vals.new_empty(rows.shape[0], w.shape[0])
    gather = _Gather(vals, k, tables, maps, segs)
    for i, group in enumerate(_groups(chunks, w.shape[2])):
        wm = _weight_matrix(w, i).t()
        for s0, s1, r0, r1 in group:
            r = rows[r0:r1]
            out.index_copy_(0, r, gather(s0, s1, r) @ wm)
    if bias is not None:
        out += bias.detach()
    return out


@register_fake("aprlib::conv")
def _(vals, weight, bias, tables, maps, rows, segs, chunks):
    return vals.new_empty(rows.shape[0], weight.shape[0])


@custom_op("aprlib::conv_backward", mutates_args=(), device_types="cpu")
def conv_backward(grad_out: torch.Tensor, vals: torch.Tensor, weight: torch.Tensor, tables: list[torch.Tensor],
                  maps: torch.Tensor, rows: torch.Tensor, segs: torch.Tensor, chunks: torch.Tensor, need_vals: bool,
                  need_weight: bool, need_bias: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of ``conv``: (value array, weight, bias); those not asked for are empty (0,) tensors.
    Per chunk the gather again and the weight-gradient GEMM, the column-gradient GEMM and its scatter-add
    into the value array (``_core.scatter_add_segments``; ``index_add_`` for k = 1)."""
    w = weight.detach()
    vals = vals.detach().contiguous()
    k = w.shape[3]
    grad_out = grad_out.detach().contiguous()
    gather = _Gather(vals, k, tables, maps, segs)
    grad_vals = torch.zeros_like(vals) if need_vals else None
    grad_w = torch.zeros_like(w) if need_weight else None
    for i, group in enumerate(_groups(chunks, w.shape[2])):
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
            if k == 1:
                grad_vals.index_add_(0, rows_t, g @ wm)
            else:
                for s0, s1, r0, r1 in group:
                    _core.scatter_add_segments((g[r0 - g0:r1 - g0] @ wm).contiguous().numpy(), gather.tables,
                                               gather.maps, gather.segs[s0:s1], gather.zero, grad_vals.numpy())
    grad_b = grad_out.sum(0) if need_bias else None
    empty = vals.new_empty(0)
    return (empty if grad_vals is None else grad_vals, empty.clone() if grad_w is None else grad_w,
            empty.clone() if grad_b is None else grad_b)


@register_fake("aprlib::conv_backward")
def _(grad_out, vals, weight, tables, maps, rows, segs, chunks, need_vals, need_weight, need_bias):
    return (vals.new_empty(vals.shape if need_vals else (0,)), weight.new_empty(weight.shape if need_weight else (0,)),
            weight.new_empty((weight.shape[0],) if need_bias else (0,)))


def _conv_setup(ctx, inputs, output):
    vals, weight, bias, tables, maps, rows, segs, chunks = inputs
    ctx.has_bias, ctx.n_tables = bias is not None, len(tables)
    ctx.save_for_backward(vals, weight, maps, rows, segs, chunks, *tables)


def _conv_backward(ctx, grad_out):
    vals, weight, maps, rows, segs, chunks, *tables = ctx.saved_tensors
    need = ctx.needs_input_grad
    gv, gw, gb = torch.ops.aprlib.conv_backward(grad_out, vals, weight, tables, maps, rows, segs, chunks, need[0],
                                                need[1], ctx.has_bias and need[2])
    return (gv if need[0] else None, gw if need[1] else None, gb if ctx.has_bias and need[2] else None,
            [None] * ctx.n_tables, None, None, None, None)


register_autograd("aprlib::conv", _conv_backward, setup_context=_conv_setup)


# --- max pooling --------------------------------------------------------------------------------
@custom_op("aprlib::pool", mutates_args=(), device_types="cpu")
def pool(x: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over the (M, 4) int32 ``table`` rows of x (-1 none): (pooled (M, C), argmax rows (M, C) int64)."""
    out, argmax = _core.pool_forward(_np(x), _np(table))
    return torch.from_numpy(out), torch.from_numpy(argmax)


@register_fake("aprlib::pool")
def _(x, table):
    return x.new_empty(table.shape[0], x.shape[1]), x.new_empty(table.shape[0], x.shape[1], dtype=torch.int64)


@custom_op("aprlib::pool_backward", mutates_args=(), device_types="cpu")
def pool_backward(grad_out: torch.Tensor, argmax: torch.Tensor, n_in: int) -> torch.Tensor:
    """(n_in, C): each output gradient added to its argmax row."""
    return torch.from_numpy(_core.pool_backward(_np(grad_out), _np(argmax), n_in))


@register_fake("aprlib::pool_backward")
def _(grad_out, argmax, n_in):
    return grad_out.new_empty(n_in, grad_out.shape[1])


def _pool_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.n_in = inputs[0].shape[0]


def _pool_backward(ctx, grad_out, grad_argmax):
    (argmax,) = ctx.saved_tensors
    return torch.ops.aprlib.pool_backward(grad_out, argmax, ctx.n_in), None


register_autograd("aprlib::pool", _pool_backward, setup_context=_pool_setup)

OPS = {name: getattr(torch.ops.aprlib, name) for name in
       ("tree_means", "tree_means_transpose", "conv", "conv_backward", "pool", "pool_backward")}

"""APRNet operations on feature tensors (thesis 3.2), with two interchangeable backends.

``"cpp"``: the C++/OpenMP kernels of ``aprlib._core`` (tree means, gathers, scatter-adds,
pooling with an argmax map) inside ``torch.autograd.Function``s, with the GEMMs done
by torch (BLAS); CPU tensors, float32 or float64.
``"torch"``: the same computation with torch indexing ops only (``index_select``-style gathers,
``index_copy``); autograd derives the backward pass. Runs on any device; it is the test oracle.

Features are (N, C) tensors whose rows follow the particles of an :class:`~aprlib.APRBatch`.
Convolution weights have shape (D, C, n_kernels, k, k).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.utils.checkpoint

from .. import _core
from ..apr.batch import APRBatch
from .plans import ConvPlan, PoolPlan, TreePlan, conv_plan, pool_plan, tree_plan

__all__ = ["resolve_backend", "tree_values", "apr_conv2d", "apr_max_pool2d"]

BACKENDS = ("auto", "cpp", "torch")


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """'auto' -> 'cpp' for CPU float32/float64 tensors, else 'torch'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "cpp" if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) else "torch"
    if backend == "cpp" and (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)):
        raise ValueError(f"the cpp backend needs CPU float32/float64 features, got {x.dtype} on {x.device}")
    return backend


def _check_batch(batch):
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch (wrap a single APR as APRBatch([apr])), got {type(batch).__name__}")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def _weight_matrix(weight: torch.Tensor, i: int) -> torch.Tensor:
    """Kernel i of a (D, C, n, k, k) bank as a (D, k*k*C) matrix matching the gathered columns."""
    d = weight.shape[0]
    return weight[:, :, i].permute(0, 2, 3, 1).reshape(d, -1)


# --- tree means ---------------------------------------------------------------------------------
def _tree_values_torch(x: torch.Tensor, plan: TreePlan) -> torch.Tensor:
    n, c = x.shape
    vals = torch.cat([x, x.new_zeros(plan.T + 1, c)])
    for idx, children, counts in plan.torch_levels(x.device):  # finest level first
        means = vals[children].sum(1) / counts.to(x.dtype)[:, None]
        vals = vals.index_copy(0, idx + n, means)
    return vals


def _tree_values_cpp(x: torch.Tensor, plan: TreePlan) -> torch.Tensor:
    vals = x.new_zeros(plan.N + plan.T + 1, x.shape[1])
    vals[:plan.N] = x.detach()
    _core.tree_fill(vals.numpy(), plan.N, plan.T, plan.order, plan.offsets, plan.children, plan.counts)
    return vals


def _tree_unfill_cpp(grad: np.ndarray, plan: TreePlan) -> None:
    """In place: the transpose of the tree means (tree-row gradients split among children)."""
    _core.tree_fill(grad, plan.N, plan.T, plan.order, plan.offsets, plan.children, plan.counts, transpose=True)


def tree_values(x: torch.Tensor, batch, backend: str = "auto") -> torch.Tensor:
    """Value array (N + T + 1, C): the particle features, the tree means, a zero row.

    Differentiable with either backend.
    """
    _check_batch(batch)
    plan = tree_plan(batch)
    _check_features(x, plan.N)
    if resolve_backend(backend, x) == "torch":
        return _tree_values_torch(x, plan)
    return _TreeValues.apply(x, plan)


class _TreeValues(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan):
        ctx.plan = plan
        return _tree_values_cpp(x, plan)

    @staticmethod
    def backward(ctx, grad):
        plan = ctx.plan
        g = grad.detach().clone().contiguous()
        _tree_unfill_cpp(g.numpy(), plan)
        return g[:plan.N], None


# --- convolution --------------------------------------------------------------------------------
def _check_features(x: torch.Tensor, n: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor (N, C), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"features must be a 2D (N, C) tensor, got shape {tuple(x.shape)}")
    if x.shape[0] != n:
        raise ValueError(f"features have {x.shape[0]} rows but the APR batch has {n} particles")
    if not x.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got {x.dtype}")


_TORCH_CHUNK_BYTES = 64 << 20  # the torch backend's gathered columns per chunk (64 MB)


def _conv_torch(x, weight, bias, plan: ConvPlan, tplan: TreePlan):
    """Per kernel group: gather the neighbourhoods (n_i, k*k, C) and multiply by the kernel. Large
    groups go in chunks of at most ``_TORCH_CHUNK_BYTES`` of gathered columns, each recomputed in the
    backward pass (activation checkpointing), so the full (N, k*k, C) temporary never exists."""
    n = x.shape[0]
    d = weight.shape[0]
    vals = x if plan.k == 1 else _tree_values_torch(x, tplan)
    out = x.new_zeros(n, d)
    width = plan.k * plan.k * x.shape[1]
    step = max(1, _TORCH_CHUNK_BYTES // (width * x.element_size()))
    for i, rows, table in plan.torch_groups(x.device):
        if len(rows) == 0:
            continue
        wm = _weight_matrix(weight, i).t()
        if len(rows) <= step:
            out = out.index_copy(0, rows, vals[table].reshape(len(rows), -1) @ wm)
            continue
        for s in range(0, len(rows), step):
            tab = table[s:s + step]
            part = torch.utils.checkpoint.checkpoint(
                lambda v, w, tab=tab: v[tab].reshape(len(tab), -1) @ w, vals, wm, use_reentrant=False)
            out = out.index_copy(0, rows[s:s + step], part)
    return out if bias is None else out + bias


_CHUNK_FLOATS = 1 << 20  # gathered columns per chunk (4 MB in float32): they stay in cache


def _chunk_rows(width: int) -> int:
    return max(1, _CHUNK_FLOATS // max(width, 1))


def _gather(vals: torch.Tensor, vals_np: np.ndarray, plan: ConvPlan, segs: np.ndarray, rows: torch.Tensor) -> torch.Tensor:
    """Columns (n, k*k*C) of the particles in ``segs`` (a 1x1 convolution reads the rows themselves)."""
    if plan.k == 1:
        return vals.index_select(0, rows)
    return torch.from_numpy(_core.gather_segments(vals_np, plan.tables, plan.maps, segs, plan.zero))


class _ConvCpp(torch.autograd.Function):
    """Forward: tree means, then per kernel group and chunk of particles a gather (im2col, straight
    from the APRs' own int32 tables) and a GEMM. Backward: per chunk the gather again and the
    weight-gradient GEMM, the column-gradient GEMM and its scatter-add into the value array (threads
    split the channels), then the transposed tree means."""

    @staticmethod
    def forward(ctx, x, weight, bias, plan: ConvPlan, tplan: TreePlan):
        x = x.detach().contiguous()
        w = weight.detach()
        vals = x if plan.k == 1 else _tree_values_cpp(x, tplan)
        out = x.new_empty(x.shape[0], w.shape[0])
        vals_np = vals.numpy()
        step = _chunk_rows(plan.k * plan.k * vals.shape[1])
        for i, _, _ in plan.groups:
            wm = _weight_matrix(w, i).t()
            rows_t = plan.rows_tensor(i)
            for segs, sl in plan.chunks(i, step):
                out.index_copy_(0, rows_t[sl], _gather(vals, vals_np, plan, segs, rows_t[sl]) @ wm)
        if bias is not None:
            out += bias.detach()
        ctx.save_for_backward(vals, w)
        ctx.plan, ctx.tplan, ctx.has_bias = plan, tplan, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad_out):
        vals, w = ctx.saved_tensors
        plan, tplan, k = ctx.plan, ctx.tplan, ctx.plan.k
        c = vals.shape[1]
        vals_np = vals.numpy()
        grad_out = grad_out.contiguous()
        grad_vals = torch.zeros_like(vals) if ctx.needs_input_grad[0] else None
        grad_w = torch.zeros_like(w) if ctx.needs_input_grad[1] else None
        step = _chunk_rows(k * k * c)
        for i, _, rows in plan.groups:
            if len(rows) == 0:
                continue
            rows_t = plan.rows_tensor(i)
            g = grad_out[rows_t]
            wm = _weight_matrix(w, i)
            if grad_w is not None:
                gw = w.new_zeros(wm.shape)
                for segs, sl in plan.chunks(i, step):
                    gw += g[sl].t() @ _gather(vals, vals_np, plan, segs, rows_t[sl])
                grad_w[:, :, i] = gw.reshape(w.shape[0], k, k, c).permute(0, 3, 1, 2)
            if grad_vals is not None:
                if k == 1:
                    grad_vals.index_add_(0, rows_t, g @ wm)
                else:
                    for segs, sl in plan.chunks(i, step):
                        _core.scatter_add_segments((g[sl] @ wm).contiguous().numpy(), plan.tables, plan.maps, segs,
                                                   plan.zero, grad_vals.numpy())
        grad_x = None
        if grad_vals is not None:
            if k > 1:
                _tree_unfill_cpp(grad_vals.numpy(), tplan)
                grad_x = grad_vals[:tplan.N]
            else:
                grad_x = grad_vals
        grad_b = grad_out.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None


def apr_conv2d(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
               backend: str = "auto") -> torch.Tensor:
    """APR convolution (thesis eq. 3.3): (N, C) features -> (N, D), outputs at the particles.

    weight: (D, C, n_kernels, k, k), k odd; kernel 0 for each APR's finest level present, kernel i
    for the i-th level below it, the last kernel for all coarser levels. Neighbourhoods are
    reconstructed through the tree (means of finer particles, piecewise-constant copies of coarser
    ones, zero outside the image). bias: (D,) or None.
    """
    _check_batch(batch)
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim != 5 or weight.shape[3] != weight.shape[4]:
        raise ValueError(f"weight must be (D, C, n_kernels, k, k), got {tuple(weight.shape)}")
    k = weight.shape[3]
    if k % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {k}")
    if weight.shape[2] < 1 or weight.shape[0] < 1:
        raise ValueError(f"weight needs at least one output channel and one level kernel, got shape "
                         f"{tuple(weight.shape)}")
    plan = conv_plan(batch, k, weight.shape[2])
    _check_features(x, plan.N)
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
    tplan = tree_plan(batch)
    if resolve_backend(backend, x) == "torch":
        return _conv_torch(x, weight, bias, plan, tplan)
    return _ConvCpp.apply(x, weight, bias, plan, tplan)


# --- max pooling --------------------------------------------------------------------------------
class _PoolCpp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, plan: PoolPlan):
        out, argmax = _core.pool_forward(_np(x), plan.table)
        ctx.save_for_backward(torch.from_numpy(argmax))
        ctx.n_in = x.shape[0]
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        (argmax,) = ctx.saved_tensors
        return torch.from_numpy(_core.pool_backward(_np(grad_out), argmax.numpy(), ctx.n_in)), None


def apr_max_pool2d(x: torch.Tensor, batch, backend: str = "auto"):
    """APR max pooling (thesis 3.2.1): returns (pooled features (M, C), pooled APRBatch).

    The particles of each APR's finest level are max-reduced into their parent cells; the others
    are copied. The backward pass routes each gradient to the input that was the maximum (the
    first one on ties). NaN propagates as in torch: a cell with a NaN child is NaN, and its
    gradient goes to its first NaN child, with both backends (``F.max_pool2d`` picks the last NaN
    of a window holding several).
    """
    _check_batch(batch)
    plan = pool_plan(batch)
    _check_features(x, plan.n_in)
    if resolve_backend(backend, x) == "torch":
        xp = torch.cat([x, x.new_full((1, x.shape[1]), float("-inf"))])
        return xp[plan.torch_table(x.device)].max(dim=1).values, plan.out
    return _PoolCpp.apply(x, plan), plan.out

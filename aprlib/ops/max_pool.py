"""APR max pooling (thesis 3.2.1): features (N, C) -> (M, C) on the pooled batch.

One op, one place: its C++ kernel binding, its pure-torch implementation, its ``torch.library``
registration (``torch.ops.aprlib.pool`` and its backward ``pool_backward``: the C++ kernels for the CPU
dispatch key, the pure-torch ones as the default for every other device, fake implementations for
meta/fake tensors, autograd) and its public function :func:`apr_max_pool2d`.

``table`` (M, n_in) int32 (:meth:`aprlib.ops.plans.PoolPlan.op_tensor`): the input rows pooled into each
output particle, -1 none; n_in (4 in 2D, 8 in 3D) is taken from its shape (the C++ kernel takes 4).
"""
from __future__ import annotations

import torch
from torch.library import custom_op, register_autograd, register_fake

from .. import _core
from .common import CPP_DTYPES, check_batch, check_features, use_operator
from .plans import pool_plan

__all__ = ["apr_max_pool2d", "pool", "pool_backward"]


# --- pure torch (any device) ----------------------------------------------------------------------
def _pool_torch(x, table):
    """(pooled (M, C), argmax rows (M, C) int64): the maximum over each table row of x (N, C), the
    first one on ties, NaN propagating (differentiable in the pooled values)."""
    n, c = x.shape
    idx = torch.where(table < 0, n, table.long())  # -1 -> a -inf row appended to x
    xp = torch.cat([x, x.new_full((1, c), float("-inf"))])
    best = xp[idx].max(dim=1)
    return best.values, best.indices


def _pool_op_torch(x, table):
    """The operator's pure-torch kernel: (pooled (M, C), argmax input rows (M, C) int64; a row that
    pooled only padding points at N, past the inputs)."""
    values, local = _pool_torch(x, table)
    return values, torch.where(table < 0, x.shape[0], table.long()).gather(1, local)


def _pool_backward_torch(grad_out, argmax, n_in: int):
    """(n_in, C): each output gradient added to its argmax row."""
    g = grad_out.new_zeros(n_in + 1, grad_out.shape[1])  # + 1: room for a row that pooled padding only
    g.scatter_add_(0, argmax, grad_out)
    return g[:n_in].clone()


# --- the C++ kernels (CPU) ------------------------------------------------------------------------
def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def _pool_cpp(x, table):
    out, argmax = _core.pool_forward(_np(x), _np(table))
    return torch.from_numpy(out), torch.from_numpy(argmax)


def _pool_backward_cpp(grad_out, argmax, n_in):
    return torch.from_numpy(_core.pool_backward(_np(grad_out), _np(argmax), n_in))


# --- torch.library registration -------------------------------------------------------------------
@custom_op("aprlib::pool", mutates_args=())
def pool(x: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over the (M, n_in) int32 ``table`` rows of x (N, C) (-1 none): (pooled (M, C), argmax rows
    (M, C) int64). This body is the kernel of every device but the CPU (pure torch)."""
    return _pool_op_torch(x, table)


@pool.register_kernel("cpu")
def _(x, table):
    if x.dtype not in CPP_DTYPES:  # the C++ kernels take float32/float64 only
        return _pool_op_torch(x, table)
    return _pool_cpp(x, table)


@register_fake("aprlib::pool")
def _(x, table):
    return x.new_empty(table.shape[0], x.shape[1]), x.new_empty(table.shape[0], x.shape[1], dtype=torch.int64)


@custom_op("aprlib::pool_backward", mutates_args=())
def pool_backward(grad_out: torch.Tensor, argmax: torch.Tensor, n_in: int) -> torch.Tensor:
    """(n_in, C): each output gradient (M, C) added to its argmax row. This body is the kernel of every
    device but the CPU (pure torch)."""
    return _pool_backward_torch(grad_out, argmax, n_in)


@pool_backward.register_kernel("cpu")
def _(grad_out, argmax, n_in):
    if grad_out.dtype not in CPP_DTYPES:
        return _pool_backward_torch(grad_out, argmax, n_in)
    return _pool_backward_cpp(grad_out, argmax, n_in)


@register_fake("aprlib::pool_backward")
def _(grad_out, argmax, n_in):
    return grad_out.new_empty(n_in, grad_out.shape[1])


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.n_in = inputs[0].shape[0]


def _backward(ctx, grad_out, grad_argmax):
    (argmax,) = ctx.saved_tensors
    return torch.ops.aprlib.pool_backward(grad_out, argmax, ctx.n_in), None


register_autograd("aprlib::pool", _backward, setup_context=_setup_context)


# --- public function ------------------------------------------------------------------------------
@torch.compiler.disable
def _pool_setup(x, batch, backend, ndim=None):
    """Checks and the pooling plan (eager under torch.compile): (whether to call the operator, the
    (M, 2^ndim) table on x's device, the pooled batch)."""
    check_batch(batch, ndim)
    plan = pool_plan(batch)
    check_features(x, plan.n_in)
    return use_operator(backend, x), plan.op_tensor(x.device), plan.out


def apr_max_pool(x: torch.Tensor, batch, backend: str = "auto", *, ndim: int | None = None):
    """APR max pooling (thesis 3.2.1) of features x (N, C) of 2D or 3D APRs: returns (pooled features
    (M, C), pooled APRBatch).

    The particles of each APR's finest level are max-reduced into their parent cells (4 children in
    2D, 8 in 3D); the others are copied. ``ndim``, if given, is checked against the batch's. The backward pass routes each gradient to the input that was the maximum (the
    first one on ties). NaN propagates as in torch: a cell with a NaN child is NaN, and its
    gradient goes to its first NaN child, with both backends (``F.max_pool2d`` picks the last NaN
    of a window holding several). ``backend``: :mod:`aprlib.ops.common`.
    """
    op, table, pooled = _pool_setup(x, batch, backend, ndim)
    if op:
        return torch.ops.aprlib.pool(x, table)[0], pooled
    return _pool_torch(x, table)[0], pooled


def apr_max_pool2d(x: torch.Tensor, batch, backend: str = "auto"):
    """:func:`apr_max_pool` of 2D APRs."""
    return apr_max_pool(x, batch, backend, ndim=2)


def apr_max_pool3d(x: torch.Tensor, batch, backend: str = "auto"):
    """:func:`apr_max_pool` of 3D APRs."""
    return apr_max_pool(x, batch, backend, ndim=3)

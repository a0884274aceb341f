"""APR upsampling, the inverse structure step of max pooling: features (M, C) on the pooled batch ->
(N, C) on the batch before pooling.

Each particle of the pre-pool batch takes the value of the pooled particle that covers it: the parent
cell it was pooled into (a finest-level particle) or its own copy (every other particle). On an APR
whose particles are all at the finest level (a pixel image / voxel volume) this is nearest-neighbour
upsampling by 2 (``F.interpolate(..., scale_factor=2, mode="nearest")``, cropped to the image for odd
sizes).

One op, one place: its C++ kernel binding, its pure-torch implementation, its ``torch.library``
registration (``torch.ops.aprlib.upsample`` and its backward ``upsample_backward``: the C++ kernels for
the CPU dispatch key, the pure-torch ones as the default for every other device, fake implementations
for meta/fake tensors, autograd) and its public functions :func:`apr_upsample`, :func:`apr_upsample2d`,
:func:`apr_upsample3d`.

``index`` (N,) int32 (:meth:`aprlib.ops.plans.PoolPlan.up_tensor`): the pooled row of each pre-pool
particle row, the inverse of the pooling table. Forward: a gather of rows (``out = x[index]``);
backward: a scatter-add of the gradient rows into the pooled rows (``index_add``).
"""
from __future__ import annotations

import torch
from torch.library import custom_op, register_autograd, register_fake

from .. import _core
from .common import CPP_DTYPES, check_batch, use_operator
from .plans import pool_plan

__all__ = ["apr_upsample", "apr_upsample2d", "apr_upsample3d", "upsample", "upsample_backward"]


# --- pure torch (any device) ----------------------------------------------------------------------
def _upsample_torch(x, index):
    """(N, C): row index[i] of x (M, C) for each i (differentiable: autograd's backward is index_add)."""
    return x.index_select(0, index.long())


def _upsample_backward_torch(grad_out, index, n_out: int):
    """(n_out, C): the gradient rows (N, C) summed into their pooled rows."""
    return grad_out.new_zeros(n_out, grad_out.shape[1]).index_add_(0, index.long(), grad_out)


# --- the C++ kernels (CPU): gather_rows / scatter_add_rows with an (N, 1) table -------------------------
def _np(t: torch.Tensor):
    return t.detach().contiguous().numpy()


def _upsample_cpp(x, index):
    return torch.from_numpy(_core.gather_rows(_np(x), _np(index).reshape(-1, 1)))


def _upsample_backward_cpp(grad_out, index, n_out):
    g = grad_out.new_zeros(n_out, grad_out.shape[1])
    _core.scatter_add_rows(_np(grad_out), _np(index).reshape(-1, 1), g.numpy())
    return g


# --- torch.library registration -------------------------------------------------------------------
@custom_op("aprlib::upsample", mutates_args=())
def upsample(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(N, C): row ``index[i]`` of x (M, C) for each of the (N,) int32 ``index``. This body is the
    kernel of every device but the CPU (pure torch)."""
    return _upsample_torch(x, index)


@upsample.register_kernel("cpu")
def _(x, index):
    if x.dtype not in CPP_DTYPES:  # the C++ kernels take float32/float64 only
        return _upsample_torch(x, index)
    return _upsample_cpp(x, index)


@register_fake("aprlib::upsample")
def _(x, index):
    return x.new_empty(index.shape[0], x.shape[1])


@custom_op("aprlib::upsample_backward", mutates_args=())
def upsample_backward(grad_out: torch.Tensor, index: torch.Tensor, n_out: int) -> torch.Tensor:
    """(n_out, C): each gradient row (N, C) added to its pooled row ``index[i]``. This body is the
    kernel of every device but the CPU (pure torch)."""
    return _upsample_backward_torch(grad_out, index, n_out)


@upsample_backward.register_kernel("cpu")
def _(grad_out, index, n_out):
    if grad_out.dtype not in CPP_DTYPES:
        return _upsample_backward_torch(grad_out, index, n_out)
    return _upsample_backward_cpp(grad_out, index, n_out)


@register_fake("aprlib::upsample_backward")
def _(grad_out, index, n_out):
    return grad_out.new_empty(n_out, grad_out.shape[1])


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])
    ctx.n_out = inputs[0].shape[0]


def _backward(ctx, grad_out):
    (index,) = ctx.saved_tensors
    return torch.ops.aprlib.upsample_backward(grad_out.contiguous(), index, ctx.n_out), None


register_autograd("aprlib::upsample", _backward, setup_context=_setup_context)


# --- public functions -----------------------------------------------------------------------------
def _check_pooled_features(x, plan) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor (M, C), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"features must be a 2D (M, C) tensor, got shape {tuple(x.shape)}")
    m = plan.out.n_particles
    if x.shape[0] != m:
        raise ValueError(f"apr_upsample takes features of the batch's pooled structure ({m} particles: "
                         f"pool_plan(batch).out, what apr_max_pool(x, batch) returns), got {x.shape[0]} rows")
    if not x.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got {x.dtype}")


@torch.compiler.disable
def _upsample_setup(x, batch, backend, ndim=None):
    """Checks and the upsampling index (eager under torch.compile): (whether to call the operator, the
    (N,) int32 index on x's device)."""
    check_batch(batch, ndim)
    plan = pool_plan(batch)
    _check_pooled_features(x, plan)
    return use_operator(backend, x), plan.up_tensor(x.device)


def apr_upsample(x: torch.Tensor, batch, backend: str = "auto", *, ndim: int | None = None) -> torch.Tensor:
    """Upsampling of features x (M, C) of the pooled structure of ``batch`` (the batch that
    :func:`aprlib.ops.apr_max_pool` returns for ``batch``) back to ``batch``: returns (N, C), N =
    ``batch.n_particles``.

    ``batch`` is the pre-pool APRBatch, the structure to return to; its pooling plan (built once, in
    its cache) gives the pooled structure and, for each of its particles, the pooled particle covering
    it: its parent cell if it was pooled, else its own copy. The backward pass sums the gradients of
    the particles sharing a pooled particle. ``ndim``, if given, is checked against the batch's.
    ``backend``: :mod:`aprlib.ops.common`.
    """
    op, index = _upsample_setup(x, batch, backend, ndim)
    if op:
        return torch.ops.aprlib.upsample(x, index)
    return _upsample_torch(x, index)


def apr_upsample2d(x: torch.Tensor, batch, backend: str = "auto") -> torch.Tensor:
    """:func:`apr_upsample` of 2D APRs."""
    return apr_upsample(x, batch, backend, ndim=2)


def apr_upsample3d(x: torch.Tensor, batch, backend: str = "auto") -> torch.Tensor:
    """:func:`apr_upsample` of 3D APRs."""
    return apr_upsample(x, batch, backend, ndim=3)

"""Tree means (thesis 3.2): the value array ``[features (N); means of the T tree nodes; zero row]`` of
a batch, the input of every convolution with k > 1.

One op, one place: its C++ kernel binding, its pure-torch implementation, its ``torch.library``
registration (``torch.ops.aprlib.tree_means`` and its backward ``tree_means_transpose``: the C++
kernel for the CPU dispatch key, the pure-torch one as the default for every other device, a fake
implementation for meta/fake tensors, autograd) and its public function :func:`tree_values`.

Arguments of the operators (:meth:`aprlib.ops.plans.TreePlan.op_tensors`): ``order`` (T,) int64 the
tree nodes sorted by level, ``offsets`` (L + 1,) int64 where each level starts in ``order``,
``children`` (T, n_children) int32 value rows of each node's children (-1: none; n_children is 4 in
2D, 8 in 3D: taken from the shape), ``counts`` (T,) int32 the number of children.
"""
from __future__ import annotations

import torch
from torch.library import custom_op, register_autograd, register_fake

from .. import _core
from .common import CPP_DTYPES, check_batch, check_features, use_operator
from .plans import tree_plan

__all__ = ["tree_values", "tree_means", "tree_means_transpose"]


# --- pure torch (any device) ----------------------------------------------------------------------
def _levels(order, offsets, children, counts, zero: int) -> list:
    """Per tree level, finest first: (tree indices (m,), children value rows (m, n_children) int64
    with -1 replaced by the zero row ``zero``, counts (m,) int32)."""
    off = offsets.tolist()
    out = []
    for lv in range(len(off) - 2, -1, -1):
        if off[lv + 1] == off[lv]:
            continue
        idx = order[off[lv]:off[lv + 1]]
        ch = children[idx].long()
        out.append((idx, torch.where(ch < 0, zero, ch), counts[idx]))
    return out


def _tree_means_torch(x, order, offsets, children, counts) -> torch.Tensor:
    """(N + T + 1, C) value array of x (N, C), level by level with torch indexing (differentiable)."""
    n, c = x.shape
    t = children.shape[0]
    vals = torch.cat([x, x.new_zeros(t + 1, c)])
    for idx, ch, cnt in _levels(order, offsets, children, counts, n + t):  # finest level first
        means = vals[ch].sum(1) / cnt.to(x.dtype)[:, None]
        vals = vals.index_copy(0, idx + n, means)
    return vals


def _tree_means_transpose_torch(grad, order, offsets, children, counts) -> torch.Tensor:
    """(N + T + 1, C) -> (N, C): each tree row's gradient divided among its children, coarsest level
    first (so that a tree child has all of its share before passing it on)."""
    t = children.shape[0]
    n = grad.shape[0] - t - 1
    g = grad.clone()
    for idx, ch, cnt in reversed(_levels(order, offsets, children, counts, n + t)):
        share = g[idx + n] / cnt.to(g.dtype)[:, None]  # (m, C)
        g.index_add_(0, ch.reshape(-1), share[:, None, :].expand(-1, ch.shape[1], -1).reshape(-1, g.shape[1]))
    return g[:n].clone()


# --- the C++ kernels (CPU) ------------------------------------------------------------------------
def _tree_means_cpp(x, order, offsets, children, counts) -> torch.Tensor:
    n, t = x.shape[0], children.shape[0]
    vals = x.new_zeros(n + t + 1, x.shape[1])
    vals[:n] = x.detach()
    _core.tree_fill(vals.numpy(), n, t, order.numpy(), offsets.numpy(), children.numpy(), counts.numpy())
    return vals


def _tree_means_transpose_cpp(grad, order, offsets, children, counts) -> torch.Tensor:
    t = children.shape[0]
    n = grad.shape[0] - t - 1
    g = grad.detach().clone().contiguous()
    _core.tree_fill(g.numpy(), n, t, order.numpy(), offsets.numpy(), children.numpy(), counts.numpy(), transpose=True)
    return g[:n]


# --- torch.library registration -------------------------------------------------------------------
@custom_op("aprlib::tree_means", mutates_args=())
def tree_means(x: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor, children: torch.Tensor,
               counts: torch.Tensor) -> torch.Tensor:
    """(N + T + 1, C): the N rows of x (N, C), the means of the T tree nodes' children, filled level by
    level, finest first, and a zero row. This body is the kernel of every device but the CPU (pure torch)."""
    return _tree_means_torch(x, order, offsets, children, counts)


@tree_means.register_kernel("cpu")
def _(x, order, offsets, children, counts):
    if x.dtype not in CPP_DTYPES:  # the C++ kernels take float32/float64 only
        return _tree_means_torch(x, order, offsets, children, counts)
    return _tree_means_cpp(x, order, offsets, children, counts)


@register_fake("aprlib::tree_means")
def _(x, order, offsets, children, counts):
    return x.new_empty(x.shape[0] + children.shape[0] + 1, x.shape[1])


@custom_op("aprlib::tree_means_transpose", mutates_args=())
def tree_means_transpose(grad: torch.Tensor, order: torch.Tensor, offsets: torch.Tensor, children: torch.Tensor,
                         counts: torch.Tensor) -> torch.Tensor:
    """The transpose of ``tree_means`` (its backward): (N + T + 1, C) gradients -> (N, C). This body is
    the kernel of every device but the CPU (pure torch)."""
    return _tree_means_transpose_torch(grad, order, offsets, children, counts)


@tree_means_transpose.register_kernel("cpu")
def _(grad, order, offsets, children, counts):
    if grad.dtype not in CPP_DTYPES:
        return _tree_means_transpose_torch(grad, order, offsets, children, counts)
    return _tree_means_transpose_cpp(grad, order, offsets, children, counts)


@register_fake("aprlib::tree_means_transpose")
def _(grad, order, offsets, children, counts):
    return grad.new_empty(grad.shape[0] - children.shape[0] - 1, grad.shape[1])


def _setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs[1:])


def _backward(ctx, grad):
    return (torch.ops.aprlib.tree_means_transpose(grad, *ctx.saved_tensors), None, None, None, None)


register_autograd("aprlib::tree_means", _backward, setup_context=_setup_context)


# --- public function ------------------------------------------------------------------------------
@torch.compiler.disable
def _tree_setup(x, batch, backend):
    """Checks and the tree plan's tensors on x's device (eager under torch.compile): (whether to call
    the operator, (order, offsets, children, counts))."""
    check_batch(batch)
    plan = tree_plan(batch)
    check_features(x, plan.N)
    return use_operator(backend, x), plan.op_tensors(x.device)


def tree_values(x: torch.Tensor, batch, backend: str = "auto") -> torch.Tensor:
    """Value array (N + T + 1, C) of features x (N, C) of ``batch``: the particle features, the tree
    means (T nodes), a zero row. Differentiable with either backend (:mod:`aprlib.ops.common`)."""
    op, args = _tree_setup(x, batch, backend)
    if op:
        return torch.ops.aprlib.tree_means(x, *args)
    return _tree_means_torch(x, *args)

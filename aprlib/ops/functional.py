"""APRNet operations on feature tensors (thesis 3.2), with two interchangeable backends.

``"cpp"``: the C++/OpenMP kernels of ``aprlib._core`` (tree means, gathers, scatter-adds,
pooling with an argmax map), with the GEMMs done by torch (BLAS), registered as torch operators
``torch.ops.aprlib.*`` with fake implementations and autograd (:mod:`.library`); CPU tensors,
float32 or float64.
``"torch"``: the same computation with torch indexing ops only (``index_select``-style gathers,
``index_copy``); autograd derives the backward pass. Runs on any device; it is the test oracle.

Features are (N, C) tensors whose rows follow the particles of an :class:`~aprlib.APRBatch`.
Convolution weights have shape (D, C, n_kernels, k, k).

Under ``torch.compile`` the plan lookup (Python and numpy on the APRBatch, with the argument checks)
runs eagerly in a ``torch.compiler.disable``d helper, one graph break per op call; the operators
themselves are traced.
"""
from __future__ import annotations

import torch
import torch.utils.checkpoint

from ..apr.batch import APRBatch
from . import library as _lib
from .plans import ConvPlan, TreePlan, conv_plan, pool_plan, tree_plan

__all__ = ["resolve_backend", "tree_values", "apr_conv", "apr_conv2d", "apr_conv3d", "apr_max_pool", "apr_max_pool2d",
           "apr_max_pool3d"]

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


def _check_batch(batch, ndim: int | None = None):
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch (wrap a single APR as APRBatch([apr])), got {type(batch).__name__}")
    if ndim is not None and batch.ndim != ndim:
        raise ValueError(f"a {ndim}D operation was given a batch of {batch.ndim}D APRs")


_weight_matrix = _lib._weight_matrix


# --- tree means ---------------------------------------------------------------------------------
def _tree_values_torch(x: torch.Tensor, plan: TreePlan) -> torch.Tensor:
    n, c = x.shape
    vals = torch.cat([x, x.new_zeros(plan.T + 1, c)])
    for idx, children, counts in plan.torch_levels(x.device):  # finest level first
        means = vals[children].sum(1) / counts.to(x.dtype)[:, None]
        vals = vals.index_copy(0, idx + n, means)
    return vals


@torch.compiler.disable
def _tree_setup(x, batch, backend):
    """Checks and the tree plan (eager under torch.compile): the plan for the torch backend, else the
    plan's tensors for ``torch.ops.aprlib.tree_means``."""
    _check_batch(batch)
    plan = tree_plan(batch)
    _check_features(x, plan.N)
    if resolve_backend(backend, x) == "torch":
        return plan, None
    return None, plan.op_tensors()


def tree_values(x: torch.Tensor, batch, backend: str = "auto") -> torch.Tensor:
    """Value array (N + T + 1, C): the particle features, the tree means, a zero row.

    Differentiable with either backend.
    """
    plan, args = _tree_setup(x, batch, backend)
    if args is None:
        return _tree_values_torch(x, plan)
    return torch.ops.aprlib.tree_means(x, *args)


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




@torch.compiler.disable
def _conv_setup(x, batch, weight, bias, backend, ndim=None):
    """Checks and the plans (eager under torch.compile): (None, (plan, tree plan)) for the torch
    backend, else the plans' tensors for ``torch.ops.aprlib.conv`` and (k > 1) ``tree_means``."""
    _check_batch(batch, ndim)
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
        return None, (plan, tplan)
    return plan.op_tensors(_lib.chunk_rows(k ** d * x.shape[1])), (tplan.op_tensors() if k > 1 else None)


def apr_conv(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
             backend: str = "auto", *, ndim: int | None = None) -> torch.Tensor:
    """APR convolution (thesis eq. 3.3) of 2D or 3D APRs: (N, C) features -> (N, D), outputs at the
    particles.

    weight: (D, C, n_kernels, k, k) for 2D APRs, (D, C, n_kernels, k, k, k) for 3D ones, k odd; kernel
    0 for each APR's finest level present, kernel i for the i-th level below it, the last kernel for
    all coarser levels. Neighbourhoods are reconstructed through the tree (means of finer particles,
    piecewise-constant copies of coarser ones, zero outside the image). bias: (D,) or None. ``ndim``
    (2 or 3), if given, is checked against the batch's (:func:`apr_conv2d`, :func:`apr_conv3d`).
    """
    args, tree = _conv_setup(x, batch, weight, bias, backend, ndim)
    if args is None:
        return _conv_torch(x, weight, bias, *tree)
    vals = x if tree is None else torch.ops.aprlib.tree_means(x, *tree)
    return torch.ops.aprlib.conv(vals, weight, bias, *args)


def apr_conv2d(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
               backend: str = "auto") -> torch.Tensor:
    """:func:`apr_conv` of 2D APRs: weight (D, C, n_kernels, k, k)."""
    return apr_conv(x, batch, weight, bias, backend, ndim=2)


def apr_conv3d(x: torch.Tensor, batch, weight: torch.Tensor, bias: torch.Tensor | None = None,
               backend: str = "auto") -> torch.Tensor:
    """:func:`apr_conv` of 3D APRs: weight (D, C, n_kernels, k, k, k)."""
    return apr_conv(x, batch, weight, bias, backend, ndim=3)


# --- max pooling --------------------------------------------------------------------------------
@torch.compiler.disable
def _pool_setup(x, batch, backend, ndim=None):
    """Checks and the pooling plan (eager under torch.compile): (torch table or None, cpp table or None,
    pooled batch)."""
    _check_batch(batch, ndim)
    plan = pool_plan(batch)
    _check_features(x, plan.n_in)
    if resolve_backend(backend, x) == "torch":
        return plan.torch_table(x.device), None, plan.out
    return None, plan.op_tensor(), plan.out


def apr_max_pool(x: torch.Tensor, batch, backend: str = "auto", *, ndim: int | None = None):
    """APR max pooling (thesis 3.2.1) of 2D or 3D APRs: returns (pooled features (M, C), pooled
    APRBatch).

    The particles of each APR's finest level are max-reduced into their parent cells (4 children in
    2D, 8 in 3D); the others are copied. ``ndim``, if given, is checked against the batch's. The backward pass routes each gradient to the input that was the maximum (the
    first one on ties). NaN propagates as in torch: a cell with a NaN child is NaN, and its
    gradient goes to its first NaN child, with both backends (``F.max_pool2d`` picks the last NaN
    of a window holding several).
    """
    torch_table, table, pooled = _pool_setup(x, batch, backend, ndim)
    if table is None:
        xp = torch.cat([x, x.new_full((1, x.shape[1]), float("-inf"))])
        return xp[torch_table].max(dim=1).values, pooled
    return torch.ops.aprlib.pool(x, table)[0], pooled


def apr_max_pool2d(x: torch.Tensor, batch, backend: str = "auto"):
    """:func:`apr_max_pool` of 2D APRs."""
    return apr_max_pool(x, batch, backend, ndim=2)


def apr_max_pool3d(x: torch.Tensor, batch, backend: str = "auto"):
    """:func:`apr_max_pool` of 3D APRs."""
    return apr_max_pool(x, batch, backend, ndim=3)

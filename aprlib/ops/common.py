"""What the three op modules (:mod:`.tree_means`, :mod:`.conv`, :mod:`.max_pool`) share: the
``backend=`` choice and the argument checks of their public functions.

``backend``:

``"cpp"``    the ``torch.ops.aprlib.*`` operators on CPU float32/float64 tensors, whose CPU kernels are
             the C++/OpenMP kernels of ``aprlib._core`` (the GEMMs done by torch); anything else is refused.
``"torch"``  the pure-torch implementation called directly (torch indexing ops; autograd derives the
             backward pass). Any device; the test oracle.
``"auto"``   ``"cpp"`` for CPU float32/float64 tensors, ``"torch"`` for CPU tensors of other dtypes, and
             the ``torch.ops.aprlib.*`` operators on every other device, where their kernel is the pure-torch
             implementation (CUDA; on ``meta`` tensors the fake implementation: shapes only).

Meta tensors (:func:`aprlib.nn.prepare.prepare` runs a network on them) always go through the operators,
whatever the backend, so that only shapes are computed.
"""
from __future__ import annotations

import torch

from ..apr.batch import APRBatch

__all__ = ["BACKENDS", "resolve_backend", "use_operator", "check_batch", "check_features"]

BACKENDS = ("auto", "cpp", "torch")

CPP_DTYPES = (torch.float32, torch.float64)


def resolve_backend(backend: str, x: torch.Tensor) -> str:
    """'auto' -> 'cpp' for CPU float32/float64 tensors, else 'torch'."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "cpp" if x.device.type == "cpu" and x.dtype in CPP_DTYPES else "torch"
    if backend == "cpp" and (x.device.type != "cpu" or x.dtype not in CPP_DTYPES):
        raise ValueError(f"the cpp backend needs CPU float32/float64 features, got {x.dtype} on {x.device}")
    return backend


def use_operator(backend: str, x: torch.Tensor) -> bool:
    """Whether an op call on features ``x`` goes through its ``torch.ops.aprlib`` operator (True: the
    C++ kernel on the CPU, the pure-torch kernel on other devices, the fake one on ``meta``) or calls
    the pure-torch implementation directly (False: ``backend="torch"``, or "auto" on CPU tensors the C++
    kernels do not take)."""
    if x.device.type == "meta":
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        return True
    if resolve_backend(backend, x) == "cpp":
        return True
    return backend == "auto" and x.device.type != "cpu"


def check_batch(batch, ndim: int | None = None) -> None:
    """``batch`` must be an APRBatch (of ``ndim``-dimensional APRs, if given)."""
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch (wrap a single APR as APRBatch([apr])), got {type(batch).__name__}")
    if ndim is not None and batch.ndim != ndim:
        raise ValueError(f"a {ndim}D operation was given a batch of {batch.ndim}D APRs")


def check_features(x: torch.Tensor, n: int) -> None:
    """Features must be a floating-point (n, C) tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"features must be a torch.Tensor (N, C), got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"features must be a 2D (N, C) tensor, got shape {tuple(x.shape)}")
    if x.shape[0] != n:
        raise ValueError(f"features have {x.shape[0]} rows but the APR batch has {n} particles")
    if not x.is_floating_point():
        raise TypeError(f"features must be a floating-point tensor, got {x.dtype}")

"""Adapters between APR particle features and dense feature maps, so that APR layers can follow a
dense stem or feed a dense head (hybrid networks).

* :func:`apr_to_dense` / :class:`APRToDense`: particle features (N, C) -> dense maps (B, C, H, W),
  piecewise constant: every pixel takes the features of the particle whose cell holds it (the APR's
  reconstruction, applied to features).
* :func:`dense_to_apr` / :class:`DenseToAPR`: dense maps (B, C, H, W) -> particle features (N, C):
  each particle takes the mean of its cell's pixels (how an APR's intensities are formed, applied to
  feature maps).

The two are adjoint up to the cell areas (``dense_to_apr(apr_to_dense(x)) == x``). Both are plain
torch indexing ops (any device, autograd included). Their cost is O(pixels): they read or write the
dense map, which the rest of an APR network never does. The pixel -> particle map of each APR is
built and cached by the APR itself (:meth:`APR.pixel_owner`), the batch's by the batch
(:meth:`APRBatch.pixel_owner`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..apr.batch import APRBatch
from ..apr.structure import APR
from .layers import APRFeatures

__all__ = ["pixel_owner", "apr_to_dense", "dense_to_apr", "APRToDense", "DenseToAPR"]


def pixel_owner(apr: APR) -> np.ndarray:
    """Thin wrapper of :meth:`APR.pixel_owner`: (H, W) int64, the index of the particle whose cell
    holds each pixel (cached on the APR)."""
    return apr.pixel_owner()


def _common_shape(batch: APRBatch) -> tuple[int, int]:
    shapes = set(batch.shapes)
    if len(shapes) != 1:
        raise ValueError(f"dense maps need APRs of one image shape, got {sorted(shapes)}")
    return shapes.pop()


def apr_to_dense(features: torch.Tensor, batch: APRBatch) -> torch.Tensor:
    """Particle features (N, C) of ``batch`` -> (B, C, H, W) piecewise-constant maps (every APR of the
    batch must have the same image shape)."""
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch, got {type(batch).__name__}")
    if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != batch.n_particles:
        raise ValueError(f"features must be a (N, C) tensor with N = {batch.n_particles} particles, got "
                         f"{getattr(features, 'shape', type(features).__name__)}")
    H, W = _common_shape(batch)
    dense = features.index_select(0, batch.pixel_owner(features.device))  # (B*H*W, C)
    return dense.reshape(len(batch), H, W, -1).permute(0, 3, 1, 2)


def dense_to_apr(x: torch.Tensor, batch: APRBatch) -> torch.Tensor:
    """(B, C, H, W) maps -> particle features (N, C): the mean of each particle cell's pixels."""
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch, got {type(batch).__name__}")
    H, W = _common_shape(batch)
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[0] != len(batch) or x.shape[2:] != (H, W):
        raise ValueError(f"dense maps must be (B, C, H, W) = ({len(batch)}, C, {H}, {W}), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    owner = batch.pixel_owner(x.device)
    flat = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    sums = flat.new_zeros(batch.n_particles, x.shape[1]).index_add(0, owner, flat)
    counts = torch.bincount(owner, minlength=batch.n_particles).to(x.dtype)
    return sums / counts[:, None]


class APRToDense(nn.Module):
    """APRFeatures -> (B, C, H, W) dense maps (see :func:`apr_to_dense`)."""

    def forward(self, inp: APRFeatures) -> torch.Tensor:
        if not isinstance(inp, APRFeatures):
            raise TypeError(f"APRToDense takes APRFeatures, got {type(inp).__name__}")
        return apr_to_dense(inp.features, inp.batch)


class DenseToAPR(nn.Module):
    """(dense maps (B, C, H, W), APRBatch) -> APRFeatures at the batch's particles (see
    :func:`dense_to_apr`)."""

    def forward(self, x: torch.Tensor, batch: APRBatch) -> APRFeatures:
        return APRFeatures(dense_to_apr(x, batch), batch)

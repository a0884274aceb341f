"""Building a network's index tables on a batch ahead of the forward pass (:func:`prepare`), by
following the network itself: one forward pass on meta tensors, in which every APR layer's own call
builds (and caches on the batch and its APRs) exactly the tables it needs, wherever the data goes
(a chain, or a U-Net whose features come back to an earlier structure)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..apr.batch import APRBatch
from .layers import APRFeatures

__all__ = ["meta_network", "prepare"]


def meta_network(network: nn.Module) -> nn.Module:
    """A copy of ``network`` whose parameters and buffers are on the meta device (shapes, no values, no
    memory): what :func:`prepare` runs. The network itself if they all are already; the module a
    ``torch.compile``d network wraps is copied. Cheap to keep and to send to DataLoader workers."""
    network = getattr(network, "_orig_mod", network)
    params, buffers = list(network.parameters()), list(network.buffers())
    if all(t.device.type == "meta" for t in params + buffers):
        return network
    memo = {id(p): nn.Parameter(p.detach().to("meta"), requires_grad=p.requires_grad) for p in params}
    memo.update({id(b): b.detach().to("meta") for b in buffers})
    return copy.deepcopy(network, memo)


def prepare(batch: APRBatch, network: nn.Module, in_channels: int | None = None) -> None:
    """Build (and cache) every index table ``network`` will need on ``batch``: the tree, the
    neighbourhood tables of its convolutions, the pooled structures of its poolings and the tensors its
    layers make from the batch (the plans' operator tensors, the global average's particle -> APR
    index), at every structure its data reaches, by running the network once on meta tensors
    (:func:`meta_network`; ``torch.no_grad``): each APR layer builds what it needs on the real batch,
    while its arithmetic is shape propagation only. The network, its parameters, buffers and batch-norm
    statistics and the torch RNG are untouched.

    The network is called on ``batch`` (as :class:`aprlib.models.APRNet` takes it: it makes its input
    features on its parameters' device, here meta) or, with ``in_channels``, on
    ``APRFeatures`` of (N, in_channels) meta features (a network that takes features, e.g. an
    ``nn.Sequential`` of APR layers).

    Call it in DataLoader workers (or before timing) so the forward pass only computes: the tables are
    int32 arrays held once, by the APRs, and a pickled batch carries each of them once."""
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch, got {type(batch).__name__}")
    net = meta_network(network)
    inp = batch
    if in_channels is not None:
        dtype = next((p.dtype for p in net.parameters() if p.is_floating_point()), torch.float32)
        inp = APRFeatures(torch.empty(batch.n_particles, int(in_channels), dtype=dtype, device="meta"), batch)
    with torch.no_grad():
        try:
            net(inp)
        except TypeError as e:
            if in_channels is None and "take APRFeatures, got APRBatch" in str(e):
                raise TypeError(f"prepare ran the network on the APRBatch, but it takes APRFeatures ({e}): pass "
                                f"in_channels, the number of input feature channels") from e
            raise

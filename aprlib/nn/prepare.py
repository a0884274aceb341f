"""The one walk over a network's layers: which index tables it needs (:func:`layer_entries`) and
building them on a batch ahead of the forward pass (:func:`prepare`)."""
from __future__ import annotations

from ..ops.plans import build_tables
from .layers import APRConv, APRMaxPool

__all__ = ["layer_entries", "prepare"]


def layer_entries(network) -> list[tuple]:
    """The index tables ``network`` needs, in order: ('conv', k, n_kernels) and ('pool',) entries."""
    out = []
    for m in network.modules():
        if isinstance(m, APRConv):
            out.append(("conv", m.kernel_size, m.n_level_kernels))
        elif isinstance(m, APRMaxPool):
            out.append(("pool",))
    return out


def prepare(batch, network) -> None:
    """Build (and cache) every index table ``network`` will need on ``batch``: the tree, the
    neighbourhood table of each convolution and the pooled structure of each pooling, in layer
    order. Call it in DataLoader workers (or before timing) so the forward pass only computes: the
    tables are int32 arrays held once, by the APRs, and a pickled batch carries each of them once."""
    build_tables(batch, layer_entries(network))

"""prepare (aprlib.nn.prepare) follows the real network: one pass on meta tensors in which every
layer's own call builds the tables it needs, so that a network whose data returns to an earlier
structure (a skip connection) is prepared whole, and the forward pass after it builds nothing."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from aprlib.apr import APR, APRBatch, form_apr
from aprlib.data.synthetic import SyntheticShapesStream
from aprlib.models import apr_network
from aprlib.nn import APRBatchNorm, APRConv2d, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU
from aprlib.nn.prepare import meta_network, prepare
from aprlib.train import BatchBuilder, InputSpec, layer_plan


class SkipNet(nn.Module):
    """conv -> pool -> conv, then the features before the pooling again (a skip connection): a 5x5
    convolution of them, whose global average is added to that of the pooled branch. Logits (B, 3).

    The skip branch's 5x5 convolution runs on the input's structure after the pooling: a walk over
    ``modules()`` as a chain would build its neighbourhood table on the pooled batch instead."""

    def __init__(self):
        super().__init__()
        self.conv1 = APRConv2d(1, 4, 3, 2, bias=False)
        self.bn = APRBatchNorm(4)
        self.relu = APRReLU()
        self.pool = APRMaxPool2d()
        self.conv2 = APRConv2d(4, 3, 3, 1)
        self.skip = APRConv2d(4, 3, 5, 1)
        self.gap = APRGlobalAvgPool()

    def forward(self, inp):
        if isinstance(inp, APRBatch):
            p = self.conv1.weight
            inp = APRFeatures.from_batch(inp, dtype=p.dtype, device=p.device)
        before = self.relu(self.bn(self.conv1(inp)))
        after = self.conv2(self.pool(before))
        return self.gap(after) + self.gap(self.skip(before))


def _aprs(n=3, size=40, seed=5):
    stream = SyntheticShapesStream(seed=seed, size=(size, size))
    return [form_apr(stream.image(j)[0]) for j in range(n)]


def _fresh(aprs):
    """The same APRs without any cached table."""
    return [APR.from_dict(a.to_dict()) for a in aprs]


def cache_keys(batch) -> dict:
    """Every cache key below ``batch``: its ``_tables``, its plans' tensor caches, its APRs' ``_tables``,
    and the same for every pooled batch its pool plan made, by path ('b', 'b.pooled', ...)."""
    out, path = {}, "b"
    while batch is not None:
        out[path] = sorted(map(str, batch._tables))
        for key, v in batch._tables.items():
            if hasattr(v, "_torch"):
                out[f"{path}.{key}"] = sorted(map(str, v._torch))
        for i, a in enumerate(batch.aprs):
            out[f"{path}.apr{i}"] = sorted(map(str, a._tables))
        plan = batch._tables.get(("plan", "pool"))
        batch, path = (plan.out if plan is not None else None), path + ".pooled"
    return out


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_prepare_builds_every_table_of_a_network_with_a_skip_connection():
    aprs = _aprs()
    batch = APRBatch(aprs)
    torch.manual_seed(0)
    net = SkipNet()
    before, rng = _state(net), torch.random.get_rng_state()
    prepare(batch, net)
    # the network (batch-norm statistics included) and the torch RNG are untouched
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert torch.equal(rng, torch.random.get_rng_state())
    assert all(p.device.type == "cpu" and p.grad is None for p in net.parameters())
    # the skip branch's 5x5 table is on the input's structure, the pooled branch's 3x3 on the pooled one
    pooled = batch._tables[("plan", "pool")].out
    assert ("plan", "conv", 5, 1) in batch._tables and ("plan", "conv", 5, 1) not in pooled._tables
    assert ("plan", "conv", 3, 1) in pooled._tables
    assert all(("neighbours", 5) in a._tables for a in aprs)
    prepared = cache_keys(batch)
    assert not any("meta" in key for keys in prepared.values() for key in keys)  # nothing of the meta pass kept
    # the forward and backward passes build no new table, and compute what an unprepared batch gives
    out = net(batch)
    out.square().sum().backward()
    assert cache_keys(batch) == prepared
    grads = [p.grad.clone() for p in net.parameters()]
    torch.manual_seed(0)
    ref_net = SkipNet()
    fresh = APRBatch(_fresh(aprs))
    ref = ref_net(fresh)
    ref.square().sum().backward()
    assert torch.equal(out, ref)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, ref_net.parameters()))
    assert cache_keys(fresh) == prepared  # an unprepared forward builds exactly what prepare built


@pytest.mark.parametrize("name,variant,kw", [("A", "full", {}), ("B", "full", {}), ("B", "close", {}),
                                              ("B", "same", {"spatial_dropout": 0.3, "dropout": 0.5,
                                                             "block_order": "pool_relu_bn"})])
def test_prepare_builds_what_the_forward_pass_of_a_thesis_network_needs(name, variant, kw):
    """For the thesis's networks (training mode, dropout included): after prepare the forward pass
    builds nothing, and prepare builds exactly what an unprepared forward pass builds."""
    aprs = _aprs(seed=7)
    torch.manual_seed(0)
    net = apr_network(name, variant, **kw)
    batch = APRBatch(aprs)
    rng = torch.random.get_rng_state()
    prepare(batch, net)
    assert torch.equal(rng, torch.random.get_rng_state())  # the meta pass drew nothing (dropout)
    prepared = cache_keys(batch)
    net(batch).sum().backward()
    assert cache_keys(batch) == prepared
    fresh = APRBatch(_fresh(aprs))
    with torch.no_grad():
        net(fresh)
    assert cache_keys(fresh) == prepared


def test_prepare_a_network_that_takes_features_and_a_meta_copy():
    aprs = _aprs(2)
    torch.manual_seed(0)
    net = nn.Sequential(APRConv2d(2, 4, 3, 2), APRReLU(), APRMaxPool2d(), APRConv2d(4, 2, 5, 1),
                        APRGlobalAvgPool()).double()
    batch = APRBatch(aprs)
    prepare(batch, net, in_channels=2)
    prepared = cache_keys(batch)
    x = torch.randn(batch.n_particles, 2, dtype=torch.float64)
    net(APRFeatures(x, batch))
    assert cache_keys(batch) == prepared
    # the meta copy: the same structure, no values; itself when already on meta; picklable
    meta = meta_network(net)
    assert meta is not net and meta_network(meta) is meta
    assert all(p.device.type == "meta" and p.dtype == torch.float64 for p in meta.parameters())
    assert all(p.device.type == "cpu" for p in net.parameters())
    copy = pickle.loads(pickle.dumps(meta))
    other = APRBatch(_fresh(aprs))
    prepare(other, copy, in_channels=2)
    assert cache_keys(other) == prepared
    with pytest.raises(TypeError, match="APRBatch"):
        prepare(x, net)


def test_batch_builder_prepares_for_the_network():
    stream = SyntheticShapesStream(seed=3, size=(40, 40))
    torch.manual_seed(0)
    net = SkipNet()
    plan = layer_plan(net)
    assert all(p.device.type == "meta" for p in plan.parameters())
    builder = pickle.loads(pickle.dumps(BatchBuilder(InputSpec("apr"), plan)))  # as spawned workers get it
    batch, labels = builder([stream.image(j) for j in range(3)])
    prepared = cache_keys(batch)
    assert ("plan", "conv", 5, 1) in batch._tables
    net(batch)
    assert cache_keys(batch) == prepared
    assert BatchBuilder(InputSpec("apr")).plan is None
    with pytest.raises(TypeError, match="network"):
        BatchBuilder(InputSpec("apr"), [("conv", 3, 1)])
    np.testing.assert_array_equal(labels.numpy(), [stream.image(j)[1] for j in range(3)])


def test_a_network_that_takes_features_needs_in_channels():
    import aprlib
    from aprlib.nn.prepare import prepare
    net = torch.nn.Sequential(aprlib.APRConv2d(1, 2, 3), aprlib.APRGlobalAvgPool())
    img = np.zeros((16, 16), np.float32)
    img[4:9, 5:11] = 1.0
    batch = aprlib.APRBatch([aprlib.form_apr(img)])
    with pytest.raises(TypeError, match="pass in_channels"):
        prepare(batch, net)
    prepare(batch, net, in_channels=1)

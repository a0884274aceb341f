"""An APR and an APRBatch own their index tables (issue 41, item 1): each holds them in one declared
cache (``_tables``, made with the object), builds them through its own methods, and drops them with
itself; no module writes into another object's ``__dict__``; a batch's tables are built once and
shared by every layer (and by every batch of the same APRs)."""
from __future__ import annotations

import gc
import pathlib
import pickle
import re
import weakref
from collections import Counter

import numpy as np
import pytest
import torch

from aprlib import _core
from aprlib.apr import APR, APRBatch, apr_children, apr_neighbours, apr_pooled, form_apr
from aprlib.data.synthetic import SyntheticShapesStream
from aprlib.models import apr_network
from aprlib.nn import APRConv2d, DenseToAPR, apr_to_dense, pixel_owner
from aprlib.nn.prepare import prepare
from aprlib.ops import conv_plan, plans, pool_plan, tree_plan

# what __init__ (and APR._from_kernel) give an object: nothing is ever added to these
APR_ATTRS = {"height", "width", "level", "y", "x", "parent", "tree_level", "tree_y", "tree_x", "tree_parent",
             "level_min", "level_max", "level_offsets", "tree_offsets", "params", "_intensities", "_tables"}
BATCH_ATTRS = {"aprs", "particle_offsets", "tree_offsets", "batch_index", "_tables"}


def _aprs(n=3, size=48, seed=5):
    stream = SyntheticShapesStream(seed=seed, size=(size, size))
    return [form_apr(stream.image(j)[0]) for j in range(n)]


def _batches_below(batch):
    """The batch and every pooled batch its pool plans made, finest first."""
    out = [batch]
    while ("plan", "pool") in batch._tables:
        batch = batch._tables[("plan", "pool")].out
        out.append(batch)
    return out


def test_a_new_apr_and_batch_hold_exactly_the_declared_attributes():
    aprs = _aprs(2)
    assert set(vars(aprs[0])) == APR_ATTRS  # formed by the C++ kernels (APR._from_kernel)
    assert set(vars(APR.from_dict(aprs[0].to_dict()))) == APR_ATTRS  # through __init__
    batch = APRBatch(aprs)
    assert set(vars(batch)) == BATCH_ATTRS
    assert aprs[0]._tables == {} and batch._tables == {}


def test_a_forward_and_backward_pass_writes_only_into_the_declared_caches():
    aprs = _aprs(3)
    batch = APRBatch(aprs)
    torch.manual_seed(0)
    net = apr_network("B")
    out = net(batch)  # no prepare: the layers build what they need
    out.sum().backward()
    x = apr_to_dense(batch.features(), batch)  # the adapters' pixel maps too
    DenseToAPR()(x, batch)
    batches = _batches_below(batch)
    assert len(batches) > 2
    for b in batches:
        assert set(vars(b)) == BATCH_ATTRS
        for a in b.aprs:
            assert set(vars(a)) == APR_ATTRS
    ks = {m.kernel_size for m in net.modules() if isinstance(m, APRConv2d)}
    for a in aprs:
        assert {("children",), ("pooled",), ("pixel_owner",)} <= set(a._tables)
    keys = {key for b in batches for a in b.aprs for key in a._tables}
    assert {("neighbours", k) for k in ks if k > 1} <= keys  # each at the resolution its convolution runs
    assert all(isinstance(key, tuple) for key in keys)
    assert any(key[:2] == ("plan", "conv") for key in batch._tables)
    assert {("plan", "tree"), ("plan", "pool"), ("pixel_owner", "cpu")} <= set(batch._tables)
    assert ("batch_index", "cpu") in batches[-1]._tables  # the global average pooling's


def test_no_module_writes_into_an_objects_dict():
    root = pathlib.Path(__file__).resolve().parents[1]
    bad = []
    for p in list((root / "aprlib").rglob("*.py")) + list((root / "aprbook").rglob("*.py")):
        for i, line in enumerate(p.read_text().splitlines(), 1):
            if re.search(r"__dict__\s*\[|__dict__\.(setdefault|get|pop)\(|_plan_cache|_index_cache", line):
                bad.append(f"{p.relative_to(root)}:{i}: {line.strip()}")
    assert not bad, bad


def _count_builds(monkeypatch):
    """Counters of the per-APR table builders (by APR structure) and the batch plan classes (by batch)."""
    counts = Counter()

    def wrap(name):
        real = getattr(_core, name)

        def counted(*args):
            extra = args[10:]  # neighbour_table's k
            counts[(name, id(args[0])) + tuple(extra)] += 1  # args[0]: the APR's own level array
            return real(*args)
        monkeypatch.setattr(_core, name, counted)

    for name in ("child_table", "neighbour_table", "pool_structure"):
        wrap(name)
    for cls in (plans.TreePlan, plans.ConvPlan, plans.PoolPlan):
        real_init = cls.__init__

        def init(self, aprs, *args, _real=real_init, _name=cls.__name__):
            counts[(_name, tuple(id(a) for a in aprs)) + args] += 1
            _real(self, aprs, *args)
        monkeypatch.setattr(cls, "__init__", init)
    return counts


def test_the_tables_of_a_batch_are_built_once_and_shared(monkeypatch):
    aprs = _aprs(3)
    batch = APRBatch(aprs)
    torch.manual_seed(0)
    net = apr_network("B").eval()
    counts = _count_builds(monkeypatch)
    prepare(batch, net)
    built = dict(counts)
    assert built and set(built.values()) == {1}  # every table and plan once
    with torch.no_grad():
        y1 = net(batch)
        y2 = net(batch)
    assert dict(counts) == built  # the forward passes only used them
    assert torch.equal(y1, y2)
    n_conv = sum(isinstance(m, APRConv2d) for m in net.modules())
    n_conv_plans = sum(1 for key in counts if key[0] == "ConvPlan")
    assert 0 < n_conv_plans <= n_conv  # convolutions of one size and level count on one batch share a plan
    # the batch plans hold the APRs' own tables (no copies), and the wrappers return the same objects
    conv = next(m for m in net.modules() if isinstance(m, APRConv2d) and m.kernel_size > 1)
    k = conv.kernel_size
    plan = conv_plan(batch, k, conv.n_level_kernels)
    assert plan is batch._tables[("plan", "conv", k, conv.n_level_kernels)]
    assert all(t is a.neighbourhood(k) for t, a in zip(plan.tables, aprs))
    assert tree_plan(batch) is batch._tables[("plan", "tree")] and pool_plan(batch) is batch._tables[("plan", "pool")]
    assert apr_children(aprs[0]) is aprs[0].children() and apr_pooled(aprs[0]) is aprs[0].pooled()
    assert apr_neighbours(aprs[0], k) is aprs[0].neighbourhood(k)
    assert pixel_owner(aprs[0]) is aprs[0].pixel_owner()
    # another batch of the same APRs makes its own plans from the APRs' tables, built already
    other = APRBatch(aprs[::-1])
    prepare(other, net)
    new = {key: v for key, v in counts.items() if key not in built}
    assert new and all(key[0] in ("TreePlan", "ConvPlan", "PoolPlan") for key in new)


def test_dropping_the_objects_drops_their_tables():
    aprs = _aprs(2)
    batch = APRBatch(aprs)
    torch.manual_seed(0)
    net = apr_network("B").eval()
    prepare(batch, net)
    with torch.no_grad():
        net(batch)
    pooled = pool_plan(batch).out
    refs = [weakref.ref(o) for o in (batch, pooled, tree_plan(batch), aprs[0], aprs[1], aprs[0].neighbourhood(3),
                                     aprs[0].children()[0], aprs[0].pooled()[1], pooled.aprs[0])]
    del batch, pooled, aprs
    gc.collect()
    assert [r() is None for r in refs] == [True] * len(refs)


def test_a_pickled_prepared_batch_keeps_and_uses_its_tables(monkeypatch):
    from multiprocessing.reduction import ForkingPickler
    batch = APRBatch(_aprs(2))
    torch.manual_seed(0)
    net = apr_network("B").eval()
    prepare(batch, net)
    with torch.no_grad():
        ref = net(batch)
    for copy in (pickle.loads(pickle.dumps(batch)), pickle.loads(bytes(ForkingPickler.dumps(batch)))):
        assert set(vars(copy)) == BATCH_ATTRS and all(set(vars(a)) == APR_ATTRS for a in copy.aprs)
        assert set(copy._tables) == set(batch._tables)
        counts = _count_builds(monkeypatch)
        with torch.no_grad():
            assert torch.equal(net(copy), ref)
        assert not counts  # nothing rebuilt after the trip
        monkeypatch.undo()

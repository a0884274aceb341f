"""The APR operators together (``torch.ops.aprlib.*``, registered by :mod:`aprlib.ops.tree_means`,
:mod:`aprlib.ops.conv`, :mod:`aprlib.ops.max_pool` and :mod:`aprlib.ops.upsample`): their schemas, a kernel for every device, and
``torch.compile`` of a small APR network: compiled output and gradients equal to eager ones, the APR
operators inside the graphs, and the number of graph breaks (printed; run with ``-s`` to see it).
Each operator's own tests (opcheck, its pure-torch kernel, meta tensors) are in tests/ops/test_<op>.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import aprlib
from aprlib.nn import (APRBatchNorm, APRConv2d, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU)
from ops.op_batches import small_batch

OPS = ("tree_means", "tree_means_transpose", "conv", "conv_backward", "pool", "pool_backward", "upsample",
       "upsample_backward")

# Graph breaks of the small network below under torch.compile at 8baf6dc, before the operators were
# registered, counted the same way (dynamo's graph_break counter over the first forward/backward, tables
# not built yet): 73, in 56 graphs (torch._dynamo.explain: 68 graphs, 67 breaks), against 9 in 8 graphs
# (explain: 8 graphs, 7 breaks) with them
BREAKS_BEFORE = 73


@pytest.fixture(scope="module")
def batch():
    b = small_batch()
    assert any(len(a.levels_present()) > 2 for a in b.aprs)
    return b


def test_operators_are_registered_with_tensor_arguments_only():
    for name in OPS:
        op = getattr(torch.ops.aprlib, name)
        schema = op.default._schema
        assert schema.name == f"aprlib::{name}"
        types = {str(a.type) for a in schema.arguments}
        assert types <= {"Tensor", "Optional[Tensor]", "List[Tensor]", "int", "bool"}, (name, types)
        assert not any(a.alias_info for a in schema.arguments), name  # functional: nothing mutated


# --- opcheck per operator -------------------------------------------------------------------------
def test_operators_have_a_kernel_for_every_device():
    """The C++ kernel for the CPU, the pure-torch one for every other device (the default backend
    kernel, e.g. CUDA), the fake one for meta tensors, and autograd on all of them (forward ops)."""
    for name in OPS:
        table = {line.split(":")[0]: line for line in torch._C._dispatch_dump_table(f"aprlib::{name}").splitlines()}
        assert table["CPU"].endswith("[kernel]"), table["CPU"]
        assert table["CUDA"].endswith("[default backend kernel]"), table["CUDA"]
        assert table["Meta"].endswith("[kernel]"), table["Meta"]
        for key in ("AutogradCPU", "AutogradCUDA", "AutogradMeta"):
            assert table[key].endswith("[autograd kernel]"), table[key]
    import aprlib.ops
    assert set(aprlib.ops.OPS) == set(OPS)


# --- torch.compile of a small APR network ----------------------------------------------------------
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(APRConv2d(1, 4, 3, 2, bias=False), APRBatchNorm(4), APRReLU(), APRMaxPool2d(),
                         APRConv2d(4, 6, 3, 1), APRReLU(), APRConv2d(6, 3, 1, 1), APRGlobalAvgPool()).double()


def _step(net, batch):
    """Logits and the parameter gradients of one forward/backward pass."""
    net.zero_grad()
    x = APRFeatures.from_batch(batch, dtype=torch.float64)
    out = net(x)
    (out * torch.arange(1.0, out.numel() + 1, dtype=out.dtype).reshape(out.shape)).sum().backward()
    return out.detach(), {n: p.grad.clone() for n, p in getattr(net, "_orig_mod", net).named_parameters()}


@pytest.fixture(scope="module")
def compiled():
    """The small network compiled once (aot_eager: AOT autograd with the fake implementations and the
    registered backward, kernels run eagerly), the graphs it captured and its graph-break count."""
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    graphs = []
    counter = CompileCounterWithBackend("aot_eager")

    def backend(gm, example_inputs):
        graphs.append(gm)
        return counter(gm, example_inputs)

    net = small_net()
    cnet = torch.compile(net, backend=backend)
    batch = small_batch(seed=1)
    out = _step(cnet, batch)
    breaks = sum(counters["graph_break"].values())
    reasons = {r.split("Skip calling function `")[-1].split(" at ")[0][:80]: n for r, n in counters["graph_break"].items()}
    print(f"\ntorch.compile of the small APR network: {counter.frame_count} graphs, {breaks} graph breaks "
          f"(at 8baf6dc, before the operators: {BREAKS_BEFORE}); breaks at: {reasons}")
    yield {"net": net, "cnet": cnet, "batch": batch, "out": out, "graphs": list(graphs), "breaks": breaks,
           "frames": counter.frame_count}
    torch._dynamo.reset()


def test_compiled_network_equals_eager(compiled):
    out, grads = compiled["out"]
    ref_out, ref_grads = _step(compiled["net"], compiled["batch"])
    np.testing.assert_array_equal(out, ref_out)
    for name, g in ref_grads.items():
        np.testing.assert_array_equal(grads[name], g, err_msg=name)
    # a second batch of another size through the same compiled network
    b2 = small_batch(seed=2, sizes=((20, 20), (14, 22)))
    out2, grads2 = _step(compiled["cnet"], b2)
    ref2, ref_grads2 = _step(compiled["net"], b2)
    np.testing.assert_array_equal(out2, ref2)
    for name, g in ref_grads2.items():
        np.testing.assert_array_equal(grads2[name], g, err_msg=name)


def test_apr_operators_are_inside_the_graphs(compiled):
    called = [str(n.target) for gm in compiled["graphs"] for n in gm.graph.nodes if n.op == "call_function"]
    aprlib_ops = [c for c in called if c.startswith("aprlib.")]
    # first call: 3 convolutions (two with tree means) and one pooling
    assert sorted(aprlib_ops) == sorted(["aprlib.conv"] * 3 + ["aprlib.tree_means"] * 2 + ["aprlib.pool"]), aprlib_ops
    # the only breaks are the plan look-ups (eager, compiler.disable'd): one per APR op call
    from torch._dynamo.utils import counters
    reasons = " ".join(counters["graph_break"])
    assert "_conv_setup" in reasons and "_pool_setup" in reasons
    assert "aprlib::" not in reasons and "aprlib." not in reasons
    assert compiled["breaks"] < BREAKS_BEFORE

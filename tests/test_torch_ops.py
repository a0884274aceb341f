"""The C++ APR kernels as torch operators (``torch.ops.aprlib.*``, :mod:`aprlib.ops.library`): their
schemas, ``torch.library.opcheck`` of each operator (schema, autograd registration, fake tensors, AOT
dispatch with dynamic shapes; float64 and float32, a small APR batch), and ``torch.compile`` of a small
APR network: compiled output and gradients equal to eager ones, the APR operators inside the graphs, and
the number of graph breaks (printed; run with ``-s`` to see it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import aprlib
from aprlib.data.synthetic import generate_image
from aprlib.nn import (APRBatchNorm, APRConv2d, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU)
from aprlib.ops import apr_conv2d, apr_max_pool2d, conv_plan, pool_plan, tree_plan, tree_values

OPS = ("tree_means", "tree_means_transpose", "conv", "conv_backward", "pool", "pool_backward")
DTYPES = (torch.float64, torch.float32)

# Graph breaks of the small network below under torch.compile at 8baf6dc, before the operators were
# registered, counted the same way (dynamo's graph_break counter over the first forward/backward, tables
# not built yet): 73, in 56 graphs (torch._dynamo.explain: 68 graphs, 67 breaks), against 9 in 8 graphs
# (explain: 8 graphs, 7 breaks) with them
BREAKS_BEFORE = 73


def small_batch(seed=0, sizes=((24, 20), (16, 16), (12, 18))):
    """A batch of small multi-level APRs (synthetic shapes, some with texture)."""
    rng = np.random.default_rng(seed)
    aprs = []
    for i, (h, w) in enumerate(sizes):
        img = generate_image(i % 6, rng, size=(h, w))
        img = img + 0.05 * rng.random((h, w)).astype(np.float32) * (i % 2)
        aprs.append(aprlib.form_apr(img, rel_error=0.3, gradient_smoothing=0.0, sigma_th=0.01))
    return aprlib.APRBatch(aprs)


@pytest.fixture(scope="module")
def batch():
    b = small_batch()
    assert any(len(a.levels_present()) > 2 for a in b.aprs)
    return b


def _randn(*shape, dtype, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def test_operators_are_registered_with_tensor_arguments_only():
    for name in OPS:
        op = getattr(torch.ops.aprlib, name)
        schema = op.default._schema
        assert schema.name == f"aprlib::{name}"
        types = {str(a.type) for a in schema.arguments}
        assert types <= {"Tensor", "Optional[Tensor]", "List[Tensor]", "int", "bool"}, (name, types)
        assert not any(a.alias_info for a in schema.arguments), name  # functional: nothing mutated


# --- opcheck per operator -------------------------------------------------------------------------
def _tree_args(batch):
    return tree_plan(batch).op_tensors()


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_tree_means(batch, dtype):
    x = _randn(batch.n_particles, 3, dtype=dtype, grad=True)
    torch.library.opcheck(torch.ops.aprlib.tree_means, (x, *_tree_args(batch)))
    vals = torch.ops.aprlib.tree_means(x, *_tree_args(batch))
    np.testing.assert_array_equal(vals.detach(), tree_values(x, batch).detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_tree_means_transpose(batch, dtype):
    n, t = batch.n_particles, tree_plan(batch).T
    grad = _randn(n + t + 1, 3, dtype=dtype, seed=1)
    torch.library.opcheck(torch.ops.aprlib.tree_means_transpose, (grad, *_tree_args(batch)))
    # it is the transpose: <tree_means(x), g> == <x, tree_means_transpose(g)>
    x = _randn(n, 3, dtype=torch.float64, seed=2)
    g64 = grad.double()
    lhs = (torch.ops.aprlib.tree_means(x, *_tree_args(batch)) * g64).sum()
    rhs = (x * torch.ops.aprlib.tree_means_transpose(g64, *_tree_args(batch))).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


def _conv_args(batch, k, n_kernels, c, step=None):
    from aprlib.ops.library import chunk_rows
    return conv_plan(batch, k, n_kernels).op_tensors(step or chunk_rows(k * k * c))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,n_kernels,bias,step", [(1, 2, True, None), (3, 3, False, None), (5, 2, True, 17)])
def test_opcheck_conv(batch, dtype, k, n_kernels, bias, step):
    """Chunks of 17 rows cut the kernel groups into several pieces."""
    c, d = 2, 3
    x = _randn(batch.n_particles, c, dtype=dtype, grad=True)
    vals = x if k == 1 else torch.ops.aprlib.tree_means(x, *_tree_args(batch)).detach().requires_grad_()
    w = _randn(d, c, n_kernels, k, k, dtype=dtype, seed=1, grad=True)
    b = _randn(d, dtype=dtype, seed=2, grad=True) if bias else None
    args = (vals, w, b, *_conv_args(batch, k, n_kernels, c, step))
    torch.library.opcheck(torch.ops.aprlib.conv, args)
    if step is None:  # the public function is this operator (with tree_means for k > 1)
        np.testing.assert_array_equal(torch.ops.aprlib.conv(*args).detach(), apr_conv2d(x, batch, w, b).detach())
    else:  # other chunks, same result up to rounding
        ref = apr_conv2d(x, batch, w, b).detach()
        torch.testing.assert_close(torch.ops.aprlib.conv(*args).detach(), ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,need", [(1, (True, True, True)), (3, (True, True, False)), (5, (False, True, True))])
def test_opcheck_conv_backward(batch, dtype, k, need):
    c, d, n_kernels = 2, 3, 2
    x = _randn(batch.n_particles, c, dtype=dtype)
    vals = x if k == 1 else torch.ops.aprlib.tree_means(x, *_tree_args(batch))
    w = _randn(d, c, n_kernels, k, k, dtype=dtype, seed=1)
    grad_out = _randn(batch.n_particles, d, dtype=dtype, seed=2)
    args = (grad_out, vals, w, *_conv_args(batch, k, n_kernels, c), *need)
    torch.library.opcheck(torch.ops.aprlib.conv_backward, args)
    gv, gw, gb = torch.ops.aprlib.conv_backward(*args)
    assert gv.shape == (vals.shape if need[0] else (0,)) and gw.shape == (w.shape if need[1] else (0,))
    assert gb.shape == ((d,) if need[2] else (0,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_pool(batch, dtype):
    x = _randn(batch.n_particles, 3, dtype=dtype, grad=True)
    table = pool_plan(batch).op_tensor()
    torch.library.opcheck(torch.ops.aprlib.pool, (x, table))
    out, argmax = torch.ops.aprlib.pool(x, table)
    assert argmax.dtype == torch.int64 and out.shape == argmax.shape == (table.shape[0], 3)
    np.testing.assert_array_equal(out.detach(), apr_max_pool2d(x, batch)[0].detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_pool_backward(batch, dtype):
    x = _randn(batch.n_particles, 3, dtype=dtype)
    _, argmax = torch.ops.aprlib.pool(x, pool_plan(batch).op_tensor())
    grad_out = _randn(*argmax.shape, dtype=dtype, seed=1)
    torch.library.opcheck(torch.ops.aprlib.pool_backward, (grad_out, argmax, batch.n_particles))


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

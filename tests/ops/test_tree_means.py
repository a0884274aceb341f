"""Tree means (aprlib.ops.tree_means): the operators ``torch.ops.aprlib.tree_means`` and
``tree_means_transpose`` (opcheck: schema, autograd, fake tensors; the transpose property), their
pure-torch kernel for devices other than the CPU (run through the dispatcher's CUDA entry on CPU
tensors), meta tensors, and :func:`aprlib.ops.tree_values` with both backends (gradcheck)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aprlib.ops import tree_plan, tree_values
from op_batches import BACKENDS, DTYPES, multi_level_batch, on_default_kernel, randn, tree_args


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_tree_means(batch, dtype):
    x = randn(batch.n_particles, 3, dtype=dtype, grad=True)
    torch.library.opcheck(torch.ops.aprlib.tree_means, (x, *tree_args(batch)))
    vals = torch.ops.aprlib.tree_means(x, *tree_args(batch))
    np.testing.assert_array_equal(vals.detach(), tree_values(x, batch).detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_tree_means_transpose(batch, dtype):
    n, t = batch.n_particles, tree_plan(batch).T
    grad = randn(n + t + 1, 3, dtype=dtype, seed=1)
    torch.library.opcheck(torch.ops.aprlib.tree_means_transpose, (grad, *tree_args(batch)))
    # it is the transpose: <tree_means(x), g> == <x, tree_means_transpose(g)>
    x = randn(n, 3, dtype=torch.float64, seed=2)
    g64 = grad.double()
    lhs = (torch.ops.aprlib.tree_means(x, *tree_args(batch)) * g64).sum()
    rhs = (x * torch.ops.aprlib.tree_means_transpose(g64, *tree_args(batch))).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tree_gradcheck(backend):
    """(The tree half of test_layers.py's former test_pool_and_tree_gradcheck; the pooling half is in
    test_max_pool.py.)"""
    batch = multi_level_batch(seed=3)
    x = torch.randn(batch.n_particles, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: tree_values(x, batch, backend=backend), (x,))



def test_other_devices_run_the_pure_torch_kernels(batch):
    """The kernel the dispatcher gives CUDA tensors is the pure-torch implementation (the one
    ``backend="torch"`` calls): equal to the C++ kernels up to rounding, in both directions."""
    for name in ("tree_means", "tree_means_transpose"):
        table = torch._C._dispatch_dump_table(f"aprlib::{name}")
        assert "CPU: registered" in table and "CUDA: registered" in table
        assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"aprlib::{name}", "CUDA")
    args = tree_args(batch)
    x = randn(batch.n_particles, 3, dtype=torch.float64)
    got = on_default_kernel(torch.ops.aprlib.tree_means, x, *args)
    np.testing.assert_array_equal(got, tree_values(x, batch, backend="torch"))
    torch.testing.assert_close(got, torch.ops.aprlib.tree_means(x, *args), rtol=1e-13, atol=1e-13)
    g = randn(got.shape[0], 3, dtype=torch.float64, seed=1)
    torch.testing.assert_close(on_default_kernel(torch.ops.aprlib.tree_means_transpose, g, *args),
                               torch.ops.aprlib.tree_means_transpose(g, *args), rtol=1e-13, atol=1e-13)
    # the pure-torch transpose is the gradient of the pure-torch tree means
    xg = x.clone().requires_grad_()
    (auto,) = torch.autograd.grad(tree_values(xg, batch, backend="torch"), xg, g)
    torch.testing.assert_close(on_default_kernel(torch.ops.aprlib.tree_means_transpose, g, *args), auto,
                               rtol=1e-13, atol=1e-13)
    # CPU tensors the C++ kernel does not take (bfloat16) go to the pure-torch kernel too
    xb = x.to(torch.bfloat16)
    assert torch.equal(torch.ops.aprlib.tree_means(xb, *args), on_default_kernel(torch.ops.aprlib.tree_means, xb, *args))


@pytest.mark.parametrize("backend", ("auto",) + BACKENDS)
def test_meta_tensors_give_meta_tensors_of_the_right_shape(batch, backend):
    """The same operator call on meta tensors (plan tensors moved to the features' device, uncached):
    meta outputs of the value array's shape, forward and backward, with every backend."""
    plan = tree_plan(batch)
    args = plan.op_tensors("meta")
    assert all(a.device.type == "meta" for a in args)
    x = torch.empty(batch.n_particles, 3, device="meta", requires_grad=True)
    v = torch.ops.aprlib.tree_means(x, *args)
    assert v.device.type == "meta" and v.shape == (plan.N + plan.T + 1, 3)
    v = tree_values(x, batch, backend=backend)
    assert v.device.type == "meta" and v.shape == (plan.N + plan.T + 1, 3)
    v.sum().backward()
    assert x.grad.device.type == "meta" and x.grad.shape == x.shape
    assert not any("meta" in str(key) for key in plan._torch)  # nothing of the meta pass is kept

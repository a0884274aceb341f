"""APR max pooling (aprlib.ops.max_pool): the operators ``torch.ops.aprlib.pool`` and
``pool_backward`` (opcheck), their pure-torch kernels for devices other than the CPU (run through the
dispatcher's CUDA entry on CPU tensors), meta tensors, and :func:`aprlib.ops.apr_max_pool2d`: pixel
oracles, odd sizes, gradchecks, the pooled structure."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aprlib import APRBatch
from aprlib.apr import apr_pooled
from aprlib.ops import apr_max_pool2d, pool_plan
from op_batches import BACKENDS, DTYPES, full_resolution_apr, multi_level_batch, on_default_kernel, randn


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_pool(batch, dtype):
    x = randn(batch.n_particles, 3, dtype=dtype, grad=True)
    table = pool_plan(batch).op_tensor()
    torch.library.opcheck(torch.ops.aprlib.pool, (x, table))
    out, argmax = torch.ops.aprlib.pool(x, table)
    assert argmax.dtype == torch.int64 and out.shape == argmax.shape == (table.shape[0], 3)
    np.testing.assert_array_equal(out.detach(), apr_max_pool2d(x, batch)[0].detach())


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_pool_backward(batch, dtype):
    x = randn(batch.n_particles, 3, dtype=dtype)
    _, argmax = torch.ops.aprlib.pool(x, pool_plan(batch).op_tensor())
    grad_out = randn(*argmax.shape, dtype=dtype, seed=1)
    torch.library.opcheck(torch.ops.aprlib.pool_backward, (grad_out, argmax, batch.n_particles))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,C", [((16, 16), 1), ((8, 12), 3)])
def test_max_pool_equals_max_pool2d_on_pixel_apr(backend, shape, C):
    apr, _ = full_resolution_apr(*shape, seed=C)
    batch = APRBatch([apr])
    x = torch.randn(apr.n_particles, C, dtype=torch.float64, requires_grad=True)
    out, pooled = apr_max_pool2d(x, batch, backend=backend)
    H, W = shape
    ref = F.max_pool2d(x.t().reshape(1, C, H, W), 2)
    assert pooled.aprs[0].levels_present() == [apr.level_max - 1]
    assert pooled.n_particles == (H // 2) * (W // 2)
    np.testing.assert_array_equal(out.t().reshape(1, C, H // 2, W // 2).detach(), ref.detach())
    gy = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, gy)
    (rx,) = torch.autograd.grad(ref, x, gy.t().reshape(1, C, H // 2, W // 2))
    np.testing.assert_array_equal(gx, rx)


def test_pooling_odd_sizes_matches_ceil_mode():
    apr, img = full_resolution_apr(9, 7)
    x = torch.from_numpy(img.reshape(-1, 1)).double()
    out, pooled = apr_max_pool2d(x, APRBatch([apr]))
    ref = F.max_pool2d(torch.from_numpy(img).double()[None, None], 2, ceil_mode=True)[0, 0]
    np.testing.assert_array_equal(pooled.aprs[0].reconstruct(out[:, 0].numpy())[::2, ::2], ref.float())


def test_pooled_structure_is_valid_apr_with_finest_level_dropped():
    batch = multi_level_batch(seed=7)
    for apr in batch.aprs:
        pooled, table = apr_pooled(apr)
        assert pooled.level.max() == apr.level.max() - 1
        cover = np.zeros(apr.shape, int)
        lm = pooled.level_map()
        for i in range(pooled.n_particles):
            s = 2 ** (pooled.level_max - pooled.level[i])
            cover[pooled.y[i] * s:(pooled.y[i] + 1) * s, pooled.x[i] * s:(pooled.x[i] + 1) * s] += 1
        assert (cover == 1).all()
        assert np.abs(np.diff(lm.astype(int), axis=0)).max() <= 2  # pooling coarsens only the finest band
        # every input particle feeds exactly one output row
        used = table[table >= 0]
        assert sorted(used.tolist()) == list(range(apr.n_particles))



@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_gradcheck(backend):
    """(The pooling half of test_layers.py's former test_pool_and_tree_gradcheck; the tree half is in
    test_tree_means.py.)"""
    batch = multi_level_batch(seed=3)
    x = torch.randn(batch.n_particles, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: apr_max_pool2d(x, batch, backend=backend)[0], (x,))


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_devices_run_the_pure_torch_kernels(batch, dtype):
    """The kernels the dispatcher gives CUDA tensors are the pure-torch implementation (the one
    ``backend="torch"`` calls): the C++ kernels' pooled values, argmax rows and gradients exactly."""
    for name in ("pool", "pool_backward"):
        assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"aprlib::{name}", "CUDA")
    x = randn(batch.n_particles, 3, dtype=dtype)
    table = pool_plan(batch).op_tensor()
    out, argmax = on_default_kernel(torch.ops.aprlib.pool, x, table)
    ref_out, ref_argmax = torch.ops.aprlib.pool(x, table)
    assert torch.equal(out, ref_out) and torch.equal(argmax, ref_argmax)
    assert torch.equal(out, apr_max_pool2d(x, batch, backend="torch")[0])
    g = randn(*out.shape, dtype=dtype, seed=1)
    assert torch.equal(on_default_kernel(torch.ops.aprlib.pool_backward, g, argmax, batch.n_particles),
                       torch.ops.aprlib.pool_backward(g, argmax, batch.n_particles))


@pytest.mark.parametrize("backend", ("auto",) + BACKENDS)
def test_meta_tensors_give_meta_tensors_of_the_right_shape(batch, backend):
    """The same operator call on meta tensors (the table moved to the features' device, uncached):
    meta (M, C) outputs, the pooled batch, and a meta gradient of the input's shape, every backend."""
    plan = pool_plan(batch)
    x = torch.empty(batch.n_particles, 3, device="meta", requires_grad=True)
    out, argmax = torch.ops.aprlib.pool(x, plan.op_tensor("meta"))
    m = plan.out.n_particles
    assert out.device.type == argmax.device.type == "meta" and out.shape == argmax.shape == (m, 3)
    assert argmax.dtype == torch.int64
    out, pooled = apr_max_pool2d(x, batch, backend=backend)
    assert out.device.type == "meta" and out.shape == (m, 3) and pooled is plan.out
    out.sum().backward()
    assert x.grad.device.type == "meta" and x.grad.shape == x.shape
    assert not any("meta" in str(key) for key in plan._torch)  # nothing of the meta pass is kept

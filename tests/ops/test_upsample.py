"""APR upsampling (aprlib.ops.upsample): the operators ``torch.ops.aprlib.upsample`` and
``upsample_backward`` (opcheck), their pure-torch kernels for devices other than the CPU, meta tensors,
and :func:`aprlib.ops.apr_upsample`: on an APR of pixels (voxels) pooling then upsampling is
``F.interpolate(F.max_pool2d(x, 2), scale_factor=2, mode="nearest")`` (3d; ceil mode and a crop for odd
sizes), gradchecks for both backends, the C++ and torch paths agree on random multi-level APRs in 2D and
3D, the index is the pooling table's inverse, clear errors."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import aprlib
from aprlib import APRBatch, APRFeatures
from aprlib.ops import apr_max_pool, apr_upsample, apr_upsample2d, apr_upsample3d, pool_plan
from op_batches import BACKENDS, DTYPES, multi_level_batch, on_default_kernel, randn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_cells import dense_apr, random_cells  # noqa: E402


def _random_batch(shapes, seed, p=0.5):
    return APRBatch([aprlib.APR.from_cells(s, *random_cells(s, seed + i, p)) for i, s in enumerate(shapes)])


BATCHES = {
    "2d": lambda: _random_batch([(13, 17), (16, 16), (5, 9)], 30),
    "3d": lambda: _random_batch([(6, 7, 5), (8, 8, 8), (3, 4, 5)], 40),
}


def test_index_is_the_inverse_of_the_pooling_table():
    for b in [multi_level_batch(seed=2), BATCHES["3d"]()]:
        plan = pool_plan(b)
        up = plan.up_index
        assert up.dtype == np.int32 and up.shape == (b.n_particles,)
        m, n_in = plan.table.shape
        for j in range(n_in):
            rows = plan.table[:, j]
            ok = rows >= 0
            np.testing.assert_array_equal(up[rows[ok]], np.arange(m)[ok])
        assert plan.up_tensor() is plan.up_tensor()  # cached in the plan (the batch's cache)
        assert plan.up_tensor().data_ptr() == up.ctypes.data  # zero-copy


@pytest.mark.parametrize("dtype", DTYPES)
def test_opcheck_upsample(batch, dtype):
    plan = pool_plan(batch)
    x = randn(plan.out.n_particles, 3, dtype=dtype, grad=True)
    index = plan.up_tensor()
    torch.library.opcheck(torch.ops.aprlib.upsample, (x, index))
    out = torch.ops.aprlib.upsample(x, index)
    assert out.shape == (batch.n_particles, 3)
    assert torch.equal(out, x.detach()[index.long()])
    g = randn(batch.n_particles, 3, dtype=dtype, seed=1)
    torch.library.opcheck(torch.ops.aprlib.upsample_backward, (g, index, plan.out.n_particles))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape,C", [((16, 16), 1), ((8, 12), 3), ((9, 7), 2), ((5, 6), 1)])
def test_pool_then_upsample_is_nearest_interpolation_on_a_pixel_apr(backend, shape, C):
    apr = dense_apr(shape)
    batch = APRBatch([apr])
    x = torch.randn(apr.n_particles, C, generator=torch.Generator().manual_seed(C), dtype=torch.float64,
                    requires_grad=True)
    pooled, _ = apr_max_pool(x, batch, backend=backend)
    out = apr_upsample2d(pooled, batch, backend=backend)
    img = x.t().reshape(1, C, *shape)  # the particles of a pixel APR are in C order
    ref = F.interpolate(F.max_pool2d(img, 2, ceil_mode=True), scale_factor=2, mode="nearest")
    ref = ref[..., :shape[0], :shape[1]][0].reshape(C, -1).t()
    assert torch.equal(out, ref)
    gy = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, gy)
    (rx,) = torch.autograd.grad(ref, x, gy)
    assert torch.equal(gx, rx)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 6, 8), (8, 8, 8), (5, 3, 7)])
def test_pool_then_upsample_is_nearest_interpolation_on_a_voxel_apr(backend, shape):
    apr = dense_apr(shape)
    batch = APRBatch([apr])
    C = 2
    x = torch.randn(apr.n_particles, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                    requires_grad=True)
    pooled, _ = apr_max_pool(x, batch, backend=backend)
    out = apr_upsample3d(pooled, batch, backend=backend)
    vol = x.t().reshape(1, C, *shape)
    ref = F.interpolate(F.max_pool3d(vol, 2, ceil_mode=True), scale_factor=2, mode="nearest")
    ref = ref[..., :shape[0], :shape[1], :shape[2]][0].reshape(C, -1).t()
    assert torch.equal(out, ref)
    gy = torch.randn_like(out)
    assert torch.equal(torch.autograd.grad(out, x, gy)[0], torch.autograd.grad(ref, x, gy)[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ndim", ["2d", "3d"])
def test_upsample_gradcheck(backend, ndim):
    b = BATCHES[ndim]()
    m = pool_plan(b).out.n_particles
    x = torch.randn(m, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: apr_upsample(x, b, backend=backend), (x,))


@pytest.mark.parametrize("ndim", ["2d", "3d"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_and_torch_paths_agree_on_multi_level_aprs(ndim, dtype):
    b = BATCHES[ndim]()
    assert len(set(b.level.tolist())) > 2
    m = pool_plan(b).out.n_particles
    x = randn(m, 3, dtype=dtype, grad=True)
    outs, grads = [], []
    g = randn(b.n_particles, 3, dtype=dtype, seed=1)
    for backend in BACKENDS:
        y = apr_upsample(x, b, backend=backend)
        outs.append(y.detach())
        grads.append(torch.autograd.grad(y, x, g)[0])
    assert torch.equal(outs[0], outs[1])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
    # a particle not pooled keeps its own value: the pooled structure's copy of it
    plan = pool_plan(b)
    counts = np.bincount(plan.up_index, minlength=m)
    assert (counts >= 1).all() and (counts == 1).any() and (counts > 1).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_other_devices_run_the_pure_torch_kernels(batch, dtype):
    for name in ("upsample", "upsample_backward"):
        assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"aprlib::{name}", "CUDA")
    plan = pool_plan(batch)
    x = randn(plan.out.n_particles, 3, dtype=dtype)
    index = plan.up_tensor()
    assert torch.equal(on_default_kernel(torch.ops.aprlib.upsample, x, index), torch.ops.aprlib.upsample(x, index))
    g = randn(batch.n_particles, 3, dtype=dtype, seed=1)
    torch.testing.assert_close(on_default_kernel(torch.ops.aprlib.upsample_backward, g, index, x.shape[0]),
                               torch.ops.aprlib.upsample_backward(g, index, x.shape[0]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", ("auto",) + BACKENDS)
@pytest.mark.parametrize("ndim", ["2d", "3d"])
def test_meta_tensors_give_meta_tensors_of_the_right_shape(backend, ndim):
    b = BATCHES[ndim]()
    plan = pool_plan(b)
    x = torch.empty(plan.out.n_particles, 3, device="meta", requires_grad=True)
    out = apr_upsample(x, b, backend=backend)
    assert out.device.type == "meta" and out.shape == (b.n_particles, 3)
    out.sum().backward()
    assert x.grad.device.type == "meta" and x.grad.shape == x.shape
    assert not any("meta" in str(key) for key in plan._torch)  # nothing of the meta pass is kept


def test_clear_errors():
    b = BATCHES["2d"]()
    m = pool_plan(b).out.n_particles
    with pytest.raises(ValueError, match=rf"pooled structure \({m} particles.*got {b.n_particles} rows"):
        apr_upsample(torch.zeros(b.n_particles, 1), b)  # features of the fine batch, not the pooled one
    with pytest.raises(ValueError, match="2D"):
        apr_upsample(torch.zeros(m, 1, 2), b)
    with pytest.raises(TypeError, match="floating-point"):
        apr_upsample(torch.zeros(m, 1, dtype=torch.int64), b)
    with pytest.raises(ValueError, match="3D operation was given a batch of 2D APRs"):
        apr_upsample3d(torch.zeros(m, 1), b)
    with pytest.raises(TypeError, match="APRBatch"):
        apr_upsample(torch.zeros(m, 1), b.aprs[0])


def test_upsample_layers_return_to_the_skip_structure():
    b = BATCHES["3d"]()
    x = APRFeatures(torch.randn(b.n_particles, 2), b)
    pooled = aprlib.APRMaxPool3d()(x)
    up = aprlib.APRUpsample3d()(pooled, x)
    assert up.batch is b and torch.equal(up.features, apr_upsample(pooled.features, b))
    assert aprlib.APRUpsample()(pooled, b).batch is b  # the target given as the batch
    conv = aprlib.APRUpConv(2, 4, ndim=3)
    y = conv(pooled, x)
    assert y.batch is b and y.features.shape == (b.n_particles, 4)
    # a 1x1 convolution commutes with upsampling (copies)
    torch.testing.assert_close(y.features, conv.conv(up).features)
    with pytest.raises(ValueError, match="not on the pooled structure of the target batch"):
        aprlib.APRUpsample()(x, x)
    with pytest.raises(TypeError, match="APRFeatures .* or an APRBatch"):
        aprlib.APRUpsample()(pooled, b.aprs)
    with pytest.raises(ValueError, match="2D operation was given a batch of 3D APRs"):
        aprlib.APRUpsample2d()(pooled, x)


def test_apr_cat_concatenates_channels_on_one_structure():
    b = BATCHES["2d"]()
    a = APRFeatures(torch.randn(b.n_particles, 2), b)
    c = APRFeatures(torch.randn(b.n_particles, 3), b)
    out = aprlib.apr_cat([a, c])
    assert out.batch is b and torch.equal(out.features, torch.cat([a.features, c.features], 1))
    assert torch.equal(aprlib.APRCat()(a, c, a).features, torch.cat([a.features, c.features, a.features], 1))
    # another batch of the same structure (the same APRs, or equal arrays) is accepted
    twin = APRBatch([aprlib.APR.from_dict(p.to_dict()) for p in b.aprs])
    assert aprlib.apr_cat([a, APRFeatures(c.features, twin)]).batch is b
    assert aprlib.apr_cat([a, APRFeatures(c.features, APRBatch(b.aprs))]).batch is b
    # the same particle count on another structure: an error
    wide, tall = APRBatch([dense_apr((4, 8))]), APRBatch([dense_apr((8, 4))])
    with pytest.raises(ValueError, match="another structure"):
        aprlib.apr_cat([APRFeatures(torch.zeros(32, 1), wide), APRFeatures(torch.zeros(32, 1), tall)])
    assert not aprlib.nn.same_structure(wide, tall) and aprlib.nn.same_structure(wide, APRBatch([dense_apr((4, 8))]))
    pooled = aprlib.APRMaxPool2d()(a)
    with pytest.raises(ValueError, match="another structure"):
        aprlib.apr_cat([a, pooled])
    with pytest.raises(ValueError, match="at least one"):
        aprlib.apr_cat([])
    with pytest.raises(TypeError, match="APRFeatures"):
        aprlib.apr_cat([a, c.features])

"""The APR operations on 3D APRs, proven as in 2D: on an APR whose particles are all at the finest
level (a voxel volume) APR convolution equals ``F.conv3d`` (zero padding) and APR max pooling
``F.max_pool3d``; gradcheck in float64; the C++ and pure-torch paths agree on APRs of many levels;
layers (convolution with level kernels, pooling, batch norm, ReLU, dropout, global pooling) run forward
and backward; a 2D APR given to a 3D layer (and the reverse) is a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

import aprlib
from aprlib import APRBatch, APRFeatures
from aprlib.ops import apr_conv, apr_conv3d, apr_max_pool, apr_max_pool3d, tree_values
from test_cells import dense_apr, random_cells

BACKENDS = ["cpp", "torch"]


def _random_apr(shape, seed, p=0.5, channels=None):
    level, coords = random_cells(shape, seed, p)
    rng = np.random.default_rng(seed)
    vals = rng.standard_normal(len(level) if channels is None else (len(level), channels)).astype(np.float32)
    return aprlib.APR.from_cells(shape, level, coords, intensities=vals)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("shape", [(4, 5, 6), (8, 8, 8), (3, 7, 2)])
def test_conv3d_equals_conv3d_on_a_voxel_apr(backend, k, shape):
    apr = dense_apr(shape)
    batch = APRBatch([apr])
    g = torch.Generator().manual_seed(k)
    C, D = 2, 3
    x = torch.randn(apr.n_particles, C, generator=g, dtype=torch.float64)
    w = torch.randn(D, C, 1, k, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(D, generator=g, dtype=torch.float64)
    out = apr_conv3d(x, batch, w, b, backend=backend)
    vol = x.t().reshape(1, C, *shape)  # particles of a voxel APR are in C order
    ref = F.conv3d(vol, w[:, :, 0], b, padding=k // 2)[0].reshape(D, -1).t()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(4, 6, 8), (8, 8, 8), (2, 4, 4)])
def test_max_pool3d_equals_max_pool3d_on_a_voxel_apr(backend, shape):
    apr = dense_apr(shape)
    batch = APRBatch([apr])
    C = 3
    x = torch.randn(apr.n_particles, C, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out, pooled = apr_max_pool3d(x, batch, backend=backend)
    ref = F.max_pool3d(x.t().reshape(1, C, *shape), 2)[0].reshape(C, -1).t()
    assert pooled[0].shape == shape and pooled[0].n_particles == ref.shape[0]
    torch.testing.assert_close(out, ref, rtol=0, atol=0)


def test_max_pool3d_then_conv3d_equals_dense_on_a_voxel_apr():
    shape = (8, 8, 8)
    apr = dense_apr(shape)
    batch = APRBatch([apr])
    x = torch.randn(apr.n_particles, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    w = torch.randn(2, 1, 1, 3, 3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    px, pooled = apr_max_pool3d(x, batch)
    out = apr_conv3d(px, pooled, w)
    ref = F.conv3d(F.max_pool3d(x.t().reshape(1, 1, *shape), 2), w[:, :, 0], padding=1)[0].reshape(2, -1).t()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("k,n_kernels", [(1, 1), (3, 2), (5, 3)])
def test_cpp_and_torch_paths_agree_in_3d(k, n_kernels):
    aprs = [_random_apr((6, 7, 5), 10), _random_apr((8, 8, 8), 11, 0.6), _random_apr((3, 4, 5), 12)]
    batch = APRBatch(aprs)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(batch.n_particles, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, n_kernels, k, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    outs, grads = [], []
    for backend in BACKENDS:
        y = apr_conv3d(x, batch, w, backend=backend)
        p, _ = apr_max_pool3d(y, batch, backend=backend)
        loss = (p ** 2).sum()
        gx, gw = torch.autograd.grad(loss, (x, w))
        outs.append(p.detach())
        grads.append((gx, gw))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    tv = [tree_values(x, batch, backend=b) for b in BACKENDS]
    torch.testing.assert_close(tv[0], tv[1], rtol=1e-12, atol=1e-12)


def test_tree_values_are_the_means_of_the_children_in_3d():
    apr = _random_apr((6, 6, 6), 13)
    batch = APRBatch([apr])
    x = torch.from_numpy(apr.intensities.astype(np.float64))[:, None]
    vals = tree_values(x, batch)
    np.testing.assert_allclose(vals[apr.n_particles:-1, 0].numpy(), apr.tree_means(apr.intensities.astype(np.float64)),
                               rtol=1e-12)
    assert float(vals[-1, 0]) == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_3d(backend):
    batch = APRBatch([_random_apr((4, 5, 4), 14), _random_apr((3, 3, 4), 15)])
    g = torch.Generator().manual_seed(4)
    x = torch.randn(batch.n_particles, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 2, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: apr_conv3d(x, batch, w, b, backend=backend), (x, w, b))
    assert torch.autograd.gradcheck(lambda x: apr_max_pool3d(x, batch, backend=backend)[0], (x,))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_3d_network_trains_forward_and_backward(backend):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        aprlib.APRConv3d(1, 4, 3, n_level_kernels=2, backend=backend), aprlib.APRBatchNorm(4), aprlib.APRReLU(),
        aprlib.APRMaxPool3d(backend=backend), aprlib.APRConv3d(4, 4, 5, backend=backend), aprlib.APRDropout(0.1),
        aprlib.APRSpatialDropout(0.1), aprlib.APRConv3d(4, 4, 1, backend=backend), aprlib.APRGlobalAvgPool(),
        torch.nn.Linear(4, 2)).double()
    batch = APRBatch([_random_apr((8, 8, 8), 16), _random_apr((6, 5, 7), 17)])
    out = net(APRFeatures(batch.features(torch.float64), batch))
    assert out.shape == (2, 2)
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_apr_conv_takes_its_dimension_from_the_batch():
    apr2 = aprlib.APR.from_cells((4, 4), *random_cells((4, 4), 0))
    apr3 = _random_apr((4, 4, 4), 1)
    x2 = torch.zeros(apr2.n_particles, 1)
    x3 = torch.zeros(apr3.n_particles, 1)
    assert apr_conv(x2, APRBatch([apr2]), torch.zeros(1, 1, 1, 3, 3)).shape == (apr2.n_particles, 1)
    assert apr_conv(x3, APRBatch([apr3]), torch.zeros(1, 1, 1, 3, 3, 3)).shape == (apr3.n_particles, 1)
    assert apr_max_pool(x3, APRBatch([apr3]))[0].shape[1] == 1


def test_dimension_mismatches_are_clear_errors():
    apr2 = aprlib.APR.from_cells((4, 4), *random_cells((4, 4), 0))
    apr3 = _random_apr((4, 4, 4), 1)
    b2, b3 = APRBatch([apr2]), APRBatch([apr3])
    x2, x3 = torch.zeros(apr2.n_particles, 1), torch.zeros(apr3.n_particles, 1)
    with pytest.raises(ValueError, match="3D operation was given a batch of 2D APRs"):
        apr_conv3d(x2, b2, torch.zeros(1, 1, 1, 3, 3, 3))
    with pytest.raises(ValueError, match="2D operation was given a batch of 3D APRs"):
        aprlib.apr_conv2d(x3, b3, torch.zeros(1, 1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"weight must be \(D, C, n_kernels, k, k, k\) for 3D APRs"):
        apr_conv(x3, b3, torch.zeros(1, 1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"weight must be \(D, C, n_kernels, k, k, k\) for 3D APRs"):
        apr_conv(x3, b3, torch.zeros(1, 1, 1, 3, 3, 1))
    with pytest.raises(ValueError, match="3D operation was given a batch of 2D APRs"):
        aprlib.APRMaxPool3d()(APRFeatures(x2, b2))
    with pytest.raises(ValueError, match="3D operation was given a batch of 2D APRs"):
        aprlib.APRConv3d(1, 1, 3)(APRFeatures(x2, b2))
    with pytest.raises(ValueError, match="same dimension"):
        APRBatch([apr2, apr3])
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        aprlib.APRConv(1, 1, 3, ndim=4)


def _formed_volume_apr(seed=0, size=32):
    from aprlib.data.nuclei import NucleiParams, generate
    vol = generate((size, size, size), NucleiParams(n_objects=3, radius_range=(4.0, 7.0), photon_scale=2000.0,
                                                     read_noise=0.003), seed=seed).image
    return aprlib.form_apr(vol, ndim=3, sigma_th=0.05)


def test_form_apr_of_a_volume_is_a_3d_apr_of_its_cells():
    from aprlib.apr.formation import form_volume_cells
    from aprlib.data.nuclei import NucleiParams, generate
    vol = generate((24, 32, 20), NucleiParams(n_objects=2, radius_range=(4.0, 6.0)), seed=3).image
    apr = aprlib.form_apr(vol, ndim=3)
    cells, means, used = form_volume_cells(vol)
    assert apr.ndim == 3 and apr.shape == vol.shape and apr.params == used
    np.testing.assert_array_equal(apr.level, cells["level"])
    np.testing.assert_array_equal(apr.z, cells["z"])
    np.testing.assert_array_equal(apr.intensities, means)
    np.testing.assert_allclose(apr.sample(vol), means, rtol=1e-5, atol=1e-6)  # the cell means, again
    apr._validate()  # the tree built for the kernel's cells is the APR's
    assert 1 < apr.computational_ratio
    with pytest.raises(ValueError, match="pass ndim=3"):
        aprlib.form_apr(vol)
    with pytest.raises(ValueError, match="ndim must be 2"):
        aprlib.form_apr(vol, ndim=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_formed_3d_apr_goes_through_every_layer(backend):
    """The issue's criterion: a 3D APR formed from a volume through APRConv (k = 1, 3, 5, level kernels),
    APRMaxPool, batch norm and global pooling, forward and backward."""
    torch.manual_seed(0)
    batch = APRBatch([_formed_volume_apr(0), _formed_volume_apr(1)])
    assert len(set(int(v) for v in batch.level)) > 1
    net = torch.nn.Sequential(
        aprlib.APRConv3d(1, 4, 1, backend=backend), aprlib.APRConv3d(4, 4, 3, n_level_kernels=3, backend=backend),
        aprlib.APRBatchNorm(4), aprlib.APRReLU(), aprlib.APRMaxPool3d(backend=backend),
        aprlib.APRConv3d(4, 4, 5, n_level_kernels=2, backend=backend), aprlib.APRGlobalAvgPool(), torch.nn.Linear(4, 2))
    out = net(APRFeatures.from_batch(batch))
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    assert out.shape == (2, 2) and torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


@settings(max_examples=15, deadline=None)
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)), seed=st.integers(0, 2**31),
       p=st.floats(0.2, 0.8), k=st.sampled_from([1, 3, 5]), n_kernels=st.integers(1, 3))
def test_cpp_and_torch_paths_agree_on_generated_3d_structures(shape, seed, p, k, n_kernels):
    apr = _random_apr(shape, seed, p)
    batch = APRBatch([apr, _random_apr(shape[::-1], seed + 1, p)])
    g = torch.Generator().manual_seed(seed % 1000)
    x = torch.randn(batch.n_particles, 2, generator=g, dtype=torch.float64)
    w = torch.randn(2, 2, n_kernels, k, k, k, generator=g, dtype=torch.float64)
    conv = [apr_conv3d(x, batch, w, backend=b) for b in BACKENDS]
    torch.testing.assert_close(conv[0], conv[1], rtol=1e-12, atol=1e-12)
    pool = [apr_max_pool3d(x, batch, backend=b)[0] for b in BACKENDS]
    torch.testing.assert_close(pool[0], pool[1], rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (1, 1, 1), (2, 2, 3)])
def test_pooling_a_batch_where_one_apr_has_nothing_to_pool(shape):
    """An APR at level_min only is its own pooled APR; batched with one that pools, the pooled batch
    still forms (found by the hypothesis test below, in 2D as in 3D)."""
    from aprlib.apr import cells
    lmin, lmax = cells.level_range(shape)
    grid = np.meshgrid(*[np.arange(n) for n in cells.level_shape(shape, lmax, lmin)], indexing="ij")
    coarse = aprlib.APR.from_cells(shape, np.full(grid[0].size, lmin), [g.ravel() for g in grid],
                                   intensities=np.ones(grid[0].size))
    fine = dense_apr(tuple(4 * s for s in shape))
    fine.intensities = np.ones(fine.n_particles, np.float32)
    batch = APRBatch([coarse, fine])
    out, pooled = apr_max_pool(batch.features(), batch)
    assert out.shape[0] == pooled.n_particles and pooled[0].shape == shape


def test_prepare_builds_every_table_of_a_3d_network():
    from aprlib.nn.prepare import prepare
    net = torch.nn.Sequential(aprlib.APRConv3d(1, 2, 3, n_level_kernels=2), aprlib.APRReLU(), aprlib.APRMaxPool3d(),
                              aprlib.APRConv3d(2, 2, 5), aprlib.APRGlobalAvgPool())
    batch = APRBatch([_random_apr((6, 7, 8), 20), _random_apr((5, 5, 5), 21)])
    prepare(batch, net, in_channels=1)
    pooled = batch.plan(("pool",), None).out
    sizes = lambda: (len(batch._tables), len(pooled._tables), [len(a._tables) for a in batch.aprs + pooled.aprs])
    before = sizes()
    net(APRFeatures.from_batch(batch)).sum().backward()
    assert sizes() == before

"""The U-Nets (aprlib.models.unet): the APR U-Net runs forward and backward on formed 2D and 3D APRs
(an (N, K) output per particle), prepare builds every table it needs (skip connections and upsampling
included), with the pixel U-Net's weights it computes the pixel U-Net's output on an APR of pixels
(voxels), and the two have the same parameter counts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import aprlib
from aprlib import APRBatch, APRFeatures
from aprlib.data.nuclei import NucleiParams, generate
from aprlib.models import APRUNet, PixelUNet, load_pixel_weights
from aprlib.nn.prepare import prepare
from test_cells import dense_apr
from test_prepare import _fresh, cache_keys


def _formed(ndim, seed):
    if ndim == 2:
        img = generate((48, 40), NucleiParams(n_objects=3, radius_range=(4.0, 7.0)), seed=seed).image
        return aprlib.form_apr(img)
    vol = generate((20, 24, 18), NucleiParams(n_objects=2, radius_range=(3.0, 5.0), photon_scale=2000.0,
                                              read_noise=0.003), seed=seed).image
    return aprlib.form_apr(vol, ndim=3, sigma_th=0.05)


def _net(ndim, **kw):
    torch.manual_seed(0)
    args = dict(ndim=ndim, depth=2, base_channels=4, n_level_kernels=2)
    args.update(kw)
    return APRUNet(1, 3, **args)


@pytest.mark.parametrize("ndim", [2, 3])
def test_apr_unet_forward_and_backward_on_formed_aprs(ndim):
    batch = APRBatch([_formed(ndim, 0), _formed(ndim, 1)])
    assert len(set(batch.level.tolist())) > 1
    net = _net(ndim).double()
    out = net(APRFeatures.from_batch(batch, dtype=torch.float64))
    assert isinstance(out, APRFeatures) and out.batch is batch
    assert out.features.shape == (batch.n_particles, 3) and torch.isfinite(out.features).all()
    labels = torch.from_numpy(batch.level % 3).long()  # any per-particle target
    F.cross_entropy(out.features, labels).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert net(batch).features.dtype == torch.float64  # an APRBatch input: its intensities


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("norm", ["batch", "group"])
def test_prepare_builds_every_table_of_a_unet(ndim, norm):
    aprs = [_formed(ndim, 2), _formed(ndim, 3)]
    net = _net(ndim, depth=3, convs_per_block=1, kernel_size=3, up_kernel_size=3, norm=norm, norm_groups=2)
    batch = APRBatch(aprs)
    prepare(batch, net)
    prepared = cache_keys(batch)
    pool = batch._tables[("plan", "pool")]
    assert "up" in pool._torch and pool.out._tables[("plan", "pool")]._torch.get("up") is not None
    net(batch).features.square().sum().backward()
    assert cache_keys(batch) == prepared  # the forward and backward passes built nothing
    fresh = APRBatch(_fresh(aprs))
    with torch.no_grad():
        net(fresh)
    assert cache_keys(fresh) == prepared  # prepare built exactly what a forward pass builds


def _dense_batch(shape, n=2):
    return APRBatch([dense_apr(shape) for _ in range(n)])


def _to_dense(x, shape, n):
    """(n * prod(shape), C) particle features of pixel APRs (C order) -> (n, C, *shape)."""
    return x.reshape(n, -1, x.shape[1]).transpose(1, 2).reshape(n, x.shape[1], *shape)


@pytest.mark.parametrize("ndim,shape,kw", [
    (2, (16, 24), {}),
    (2, (32, 16), {"depth": 3, "convs_per_block": 1, "kernel_size": 5, "up_kernel_size": 3}),
    (2, (13, 10), {"norm": None}),  # odd sizes: ceil-mode pooling and cropped upsampling
    (3, (8, 8, 16), {}),
    (3, (7, 9, 6), {"depth": 1}),
    (2, (16, 20), {"norm": "group", "base_channels": 4, "norm_groups": 2}),
    (3, (8, 6, 8), {"norm": "group", "base_channels": 4, "norm_groups": 4}),
])
@pytest.mark.parametrize("training", [False, True])
def test_apr_unet_equals_the_pixel_unet_on_a_pixel_apr(ndim, shape, kw, training):
    n = 2
    torch.manual_seed(1)
    args = dict(ndim=ndim, depth=2, base_channels=3)
    args.update(kw)
    pix = PixelUNet(2, 3, **args).double()
    if args.get("norm", "batch") == "batch":  # statistics that are not the initial ones
        for m in pix.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.5, 0.5)
    for m in pix.modules():  # group norms with an affine that is not the initial one
        if isinstance(m, torch.nn.GroupNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    apr_net = load_pixel_weights(APRUNet(2, 3, n_level_kernels=1, **args).double(), pix)
    pix.train(training)
    apr_net.train(training)
    batch = _dense_batch(shape, n)
    x = torch.randn(batch.n_particles, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2),
                    requires_grad=True)
    out = apr_net(APRFeatures(x, batch)).features
    ref = pix(_to_dense(x, shape, n))
    assert ref.shape == (n, 3, *shape)
    torch.testing.assert_close(_to_dense(out, shape, n), ref, rtol=1e-9, atol=1e-9)
    gy = torch.randn_like(ref)
    ga = torch.autograd.grad(_to_dense(out, shape, n), [x] + list(apr_net.parameters()), gy)
    gp = torch.autograd.grad(ref, [x] + list(pix.parameters()), gy)
    for a, p in zip(ga, gp):
        torch.testing.assert_close(a.reshape(p.shape) if a.numel() == p.numel() else a, p, rtol=1e-8, atol=1e-8)
    if training:  # the batch norms' running statistics followed the same updates
        for (name, a), (_, p) in zip(apr_net.state_dict().items(), pix.state_dict().items()):
            if "running" in name:
                torch.testing.assert_close(a, p, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kw", [{}, {"depth": 4, "base_channels": 8, "convs_per_block": 3, "norm": None},
                                {"kernel_size": 5, "up_kernel_size": 3}])
def test_parameter_counts_are_equal(ndim, kw):
    count = lambda net: sum(p.numel() for p in net.parameters())
    pix = PixelUNet(2, 4, ndim=ndim, **kw)
    assert count(APRUNet(2, 4, ndim=ndim, n_level_kernels=1, **kw)) == count(pix)
    # n_level_kernels multiplies the weights of the convolutions of kernel size above 1 only
    two = APRUNet(2, 4, ndim=ndim, n_level_kernels=2, **kw)
    blocks = [m for name, m in two.named_modules() if isinstance(m, aprlib.APRConv) and m.kernel_size > 1]
    extra = sum(m.weight.numel() // 2 for m in blocks)
    assert count(two) == count(pix) + extra


def test_the_default_unet_and_bad_arguments():
    net = APRUNet()  # depth 3, 16 base channels, two convolutions per block, two level kernels, batch norm
    assert net.depth == 3 and net.base_channels == 16 and len(net.down[0]) == 6
    assert net.down[0][0].n_level_kernels == 2 and net.up[0].conv.kernel_size == 1
    assert [b[0].in_channels for b in net.dec] == [32, 64, 128] and [u.conv.in_channels for u in net.up] == [32, 64, 128]
    assert net.bottom[0].out_channels == 128 and net.head.out_channels == 2
    pix = PixelUNet(ndim=3)
    assert pix.bottom[0].out_channels == 128 and isinstance(pix.head, torch.nn.Conv3d)
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        APRUNet(ndim=4)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        PixelUNet(kernel_size=2)
    with pytest.raises(ValueError, match="norm must be"):
        APRUNet(norm="layer")
    with pytest.raises(ValueError, match="must divide every block"):
        PixelUNet(norm="group", base_channels=12, norm_groups=8)
    gn = APRUNet(norm="group", base_channels=8, norm_groups=4)
    assert isinstance(gn.down[0][1], aprlib.APRGroupNorm) and gn.down[0][1].num_groups == 4
    assert "norm_groups=4" in repr(gn) and gn.down[0][0].bias is None
    with pytest.raises(TypeError, match="APRBatch or APRFeatures"):
        APRUNet()(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        PixelUNet()(torch.zeros(8, 8))
    with pytest.raises(ValueError, match="different layouts"):
        load_pixel_weights(APRUNet(depth=2), PixelUNet(depth=3))


def test_cpp_and_torch_backends_agree():
    batch = APRBatch([_formed(2, 4), _formed(2, 5)])
    outs, grads = [], []
    for backend in ("cpp", "torch"):
        net = _net(2, backend=backend).double()
        out = net(batch).features
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad for p in net.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-10, atol=1e-10)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8)

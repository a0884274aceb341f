"""APR convolution (aprlib.ops.conv): the operators ``torch.ops.aprlib.conv`` and ``conv_backward``
(opcheck), their pure-torch kernels for devices other than the CPU (run through the dispatcher's CUDA
entry on CPU tensors), meta tensors, and :func:`aprlib.ops.apr_conv2d`: pixel oracles, the
neighbourhoods through the tree, gradchecks, the cpp and torch backends against each other."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st

from aprlib import APRBatch
from aprlib.ops import apr_conv2d, apr_max_pool2d, conv_plan, tree_plan, tree_values
from aprlib.ops.conv import chunk_rows
from op_batches import (BACKENDS, DTYPES, full_resolution_apr, multi_level_batch, on_default_kernel, randn,
                        tree_args)


def _conv_args(batch, k, n_kernels, c, step=None):
    return conv_plan(batch, k, n_kernels).op_tensors(step or chunk_rows(k * k * c))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k,n_kernels,bias,step", [(1, 2, True, None), (3, 3, False, None), (5, 2, True, 17)])
def test_opcheck_conv(batch, dtype, k, n_kernels, bias, step):
    """Chunks of 17 rows cut the kernel groups into several pieces."""
    c, d = 2, 3
    x = randn(batch.n_particles, c, dtype=dtype, grad=True)
    vals = x if k == 1 else torch.ops.aprlib.tree_means(x, *tree_args(batch)).detach().requires_grad_()
    w = randn(d, c, n_kernels, k, k, dtype=dtype, seed=1, grad=True)
    b = randn(d, dtype=dtype, seed=2, grad=True) if bias else None
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
    x = randn(batch.n_particles, c, dtype=dtype)
    vals = x if k == 1 else torch.ops.aprlib.tree_means(x, *tree_args(batch))
    w = randn(d, c, n_kernels, k, k, dtype=dtype, seed=1)
    grad_out = randn(batch.n_particles, d, dtype=dtype, seed=2)
    args = (grad_out, vals, w, *_conv_args(batch, k, n_kernels, c), *need)
    torch.library.opcheck(torch.ops.aprlib.conv_backward, args)
    gv, gw, gb = torch.ops.aprlib.conv_backward(*args)
    assert gv.shape == (vals.shape if need[0] else (0,)) and gw.shape == (w.shape if need[1] else (0,))
    assert gb.shape == ((d,) if need[2] else (0,))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,C,D", [(1, 1, 1), (1, 3, 4), (3, 1, 2), (3, 4, 3), (5, 2, 2), (11, 1, 4)])
@pytest.mark.parametrize("shape", [(16, 16), (12, 10)])
def test_conv_equals_conv2d_on_pixel_apr(backend, k, C, D, shape):
    apr, _ = full_resolution_apr(*shape, seed=k + C)
    batch = APRBatch([apr])
    rng = torch.Generator().manual_seed(k * 10 + D)
    x = torch.randn(apr.n_particles, C, generator=rng, dtype=torch.float64, requires_grad=True)
    w = torch.randn(D, C, 1, k, k, generator=rng, dtype=torch.float64, requires_grad=True)
    b = torch.randn(D, generator=rng, dtype=torch.float64, requires_grad=True)
    out = apr_conv2d(x, batch, w, b, backend=backend)
    # the same data as an image: particles are sorted row-major at the finest level
    H, W = shape
    img = x.t().reshape(1, C, H, W)
    ref = F.conv2d(img, w[:, :, 0], b, padding=k // 2)
    np.testing.assert_allclose(out.t().reshape(1, D, H, W).detach(), ref.detach(), atol=1e-10)
    gy = torch.randn_like(out)
    gx, gw, gb = torch.autograd.grad(out, (x, w, b), gy)
    rx, rw, rb = torch.autograd.grad(ref, (x, w, b), gy.t().reshape(1, D, H, W))
    for got, want in ((gx, rx), (gw, rw), (gb, rb)):
        np.testing.assert_allclose(got.detach(), want.detach(), atol=1e-9)


def test_conv_on_pooled_pixel_apr_equals_conv_on_pooled_image():
    apr, img = full_resolution_apr(16, 16)
    batch = APRBatch([apr])
    x = torch.from_numpy(img.reshape(-1, 1)).double()
    pooled_x, pooled = apr_max_pool2d(x, batch)
    w = torch.randn(2, 1, 2, 3, 3, dtype=torch.float64)
    out = apr_conv2d(pooled_x, pooled, w)
    ref = F.conv2d(F.max_pool2d(torch.from_numpy(img).double()[None, None], 2), w[:, :, 0], padding=1)
    np.testing.assert_allclose(out.t().reshape(1, 2, 8, 8), ref, atol=1e-12)  # kernel 0 = finest level


def test_conv_reconstructs_neighbourhoods_through_the_tree():
    """One APR, dense check: the APR conv output at each particle equals a direct convolution of the
    level-l image pyramid built from tree means and piecewise-constant copies (zero outside)."""
    batch = multi_level_batch(sizes=((24, 20),))
    apr = batch.aprs[0]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(apr.n_particles)
    k = 5
    w = rng.standard_normal((1, 1, 1, k, k))
    out = apr_conv2d(torch.from_numpy(x[:, None]), batch, torch.from_numpy(w)).numpy()[:, 0]
    tree = apr.tree_means(x)
    cells = {}
    for i in range(apr.n_particles):
        cells[(int(apr.level[i]), int(apr.y[i]), int(apr.x[i]))] = x[i]
    for t in range(apr.n_tree):
        cells[(int(apr.tree_level[t]), int(apr.tree_y[t]), int(apr.tree_x[t]))] = tree[t]

    def value(lv, yy, xx):
        rows = -(-apr.height // 2 ** (apr.level_max - lv))
        cols = -(-apr.width // 2 ** (apr.level_max - lv))
        if not (0 <= yy < rows and 0 <= xx < cols):
            return 0.0
        while (lv, yy, xx) not in cells:  # inside a coarser particle
            lv, yy, xx = lv - 1, yy // 2, xx // 2
        return cells[(lv, yy, xx)]

    for i in range(apr.n_particles):
        lv, yy, xx = int(apr.level[i]), int(apr.y[i]), int(apr.x[i])
        patch = np.array([[value(lv, yy + dy, xx + dx) for dx in range(-2, 3)] for dy in range(-2, 3)])
        assert out[i] == pytest.approx((patch * w[0, 0, 0]).sum(), abs=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,n_kernels", [(1, 2), (3, 3), (5, 2)])
def test_conv_gradcheck(backend, k, n_kernels):
    batch = multi_level_batch(seed=k)
    g = torch.Generator().manual_seed(k)
    x = torch.randn(batch.n_particles, 2, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, n_kernels, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: apr_conv2d(x, batch, w, b, backend=backend), (x, w, b))


def test_kernel_index_follows_each_aprs_finest_level():
    """Kernel 0 acts on each APR's finest level; the last kernel on every coarser level."""
    batch = multi_level_batch(seed=5)
    x = torch.ones(batch.n_particles, 1, dtype=torch.float64)
    w = torch.zeros(1, 1, 3, 1, 1, dtype=torch.float64)
    w[0, 0, :, 0, 0] = torch.tensor([1.0, 10.0, 100.0])
    out = apr_conv2d(x, batch, w)[:, 0].numpy()
    for apr, o in zip(batch.aprs, batch.split(out)):
        top = apr.level.max()
        expected = np.select([apr.level == top, apr.level == top - 1], [1.0, 10.0], 100.0)
        np.testing.assert_array_equal(o, expected)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), k=st.sampled_from([1, 3, 5, 7]), C=st.integers(1, 3), D=st.integers(1, 3),
       n_kernels=st.integers(1, 4), n_aprs=st.integers(1, 3), E=st.sampled_from([0.05, 0.3, 1.0]))
def test_cpp_and_torch_backends_agree(seed, k, C, D, n_kernels, n_aprs, E):
    rng = np.random.default_rng(seed)
    sizes = [tuple(int(v) for v in rng.integers(3, 40, 2)) for _ in range(n_aprs)]
    batch = multi_level_batch(seed=seed, sizes=sizes, E=E, require_multilevel=False)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch.n_particles, C, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(D, C, n_kernels, k, k, generator=g, dtype=torch.float64, requires_grad=True)
    outs, grads = [], []
    for backend in BACKENDS:
        out = apr_conv2d(x, batch, w, backend=backend)
        pooled, _ = apr_max_pool2d(out, batch, backend=backend)
        loss = (pooled.sin() * torch.arange(pooled.numel(), dtype=torch.float64).reshape(pooled.shape)).sum()
        outs.append(pooled.detach())
        grads.append(torch.autograd.grad(loss, (x, w)))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-12)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_float32_cpp_matches_float64_torch():
    batch = multi_level_batch(seed=6)
    x = torch.randn(batch.n_particles, 4, dtype=torch.float64)
    w = torch.randn(5, 4, 2, 3, 3, dtype=torch.float64)
    ref = apr_conv2d(x, batch, w, backend="torch")
    got = apr_conv2d(x.float(), batch, w.float(), backend="cpp")
    np.testing.assert_allclose(got.double(), ref, rtol=1e-4, atol=1e-4)



@pytest.mark.parametrize("k,n_kernels,step", [(1, 2, None), (3, 3, None), (5, 2, 17)])
def test_other_devices_run_the_pure_torch_kernels(batch, k, n_kernels, step):
    """The kernels the dispatcher gives CUDA tensors are the pure-torch implementation (the one
    ``backend="torch"`` calls): equal to the C++ kernels up to rounding, forward and backward."""
    for name in ("conv", "conv_backward"):
        assert torch._C._dispatch_has_computed_kernel_for_dispatch_key(f"aprlib::{name}", "CUDA")
    c, d = 2, 3
    x = randn(batch.n_particles, c, dtype=torch.float64)
    vals = x if k == 1 else tree_values(x, batch, backend="torch")
    w = randn(d, c, n_kernels, k, k, dtype=torch.float64, seed=1)
    b = randn(d, dtype=torch.float64, seed=2)
    args = _conv_args(batch, k, n_kernels, c, step)
    got = on_default_kernel(torch.ops.aprlib.conv, vals, w, b, *args)
    np.testing.assert_array_equal(got, apr_conv2d(x, batch, w, b, backend="torch"))
    torch.testing.assert_close(got, torch.ops.aprlib.conv(vals, w, b, *args), rtol=1e-12, atol=1e-12)
    grad_out = randn(batch.n_particles, d, dtype=torch.float64, seed=3)
    for need in ((True, True, True), (False, True, False), (True, False, False)):
        ref = torch.ops.aprlib.conv_backward(grad_out, vals, w, *args, *need)
        got = on_default_kernel(torch.ops.aprlib.conv_backward, grad_out, vals, w, *args, *need)
        for a, r in zip(got, ref):
            torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    # and the pure-torch backward is autograd's gradient of the pure-torch forward
    vg, wg, bg = (t.clone().requires_grad_() for t in (vals, w, b))
    from aprlib.ops.conv import _conv_torch
    auto = torch.autograd.grad(_conv_torch(vg, wg, bg, *args), (vg, wg, bg), grad_out)
    got = on_default_kernel(torch.ops.aprlib.conv_backward, grad_out, vals, w, *args, True, True, True)
    for a, r in zip(got, auto):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ("auto",) + BACKENDS)
@pytest.mark.parametrize("k,n_kernels", [(1, 2), (3, 3)])
def test_meta_tensors_give_meta_tensors_of_the_right_shape(batch, backend, k, n_kernels):
    """The same operator calls on meta tensors (plan tensors moved to the features' device, uncached):
    a meta (N, D) output and meta gradients of the inputs' shapes, with every backend."""
    c, d = 2, 3
    x = torch.empty(batch.n_particles, c, device="meta", requires_grad=True)
    w = torch.empty(d, c, n_kernels, k, k, device="meta", requires_grad=True)
    b = torch.empty(d, device="meta", requires_grad=True)
    plan = conv_plan(batch, k, n_kernels)
    args = plan.op_tensors(chunk_rows(k * k * c), "meta")
    vals = x if k == 1 else torch.ops.aprlib.tree_means(x, *tree_plan(batch).op_tensors("meta"))
    y = torch.ops.aprlib.conv(vals, w, b, *args)
    assert y.device.type == "meta" and y.shape == (batch.n_particles, d)
    y = apr_conv2d(x, batch, w, b, backend=backend)
    assert y.device.type == "meta" and y.shape == (batch.n_particles, d)
    y.sum().backward()
    for t in (x, w, b):
        assert t.grad.device.type == "meta" and t.grad.shape == t.shape
    assert not any("meta" in str(key) for key in plan._torch)  # nothing of the meta pass is kept

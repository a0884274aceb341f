"""Small APR batches and inputs shared by the op tests (tests/ops/test_<op>.py)."""
from __future__ import annotations

import numpy as np
import torch

import aprlib
from aprlib import APRBatch, form_apr
from aprlib.data.synthetic import generate_image

DTYPES = (torch.float64, torch.float32)
BACKENDS = ("cpp", "torch")


def on_default_kernel(op, *args):
    """``op`` (a ``torch.ops.aprlib`` overload packet) run by the kernel the dispatcher gives CUDA
    tensors, on these CPU tensors: the pure-torch kernel registered for every device but the CPU."""
    return op.default.redispatch(torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA), *args)


def small_batch(seed=0, sizes=((24, 20), (16, 16), (12, 18))):
    """A batch of small multi-level APRs (synthetic shapes, some with texture)."""
    rng = np.random.default_rng(seed)
    aprs = []
    for i, (h, w) in enumerate(sizes):
        img = generate_image(i % 6, rng, size=(h, w))
        img = img + 0.05 * rng.random((h, w)).astype(np.float32) * (i % 2)
        aprs.append(aprlib.form_apr(img, rel_error=0.3, gradient_smoothing=0.0, sigma_th=0.01))
    return aprlib.APRBatch(aprs)


def randn(*shape, dtype, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(grad)


def full_resolution_apr(H, W, seed=0):
    """An APR whose particles are all pixels (distinct values, tiny E), and its image."""
    rng = np.random.default_rng(seed)
    img = rng.permutation(H * W).reshape(H, W).astype(np.float32) / (H * W)
    apr = form_apr(img, rel_error=1e-5, gradient_smoothing=0.0)
    assert apr.n_particles == H * W and set(apr.levels_present()) == {apr.level_max}
    return apr, img


def multi_level_batch(seed=0, sizes=((40, 33), (32, 32), (20, 24)), E=0.3, require_multilevel=True):
    rng = np.random.default_rng(seed)
    aprs = []
    for i, (H, W) in enumerate(sizes):
        img = generate_image(i % 6, rng, size=(H, W))
        img = img + 0.05 * rng.random((H, W)).astype(np.float32) * (i % 2)  # some with texture
        aprs.append(form_apr(img, rel_error=E, gradient_smoothing=0.0, sigma_th=0.01))
    assert not require_multilevel or any(len(a.levels_present()) > 2 for a in aprs)
    return APRBatch(aprs)


def tree_args(batch):
    """The tree plan's operator tensors of ``batch`` (the tree-means operators' arguments)."""
    from aprlib.ops import tree_plan
    return tree_plan(batch).op_tensors()

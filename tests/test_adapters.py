"""APR <-> dense adapters: oracles (the APR's reconstruction and cell means), gradcheck, and a
hybrid network (dense stem -> APR layers -> dense head) that trains."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aprlib.apr import APRBatch, form_apr
from aprlib.data.synthetic import generate_batch
from aprlib.nn import APRBatchNorm, APRConv2d, APRMaxPool2d, APRReLU, APRToDense, DenseToAPR, apr_to_dense, dense_to_apr


@pytest.fixture(scope="module")
def batch():
    imgs, labels = generate_batch(3, seed=1, size=(40, 40))
    aprs = [form_apr(im, rel_error=0.1, gradient_smoothing=0.0, sigma_th=0.01) for im in imgs]
    return APRBatch(aprs), torch.from_numpy(imgs)[:, None], torch.as_tensor(labels)


def test_dense_to_apr_gives_the_cell_means_and_apr_to_dense_the_reconstruction(batch):
    b, imgs, _ = batch
    feats = dense_to_apr(imgs, b)
    np.testing.assert_allclose(feats[:, 0].numpy(), np.concatenate([a.intensities for a in b.aprs]), rtol=1e-5,
                               atol=1e-6)
    dense = apr_to_dense(feats, b)
    assert dense.shape == imgs.shape
    for i, a in enumerate(b.aprs):
        np.testing.assert_allclose(dense[i, 0].numpy(), a.reconstruct(feats[b.particle_offsets[i]:
                                                                           b.particle_offsets[i + 1], 0].numpy()))
    torch.testing.assert_close(dense_to_apr(apr_to_dense(feats, b), b), feats)  # adjoint up to areas


def test_adapters_gradcheck(batch):
    b, _, _ = batch
    x = torch.randn(b.n_particles, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: apr_to_dense(v, b), (x,))
    d = torch.randn(len(b), 2, 40, 40, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: dense_to_apr(v, b), (d,))


def test_adapters_refuse_bad_input(batch):
    b, imgs, _ = batch
    with pytest.raises(ValueError, match="particles"):
        apr_to_dense(torch.zeros(b.n_particles + 1, 1), b)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        dense_to_apr(imgs[:, :, :20], b)
    other = form_apr(np.random.default_rng(0).random((24, 40), dtype=np.float32), sigma_th=0.01)
    with pytest.raises(ValueError, match="one image shape"):
        apr_to_dense(torch.zeros(b.n_particles + other.n_particles, 1), APRBatch(list(b.aprs) + [other]))
    with pytest.raises(TypeError, match="APRFeatures"):
        APRToDense()(torch.zeros(3, 1))


class Hybrid(nn.Module):
    """Dense conv stem -> particles -> APR conv, BN, ReLU, pooling -> pixels -> dense conv head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.to_apr = DenseToAPR()
        self.apr = nn.Sequential(APRConv2d(4, 8, 3, 2, bias=False), APRBatchNorm(8), APRReLU(), APRMaxPool2d())
        self.to_dense = APRToDense()
        self.head = nn.Conv2d(8, 6, 1)

    def forward(self, images, batch):
        x = self.apr(self.to_apr(F.relu(self.stem(images)), batch))
        return self.head(self.to_dense(x)).mean(dim=(2, 3))


def test_hybrid_network_trains(batch):
    b, imgs, labels = batch
    torch.manual_seed(0)
    net = Hybrid()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(net(imgs, b), labels)
        opt.zero_grad()
        loss.backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert net.stem.weight.grad.abs().sum() > 0 and net.apr[0].weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]

"""APRNet layers as ``torch.nn`` modules (thesis chapter 3).

APR layers pass :class:`APRFeatures` — particle features (N, C) with the :class:`~aprlib.APRBatch`
that gives them their positions — so that an APRNet is an ``nn.Sequential`` like any CNN.
"""
from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..apr.batch import APRBatch
from ..ops import BACKENDS, apr_conv, apr_max_pool

__all__ = ["APRFeatures", "APRConv", "APRConv2d", "APRConv3d", "APRMaxPool", "APRMaxPool2d", "APRMaxPool3d", "APRBatchNorm", "APRReLU", "APRDropout",
           "APRSpatialDropout", "APRGlobalAvgPool", "level_channel"]


@dataclasses.dataclass
class APRFeatures:
    """Features (N, C) of the particles of ``batch`` (rows in the batch's particle order)."""

    features: torch.Tensor
    batch: APRBatch

    def __post_init__(self):
        if not isinstance(self.batch, APRBatch):
            raise TypeError(f"batch must be an APRBatch, got {type(self.batch).__name__}")
        if not isinstance(self.features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor (N, C), got {type(self.features).__name__}")
        # the particle count lives in the batch's numpy arrays: reading it under torch.compile would break
        # the graph at every layer, and there the APR ops' own checks compare rows with the batch plan
        if self.features.ndim != 2 or (not torch.compiler.is_compiling()
                                       and self.features.shape[0] != self.batch.n_particles):
            raise ValueError(f"features must be (N, C) with N = {self.batch.n_particles} particles, "
                             f"got {tuple(self.features.shape)}")

    @classmethod
    def from_batch(cls, batch: APRBatch, with_level: bool = False, dtype=torch.float32, device=None):
        """Intensities of the batch as features, optionally with the normalised level as an extra
        channel (thesis 4.2.3)."""
        x = batch.features(dtype)
        if with_level:
            x = torch.cat([x, level_channel(batch, dtype)], dim=1)
        return cls(x.to(device) if device is not None else x, batch)

    def with_features(self, features: torch.Tensor) -> "APRFeatures":
        return APRFeatures(features, self.batch)


def level_channel(batch: APRBatch, dtype=torch.float32) -> torch.Tensor:
    """(N, 1) particle level normalised to [0, 1]: (level - level_min) / (level_max - level_min)."""
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch, got {type(batch).__name__}")
    vals = [(a.level.astype("float64") - a.level_min) / max(a.level_max - a.level_min, 1) for a in batch.aprs]
    return torch.cat([torch.from_numpy(v) for v in vals]).to(dtype)[:, None]


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check(inp) -> APRFeatures:
    if not isinstance(inp, APRFeatures):
        raise TypeError(f"APR layers take APRFeatures, got {type(inp).__name__}")
    return inp


def _check_ndim(ndim) -> int:
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    return int(ndim)


class APRConv(nn.Module):
    """APR convolution of ``ndim``-dimensional APRs (2: images, 3: volumes): ``in_channels`` ->
    ``out_channels`` with odd ``kernel_size`` and ``n_level_kernels`` level-specific kernels (kernel 0
    for the finest level present, the last one reused for all coarser levels). Weight: (out, in,
    n_level_kernels, k, k) in 2D, (out, in, n_level_kernels, k, k, k) in 3D. :class:`APRConv2d` and
    :class:`APRConv3d` fix ``ndim``."""

    ndim = 2  # modules pickled before the option existed are 2D

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_level_kernels: int = 1,
                 bias: bool = True, backend: str = "auto", device=None, dtype=None, *, ndim: int = 2):
        super().__init__()
        self.ndim = _check_ndim(ndim)
        factory = {"device": device, "dtype": dtype}
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("n_level_kernels", n_level_kernels)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        in_channels, out_channels = int(in_channels), int(out_channels)
        kernel_size, n_level_kernels = int(kernel_size), int(n_level_kernels)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.n_level_kernels, self.backend = kernel_size, n_level_kernels, backend
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, n_level_kernels,
                                               *([kernel_size] * self.ndim), **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        # nn.Conv2d's / nn.Conv3d's default (kaiming_uniform with a = sqrt(5)) for each level kernel:
        # U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels * k^ndim
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size ** self.ndim)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, inp: APRFeatures) -> APRFeatures:
        inp = _check(inp)
        out = apr_conv(inp.features, inp.batch, self.weight, self.bias, backend=self.backend, ndim=self.ndim)
        return inp.with_features(out)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"n_level_kernels={self.n_level_kernels}, bias={self.bias is not None}, backend={self.backend!r}")


class APRConv2d(APRConv):
    """:class:`APRConv` of 2D APRs (images): weight (out, in, n_level_kernels, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_level_kernels: int = 1,
                 bias: bool = True, backend: str = "auto", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, n_level_kernels, bias, backend, device, dtype, ndim=2)


class APRConv3d(APRConv):
    """:class:`APRConv` of 3D APRs (volumes): weight (out, in, n_level_kernels, k, k, k)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_level_kernels: int = 1,
                 bias: bool = True, backend: str = "auto", device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, n_level_kernels, bias, backend, device, dtype, ndim=3)


class APRMaxPool(nn.Module):
    """Max pooling of each APR's finest-level particles into their parents (2^ndim children); returns
    the pooled APR. ``ndim`` None takes 2D and 3D APRs; :class:`APRMaxPool2d` and :class:`APRMaxPool3d`
    check it."""

    ndim = None

    def __init__(self, backend: str = "auto", *, ndim: int | None = None):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        self.ndim = None if ndim is None else _check_ndim(ndim)

    def forward(self, inp: APRFeatures) -> APRFeatures:
        inp = _check(inp)
        out, batch = apr_max_pool(inp.features, inp.batch, backend=self.backend, ndim=self.ndim)
        return APRFeatures(out, batch)

    def extra_repr(self):
        return f"backend={self.backend!r}"


class APRMaxPool2d(APRMaxPool):
    """:class:`APRMaxPool` of 2D APRs."""

    ndim = 2  # modules pickled before the option existed

    def __init__(self, backend: str = "auto"):
        super().__init__(backend, ndim=2)


class APRMaxPool3d(APRMaxPool):
    """:class:`APRMaxPool` of 3D APRs."""

    def __init__(self, backend: str = "auto"):
        super().__init__(backend, ndim=3)


def _padded_count(batch: APRBatch) -> int:
    """B * N_max: the rows of the batch's particles zero-padded to its largest APR's particle count."""
    return len(batch) * int(np.diff(batch.particle_offsets).max())


class APRBatchNorm(nn.BatchNorm1d):
    """Batch normalisation over all particles of the batch, per channel: features (N, C) -> (N, C).

    By default the statistics are those of the N particles of the batch (its APRs' particles
    concatenated: there is no padding). ``include_padding=True`` takes them instead over the batch
    zero-padded to its largest particle count N_max, as ``nn.BatchNorm1d`` on a (B, C, N_max) array
    with zeros past each APR's particles computes them (the thesis-era code, pyapr's ``APRNet``,
    2019, stored batches so): mean and biased variance over B * N_max values per channel, B * N_max - N
    of them zeros (constants: no gradient reaches them), and the running variance from the unbiased
    variance over B * N_max. Only the N particle rows are returned. When every APR of the batch has
    N_max particles, or when the running statistics are used (evaluation), the output is exactly
    the default's."""

    include_padding = False  # modules pickled before the option existed read the default

    def __init__(self, *args, include_padding: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(include_padding, bool):
            raise TypeError(f"include_padding must be True or False, got {include_padding!r}")
        self.include_padding = include_padding

    def forward(self, inp: APRFeatures) -> APRFeatures:
        inp = _check(inp)
        x = inp.features
        batch_statistics = self.training or self.running_mean is None
        if self.include_padding and batch_statistics:
            n_pad = _padded_count(inp.batch) - x.shape[0]
            if n_pad > 0:
                padded = torch.cat([x, x.new_zeros(n_pad, x.shape[1])])
                return inp.with_features(super().forward(padded)[:x.shape[0]])
        return inp.with_features(super().forward(x))

    def extra_repr(self):
        return super().extra_repr() + (", include_padding=True" if self.include_padding else "")


class APRReLU(nn.Module):
    def forward(self, inp: APRFeatures) -> APRFeatures:
        return _check(inp).with_features(F.relu(inp.features))


class APRDropout(nn.Dropout):
    """Dropout of individual particle features."""

    def forward(self, inp: APRFeatures) -> APRFeatures:
        return _check(inp).with_features(super().forward(inp.features))


class APRSpatialDropout(nn.Module):
    """Spatial dropout: zeroes whole feature maps (one channel of one APR) with probability p."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be a number in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, inp: APRFeatures) -> APRFeatures:
        inp = _check(inp)
        if not self.training or self.p == 0.0:
            return inp
        x = inp.features
        keep = torch.empty(len(inp.batch), x.shape[1], dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        return inp.with_features(x * keep[inp.batch.batch_index_tensor(x.device)] / (1 - self.p))

    def extra_repr(self):
        return f"p={self.p}"


class APRGlobalAvgPool(nn.Module):
    """Mean over the particles of each APR: APRFeatures (N, C) -> tensor (B, C).

    ``include_padding=True`` divides each APR's sum by the batch's largest particle count N_max
    instead of its own count: the mean over the batch zero-padded to N_max particles, as
    ``nn.AdaptiveAvgPool1d(1)`` on a (B, C, N_max) array computes it (the thesis-era code, pyapr's
    ``APRNet``, 2019): APR b's mean scaled by n_b / N_max."""

    include_padding = False  # modules pickled before the option existed read the default

    def __init__(self, include_padding: bool = False):
        super().__init__()
        if not isinstance(include_padding, bool):
            raise TypeError(f"include_padding must be True or False, got {include_padding!r}")
        self.include_padding = include_padding

    def forward(self, inp: APRFeatures) -> torch.Tensor:
        inp = _check(inp)
        x = inp.features
        sums = x.new_zeros(len(inp.batch), x.shape[1]).index_add(0, inp.batch.batch_index_tensor(x.device), x)
        counts = torch.as_tensor(inp.batch.particle_offsets, device=x.device).diff().to(x.dtype)
        if self.include_padding:
            return sums / counts.max()
        return sums / counts[:, None]

    def extra_repr(self):
        return "include_padding=True" if self.include_padding else ""

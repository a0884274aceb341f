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
from ..ops import BACKENDS, apr_conv, apr_max_pool, apr_upsample, pool_plan

__all__ = ["APRFeatures", "APRConv", "APRConv2d", "APRConv3d", "APRMaxPool", "APRMaxPool2d", "APRMaxPool3d", "APRBatchNorm", "APRGroupNorm", "APRReLU", "APRDropout",
           "APRSpatialDropout", "APRGlobalAvgPool", "APRUpsample", "APRUpsample2d", "APRUpsample3d", "APRUpConv", "APRCat", "apr_cat", "same_structure",
           "level_channel"]


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


def _check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


class _OpLayer(nn.Module):
    """A parameter-free layer of an op with a ``backend`` and an optional ``ndim`` (None: 2D and 3D)."""

    def __init__(self, backend: str = "auto", *, ndim: int | None = None):
        super().__init__()
        self.backend = _check_backend(backend)
        self.ndim = None if ndim is None else _check_ndim(ndim)


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
        _check_backend(backend)
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


class APRMaxPool(_OpLayer):
    """Max pooling of each APR's finest-level particles into their parents (2^ndim children); returns
    the pooled APR. ``ndim`` None takes 2D and 3D APRs; :class:`APRMaxPool2d` and :class:`APRMaxPool3d`
    check it."""

    ndim = None

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


class APRGroupNorm(nn.Module):
    """Group normalisation of each APR on its own, as ``nn.GroupNorm`` normalises each sample: features
    (N, C) -> (N, C). The C channels are split into ``num_groups`` groups of consecutive channels; each
    APR's particles and each group's channels give one mean and one biased variance (every particle
    counts once); then a per-channel affine (``weight``, ``bias``, if ``affine``). The same in training
    and evaluation (no running statistics). On an APR whose particles are all pixels (voxels) it is
    ``nn.GroupNorm`` of the pixel image (``tests/test_layers.py``).

    ``include_padding=True`` takes the statistics instead over each APR zero-padded to the batch's
    largest particle count N_max, as ``nn.GroupNorm`` on a (B, C, N_max) array with zeros past each
    APR's particles computes them (APR-CNN's group norm over the zero-padded particle axis, which does
    not mask the padding); only the particle rows are returned."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True, *,
                 include_padding: bool = False):
        super().__init__()
        for name, v in (("num_groups", num_groups), ("num_channels", num_channels)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
            raise ValueError(f"eps must be a positive number, got {eps!r}")
        if not isinstance(include_padding, bool):
            raise TypeError(f"include_padding must be True or False, got {include_padding!r}")
        self.num_groups, self.num_channels, self.eps = int(num_groups), int(num_channels), float(eps)
        self.affine, self.include_padding = bool(affine), include_padding
        if self.affine:
            self.weight = nn.Parameter(torch.ones(self.num_channels))
            self.bias = nn.Parameter(torch.zeros(self.num_channels))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, inp: APRFeatures) -> APRFeatures:
        inp = _check(inp)
        x = inp.features
        if x.shape[1] != self.num_channels:
            raise ValueError(f"APRGroupNorm expects {self.num_channels} channels, got features of shape "
                             f"{tuple(x.shape)}")
        n, g, b = x.shape[0], self.num_groups, len(inp.batch)
        idx = inp.batch.batch_index_tensor(x.device)
        xg = x.reshape(n, g, -1)  # (N, G, C / G)
        particles = torch.as_tensor(np.diff(inp.batch.particle_offsets), device=x.device, dtype=x.dtype)
        rows = torch.full_like(particles, float(particles.max())) if self.include_padding else particles
        count = (rows * xg.shape[2])[:, None]  # values per (APR, group)
        mean = x.new_zeros(b, g).index_add(0, idx, xg.sum(2)) / count
        centred = xg - mean[idx][:, :, None]
        ss = x.new_zeros(b, g).index_add(0, idx, (centred * centred).sum(2))
        if self.include_padding:  # the padding's zeros lie mean away from the mean
            ss = ss + ((rows - particles) * xg.shape[2])[:, None] * mean * mean
        var = ss / count
        y = (centred * torch.rsqrt(var + self.eps)[idx][:, :, None]).reshape(n, -1)
        if self.affine:
            y = y * self.weight + self.bias
        return inp.with_features(y)

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
                + (", include_padding=True" if self.include_padding else ""))


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


# --- the way back up: upsampling and skip connections (a U-Net's decoder) --------------------------
def _target_batch(target) -> APRBatch:
    if isinstance(target, APRFeatures):
        return target.batch
    if isinstance(target, APRBatch):
        return target
    raise TypeError(f"the structure to upsample to must be given as APRFeatures (a skip connection) or an "
                    f"APRBatch, got {type(target).__name__}")


@torch.compiler.disable
def _check_pooled_from(coarse: APRBatch, target: APRBatch) -> None:
    """``coarse`` must be the pooled batch of ``target``'s pooling plan (eager under torch.compile)."""
    if pool_plan(target).out is not coarse:
        raise ValueError("APRUpsample: the coarse features are not on the pooled structure of the target batch "
                         "(upsample the output of APRMaxPool to the batch that was pooled)")


class APRUpsample(_OpLayer):
    """Upsampling to the structure before a pooling: ``APRUpsample()(coarse, skip)``.

    ``coarse``: APRFeatures (M, C) on a pooled batch; ``skip``: the APRFeatures (or the APRBatch) of
    the structure that was pooled, whose pooled batch (its pooling plan's, the batch
    :class:`APRMaxPool` returned) must be ``coarse.batch`` itself. Returns APRFeatures (N, C) on
    ``skip``'s batch: each particle takes the value of the pooled particle covering it
    (:func:`aprlib.ops.apr_upsample`; nearest upsampling by 2 on a pixel APR). ``ndim`` None takes 2D and
    3D APRs; :class:`APRUpsample2d` / :class:`APRUpsample3d` check it."""

    def forward(self, coarse: APRFeatures, skip) -> APRFeatures:
        coarse = _check(coarse)
        target = _target_batch(skip)
        _check_pooled_from(coarse.batch, target)
        return APRFeatures(apr_upsample(coarse.features, target, backend=self.backend, ndim=self.ndim), target)

    def extra_repr(self):
        return f"backend={self.backend!r}"


class APRUpsample2d(APRUpsample):
    """:class:`APRUpsample` of 2D APRs."""

    def __init__(self, backend: str = "auto"):
        super().__init__(backend, ndim=2)


class APRUpsample3d(APRUpsample):
    """:class:`APRUpsample` of 3D APRs."""

    def __init__(self, backend: str = "auto"):
        super().__init__(backend, ndim=3)


class APRUpConv(nn.Module):
    """A learnable up step: an :class:`APRConv` (``in_channels`` -> ``out_channels``, ``kernel_size``,
    1 by default as APR-CNN's decoder) on the coarse (pooled) structure, then :class:`APRUpsample` to
    the target structure: ``APRUpConv(...)(coarse (M, in), skip) -> APRFeatures (N, out)`` on
    ``skip``'s batch. Upsampling copies values, so with ``kernel_size`` 1 this equals upsampling then the
    1x1 convolution, at the cost of the coarse structure. Its weight is ``self.conv.weight``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, n_level_kernels: int = 1,
                 bias: bool = True, backend: str = "auto", device=None, dtype=None, *, ndim: int = 2):
        super().__init__()
        self.conv = APRConv(in_channels, out_channels, kernel_size, n_level_kernels, bias, backend, device, dtype,
                            ndim=ndim)
        self.up = APRUpsample(backend, ndim=ndim)

    def forward(self, coarse: APRFeatures, skip) -> APRFeatures:
        return self.up(self.conv(coarse), skip)


def same_structure(a: APRBatch, b: APRBatch) -> bool:
    """Whether two batches have the same structure: the same object, or the same number of APRs whose
    shapes, particle levels and cell coordinates are equal (APRs sharing their arrays are compared by
    identity first)."""
    if a is b:
        return True
    if not isinstance(a, APRBatch) or not isinstance(b, APRBatch) or len(a) != len(b) or a.ndim != b.ndim:
        return False
    if not np.array_equal(a.particle_offsets, b.particle_offsets):
        return False
    for p, q in zip(a.aprs, b.aprs):
        if p is q or p._tables is q._tables:  # one APR, or a structure-only view of it
            continue
        if p.shape != q.shape or not np.array_equal(p.level, q.level):
            return False
        if not all(np.array_equal(u, v) for u, v in zip(p.coords, q.coords)):
            return False
    return True


def apr_cat(inputs) -> APRFeatures:
    """Concatenation along channels of APRFeatures on one structure (a U-Net's skip connection):
    [(N, C_1), (N, C_2), ...] -> APRFeatures (N, C_1 + C_2 + ...) on the first input's batch.

    The inputs must be on the same structure: the same APRBatch object (the usual case: a skip
    connection and an upsampling to it), or batches of equal structure (:func:`aprlib.nn.same_structure`: the same
    shapes, levels and coordinates, e.g. two batches of the same APRs); anything else is a
    ``ValueError``. The features must share their dtype and device (as ``torch.cat``)."""
    inputs = list(inputs)
    if not inputs:
        raise ValueError("apr_cat needs at least one APRFeatures")
    for v in inputs:
        _check(v)
    first = inputs[0].batch
    _check_one_structure(inputs)
    return APRFeatures(torch.cat([v.features for v in inputs], dim=1), first)


@torch.compiler.disable
def _check_one_structure(inputs) -> None:
    """All ``inputs`` (APRFeatures) on the first one's structure (eager under torch.compile)."""
    first = inputs[0].batch
    for i, v in enumerate(inputs[1:], 1):
        if v.batch is not first and not same_structure(first, v.batch):
            raise ValueError(f"apr_cat: input {i} is on another structure than input 0 "
                             f"({v.batch.n_particles} particles of {len(v.batch)} APRs vs {first.n_particles} of "
                             f"{len(first)}, or different levels / positions); concatenate features of one structure "
                             f"(upsample the coarse features to the skip connection's batch first)")


class APRCat(nn.Module):
    """:func:`apr_cat` as a module: ``APRCat()(a, b, ...)`` -> APRFeatures (N, sum of channels)."""

    def forward(self, *inputs: APRFeatures) -> APRFeatures:
        return apr_cat(inputs)

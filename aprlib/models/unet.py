"""U-Nets on APRs and on pixels (voxels), of the same widths and the same parameters.

Both networks (``ndim`` 2: images, 3: volumes) are built alike, with the same module names, so that
one's weights load into the other (:func:`load_pixel_weights`):

* an encoder of ``depth`` blocks, each followed by a 2x max pooling; block i has
  ``base_channels * 2**i`` channels;
* a bottom block of ``base_channels * 2**depth`` channels;
* a decoder of ``depth`` steps, from the coarsest: an up step (a ``up_kernel_size`` convolution,
  1x1 by default, halving the channels, on the coarse structure, then nearest upsampling to the
  structure of the matching encoder block), the encoder block's output concatenated after it (the
  skip connection), and a block of the halved width;
* a head: a 1x1 convolution to ``out_channels`` (K).

A block is ``convs_per_block`` times (convolution of ``kernel_size``, normalisation, ReLU); with
``norm="batch"`` the convolutions have no bias and the normalisation is a batch norm (on the APR:
:class:`~aprlib.nn.APRBatchNorm`, statistics over the particles only, no padding rows); with
``norm="group"`` a group norm of ``norm_groups`` groups (each image on its own, the same in training
and evaluation; on the APR: :class:`~aprlib.nn.APRGroupNorm`, every particle counting once, no padding
rows); with ``norm=None`` the convolutions have a bias and there is no normalisation.

:class:`APRUNet` works on the particles: APR convolutions (with ``n_level_kernels`` level kernels),
APR max pooling and :class:`~aprlib.nn.APRUpConv` back to the skip connection's structure: input an
APRBatch or APRFeatures (N, in_channels), output APRFeatures (N, K) on the input's batch.
:class:`PixelUNet` is the dense counterpart: ``nn.Conv2d`` / ``nn.Conv3d`` with zero padding k // 2, max
pooling in ceil mode, nearest upsampling cropped to the skip connection's size, so that the output
has the input's size for any size: input ``(B, in_channels, *S)``, output ``(B, K, *S)``.

On an APR whose particles are all pixels (voxels), with one level kernel, the APR U-Net with the
pixel U-Net's weights computes the pixel U-Net's output (each operation does: convolution, pooling
in ceil mode, upsampling cropped, batch or group norm over the particles = over the pixels), as long as every
pooling pools (the image's ``level_max - depth >= 1``, i.e. its largest side above ``2**depth``: an APR
at level 1 has nothing left to pool and stays as it is). The two have the same number of parameters
when ``n_level_kernels`` is 1 (the APR convolutions hold ``n_level_kernels`` kernels each).
"""
from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import nn

from ..apr.batch import APRBatch
from ..nn.layers import APRBatchNorm, APRConv, APRGroupNorm, APRFeatures, APRMaxPool, APRReLU, APRUpConv, apr_cat

__all__ = ["APRUNet", "PixelUNet", "unet_widths", "load_pixel_weights"]


def _positive(name, v, minimum=1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _check_common(ndim, depth, base_channels, convs_per_block, kernel_size, up_kernel_size, norm, in_channels,
                  out_channels, norm_groups=8):
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    for name, v in (("kernel_size", kernel_size), ("up_kernel_size", up_kernel_size)):
        if _positive(name, v) % 2 == 0:
            raise ValueError(f"{name} must be odd, got {v!r}")
    if norm not in ("batch", "group", None):
        raise ValueError(f"norm must be 'batch', 'group' or None, got {norm!r}")
    groups = _positive("norm_groups", norm_groups)
    if norm == "group":
        widths = unet_widths(_positive("base_channels", base_channels), _positive("depth", depth, 0))
        bad = [c for c in widths if c % groups]
        if bad:
            raise ValueError(f"norm_groups={groups} must divide every block's channels {widths}; {bad} are not "
                             f"multiples of it")
    return (int(ndim), _positive("depth", depth, 0), _positive("base_channels", base_channels),
            _positive("convs_per_block", convs_per_block), _positive("in_channels", in_channels),
            _positive("out_channels", out_channels))


def unet_widths(base_channels: int, depth: int) -> list[int]:
    """Channels of the blocks from the finest to the bottom one: ``base_channels * 2**i``, i = 0..depth."""
    return [base_channels * 2 ** i for i in range(depth + 1)]


class _UNet(nn.Module):
    """The shared layout: ``down`` (depth blocks), ``bottom``, ``up`` (depth up steps, finest first),
    ``dec`` (depth blocks, finest first), ``head``; the subclasses make the layers."""

    def __init__(self, in_channels, out_channels, ndim, depth, base_channels, convs_per_block, kernel_size,
                 up_kernel_size, norm, norm_groups=8):
        super().__init__()
        (self.ndim, self.depth, self.base_channels, self.convs_per_block, self.in_channels,
         self.out_channels) = _check_common(ndim, depth, base_channels, convs_per_block, kernel_size, up_kernel_size,
                                            norm, in_channels, out_channels, norm_groups)
        self.kernel_size, self.up_kernel_size, self.norm = int(kernel_size), int(up_kernel_size), norm
        self.norm_groups = int(norm_groups)
        w = unet_widths(self.base_channels, self.depth)
        ins = [self.in_channels] + w[:-1]
        self.down = nn.ModuleList([self._block(ins[i], w[i]) for i in range(self.depth)])
        self.bottom = self._block(ins[self.depth], w[self.depth])
        self.up = nn.ModuleList([self._up(w[i + 1], w[i]) for i in range(self.depth)])
        self.dec = nn.ModuleList([self._block(2 * w[i], w[i]) for i in range(self.depth)])
        self.head = self._conv(w[0], self.out_channels, 1, bias=True)

    def _block(self, c_in, c_out):
        layers = []
        for j in range(self.convs_per_block):
            layers.append(self._conv(c_in if j == 0 else c_out, c_out, self.kernel_size, bias=self.norm is None))
            if self.norm == "batch":
                layers.append(self._bn(c_out))
            elif self.norm == "group":
                layers.append(self._gn(c_out))
            layers.append(self._relu())
        return nn.Sequential(*layers)

    def _run(self, x, pool, cat):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for i in reversed(range(self.depth)):
            x = self.dec[i](cat(self.up[i](x, skips[i]), skips[i]))
        return self.head(x)

    def extra_repr(self):
        return (f"ndim={self.ndim}, depth={self.depth}, base_channels={self.base_channels}, "
                f"convs_per_block={self.convs_per_block}, kernel_size={self.kernel_size}, norm={self.norm!r}"
                + (f", norm_groups={self.norm_groups}" if self.norm == "group" else ""))


class APRUNet(_UNet):
    """A U-Net on APRs (module docstring): input an APRBatch (its intensities as features, on the
    parameters' device and dtype) or APRFeatures (N, ``in_channels``); output APRFeatures
    (N, ``out_channels``) on the input's batch, one K-vector per particle.

    ``n_level_kernels`` level kernels per convolution of kernel size above 1 (the 1x1 ones, the head's
    and by default the up steps', have one); ``backend``: :mod:`aprlib.ops.common`. Weights as :class:`~aprlib.nn.APRConv`'s:
    ``(out, in, n_level_kernels, *K)``."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, ndim: int = 2, depth: int = 3,
                 base_channels: int = 16, convs_per_block: int = 2, kernel_size: int = 3, n_level_kernels: int = 2,
                 up_kernel_size: int = 1, norm: str | None = "batch", norm_groups: int = 8, backend: str = "auto"):
        self.n_level_kernels = _positive("n_level_kernels", n_level_kernels)
        self.backend = backend
        super().__init__(in_channels, out_channels, ndim, depth, base_channels, convs_per_block, kernel_size,
                         up_kernel_size, norm, norm_groups)
        self.pool = APRMaxPool(backend, ndim=self.ndim)

    def _conv(self, c_in, c_out, k, bias):
        nk = self.n_level_kernels if k > 1 else 1
        return APRConv(c_in, c_out, k, nk, bias=bias, backend=self.backend, ndim=self.ndim)

    def _bn(self, c):
        return APRBatchNorm(c)

    def _gn(self, c):
        return APRGroupNorm(self.norm_groups, c)

    def _relu(self):
        return APRReLU()

    def _up(self, c_in, c_out):
        k = self.up_kernel_size
        return APRUpConv(c_in, c_out, k, self.n_level_kernels if k > 1 else 1, bias=True, backend=self.backend,
                         ndim=self.ndim)

    def forward(self, inp) -> APRFeatures:
        if isinstance(inp, APRBatch):
            p = self.head.weight
            inp = APRFeatures.from_batch(inp, dtype=p.dtype, device=p.device)
        if not isinstance(inp, APRFeatures):
            raise TypeError(f"an APRUNet takes an APRBatch or APRFeatures, got {type(inp).__name__}")
        return self._run(inp, self.pool, lambda up, skip: apr_cat([up, skip]))

    def extra_repr(self):
        return super().extra_repr() + f", n_level_kernels={self.n_level_kernels}, backend={self.backend!r}"


class _PixelUp(nn.Module):
    """Convolution on the coarse grid, then nearest upsampling by 2 cropped to the skip's size."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def forward(self, coarse, skip):
        x = F.interpolate(self.conv(coarse), scale_factor=2, mode="nearest")
        return x[(..., *[slice(0, s) for s in skip.shape[2:]])]


class PixelUNet(_UNet):
    """The pixel (voxel) U-Net of :class:`APRUNet`'s layout (module docstring): input
    ``(B, in_channels, *S)``, S (H, W) or (D, H, W) of any size; output ``(B, out_channels, *S)``."""

    def __init__(self, in_channels: int = 1, out_channels: int = 2, *, ndim: int = 2, depth: int = 3,
                 base_channels: int = 16, convs_per_block: int = 2, kernel_size: int = 3, up_kernel_size: int = 1,
                 norm: str | None = "batch", norm_groups: int = 8):
        super().__init__(in_channels, out_channels, ndim, depth, base_channels, convs_per_block, kernel_size,
                         up_kernel_size, norm, norm_groups)

    def _conv(self, c_in, c_out, k, bias):
        return (nn.Conv2d if self.ndim == 2 else nn.Conv3d)(c_in, c_out, k, padding=k // 2, bias=bias)

    def _bn(self, c):
        return (nn.BatchNorm2d if self.ndim == 2 else nn.BatchNorm3d)(c)

    def _gn(self, c):
        return nn.GroupNorm(self.norm_groups, c)

    def _relu(self):
        return nn.ReLU()

    def _up(self, c_in, c_out):
        return _PixelUp(self._conv(c_in, c_out, self.up_kernel_size, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != self.ndim + 2:
            raise ValueError(f"a {self.ndim}D PixelUNet takes a (B, C, {'H, W' if self.ndim == 2 else 'D, H, W'}) "
                             f"tensor, got {getattr(x, 'shape', type(x).__name__)}")
        pool = (F.max_pool2d if self.ndim == 2 else F.max_pool3d)
        return self._run(x, lambda t: pool(t, 2, ceil_mode=True), lambda up, skip: torch.cat([up, skip], 1))


@torch.no_grad()
def load_pixel_weights(apr_net: APRUNet, pixel_net: PixelUNet) -> APRUNet:
    """Copy ``pixel_net``'s parameters and buffers (batch-norm statistics) into ``apr_net`` (same ndim,
    widths, depth, kernel sizes and norm): each pixel kernel ``(out, in, *K)`` into every level kernel of
    the APR convolution ``(out, in, n_level_kernels, *K)``. Returns ``apr_net``."""
    a, p = apr_net.state_dict(), pixel_net.state_dict()
    if list(a) != list(p):
        raise ValueError("the two U-Nets have different layouts (depth, convolutions per block or norm)")
    for name, t in a.items():
        s = p[name]
        if t.shape == s.shape:
            t.copy_(s)
        elif t.ndim == s.ndim + 1 and t.shape[:2] + t.shape[3:] == s.shape:
            t.copy_(s.unsqueeze(2).expand_as(t))
        else:
            raise ValueError(f"{name}: the APR U-Net has shape {tuple(t.shape)}, the pixel U-Net {tuple(s.shape)}")
    return apr_net

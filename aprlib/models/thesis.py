"""The thesis's networks: APR_A / Pix_A / APR_B / Pix_B with "same" and "close" variants
(Table 4.1), the natural-image networks (Table 4.3) and the VGG16 feature extractor (Fig 2.6,
4.3.1), each in APR and pixel form.

Every network is built from a list of layer specs ``(out_channels, kernel_size, n_level_kernels,
bn_relu_pool)``; a spec with ``bn_relu_pool = "relu"`` has only a ReLU and ``None`` nothing after
the convolution. Networks end with global average pooling and return logits (B, n_classes).

The order within a "bn_relu_pool" block is the network's ``block_order`` (:data:`BLOCK_ORDERS`):
the thesis states "All of these convolutions are followed by batch normalisation, max pooling and
rectifier activation functions" (4.1.3.1; its Table 4.1 lists "BN, relu pool"), orders that give
exactly the same outputs and gradients, since the ReLU and the maximum commute (both
non-decreasing; APR pooling copies coarser particles unchanged). The thesis-era code (pyapr's MNIST
demo, 2019, by the thesis's author) ordered its blocks convolution, pooling, ReLU, batch norm
(``"pool_relu_bn"``), which normalises after the non-linearity: a different network.
"""
from __future__ import annotations

import numbers

import torch
from torch import nn

from ..apr.batch import APRBatch
from ..nn.layers import (APRBatchNorm, APRConv2d, APRDropout, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU,
                     APRSpatialDropout)

__all__ = ["SYNTHETIC_SPECS", "NATURAL_SPECS", "VGG16_CFG", "BLOCK_ORDERS", "APRNet", "PixelNet", "apr_network", "pixel_network",
           "conv_weight_count", "vgg16_features"]

# Table 4.1: (out channels, kernel size, level-specific kernels, what follows)
_A = [(32, 11, 5, "bn_relu_pool"), (32, 3, 4, "bn_relu_pool"), (32, 3, 3, "bn_relu_pool"), (32, 1, 1, "relu"),
      (6, 1, 1, None)]
_B = [(32, 11, 5, "bn_relu_pool"), (32, 3, 4, "bn_relu_pool"), (64, 3, 3, "bn_relu_pool"), (64, 3, 2, "bn_relu_pool"),
      (64, 3, 1, "bn_relu_pool"), (64, 1, 1, "relu"), (6, 1, 1, None)]
SYNTHETIC_SPECS = {"A": _A, "B": _B}

# Table 4.3 (natural images): pixels, APR (RGB + level input), pixels expanded
NATURAL_SPECS = {
    "pixels": [(32, 3, 1, "bn_relu_pool"), (64, 3, 1, "bn_relu_pool"), (128, 3, 1, "bn_relu_pool"),
               (128, 3, 1, "bn_relu_pool"), (128, 1, 1, "relu"), (2, 1, 1, None)],
    "apr": [(32, 3, 4, "bn_relu_pool"), (64, 3, 3, "bn_relu_pool"), (128, 3, 2, "bn_relu_pool"),
            (128, 3, 1, "bn_relu_pool"), (128, 1, 1, "relu"), (2, 1, 1, None)],
    "pixels_expanded": [(128, 3, 1, "bn_relu_pool"), (128, 3, 1, "bn_relu_pool"), (128, 3, 1, "bn_relu_pool"),
                        (128, 3, 1, "bn_relu_pool"), (128, 1, 1, "relu"), (2, 1, 1, None)],
}

VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


_AFTER = ("bn_relu_pool", "relu", None)

#: Orders of the layers after the convolution in a "bn_relu_pool" block: "bn_relu_pool" (the
#: APRNets' default; Table 4.1's), "bn_pool_relu" (the pixel networks' default; 4.1.3.1's text; the
#: same outputs) and "pool_relu_bn" (the thesis-era code's; its convolution has a bias, as there the
#: batch norm does not follow it directly).
BLOCK_ORDERS = ("bn_relu_pool", "bn_pool_relu", "pool_relu_bn")


def _check_block_order(block_order) -> str:
    if block_order not in BLOCK_ORDERS:
        raise ValueError(f"block_order must be one of {BLOCK_ORDERS}, got {block_order!r}")
    return block_order


def _conv_block(conv, after: str | None, block_order: str, bn, relu, pool) -> list:
    """The layers of one block: the convolution, then what ``after`` says in ``block_order``."""
    if after == "bn_relu_pool":
        return [conv] + {"bn_relu_pool": [bn, relu, pool], "bn_pool_relu": [bn, pool, relu],
                         "pool_relu_bn": [pool, relu, bn]}[block_order]
    return [conv, relu] if after == "relu" else [conv]


def _conv_bias(after: str | None, block_order: str) -> bool:
    """A convolution has a bias unless a batch norm follows it directly (it would cancel the bias)."""
    return after != "bn_relu_pool" or block_order == "pool_relu_bn"


def _check_spec(spec) -> list:
    """The spec as a list of 4-tuples; ValueError/TypeError naming the first malformed layer."""
    if isinstance(spec, (str, bytes)) or not hasattr(spec, "__iter__"):
        raise TypeError(f"spec must be a list of (out_channels, kernel_size, n_level_kernels, after) "
                        f"tuples, got {type(spec).__name__}")
    layers = list(spec)
    if not layers:
        raise ValueError("spec must have at least one layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)) or len(layer) != 4:
            raise ValueError(f"spec[{i}] must be (out_channels, kernel_size, n_level_kernels, after), got {layer!r}")
        d, k, nk, after = layer
        for name, v in (("out_channels", d), ("kernel_size", k), ("n_level_kernels", nk)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"spec[{i}]: {name} must be a positive integer, got {v!r}")
        if k % 2 == 0:
            raise ValueError(f"spec[{i}]: kernel_size must be odd, got {k}")
        if after not in _AFTER:
            raise ValueError(f"spec[{i}]: what follows the convolution must be one of {_AFTER}, got {after!r}")
    return [tuple(layer) for layer in layers]


def _variant(spec, variant: str):
    """'full': as specified; 'same': one kernel per layer; 'close': two in layer 1, one after."""
    spec = _check_spec(spec)
    if variant == "full":
        return list(spec)
    if variant == "same":
        return [(d, k, 1, after) for d, k, _, after in spec]
    if variant == "close":
        return [(d, k, 2 if i == 0 else 1, after) for i, (d, k, _, after) in enumerate(spec)]
    raise ValueError(f"variant must be 'full', 'same' or 'close', got {variant!r}")


def _insert_regularisation(layers, spec, spatial_dropout: float, dropout: float, apr: bool):
    """Spatial dropout after the last pooling and dropout between the 1x1 convolutions (thesis 4.1.3.4)."""
    if not spatial_dropout and not dropout:
        return layers
    out = []
    last_pool = max((i for i, s in enumerate(spec) if s[3] == "bn_relu_pool"), default=-1)
    for i, block in enumerate(layers):
        out.append(block)
        if i == last_pool and spatial_dropout:
            out.append(APRSpatialDropout(spatial_dropout) if apr else nn.Dropout2d(spatial_dropout))
        if spec[i][1] == 1 and spec[i][3] == "relu" and dropout:
            out.append(APRDropout(dropout) if apr else nn.Dropout(dropout))
    return out


class APRNet(nn.Module):
    """An APRNet: APR conv blocks, then global average pooling. Input: APRFeatures or APRBatch;
    output: logits (B, n_classes).

    Options for the pilots of the thesis-era code (defaults: this library's network):
    ``block_order`` (:data:`BLOCK_ORDERS`; default "bn_relu_pool"); ``bn_include_padding`` (batch
    norms take their statistics over the batch zero-padded to its largest particle count, see
    :class:`~aprlib.nn.APRBatchNorm`); ``avg_include_padding`` (the global average divides by that
    largest count, see :class:`~aprlib.nn.APRGlobalAvgPool`)."""

    def __init__(self, spec, in_channels: int = 1, with_level: bool = False, spatial_dropout: float = 0.0,
                 dropout: float = 0.0, backend: str = "auto", block_order: str = "bn_relu_pool",
                 bn_include_padding: bool = False, avg_include_padding: bool = False):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, numbers.Integral) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
        self.spec, self.with_level = _check_spec(spec), bool(with_level)
        self.block_order = _check_block_order(block_order)
        blocks, c = [], in_channels + (1 if with_level else 0)
        for d, k, nk, after in self.spec:
            conv = APRConv2d(c, d, k, nk, bias=_conv_bias(after, block_order), backend=backend)
            bn = APRBatchNorm(d, include_padding=bn_include_padding) if after == "bn_relu_pool" else None
            blocks.append(nn.Sequential(*_conv_block(conv, after, block_order, bn, APRReLU(),
                                                     APRMaxPool2d(backend=backend))))
            c = d
        blocks = _insert_regularisation(blocks, self.spec, spatial_dropout, dropout, apr=True)
        self.features = nn.Sequential(*blocks)
        self.pool = APRGlobalAvgPool(include_padding=avg_include_padding)

    def forward(self, inp) -> torch.Tensor:
        if not isinstance(inp, (APRBatch, APRFeatures)):
            raise TypeError(f"an APRNet takes an APRBatch or APRFeatures, got {type(inp).__name__}")
        if isinstance(inp, APRBatch):
            p = next(self.parameters())
            inp = APRFeatures.from_batch(inp, with_level=self.with_level, dtype=p.dtype, device=p.device)
        return self.pool(self.features(inp))


class PixelNet(nn.Module):
    """The pixel counterpart: Conv2d blocks with BN, MaxPool2d(2), ReLU, then global average
    pooling. Input: (B, C, H, W) with H, W >= 2**n for n poolings (Pix_A 8, Pix_B 32, the
    natural-image networks 16 pixels; a smaller image is refused with a ValueError before any layer
    runs). ``padding_mode`` is ``nn.Conv2d``'s: 'zeros' (the default, as the
    APR convolution's zero padding outside the image) or e.g. 'replicate'.

    A block computes the ReLU after the max pooling, on a quarter of the values: the maximum commutes
    with the ReLU (both are non-decreasing), so outputs and gradients are exactly those of ReLU then
    pooling (``test_pixel_blocks_pool_before_relu_exactly``), and a training step of Pix_B at 256x256
    takes about 17% less time on one CPU thread.

    ``channels_last=True`` keeps the convolution weights and the activations in torch's channels-last
    layout (the input is converted in ``forward``): the same network and the same results up to
    floating-point rounding, computed faster by oneDNN on CPUs (a training step of Pix_B at 256x256, both
    layouts side by side: ``python -m aprbook.bench step --channels-last``). Parameters and checkpoints are interchangeable
    between the two layouts; the optimiser's state follows the parameters' layout.

    ``block_order`` (:data:`BLOCK_ORDERS`; default "bn_pool_relu", the order above) orders a block's
    layers after its convolution; "pool_relu_bn" is the thesis-era code's order (a pilot option)."""

    def __init__(self, spec, in_channels: int = 1, spatial_dropout: float = 0.0, dropout: float = 0.0,
                 padding_mode: str = "zeros", channels_last: bool = False, block_order: str = "bn_pool_relu"):
        super().__init__()
        if not isinstance(channels_last, bool):
            raise TypeError(f"channels_last must be True or False, got {channels_last!r}")
        self.spec, self.channels_last = _check_spec(spec), channels_last
        self.block_order = _check_block_order(block_order)
        blocks, c = [], in_channels
        for d, k, _, after in self.spec:
            conv = nn.Conv2d(c, d, k, padding=k // 2, bias=_conv_bias(after, block_order), padding_mode=padding_mode)
            bn = nn.BatchNorm2d(d) if after == "bn_relu_pool" else None
            blocks.append(nn.Sequential(*_conv_block(conv, after, block_order, bn, nn.ReLU(), nn.MaxPool2d(2))))
            c = d
        blocks = _insert_regularisation(blocks, self.spec, spatial_dropout, dropout, apr=False)
        self.features = nn.Sequential(*blocks)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"pixel networks take (B, C, H, W) images, got shape {tuple(x.shape)}")
        self._check_size(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.features(x).mean(dim=(2, 3))

    def _check_size(self, x: torch.Tensor) -> None:
        """ValueError, before any layer runs, for images (B, C, H, W) too small for the network: each of
        its n max poolings (2x2, stride 2) needs a row and a column to pool, so H, W >= 2**n; in training
        mode each batch norm needs more than one value per channel (B x its input's height x width)."""
        n_pool = sum(after == "bn_relu_pool" for *_, after in self.spec)
        (b, _, h, w), need = x.shape, 2 ** n_pool
        if h < need or w < need:
            raise ValueError(f"this pixel network max-pools {n_pool} times by 2, so its images must be at least "
                             f"{need}x{need} pixels, got {h}x{w} (input shape {tuple(x.shape)}): resize or pad "
                             f"the images, or use a network with fewer poolings")
        if self.training and n_pool:
            # the last batch norm sees the image after n_pool - 1 poolings ("bn_*" orders) or n_pool ("pool_relu_bn")
            k = n_pool if self.block_order == "pool_relu_bn" else n_pool - 1
            if b * (h >> k) * (w >> k) < 2:
                raise ValueError(f"in training mode batch norm needs more than one value per channel, but this "
                                 f"network's last batch norm sees {h >> k}x{w >> k} values of a batch of {b} "
                                 f"(input shape {tuple(x.shape)}): train on batches of at least 2 images or images "
                                 f"of at least {2 * need}x{2 * need} pixels, or call .eval() to evaluate")


def _classes(spec, n_classes: int | None):
    """The spec with ``n_classes`` outputs instead of the thesis's (6 synthetic classes; 2, cats and dogs)."""
    if n_classes is None:
        return spec
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    d, k, nk, after = spec[-1]
    return spec[:-1] + [(n_classes, k, nk, after)]


def apr_network(name: str, variant: str = "full", n_classes: int | None = None, **kw) -> APRNet:
    """APR_A / APR_B (``name`` 'A' or 'B'; variant 'full', 'same' or 'close') or a natural-image
    APRNet (``name`` 'apr', with the level channel; ``n_classes`` outputs, default 2)."""
    if name in SYNTHETIC_SPECS:
        return APRNet(_classes(_variant(SYNTHETIC_SPECS[name], variant), n_classes), in_channels=1, **kw)
    if name in NATURAL_SPECS:
        kw.setdefault("with_level", name == "apr")
        return APRNet(_classes(_variant(NATURAL_SPECS[name], variant), n_classes), in_channels=3, **kw)
    raise ValueError(f"unknown network {name!r}; choose from {sorted(SYNTHETIC_SPECS) + sorted(NATURAL_SPECS)}")


def pixel_network(name: str, n_classes: int | None = None, **kw) -> PixelNet:
    """Pix_A / Pix_B (``name`` 'A' or 'B') or the natural-image pixel networks ('pixels',
    'pixels_expanded', or 'apr' for the APR architecture with single kernels on RGB pixels;
    ``n_classes`` outputs, default 2)."""
    if name in SYNTHETIC_SPECS:
        return PixelNet(_classes(_variant(SYNTHETIC_SPECS[name], "same"), n_classes), in_channels=1, **kw)
    if name in NATURAL_SPECS:
        return PixelNet(_classes(_variant(NATURAL_SPECS[name], "same"), n_classes), in_channels=3, **kw)
    raise ValueError(f"unknown network {name!r}; choose from {sorted(SYNTHETIC_SPECS) + sorted(NATURAL_SPECS)}")


def conv_weight_count(model: nn.Module) -> int:
    """Number of convolution weights (biases and batch-norm parameters excluded), as the thesis counts."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, APRConv2d)))


def vgg16_features(apr: bool, in_channels: int = 3, n_level_kernels: int = 1, backend: str = "auto") -> nn.Sequential:
    """VGG16's convolutional part (13 3x3 convolutions with ReLU, 5 max poolings), APR or pixel."""
    if isinstance(in_channels, bool) or not isinstance(in_channels, numbers.Integral) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive integer, got {in_channels!r}")
    layers, c = [], in_channels
    for v in VGG16_CFG:
        if v == "M":
            layers.append(APRMaxPool2d(backend=backend) if apr else nn.MaxPool2d(2))
        else:
            layers += ([APRConv2d(c, v, 3, n_level_kernels, backend=backend), APRReLU()] if apr
                       else [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()])
            c = v
    return nn.Sequential(*layers)

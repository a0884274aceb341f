"""Networks: the thesis's APRNet and pixel networks and the VGG16 feature extractor (:mod:`.thesis`)."""
from .thesis import (BLOCK_ORDERS, NATURAL_SPECS, SYNTHETIC_SPECS, VGG16_CFG, APRNet, PixelNet, apr_network,
                     conv_weight_count, pixel_network, vgg16_features)

__all__ = ["SYNTHETIC_SPECS", "NATURAL_SPECS", "VGG16_CFG", "BLOCK_ORDERS", "APRNet", "PixelNet", "apr_network",
           "pixel_network", "conv_weight_count", "vgg16_features"]

"""Networks: the thesis's APRNet and pixel networks and the VGG16 feature extractor (:mod:`.thesis`), the
APR and pixel U-Nets (:mod:`.unet`)."""
from .thesis import (BLOCK_ORDERS, NATURAL_SPECS, SYNTHETIC_SPECS, VGG16_CFG, APRNet, PixelNet, apr_network,
                     conv_weight_count, pixel_network, vgg16_features)
from .unet import APRUNet, PixelUNet, load_pixel_weights, unet_widths

__all__ = ["SYNTHETIC_SPECS", "NATURAL_SPECS", "VGG16_CFG", "BLOCK_ORDERS", "APRNet", "PixelNet", "apr_network",
           "pixel_network", "conv_weight_count", "vgg16_features", "APRUNet", "PixelUNet", "load_pixel_weights",
           "unet_widths"]

"""aprlib: the Adaptive Particle Representation and APRNet layers, with C++ kernels."""
from .apr import APR
from .batch import APRBatch, collate_aprs
from .formation import APRParameters, form_apr
from .functional import apr_conv2d, apr_max_pool2d, tree_values
from .layers import (APRBatchNorm, APRConv2d, APRDropout, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU,
                     APRSpatialDropout, level_channel)

__version__ = "0.1.0"
__all__ = ["APR", "APRBatch", "APRParameters", "collate_aprs", "form_apr", "apr_conv2d", "apr_max_pool2d",
           "tree_values", "APRBatchNorm", "APRConv2d", "APRDropout", "APRFeatures", "APRGlobalAvgPool",
           "APRMaxPool2d", "APRReLU", "APRSpatialDropout", "level_channel"]

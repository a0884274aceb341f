"""aprlib: the Adaptive Particle Representation and APRNet layers, with C++ kernels.

Layers, each using only those above it in this list: ``aprlib._core`` (C++ kernels), ``aprlib.apr``
(the APR, batches, formation), ``aprlib.ops`` (batch index plans and the operations), ``aprlib.nn``
(torch.nn layers, adapters, prepare), ``aprlib.models`` (the thesis's networks), ``aprlib.data``
(synthetic and natural images) and ``aprlib.train`` (training loops, checkpoints). ``import aprlib``
loads the APR, the operations and the layers (numpy and torch), no plotting, table or image library.
"""
from .apr import APR, APRBatch, APRParameters, collate_aprs, form_apr
from .nn.layers import (APRBatchNorm, APRConv, APRGroupNorm, APRConv2d, APRConv3d, APRDropout, APRFeatures, APRGlobalAvgPool, APRMaxPool,
                        APRMaxPool2d, APRMaxPool3d, APRReLU, APRSpatialDropout, APRCat, APRUpConv, APRUpsample,
                        APRUpsample2d, APRUpsample3d, apr_cat, level_channel)
from .ops import (apr_conv, apr_conv2d, apr_conv3d, apr_max_pool, apr_max_pool2d, apr_max_pool3d, apr_upsample,
                  apr_upsample2d, apr_upsample3d, tree_values)

__version__ = "0.1.0"
__all__ = ["APR", "APRBatch", "APRParameters", "collate_aprs", "form_apr", "apr_conv", "apr_conv2d", "apr_conv3d",
           "apr_max_pool", "apr_max_pool2d", "apr_max_pool3d", "tree_values", "APRBatchNorm", "APRGroupNorm", "APRConv", "APRConv2d",
           "APRConv3d", "APRDropout", "APRFeatures", "APRGlobalAvgPool", "APRMaxPool", "APRMaxPool2d", "APRMaxPool3d",
           "APRReLU", "APRSpatialDropout", "level_channel", "APRCat", "APRUpConv", "APRUpsample", "APRUpsample2d",
           "APRUpsample3d", "apr_cat", "apr_upsample", "apr_upsample2d", "apr_upsample3d"]

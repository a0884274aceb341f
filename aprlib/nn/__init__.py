"""torch.nn modules on APRs: the layers (:mod:`.layers`), APR <-> dense adapters (:mod:`.adapters`)
and building the index tables a network needs on a batch by running it once on meta tensors
(:mod:`aprlib.nn.prepare`: ``from aprlib.nn.prepare import prepare``; not re-exported here, so that
``aprlib.nn.prepare`` stays the module)."""
from .adapters import APRToDense, DenseToAPR, apr_to_dense, dense_to_apr, pixel_owner
from .layers import (APRBatchNorm, APRGroupNorm, APRConv, APRConv2d, APRConv3d, APRMaxPool, APRMaxPool3d, APRDropout, APRFeatures, APRGlobalAvgPool, APRMaxPool2d, APRReLU,
                     APRSpatialDropout, APRCat, APRUpConv, APRUpsample, APRUpsample2d, APRUpsample3d, apr_cat,
                     level_channel, same_structure)

__all__ = ["APRBatchNorm", "APRGroupNorm", "APRConv", "APRConv2d", "APRConv3d", "APRMaxPool", "APRMaxPool3d", "APRDropout",
           "APRFeatures", "APRGlobalAvgPool", "APRMaxPool2d", "APRReLU",
           "APRSpatialDropout", "APRCat", "APRUpConv", "APRUpsample", "APRUpsample2d", "APRUpsample3d", "apr_cat",
           "same_structure", "level_channel", "APRToDense", "DenseToAPR", "apr_to_dense", "dense_to_apr",
           "pixel_owner"]

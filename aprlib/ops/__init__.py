"""The APRNet operations on batches of APRs as torch operators (:mod:`.functional`: tree means, APR
convolution, APR max pooling; C++ and pure-torch backends) and the batch index plans they run on
(:mod:`.plans`). Importing it registers the C++ kernels as ``torch.ops.aprlib.*`` operators
(:mod:`.library`)."""
from . import library
from .functional import (BACKENDS, apr_conv, apr_conv2d, apr_conv3d, apr_max_pool, apr_max_pool2d, apr_max_pool3d,
                         resolve_backend, tree_values)
from .plans import ConvPlan, PoolPlan, TreePlan, build_tables, conv_plan, pool_plan, tree_plan

__all__ = ["library", "BACKENDS", "apr_conv", "apr_conv2d", "apr_conv3d", "apr_max_pool", "apr_max_pool2d",
           "apr_max_pool3d", "resolve_backend", "tree_values", "ConvPlan", "PoolPlan",
           "TreePlan", "build_tables", "conv_plan", "pool_plan", "tree_plan"]

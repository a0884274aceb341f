"""The APRNet operations on batches of APRs, one module per op, each holding its C++ kernel binding,
its pure-torch implementation, its ``torch.library`` registration (``torch.ops.aprlib.*``: the C++
kernel for the CPU, the pure-torch one for every other device, fake implementations and autograd) and
its public function: :mod:`.tree_means` (:func:`tree_values`), :mod:`.conv` (:func:`apr_conv`, :func:`apr_conv2d`,
:func:`apr_conv3d`), :mod:`.max_pool` (:func:`apr_max_pool` and its 2d / 3d forms), :mod:`.upsample` (:func:`apr_upsample`,
the way back from a pooled structure, and its 2d / 3d forms). :mod:`.common` holds the ``backend=`` choice and the
argument checks they share, :mod:`.plans` the batch index plans they run on. Importing it registers
the operators."""
import torch

from . import conv, max_pool, tree_means, upsample
from .common import BACKENDS, resolve_backend
from .conv import apr_conv, apr_conv2d, apr_conv3d
from .max_pool import apr_max_pool, apr_max_pool2d, apr_max_pool3d
from .plans import ConvPlan, PoolPlan, TreePlan, conv_plan, pool_plan, tree_plan
from .tree_means import tree_values
from .upsample import apr_upsample, apr_upsample2d, apr_upsample3d

#: The registered operators by name.
OPS = {name: getattr(torch.ops.aprlib, name) for name in
       ("tree_means", "tree_means_transpose", "conv", "conv_backward", "pool", "pool_backward", "upsample",
        "upsample_backward")}

__all__ = ["tree_means", "conv", "max_pool", "upsample", "apr_upsample", "apr_upsample2d", "apr_upsample3d", "BACKENDS", "OPS", "apr_conv", "apr_conv2d", "apr_conv3d", "apr_max_pool",
           "apr_max_pool2d", "apr_max_pool3d", "resolve_backend",
           "tree_values", "ConvPlan", "PoolPlan", "TreePlan", "conv_plan", "pool_plan", "tree_plan"]

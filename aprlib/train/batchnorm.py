"""Batch-normalisation statistics for evaluation: population statistics computed over fixed
training batches ("precise BN", Wu & Johnson 2021, *Rethinking "Batch" in BatchNorm*) instead of
the running averages that training tracks."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["batch_norms", "recalibrate_bn"]


def batch_norms(model: nn.Module) -> list[nn.Module]:
    """Every batch-normalisation layer of ``model`` (``nn.BatchNorm*`` and :class:`aprlib.nn.APRBatchNorm`)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches) -> nn.Module:
    """Set the running mean and variance of every batch norm of ``model`` (in place) to the averages,
    over ``batches`` (an iterable of ``(inputs, labels)``), of each batch's mean and unbiased variance,
    computed with dropout off and the weights unchanged; momentum and training mode are restored.
    Returns ``model``. Draws no random numbers. Raises ValueError if ``model`` has no batch norm or
    ``batches`` is empty."""
    bns = batch_norms(model)
    if not bns:
        raise ValueError("the model has no batch normalisation to recalibrate")
    was_training, momenta = model.training, [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    n = 0
    try:
        for inputs, _ in batches:
            model(inputs)
            n += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    if n == 0:
        raise ValueError("recalibrate_bn needs at least one batch")
    return model

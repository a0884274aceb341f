"""Training and evaluation (:mod:`.loops`: streamed, fixed-dataset and epoch training, evaluation)
batch-norm statistics for evaluation (:mod:`.batchnorm`) and their checkpoints (:mod:`.checkpoint`: configuration keys, atomic writes, resume checks)."""
from .batchnorm import batch_norms, recalibrate_bn
from .checkpoint import CHECKPOINT_FORMAT, Checkpoint, atomic_write, checkpoint_key
from .loops import (NORMALISATIONS, BatchBuilder, InputSpec, StreamBatches, TrainingStopped, batch_builder,
                    evaluate, evaluate_in_order, layer_plan, train_epochs, train_fixed, train_streamed)

__all__ = ["InputSpec", "BatchBuilder", "StreamBatches", "batch_builder", "NORMALISATIONS", "layer_plan", "evaluate", "evaluate_in_order",
           "train_streamed", "train_fixed", "train_epochs", "TrainingStopped", "Checkpoint", "checkpoint_key", "CHECKPOINT_FORMAT",
           "atomic_write", "batch_norms", "recalibrate_bn"]

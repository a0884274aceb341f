"""Training and evaluation (:mod:`.loops`: streamed, fixed-dataset and epoch training, evaluation)
batch-norm statistics for evaluation (:mod:`.batchnorm`) and their checkpoints (:mod:`.checkpoint`: configuration keys, atomic writes, resume checks);
segmentation on particles (:mod:`.segmentation`: per-particle class counts, losses equal to the pixel losses of
the reconstruction, Dice / IoU on the pixel grid)."""
from .batchnorm import batch_norms, recalibrate_bn
from .checkpoint import CHECKPOINT_FORMAT, Checkpoint, atomic_write, checkpoint_key
from .loops import (NATURAL_BATCH_SIZE, NATURAL_LR, NORMALISATIONS, SYNTHETIC_BATCH_SIZE, SYNTHETIC_LR, BatchBuilder,
                    IndexBatches, InputSpec, StreamBatches, TrainingStopped, batch_builder, evaluate, evaluate_in_order,
                    fixed_batch_order, layer_plan, prepared_in_order, train_epochs, train_fixed, train_step,
                    train_streamed)
from .segmentation import (dice, dice_per_class, iou, iou_per_class, particle_bce_with_logits, particle_cross_entropy,
                           particle_predictions_to_pixels, particle_soft_dice_loss, particle_targets)

__all__ = ["InputSpec", "BatchBuilder", "StreamBatches", "IndexBatches", "batch_builder", "train_step",
           "fixed_batch_order", "prepared_in_order", "NORMALISATIONS", "layer_plan", "evaluate", "evaluate_in_order",
           "SYNTHETIC_LR", "SYNTHETIC_BATCH_SIZE", "NATURAL_LR", "NATURAL_BATCH_SIZE",
           "train_streamed", "train_fixed", "train_epochs", "TrainingStopped", "Checkpoint", "checkpoint_key", "CHECKPOINT_FORMAT",
           "atomic_write", "batch_norms", "recalibrate_bn",
           "particle_targets", "particle_cross_entropy", "particle_bce_with_logits", "particle_soft_dice_loss",
           "particle_predictions_to_pixels", "dice", "iou", "dice_per_class", "iou_per_class"]

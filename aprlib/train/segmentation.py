"""Segmentation on particles: per-particle targets, losses equal to the pixel losses of the
piecewise-constant reconstruction, and Dice / IoU scored on the pixel (voxel) grid.

An APR segmentation network (e.g. an APR U-Net) outputs per-particle logits ``(N, K)`` for the N
particles of an :class:`~aprlib.APRBatch` (rows in the batch's particle order): K >= 2 class logits
(softmax), or K = 1 foreground logit (sigmoid, binary). The ground truth is one pixel / voxel label
image per APR, of the APR's shape.

Counts, not labels, are the particle targets: :func:`particle_targets` gives ``counts[p, c]``, the
number of pixels (voxels) of class ``c`` inside particle ``p``'s cell, from summed-area tables of the
masks in O(pixels). Since every pixel of a cell shares its particle's
logits ``x_p``, the sum over pixels of a pixel loss is a sum over particles:
``sum_pixels -log softmax(x_owner)_label = sum_p sum_c counts[p, c] * (-log softmax(x_p)_c)``. So
:func:`particle_cross_entropy`, :func:`particle_bce_with_logits` and :func:`particle_soft_dice_loss`
equal (to float rounding) ``F.cross_entropy``, ``F.binary_cross_entropy_with_logits`` and the soft
Dice loss of the reconstruction ``logits[pixel_owner]`` against the pixel masks, values and gradients
(``tests/test_segmentation.py``), while costing O(N K) rather than O(pixels K).

**Binary convention**: a binary mask has two classes (0 background, 1 foreground), so its counts are
``(N, 2)`` (``n_classes=2``): column 0 the background pixels, column 1 the foreground pixels of each
cell. A sigmoid network's ``(N, 1)`` logits pair with these ``(N, 2)`` counts in
:func:`particle_bce_with_logits` and :func:`particle_soft_dice_loss`; a softmax network's ``(N, 2)``
logits in :func:`particle_cross_entropy`.

Metrics: :func:`dice` / :func:`iou` (and the per-class :func:`dice_per_class` / :func:`iou_per_class`)
of one predicted label image against one true label image, numpy arrays or torch tensors, 2D or 3D;
:func:`particle_predictions_to_pixels` turns particle logits into per-image pixel label maps, so that
APR and pixel networks are scored on the same pixel ground truth. A class absent from both the
prediction and the truth scores ``empty`` (default 1.0: nothing to find, nothing found).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..apr.batch import APRBatch
from ..nn.layers import APRFeatures

__all__ = ["particle_targets", "particle_cross_entropy", "particle_bce_with_logits", "particle_soft_dice_loss",
           "particle_predictions_to_pixels", "dice", "iou", "dice_per_class", "iou_per_class", "REDUCTIONS"]

#: reductions of :func:`particle_cross_entropy` and :func:`particle_bce_with_logits`
REDUCTIONS = ("mean", "image_mean", "sum", "none")


# --- targets --------------------------------------------------------------------------------------
def _n_classes(n_classes) -> int:
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, numbers.Integral):
        raise TypeError(f"n_classes must be an integer, got {type(n_classes).__name__} {n_classes!r}")
    n = int(n_classes)
    if n == 1:
        raise ValueError("n_classes must be at least 2: a binary mask has 2 classes (0 background, 1 foreground), "
                         "so pass n_classes=2; its (N, 2) counts pair with a sigmoid network's (N, 1) logits in "
                         "particle_bce_with_logits")
    if n < 2:
        raise ValueError(f"n_classes must be at least 2, got {n}")
    return n


def _label_tensor(mask, name: str, device) -> torch.Tensor:
    """A bool or integer label image as an int64 tensor on ``device`` (TypeError for other dtypes)."""
    if isinstance(mask, torch.Tensor):
        t = mask.detach()
        if t.dtype.is_floating_point or t.dtype.is_complex:
            raise TypeError(f"{name} must hold integer class labels (or bool), got dtype {t.dtype}; "
                            f"cast it with .long() if its values are whole numbers")
    else:
        arr = np.asarray(mask)
        if arr.dtype.kind not in "biu":
            raise TypeError(f"{name} must hold integer class labels (or bool), got dtype {arr.dtype}; "
                            f"cast it with .astype(np.int64) if its values are whole numbers")
        if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise ValueError(f"{name} has labels beyond the int64 range")
        t = torch.as_tensor(arr if arr.dtype.kind != "u" or arr.dtype.itemsize < 8 else arr.astype(np.int64))
    return t.to(device=device, dtype=torch.int64)


def _check_batch(batch) -> APRBatch:
    if not isinstance(batch, APRBatch):
        raise TypeError(f"batch must be an APRBatch, got {type(batch).__name__}")
    return batch


def _mask_list(batch: APRBatch, masks) -> list:
    if isinstance(masks, (np.ndarray, torch.Tensor)) and masks.ndim == batch.ndim:
        raise ValueError(f"masks must be a sequence of {len(batch)} label images, one per APR (got a single "
                         f"{masks.ndim}D array: wrap it in a list)")
    if isinstance(masks, (str, bytes)) or not hasattr(masks, "__len__"):
        raise TypeError(f"masks must be a sequence of label images, one per APR, got {type(masks).__name__}")
    masks = list(masks)
    if len(masks) != len(batch):
        raise ValueError(f"got {len(masks)} masks for a batch of {len(batch)} APRs: give one mask per APR")
    for i, (m, a) in enumerate(zip(masks, batch.aprs)):
        shape = tuple(m.shape) if hasattr(m, "shape") else np.shape(m)
        if shape != tuple(a.shape):
            raise ValueError(f"mask {i} has shape {shape}, but APR {i} has shape {tuple(a.shape)}: each mask must "
                             f"have its APR's shape")
    return masks


def particle_targets(batch: APRBatch, masks: Sequence, n_classes: int, *, dtype=torch.float32,
                     device=None) -> torch.Tensor:
    """Per-particle class counts of pixel / voxel label images.

    ``batch``: an :class:`~aprlib.APRBatch` of B APRs with N particles in all. ``masks``: a sequence
    of B label images (numpy arrays or torch tensors), mask ``i`` of APR ``i``'s shape ((H, W) or
    (Z, Y, X)), integer class labels in ``[0, n_classes)`` (bool allowed: False 0, True 1).
    ``n_classes``: K >= 2 (a binary mask has K = 2, see the module's binary convention).

    Returns ``counts`` (N, K) of ``dtype`` (floating point, default float32; exact below 2^24
    pixels per cell) on ``device`` (default cpu): ``counts[p, c]`` is the number of pixels (voxels) of
    class ``c`` in particle ``p``'s cell, so ``counts.sum(1)`` is each cell's size in pixels. Made from
    one summed-area table per class but the first (O(pixels), int32 below 2^31 pixels) and 2^d lookups
    per particle: no per-pixel owner map is built.

    Raises TypeError for a non-integer mask dtype and ValueError, naming the mask, for a wrong number
    of masks, a wrong shape or labels outside ``[0, n_classes)``.
    """
    batch = _check_batch(batch)
    k = _n_classes(n_classes)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"counts need a floating-point torch dtype, got {dtype!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    masks = _mask_list(batch, masks)
    labels = []
    for i, m in enumerate(masks):
        if isinstance(m, torch.Tensor) and m.dtype == torch.bool or isinstance(m, np.ndarray) and m.dtype == bool:
            labels.append(torch.as_tensor(m).to(device).reshape(-1))  # 0 / 1: within [0, k) for every k >= 2
            continue
        t = _label_tensor(m, f"mask {i}", device).reshape(-1)
        if t.numel():
            lo, hi = int(t.min()), int(t.max())
            if lo < 0 or hi >= k:
                raise ValueError(f"mask {i} has labels in [{lo}, {hi}], outside [0, {k}) for n_classes={k}")
        labels.append(t)
    return torch.cat([_cell_counts(apr, t.reshape(apr.shape), k) for apr, t in zip(batch.aprs, labels)]).to(dtype)


def _cell_counts(apr, labels: torch.Tensor, k: int) -> torch.Tensor:
    """(N, K) int64 counts of each class in each particle cell of one APR from its label image
    ``labels`` (int64 or bool, the APR's shape): each class's pixels in a cell are a box sum of the class's
    summed-area table (inclusion-exclusion over the box's 2^d corners), so no per-pixel owner map is
    built; class 0 is the cell's clipped size minus the other classes."""
    d, dev = apr.ndim, labels.device
    size = torch.as_tensor(apr.cell_size(), device=dev)
    lo = [torch.as_tensor(c, device=dev).long() * size for c in apr.coords]
    hi = [torch.clamp(a + size, max=n) for a, n in zip(lo, apr.shape)]
    total = math.prod(h - a for h, a in zip(hi, lo))
    acc = torch.int32 if labels.numel() < 2 ** 31 else torch.int64
    counts = torch.empty(apr.n_particles, k, dtype=torch.int64, device=dev)
    for c in range(1, k):
        table = torch.zeros(tuple(n + 1 for n in apr.shape), dtype=acc, device=dev)
        inner = table[(slice(1, None),) * d]  # a view: the table's first row, column (and plane) stay 0
        inner.copy_(labels == c)
        inner.cumsum_(d - 1)
        for axis in range(d - 1):  # in place, plane by plane: contiguous adds (a strided cumsum is slow)
            for i in range(1, inner.shape[axis]):
                inner.select(axis, i).add_(inner.select(axis, i - 1))
        box = torch.zeros(apr.n_particles, dtype=torch.int64, device=dev)
        for corner in range(1 << d):  # bit i set: the box's upper bound along axis i
            idx = tuple(hi[i] if corner >> i & 1 else lo[i] for i in range(d))
            sign = 1 if (d - bin(corner).count("1")) % 2 == 0 else -1
            box += sign * table[idx].long()
        counts[:, c] = box
    counts[:, 0] = total - counts[:, 1:].sum(1)
    return counts


# --- losses ---------------------------------------------------------------------------------------
def _logits(logits, name="logits") -> torch.Tensor:
    if isinstance(logits, APRFeatures):
        logits = logits.features
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (N, K) (or APRFeatures), got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {tuple(logits.shape)}")
    if not logits.dtype.is_floating_point:
        raise TypeError(f"{name} must be floating point, got dtype {logits.dtype}")
    return logits


def _counts(counts, logits: torch.Tensor, k: int, what: str) -> torch.Tensor:
    if not isinstance(counts, torch.Tensor):
        raise TypeError(f"counts must be a torch.Tensor (N, K) from particle_targets, got {type(counts).__name__}")
    if counts.ndim != 2:
        raise ValueError(f"counts must be (N, K) from particle_targets, got shape {tuple(counts.shape)}")
    if counts.shape[0] != logits.shape[0]:
        raise ValueError(f"particle count mismatch: logits have {logits.shape[0]} rows but counts have "
                         f"{counts.shape[0]} (both one row per particle of the batch)")
    if counts.shape[1] != k:
        raise ValueError(f"class count mismatch: {what}, got counts of {counts.shape[1]} classes (shape "
                         f"{tuple(counts.shape)}) for logits of shape {tuple(logits.shape)}")
    return counts.detach().to(device=logits.device, dtype=logits.dtype)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """log(1 + exp(x)) to full precision everywhere (``F.softplus`` is linear beyond its threshold)."""
    return torch.clamp(x, min=0) + torch.log1p(torch.exp(-x.abs()))


def _reduce(per_particle: torch.Tensor, pixels: torch.Tensor, reduction: str, batch) -> torch.Tensor:
    """Reduce per-particle sums of pixel losses (N,) with the per-particle pixel weights (N,)."""
    if reduction == "none":
        return per_particle
    if reduction == "sum":
        return per_particle.sum()
    if reduction == "mean":
        return per_particle.sum() / pixels.sum()
    if reduction == "image_mean":
        if batch is None:
            raise ValueError("reduction='image_mean' needs the batch (batch=...): it averages within each image")
        batch = _check_batch(batch)
        if batch.n_particles != per_particle.shape[0]:
            raise ValueError(f"the batch has {batch.n_particles} particles but the logits have "
                             f"{per_particle.shape[0]} rows")
        idx = batch.batch_index_tensor(per_particle.device)
        b = len(batch)
        num = per_particle.new_zeros(b).index_add(0, idx, per_particle)
        den = pixels.new_zeros(b).index_add(0, idx, pixels)
        return (num / den).mean()
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def particle_cross_entropy(logits, counts: torch.Tensor, *, weight: torch.Tensor | None = None,
                           reduction: str = "mean", batch: APRBatch | None = None) -> torch.Tensor:
    """Cross-entropy of per-particle logits against per-particle class counts, equal to
    ``F.cross_entropy`` of the piecewise-constant reconstruction against the pixel labels.

    ``logits``: (N, K) floating tensor (or :class:`~aprlib.APRFeatures`), K >= 2 (softmax over
    classes); ``counts``: (N, K) from :func:`particle_targets` (cast to the logits' dtype and device).
    ``weight``: optional (K,) class weights, as in ``F.cross_entropy`` (the mean then divides by the
    summed weights of the pixels' classes).

    ``reduction``:

    * ``"mean"`` (default): the mean over all pixels (voxels) of the batch, i.e.
      ``F.cross_entropy(logits[owner], labels)`` over the concatenated pixels. For B images of one
      size this is exactly what a pixel U-Net's ``F.cross_entropy(out (B, K, H, W), target (B, H, W))``
      computes; with images of different sizes, larger images weigh more.
    * ``"image_mean"``: each image's pixel mean, then the mean over images (needs ``batch``); the
      same as ``"mean"`` when the images have one size.
    * ``"sum"``: the sum over pixels; ``"none"``: (N,) each particle's sum over its pixels.

    Returns a scalar tensor (or (N,)) of the logits' dtype, in nats per pixel; differentiable in the logits.
    """
    logits = _logits(logits)
    k = logits.shape[1]
    if k < 2:
        raise ValueError("particle_cross_entropy needs K >= 2 class logits (softmax); for one sigmoid logit per "
                         "particle, (N, 1), use particle_bce_with_logits")
    counts = _counts(counts, logits, k, f"logits of {k} classes need counts (N, {k})")
    if weight is not None:
        weight = torch.as_tensor(weight, dtype=logits.dtype, device=logits.device)
        if weight.shape != (k,):
            raise ValueError(f"weight must be (K,) = ({k},), got shape {tuple(weight.shape)}")
        counts = counts * weight
    per_particle = -(counts * F.log_softmax(logits, dim=1)).sum(1)
    return _reduce(per_particle, counts.sum(1), reduction, batch)


def particle_bce_with_logits(logits, counts: torch.Tensor, *, pos_weight=None, reduction: str = "mean",
                             batch: APRBatch | None = None) -> torch.Tensor:
    """Binary cross-entropy of one foreground logit per particle, equal to
    ``F.binary_cross_entropy_with_logits`` of the reconstruction against the pixel mask.

    ``logits``: (N, 1) floating tensor (or :class:`~aprlib.APRFeatures`), the sigmoid's input;
    ``counts``: (N, 2) from ``particle_targets(batch, masks, 2)`` (column 0 background, column 1
    foreground pixels). ``pos_weight``: optional scalar weight of the foreground term, as in
    ``F.binary_cross_entropy_with_logits``. ``reduction`` as in :func:`particle_cross_entropy`
    (``"mean"``: over all pixels of the batch, what a pixel U-Net's loss over a batch of equal-size
    images computes). Returns a scalar tensor (or (N,)) in nats per pixel; differentiable in the logits.
    """
    logits = _logits(logits)
    if logits.shape[1] != 1:
        raise ValueError(f"particle_bce_with_logits needs one logit per particle, (N, 1), got shape "
                         f"{tuple(logits.shape)}; for K >= 2 class logits use particle_cross_entropy")
    counts = _counts(counts, logits, 2, "one sigmoid logit needs the binary counts (N, 2) (background, foreground)")
    x = logits[:, 0]
    fg, bg = counts[:, 1], counts[:, 0]
    if pos_weight is not None:
        fg_w = fg * torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device).reshape(())
    else:
        fg_w = fg
    per_particle = fg_w * _softplus(-x) + bg * _softplus(x)
    return _reduce(per_particle, fg + bg, reduction, batch)


def particle_soft_dice_loss(logits, counts: torch.Tensor, *, include_background: bool = False,
                            smooth: float = 1.0, per_image: bool = False,
                            batch: APRBatch | None = None) -> torch.Tensor:
    """Soft Dice loss of per-particle logits, equal to the soft Dice loss of the reconstruction.

    Probabilities ``q`` are ``softmax(logits)`` for (N, K >= 2) logits with (N, K) counts, or
    ``sigmoid`` of (N, 1) logits with binary (N, 2) counts (then ``q`` = (1 - sigmoid, sigmoid)).
    With ``t`` the one-hot pixel labels, class ``c``'s soft Dice over a set of pixels is
    ``(2 sum q_c t_c + smooth) / (sum q_c + sum t_c + smooth)``, computed on particles as
    ``sum_p counts[p, c] q_pc`` and ``sum_p n_p q_pc`` (``n_p`` the pixels of cell ``p``) and
    ``sum_p counts[p, c]``. The loss is ``1 - mean over classes`` (classes 1..K-1, or 0..K-1 with
    ``include_background``) of the Dice over all pixels of the batch (default), or with ``per_image``
    (needs ``batch``) ``1 - mean over images and classes`` of each image's Dice. ``smooth`` (pixels,
    default 1) makes a class absent from both prediction and truth score 1. Returns a scalar tensor;
    differentiable in the logits.
    """
    logits = _logits(logits)
    k = logits.shape[1]
    if k == 1:
        counts = _counts(counts, logits, 2, "one sigmoid logit needs the binary counts (N, 2) (background, foreground)")
        p1 = torch.sigmoid(logits[:, 0])
        q = torch.stack([1 - p1, p1], dim=1)
    else:
        counts = _counts(counts, logits, k, f"logits of {k} classes need counts (N, {k})")
        q = torch.softmax(logits, dim=1)
    if not include_background:
        q, counts_c = q[:, 1:], counts[:, 1:]
    else:
        counts_c = counts
    pixels = counts.sum(1, keepdim=True)
    inter, pred, true = counts_c * q, pixels * q, counts_c
    if per_image:
        if batch is None:
            raise ValueError("per_image=True needs the batch (batch=...): it scores each image on its own")
        batch = _check_batch(batch)
        if batch.n_particles != logits.shape[0]:
            raise ValueError(f"the batch has {batch.n_particles} particles but the logits have {logits.shape[0]} rows")
        idx = batch.batch_index_tensor(logits.device)
        b = len(batch)

        def total(v):
            return v.new_zeros((b, v.shape[1])).index_add(0, idx, v)
    else:
        def total(v):
            return v.sum(0, keepdim=True)
    d = (2 * total(inter) + smooth) / (total(pred) + total(true) + smooth)
    return 1 - d.mean()


# --- predictions and metrics on the pixel grid ----------------------------------------------------
def particle_predictions_to_pixels(batch: APRBatch, logits) -> list[torch.Tensor]:
    """Per-image pixel label maps of per-particle logits: a list of B int64 tensors of the APRs'
    shapes ((H, W) or (Z, Y, X)), on the logits' device.

    ``logits``: (N, K) tensor (or :class:`~aprlib.APRFeatures`); each particle's class is
    ``argmax`` over K >= 2 (ties to the lowest class), or ``logit > 0`` (sigmoid > 1/2) for K = 1,
    painted on its cell's pixels through :meth:`~aprlib.APRBatch.pixel_owner`: the argmax of the
    piecewise-constant reconstruction. Score these against the pixel ground truth with :func:`dice` and
    :func:`iou`, as for a pixel network.
    """
    batch = _check_batch(batch)
    logits = _logits(logits)
    if logits.shape[0] != batch.n_particles:
        raise ValueError(f"logits must have N = {batch.n_particles} rows (the batch's particles), got shape "
                         f"{tuple(logits.shape)}")
    with torch.no_grad():
        cls = (logits[:, 0] > 0).long() if logits.shape[1] == 1 else logits.argmax(dim=1)
        pix = cls[batch.pixel_owner(logits.device)]
    sizes = [int(np.prod(a.shape)) for a in batch.aprs]
    return [p.reshape(a.shape) for p, a in zip(torch.split(pix, sizes), batch.aprs)]


def _metric_labels(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.dtype.is_floating_point or t.dtype.is_complex:
            raise TypeError(f"{name} must hold integer class labels (or bool), got dtype {t.dtype}")
        return t.to(torch.int64)
    arr = np.asarray(x)
    if arr.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class labels (or bool), got dtype {arr.dtype}")
    return torch.as_tensor(arr.astype(np.int64, copy=False))


def _confusion(pred, true, n_classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives (K,) int64 of each class."""
    k = 2 if n_classes is None else _n_classes(n_classes)
    p, t = _metric_labels(pred, "pred"), _metric_labels(true, "true")
    if tuple(p.shape) != tuple(t.shape):
        raise ValueError(f"pred and true must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}")
    if p.device != t.device:
        p = p.to(t.device)
    for name, v in (("pred", p), ("true", t)):
        if v.numel():
            lo, hi = int(v.min()), int(v.max())
            if lo < 0 or hi >= k:
                hint = (" (a binary mask holds 0/1 or bool; pass n_classes for label images)" if n_classes is None
                        else "")
                what = "binary (0/1) labels" if n_classes is None else f"n_classes={k}"
                raise ValueError(f"{name} has labels in [{lo}, {hi}], outside [0, {k}) for {what}{hint}")
    cm = torch.bincount((t.reshape(-1) * k + p.reshape(-1)), minlength=k * k).reshape(k, k).cpu().numpy()
    tp = np.diag(cm).astype(np.int64)
    return tp, cm.sum(0) - tp, cm.sum(1) - tp


def _score(num: np.ndarray, den: np.ndarray, empty: float) -> np.ndarray:
    out = np.full(num.shape, float(empty))
    nz = den > 0
    out[nz] = num[nz] / den[nz]
    return out


def _mean_foreground(scores: np.ndarray) -> float:
    fg = scores[1:]
    if np.all(np.isnan(fg)):
        return math.nan
    return float(np.nanmean(fg))


def dice_per_class(pred, true, n_classes: int, *, empty: float = 1.0) -> np.ndarray:
    """Dice ``2 |P_c & T_c| / (|P_c| + |T_c|)`` of each class ``c`` (background 0 included) of one
    predicted label image ``pred`` against one true label image ``true``: (K,) float64 numpy array.

    ``pred``, ``true``: numpy arrays or torch tensors of one shape (2D, 3D, any), integer labels in
    ``[0, n_classes)`` (bool allowed). A class in neither scores ``empty`` (default 1.0; ``nan`` to
    leave it out of means)."""
    tp, fp, fn = _confusion(pred, true, n_classes)
    return _score(2.0 * tp, 2.0 * tp + fp + fn, empty)


def iou_per_class(pred, true, n_classes: int, *, empty: float = 1.0) -> np.ndarray:
    """IoU (Jaccard) ``|P_c & T_c| / |P_c | T_c|`` of each class (background 0 included): (K,) float64;
    inputs and ``empty`` as in :func:`dice_per_class`."""
    tp, fp, fn = _confusion(pred, true, n_classes)
    return _score(tp.astype(np.float64), (tp + fp + fn).astype(np.float64), empty)


def dice(pred, true, n_classes: int | None = None, *, empty: float = 1.0) -> float:
    """Dice score of one image (2D or 3D, numpy or torch, integer labels or bool).

    Binary (``n_classes`` None or 2): the foreground (label 1) Dice ``2 |P & T| / (|P| + |T|)``,
    ``empty`` (default 1.0) when both are empty. Multi-class (``n_classes`` K): the mean over the
    foreground classes 1..K-1 of :func:`dice_per_class` (classes in neither count as ``empty``; with
    ``empty=nan`` they are left out, and the score is nan if every class is). Returns a Python float."""
    tp, fp, fn = _confusion(pred, true, n_classes)
    return _mean_foreground(_score(2.0 * tp, 2.0 * tp + fp + fn, empty))


def iou(pred, true, n_classes: int | None = None, *, empty: float = 1.0) -> float:
    """IoU (Jaccard) score of one image: binary foreground IoU ``|P & T| / |P | T|``, or the mean over
    foreground classes; conventions as in :func:`dice`. Returns a Python float."""
    tp, fp, fn = _confusion(pred, true, n_classes)
    return _mean_foreground(_score(tp.astype(np.float64), (tp + fp + fn).astype(np.float64), empty))

"""Training and evaluation of APR and pixel networks (thesis 4.1.3): streamed-data training,
fixed-dataset training with validation-based model selection, checkpoint/resume, metrics.

Batches are built by a picklable :class:`BatchBuilder` (APR formation and every index table the
network needs, or pixel tensors), so DataLoader workers do that work while the main process trains.
Streamed batch ``b`` holds stream elements ``b * batch_size ... (b + 1) * batch_size - 1``: a run
is deterministic given its seeds and can resume at any batch.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import pandas as pd

from ..apr.batch import APRBatch
from ..apr.formation import APRParameters, form_apr
from ..apr.structure import APR
from ..nn.prepare import layer_entries
from ..ops.plans import build_tables
from .checkpoint import Checkpoint, _as_checkpoint, _load_checkpoint, _save_checkpoint

#: The values of :attr:`InputSpec.normalise`.
NORMALISATIONS = (None, "dataset", "image")

__all__ = ["InputSpec", "BatchBuilder", "layer_plan", "evaluate", "evaluate_in_order", "train_streamed", "train_fixed",
           "train_epochs"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How images become network input. kind 'apr': APRs at ``rel_error`` with ``formation``
    parameters (optionally the level channel); kind 'pixel': image tensors, optionally bilinearly
    downsampled to ``resolution`` x ``resolution`` (thesis Table 4.2).

    ``normalise`` maps intensities before they reach the network (the thesis does not say how its
    images did): None keeps them (synthetic images: [0, 1]); 'dataset' applies one affine map to
    every image, ``(x - 0.5) / sqrt(1/12)`` (mean and standard deviation of intensities uniform in
    [0, 1]); 'image' standardises each image by its own pixel mean and standard deviation (an
    image of one value maps to 0). An APR is formed from the raw image (its structure does not
    change) and its particle intensities take the same map as the pixels."""

    kind: str = "apr"
    rel_error: float = 0.1
    gradient_smoothing: float = 0.0
    sigma_th: float = 0.01
    resolution: int | None = None
    normalise: str | None = None

    def __post_init__(self):
        if self.kind not in ("apr", "pixel"):
            raise ValueError(f"kind must be 'apr' or 'pixel', got {self.kind!r}")
        if self.resolution is not None and self.resolution < 1:
            raise ValueError("resolution must be positive")
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {self.normalise!r}")

    @property
    def formation(self) -> APRParameters:
        """The APR formation parameters of this spec (LibAPR's defaults for the rest)."""
        return APRParameters(rel_error=self.rel_error, gradient_smoothing=self.gradient_smoothing,
                             sigma_th=self.sigma_th)

    def form(self, image) -> APR:
        """The APR of one image with this spec's formation parameters (intensities not normalised)."""
        return form_apr(image, self.formation)

    def affine(self, image) -> tuple[float, float]:
        """(shift, scale) of ``normalise`` for one image: the input is ``(x - shift) / scale``."""
        if self.normalise is None:
            return 0.0, 1.0
        if self.normalise == "dataset":
            return 0.5, float(np.sqrt(1.0 / 12.0))
        im = np.asarray(image, dtype=np.float64)
        sd = float(im.std())
        return float(im.mean()), (sd if sd > 0 else 1.0)


def _table(rows: list[dict]):
    """The rows a loop recorded as a pandas DataFrame (pandas is imported here, not with aprlib)."""
    import pandas as pd
    return pd.DataFrame(rows)


def _progress(*args, **kwargs):
    """A tqdm progress bar (tqdm is imported here, not with aprlib)."""
    from tqdm import tqdm
    return tqdm(*args, **kwargs)


def layer_plan(network) -> list[tuple]:
    """The index tables a network needs, in order: ('conv', k, n_kernels) and ('pool',) entries."""
    return layer_entries(network)


class BatchBuilder:
    """Picklable: list of (image (H, W) or RGB (H, W, 3), label) -> (network input, labels (B,) int64)."""

    def __init__(self, spec: InputSpec, plan: list[tuple] | None = None):
        self.spec, self.plan = spec, list(plan or [])

    def inputs(self, images):
        s = self.spec
        if s.kind == "apr":
            aprs = []
            for im in images:
                apr = s.form(im)
                if s.normalise is not None:
                    shift, scale = s.affine(im)
                    apr.intensities = ((apr.intensities - shift) / scale).astype(np.float32)
                aprs.append(apr)
            batch = APRBatch(aprs)
            build_tables(batch, self.plan)  # every table here (in the worker), not in the forward pass
            return batch
        x = np.stack([np.asarray(im, np.float32) for im in images])
        if s.normalise is not None:
            for i, im in enumerate(images):
                shift, scale = s.affine(im)
                x[i] = (x[i] - shift) / scale
        # grey (B, H, W) -> (B, 1, H, W); RGB (B, H, W, 3) -> (B, 3, H, W)
        x = torch.from_numpy(x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if s.resolution is not None and s.resolution != x.shape[-1]:
            x = F.interpolate(x, size=(s.resolution, s.resolution), mode="bilinear", align_corners=False)
        return x

    def __call__(self, items):
        images, labels = zip(*items)
        return self.inputs(images), torch.as_tensor(labels, dtype=torch.int64)


class _StreamBatches(torch.utils.data.Dataset):
    """Batch b of a synthetic stream, for b in [first, last)."""

    def __init__(self, stream, batch_size: int, builder: BatchBuilder, first: int, last: int):
        self.stream, self.bs, self.builder, self.first, self.last = stream, batch_size, builder, first, last

    def __len__(self):
        return self.last - self.first

    def __getitem__(self, i):
        b = self.first + i
        return self.builder([self.stream.image(j) for j in range(b * self.bs, (b + 1) * self.bs)])


class _IndexBatches(torch.utils.data.Dataset):
    """Fixed batches of a map-style dataset with an ``image(i)`` method."""

    def __init__(self, dataset, batches: list[np.ndarray], builder: BatchBuilder):
        self.dataset, self.batches, self.builder = dataset, batches, builder

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.builder([self.dataset.image(int(j)) for j in self.batches[i]])


def _loader(ds, num_workers: int):
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers,
                                       persistent_workers=False)


def _step(model, optimizer, inputs, labels):
    t0 = time.perf_counter()
    logits = model(inputs)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    acc = (logits.argmax(1) == labels).float().mean().item()
    return loss.item(), acc, time.perf_counter() - t0


@torch.no_grad()
def evaluate(model, batches) -> dict:
    """Mean cross-entropy loss and accuracy over an iterable of (inputs, labels) batches, and the
    confusion matrix (counts, shape (classes, classes): row = true class, column = predicted)."""
    was = model.training
    model.eval()
    total, loss_sum, correct, confusion = 0, 0.0, 0, None
    for inputs, labels in batches:
        with torch.no_grad():
            logits = model(inputs)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        predicted = logits.argmax(1)
        correct += int((predicted == labels).sum())
        total += len(labels)
        k = logits.shape[1]
        counts = torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)
        confusion = counts if confusion is None else confusion + counts
    model.train(was)
    if total == 0:
        raise ValueError("evaluate needs at least one example")
    return {"loss": loss_sum / total, "accuracy": correct / total, "n": total, "confusion": confusion.numpy()}


def evaluate_in_order(model, dataset, builder: BatchBuilder, batch_size: int) -> dict:
    """:func:`evaluate` on ``dataset`` in order, in batches of ``batch_size`` built on the fly (kept,
    APR index tables grow large) and without a DataLoader (its iterator draws from the torch RNG)."""
    ds = _IndexBatches(dataset, [np.arange(i, min(i + batch_size, len(dataset)))
                                 for i in range(0, len(dataset), batch_size)], builder)
    return evaluate(model, (ds[i] for i in range(len(ds))))


def train_streamed(model, stream, spec: InputSpec, n_batches: int, batch_size: int = 36, lr: float = 5e-4,
                   checkpoint: str | Path | Checkpoint | None = None, checkpoint_every_s: float = 900.0,
                   num_workers: int = 0, progress: bool = True, desc: str = "train") -> pd.DataFrame:
    """Train on fresh batches of ``stream`` (Adam, cross entropy, thesis 4.1.3.2).

    Returns one row per batch: loss and accuracy on that fresh batch (computed before the update,
    so they estimate the generalisation error), step_s (forward + backward + update, s) and wait_s
    (time waiting for the batch, s). With ``checkpoint`` (a path or a :class:`Checkpoint`), progress
    is saved atomically at least every ``checkpoint_every_s`` seconds and at the end, and a run of
    the same settings resumes from it if it has trained at most ``n_batches`` batches: batch b is
    the same whatever the budget, so a completed run can be extended to a larger ``n_batches`` and
    gives the longer run's result exactly. A checkpoint beyond the budget is not resumed.
    """
    if n_batches < 1 or batch_size < 1:
        raise ValueError("n_batches and batch_size must be positive")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rows, first, rng_state = [], 0, None
    ck = _as_checkpoint(checkpoint)
    loop = {"loop": "streamed", "batch_size": batch_size, "lr": lr, "spec": dataclasses.asdict(spec)}

    def resumable(st):
        return (None if st["next_batch"] <= n_batches else
                f"has trained {st['next_batch']} batches, more than this run's {n_batches}")

    state = _load_checkpoint(ck, loop, model, opt, resumable)
    if state is not None:
        rows, first, rng_state = state["rows"], state["next_batch"], state["torch_rng"]
    builder = BatchBuilder(spec, layer_plan(model) if spec.kind == "apr" else None)
    model.train()
    last_save = time.perf_counter()
    t_wait = time.perf_counter()

    def save(next_batch):
        _save_checkpoint(ck, loop, model, opt, rows=rows, next_batch=next_batch)

    # creating a DataLoader iterator draws from the torch RNG: restore the checkpoint's state after it
    loader = iter(_loader(_StreamBatches(stream, batch_size, builder, first, n_batches), num_workers))
    if rng_state is not None:
        torch.set_rng_state(rng_state)
    with _progress(total=n_batches, initial=first, desc=desc, disable=not progress, mininterval=2.0) as bar:
        for b, (inputs, labels) in enumerate(loader, start=first):
            wait = time.perf_counter() - t_wait
            loss, acc, step_s = _step(model, opt, inputs, labels)
            rows.append({"batch": b, "loss": loss, "accuracy": acc, "step_s": step_s, "wait_s": wait})
            bar.update()
            if ck is not None and time.perf_counter() - last_save >= checkpoint_every_s:
                save(b + 1)
                last_save = time.perf_counter()
            t_wait = time.perf_counter()
    save(n_batches)
    return _table(rows)


def train_fixed(model, train_set, val_set, spec: InputSpec, n_iterations: int, batch_size: int = 36,
                lr: float = 5e-4, weight_decay: float = 0.0, eval_every: int = 50, seed: int = 0,
                checkpoint: str | Path | Checkpoint | None = None, checkpoint_every_s: float = 900.0,
                num_workers: int = 0, progress: bool = True, desc: str = "train") -> tuple[pd.DataFrame, dict]:
    """Train on a fixed dataset (reshuffled each epoch) and keep the model with the minimum
    validation loss (thesis 4.1.3.4). Returns (metrics, best state_dict); metrics has one row per
    evaluation: iteration, train loss/accuracy since the last evaluation, validation loss/accuracy,
    mean step time (s) and wall time since the previous evaluation, validation included (``wall_s``,
    s; summed over a resumed run's sessions it is the run's compute). With ``checkpoint`` (a path or
    a :class:`Checkpoint`), progress is saved atomically at the first evaluation after every
    ``checkpoint_every_s`` seconds and at the end, and a run of the same settings resumes from it.
    The batch order is a sequence of permutations drawn one after another from ``seed``, so a longer
    budget has the same first batches, and a checkpoint at iteration i resumes a run of
    ``n_iterations`` >= i if the run evaluates at i too (i a multiple of ``eval_every``, or i =
    ``n_iterations``); a run's final evaluation off that grid is one a longer run does not make, so
    its checkpoint is not extended. A checkpoint beyond the budget is not resumed."""
    if n_iterations < 1 or eval_every < 1:
        raise ValueError("n_iterations and eval_every must be positive")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError("train_set and val_set must not be empty")
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(len(train_set)) for _ in range(
        -(-n_iterations * batch_size // len(train_set)) + 1)])
    batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(n_iterations)]
    plan = layer_plan(model) if spec.kind == "apr" else None
    builder = BatchBuilder(spec, plan)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    rows, window, best, best_state, first, rng_state = [], [], float("inf"), None, 0, None
    ck = _as_checkpoint(checkpoint)
    loop = {"loop": "fixed", "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "eval_every": eval_every, "seed": seed, "spec": dataclasses.asdict(spec), "n_train": len(train_set),
            "n_val": len(val_set)}

    def resumable(st):
        i = st["next_iteration"]
        if i > n_iterations:
            return f"has trained {i} iterations, more than this run's {n_iterations}"
        if i < n_iterations and i % eval_every:
            return (f"ends with an evaluation at iteration {i}, which a run of {n_iterations} iterations "
                    f"evaluating every {eval_every} does not make")
        return None

    state = _load_checkpoint(ck, loop, model, opt, resumable)
    if state is not None:
        rows, best, best_state, first = state["rows"], state["best"], state["best_state"], state["next_iteration"]
        rng_state = state["torch_rng"]

    def save(next_iteration):
        _save_checkpoint(ck, loop, model, opt, rows=rows, best=best, best_state=best_state,
                         next_iteration=next_iteration)

    if first < n_iterations:
        model.train()
        # creating a DataLoader iterator draws from the torch RNG: restore the checkpoint's state after it
        loader = iter(_loader(_IndexBatches(train_set, batches[first:], builder), num_workers))
        if rng_state is not None:
            torch.set_rng_state(rng_state)
        last_save = last_row = time.perf_counter()
        for it, (inputs, labels) in enumerate(_progress(loader, desc=desc, disable=not progress, mininterval=2.0,
                                                   initial=first, total=n_iterations), start=first + 1):
            window.append(_step(model, opt, inputs, labels))
            if it % eval_every == 0 or it == n_iterations:
                val = evaluate_in_order(model, val_set, builder, batch_size)
                rows.append({"iteration": it, "train_loss": float(np.mean([w[0] for w in window])),
                             "train_accuracy": float(np.mean([w[1] for w in window])),
                             "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                             "step_s": float(np.mean([w[2] for w in window])),
                             "wall_s": time.perf_counter() - last_row})
                last_row = time.perf_counter()
                window = []
                if val["loss"] < best:
                    best = val["loss"]
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if time.perf_counter() - last_save >= checkpoint_every_s:
                    save(it)
                    last_save = time.perf_counter()
        save(n_iterations)
    return _table(rows), best_state


def train_epochs(model, train_set, val_set, spec: InputSpec, n_epochs: int, batch_size: int = 24, lr: float = 1e-4,
                 seed: int = 0, checkpoint: str | Path | Checkpoint | None = None, checkpoint_every_s: float = 900.0,
                 num_workers: int = 0, progress: bool = True, desc: str = "train") -> pd.DataFrame:
    """Train for ``n_epochs`` passes over ``train_set`` in a fresh random order each epoch (thesis
    4.2.4: Adam, evaluation on ``val_set`` after each epoch). If ``train_set`` has an
    ``augmented(epoch)`` method, epoch e trains on that view (augmentation drawn per epoch and item).
    Returns one row per epoch: train loss/accuracy (means over the epoch's batches), validation
    loss/accuracy, mean step time (s) and the epoch's wall time (s). With ``checkpoint`` (a path or
    a :class:`Checkpoint`), progress is saved atomically at least every ``checkpoint_every_s`` seconds
    (also within an epoch) and at the end, and a run of the same settings resumes from it if it is
    within ``n_epochs``: epoch e's order and augmentation depend on (seed, e) only, so a completed
    run can be extended to more epochs. A checkpoint beyond the budget is not resumed."""
    if n_epochs < 1 or batch_size < 1:
        raise ValueError("n_epochs and batch_size must be positive")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError("train_set and val_set must not be empty")
    builder = BatchBuilder(spec, layer_plan(model) if spec.kind == "apr" else None)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(train_set)
    n_batches = -(-n // batch_size)
    rows, epoch, first, window, rng_state, t_epoch = [], 0, 0, [], None, 0.0
    ck = _as_checkpoint(checkpoint)
    loop = {"loop": "epochs", "batch_size": batch_size, "lr": lr, "seed": seed, "spec": dataclasses.asdict(spec),
            "n_train": n, "n_val": len(val_set)}

    def resumable(st):
        if st["epoch"] < n_epochs or (st["epoch"] == n_epochs and st["next_batch"] == 0):
            return None
        return f"is at epoch {st['epoch']} batch {st['next_batch']}, beyond this run's {n_epochs} epochs"

    state = _load_checkpoint(ck, loop, model, opt, resumable)
    if state is not None:
        rows, epoch, first, window = state["rows"], state["epoch"], state["next_batch"], state["window"]
        rng_state, t_epoch = state["torch_rng"], state["epoch_time_s"]

    def save(e, b, t):
        _save_checkpoint(ck, loop, model, opt, rows=rows, epoch=e, next_batch=b, window=window, epoch_time_s=t)

    last_save = time.perf_counter()
    with _progress(total=n_epochs * n_batches, initial=epoch * n_batches + first, desc=desc, disable=not progress,
              mininterval=2.0) as bar:
        while epoch < n_epochs:
            view = train_set.augmented(epoch) if hasattr(train_set, "augmented") else train_set
            order = np.random.default_rng([seed, epoch]).permutation(n)
            batches = [order[i * batch_size:(i + 1) * batch_size] for i in range(n_batches)]
            # creating a DataLoader iterator draws from the torch RNG. A checkpoint at an epoch's start
            # holds the state before the epoch's iterator was created (restore it first); one within an
            # epoch the state after that iterator's batches so far (restore it after creating the iterator)
            if rng_state is not None and first == 0:
                torch.set_rng_state(rng_state)
                rng_state = None
            loader = iter(_loader(_IndexBatches(view, batches[first:], builder), num_workers))
            if rng_state is not None:
                torch.set_rng_state(rng_state)
                rng_state = None
            model.train()
            t0 = time.perf_counter() - t_epoch
            for b, (inputs, labels) in enumerate(loader, start=first):
                window.append(_step(model, opt, inputs, labels))
                bar.update()
                if ck is not None and time.perf_counter() - last_save >= checkpoint_every_s and b + 1 < n_batches:
                    save(epoch, b + 1, time.perf_counter() - t0)
                    last_save = time.perf_counter()
            val = evaluate_in_order(model, val_set, builder, batch_size)
            rows.append({"epoch": epoch + 1, "train_loss": float(np.mean([w[0] for w in window])),
                         "train_accuracy": float(np.mean([w[1] for w in window])), "val_loss": val["loss"],
                         "val_accuracy": val["accuracy"], "step_s": float(np.mean([w[2] for w in window])),
                         "epoch_s": time.perf_counter() - t0})
            epoch, first, window, t_epoch = epoch + 1, 0, [], 0.0
            if ck is not None and (time.perf_counter() - last_save >= checkpoint_every_s or epoch == n_epochs):
                save(epoch, 0, 0.0)
                last_save = time.perf_counter()
    return _table(rows)

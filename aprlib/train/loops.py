"""Training and evaluation of APR and pixel networks (thesis 4.1.3): streamed-data training,
fixed-dataset training with validation-based model selection, checkpoint/resume, metrics.

Batches are built by a picklable :class:`BatchBuilder` (APR formation and every index table the
network needs, or pixel tensors), so DataLoader workers do that work while the main process trains.
Streamed batch ``b`` holds stream elements ``b * batch_size ... (b + 1) * batch_size - 1``: a run
is deterministic given its seeds and can resume at any batch.

One loop (:func:`_fit`) does what every run needs: resuming a checkpoint of the same settings,
the optimizer steps, the torch RNG around DataLoader iterators, atomic checkpoints and the progress
bar. The three kinds of run (:func:`train_streamed`, :func:`train_fixed`, :func:`train_epochs`)
only say which batches come in which phase, what they record, and which checkpoints they resume
(a :class:`_Run` each).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    import pandas as pd

from ..apr.batch import APRBatch
from ..apr.formation import THESIS_FORMATION, APRParameters, form_apr
from ..apr.structure import APR
from ..nn.prepare import meta_network, prepare
from .batchnorm import batch_norms, recalibrate_bn
from .checkpoint import Checkpoint, _as_checkpoint, _load_checkpoint, _save_checkpoint

#: The values of :attr:`InputSpec.normalise`.
NORMALISATIONS = (None, "dataset", "image")

#: The thesis's optimiser settings (Adam), the loops' defaults: synthetic data (4.1.3: batches of 36
#: images, learning rate 5e-4; :func:`train_streamed`, :func:`train_fixed`) and natural images (4.2.4:
#: batches of 24, learning rate 1e-4; :func:`train_epochs`).
SYNTHETIC_LR, SYNTHETIC_BATCH_SIZE = 5e-4, 36
NATURAL_LR, NATURAL_BATCH_SIZE = 1e-4, 24

__all__ = ["InputSpec", "NORMALISATIONS", "SYNTHETIC_LR", "SYNTHETIC_BATCH_SIZE", "NATURAL_LR", "NATURAL_BATCH_SIZE",
           "BatchBuilder", "batch_builder", "layer_plan", "evaluate", "evaluate_in_order", "train_streamed",
           "train_fixed", "train_epochs"]


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """How images become network input. kind 'apr': APRs at ``rel_error`` with ``formation``
    parameters (by default the thesis's: :data:`aprlib.apr.THESIS_FORMATION`), optionally the level
    channel; kind 'pixel': image tensors, optionally bilinearly downsampled to ``resolution`` x
    ``resolution`` (thesis Table 4.2).

    ``normalise`` maps intensities before they reach the network (the thesis does not say how its
    images did): None keeps them (synthetic images: [0, 1]); 'dataset' applies one affine map to
    every image, ``(x - 0.5) / sqrt(1/12)`` (mean and standard deviation of intensities uniform in
    [0, 1]); 'image' standardises each image by its own pixel mean and standard deviation (an
    image of one value maps to 0). An APR is formed from the raw image (its structure does not
    change) and its particle intensities take the same map as the pixels."""

    kind: str = "apr"
    rel_error: float = THESIS_FORMATION.rel_error
    gradient_smoothing: float = THESIS_FORMATION.gradient_smoothing
    sigma_th: float = THESIS_FORMATION.sigma_th
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
        return APRParameters.libapr(rel_error=self.rel_error, gradient_smoothing=self.gradient_smoothing,
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


def layer_plan(network) -> torch.nn.Module:
    """What a :class:`BatchBuilder` prepares its APR batches for: the network's structure, a copy with
    its parameters and buffers on the meta device (:func:`aprlib.nn.prepare.meta_network`: no values,
    no memory; picklable to DataLoader workers)."""
    return meta_network(network)


class BatchBuilder:
    """Picklable: list of (image (H, W) or RGB (H, W, 3), label) -> (network input, labels (B,) int64).
    With ``plan`` (a network, best its :func:`layer_plan`), every APR batch is prepared for it
    (:func:`aprlib.nn.prepare.prepare`: all its index tables built here, in the worker)."""

    def __init__(self, spec: InputSpec, plan: torch.nn.Module | None = None):
        if plan is not None and not isinstance(plan, torch.nn.Module):
            raise TypeError(f"plan must be a network (see layer_plan) or None, got {type(plan).__name__}")
        self.spec, self.plan = spec, (None if plan is None else meta_network(plan))

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
            if self.plan is not None:
                prepare(batch, self.plan)  # every table here (in the worker), not in the forward pass
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


class StreamBatches(torch.utils.data.Dataset):
    """Item i: batch ``first + i`` of a stream (images ``b * batch_size ... (b + 1) * batch_size - 1``
    of ``stream.image``) prepared by ``builder`` (for APRs: formed, with every index table), for b in
    [first, last). What the streamed loop's DataLoader iterates (``batch_size=None``: each item is a
    whole batch); its workers hand prepared APR batches over through shared memory."""

    def __init__(self, stream, batch_size: int, builder: BatchBuilder, first: int, last: int):
        self.stream, self.bs, self.builder, self.first, self.last = stream, batch_size, builder, first, last

    def __len__(self):
        return self.last - self.first

    def __getitem__(self, i):
        b = self.first + i
        return self.builder([self.stream.image(j) for j in range(b * self.bs, (b + 1) * self.bs)])


class IndexBatches(torch.utils.data.Dataset):
    """Fixed batches of a map-style dataset with an ``image(i)`` method: item ``i`` is the builder's
    ``(inputs, labels)`` for the dataset items ``batches[i]`` (an array of indices)."""

    def __init__(self, dataset, batches: list[np.ndarray], builder: BatchBuilder):
        self.dataset, self.batches, self.builder = dataset, batches, builder

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, i):
        return self.builder([self.dataset.image(int(j)) for j in self.batches[i]])


def _ignore_sigint(_worker_id):
    # a Ctrl-C reaches the whole process group: the workers leave it to the training process
    # (:func:`_stop_on_signal`), which stops them when it is done (workers forked while its handler
    # is installed inherit that; spawned ones would not)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _loader(ds, num_workers: int):
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=num_workers,
                                       persistent_workers=False,
                                       worker_init_fn=_ignore_sigint if num_workers > 0 else None)


class TrainingStopped(RuntimeError):
    """Raised by a training loop that a SIGINT (Ctrl-C) or SIGTERM stopped after it had saved its
    checkpoint: ``signal`` the signal's name, ``path`` the checkpoint, ``steps_done`` the optimizer
    steps it holds. Rerunning with the same settings resumes there."""

    def __init__(self, signum: int, path, steps_done: int):
        self.signal, self.path, self.steps_done = signal.Signals(signum).name, Path(path), steps_done
        super().__init__(f"{self.signal}: training stopped after {steps_done} steps, checkpoint saved to "
                         f"{self.path}; run it again with the same settings to resume")


@contextlib.contextmanager
def _stop_on_signal(enabled: bool):
    """While a loop with a checkpoint trains in the main thread, the first SIGINT or SIGTERM is only
    recorded (in the yielded list; the loop then saves its checkpoint at the next step it may and
    raises :class:`TrainingStopped`); a second one interrupts at once (KeyboardInterrupt, nothing
    saved). The previous handlers are restored on leaving."""
    received: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, _frame):
        if received:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopped without saving")
        received.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def batch_builder(spec: InputSpec, model) -> BatchBuilder:
    """The batch builder of ``model``'s inputs (for APRs: with every index table its layers need)."""
    return BatchBuilder(spec, layer_plan(model) if spec.kind == "apr" else None)


def train_step(model, optimizer, inputs, labels):
    """One optimizer step of cross-entropy training on a batch (``inputs`` as a :class:`BatchBuilder`
    gives them, ``labels`` shape (batch,)): returns (loss, accuracy, seconds), the batch's mean loss
    and accuracy before the step."""
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
    ds = _in_order(dataset, builder, batch_size)
    return evaluate(model, (ds[i] for i in range(len(ds))))


def _in_order(dataset, builder: BatchBuilder, batch_size: int, n: int | None = None) -> IndexBatches:
    """The first ``n`` items of ``dataset`` (default all) in order, in batches of ``batch_size`` (the
    last may be smaller)."""
    n = len(dataset) if n is None else min(n, len(dataset))
    return IndexBatches(dataset, [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)], builder)


def prepared_in_order(dataset, builder: BatchBuilder, batch_size: int, n: int | None = None) -> list:
    """The ``(inputs, labels)`` batches of :func:`_in_order`, built once and kept in a list."""
    ds = _in_order(dataset, builder, batch_size, n)
    return [ds[i] for i in range(len(ds))]


def fixed_batch_order(n_items: int, n_iterations: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """The item indices of each of the ``n_iterations`` batches of :func:`train_fixed`: permutations of
    ``range(n_items)`` drawn one after another from ``seed`` and cut into batches, so that a longer
    budget has the same first batches."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n_items) for _ in range(-(-n_iterations * batch_size // n_items) + 1)])
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(n_iterations)]



# --- the one training loop ---------------------------------------------------------------------------
class _Run:
    """One kind of training run, as the shared loop (:func:`_fit`) drives it: ``n_phases`` phases
    (epochs) of ``steps`` optimizer steps each, built by :meth:`batches`; a subclass records its
    metrics (:meth:`after_step`, :meth:`end_phase`), says what its checkpoint holds (:meth:`progress`,
    :meth:`restore`) and which checkpoints it may resume (:meth:`resumable`)."""

    n_phases = 1
    steps: int

    def __init__(self, model, header: dict):
        self.model = model
        self.header = header  # the loop's settings, recorded in and compared with its checkpoints
        self.rows = []

    def resumable(self, state) -> str | None:
        """None if this run may resume ``state``, else why not."""
        raise NotImplementedError

    def restore(self, state) -> tuple[int, int]:
        """Take a checkpoint's progress; returns where to continue: (phase, first step in it)."""
        raise NotImplementedError

    def progress(self, phase: int, step: int) -> dict:
        """What a checkpoint taken before step ``step`` of ``phase`` holds besides model, optimizer
        and RNG (plain data and tensors); no side effects: its keys are the entries a checkpoint must
        hold to be resumed."""
        raise NotImplementedError

    def batches(self, phase: int, first: int):
        """A dataset of the (inputs, labels) batches of ``phase`` from step ``first`` on."""
        raise NotImplementedError

    def start_phase(self, phase: int, first: int) -> None:
        """Called when ``phase`` starts or resumes at step ``first``."""

    def after_step(self, phase: int, step: int, result: tuple, wait_s: float) -> bool:
        """Record step ``step`` of ``phase`` (``result``: loss, accuracy, step time); True if a
        checkpoint may be taken after it."""
        raise NotImplementedError

    def end_phase(self, phase: int) -> None:
        """Called after the last step of ``phase``."""


def _fit(optimizer, run: _Run, checkpoint: Checkpoint | None, checkpoint_every_s: float, num_workers: int,
         progress: bool, desc: str) -> None:
    """The training loop of every run: resume from ``checkpoint`` (if it holds a resumable state of
    the same settings), then for each remaining phase build its batches through a DataLoader, take
    one optimizer step per batch (:func:`train_step`), let ``run`` record it, checkpoint atomically at
    least every ``checkpoint_every_s`` seconds where ``run`` allows it and after every phase that
    is the last or falls due, and show a progress bar over all steps. A SIGINT or SIGTERM while it
    trains with a checkpoint saves one at the next step where ``run`` allows it (or at the phase's
    end) and raises :class:`TrainingStopped` (:func:`_stop_on_signal`); a finished run is not stopped.

    The torch RNG: creating a DataLoader iterator draws from it, so a checkpoint at a phase's start
    holds the state before that phase's iterator was created (it is restored first) and one within
    a phase the state after the iterator was created and its batches so far were drawn (it is
    restored after creating the iterator). A phase with no steps left is skipped."""
    model = run.model
    phase, first, rng_state = 0, 0, None
    state = _load_checkpoint(checkpoint, run.header, model, optimizer, run.resumable, tuple(run.progress(0, 0)))
    if state is not None:
        phase, first = run.restore(state)
        rng_state = state["torch_rng"]

    def save(ph, step):
        _save_checkpoint(checkpoint, run.header, model, optimizer, **run.progress(ph, step))

    def stop(ph, step):  # after a stop signal: save where the loop is and leave
        save(ph, step)
        raise TrainingStopped(stop_signal[0], checkpoint.path, ph * run.steps + step)

    last_save = time.perf_counter()
    with (_progress(total=run.n_phases * run.steps, initial=phase * run.steps + first, desc=desc,
                    disable=not progress, mininterval=2.0) as bar,
          _stop_on_signal(checkpoint is not None) as stop_signal):
        while phase < run.n_phases and first < run.steps:
            if rng_state is not None and first == 0:
                torch.set_rng_state(rng_state)
                rng_state = None
            loader = iter(_loader(run.batches(phase, first), num_workers))
            if rng_state is not None:
                torch.set_rng_state(rng_state)
                rng_state = None
            model.train()
            run.start_phase(phase, first)
            t_wait = time.perf_counter()
            for step, (inputs, labels) in enumerate(loader, start=first):
                wait = time.perf_counter() - t_wait
                may_save = run.after_step(phase, step, train_step(model, optimizer, inputs, labels), wait)
                bar.update()
                if checkpoint is not None and may_save and step + 1 < run.steps:
                    if stop_signal:
                        stop(phase, step + 1)
                    if time.perf_counter() - last_save >= checkpoint_every_s:
                        save(phase, step + 1)
                        last_save = time.perf_counter()
                t_wait = time.perf_counter()
            run.end_phase(phase)
            phase, first = phase + 1, 0
            if stop_signal and phase < run.n_phases:
                stop(phase, 0)
            due = time.perf_counter() - last_save >= checkpoint_every_s
            if checkpoint is not None and (phase == run.n_phases or due):
                save(phase, 0)
                last_save = time.perf_counter()


# --- the three kinds of run --------------------------------------------------------------------------
class _Streamed(_Run):
    """Fresh batches of a stream; one row per batch."""

    def __init__(self, model, stream, builder, n_batches, batch_size, header):
        super().__init__(model, header)
        self.stream, self.builder, self.steps, self.batch_size = stream, builder, n_batches, batch_size

    def resumable(self, st):
        return (None if st["next_batch"] <= self.steps else
                f"has trained {st['next_batch']} batches, more than this run's {self.steps}")

    def restore(self, st):
        self.rows = st["rows"]
        return 0, st["next_batch"]

    def progress(self, phase, step):
        return {"rows": self.rows, "next_batch": phase * self.steps + step}

    def batches(self, phase, first):
        return StreamBatches(self.stream, self.batch_size, self.builder, first, self.steps)

    def after_step(self, phase, step, result, wait_s):
        loss, acc, step_s = result
        self.rows.append({"batch": step, "loss": loss, "accuracy": acc, "step_s": step_s, "wait_s": wait_s})
        return True


class _Fixed(_Run):
    """A fixed training set in a fixed order of batches; evaluation every ``eval_every`` steps and at
    the last, keeping the model of minimum validation loss; checkpoints only at evaluations."""

    def __init__(self, model, batches, train_set, val_set, builder, eval_every, batch_size, header,
                 cache_val=False, bn_calibration=None):
        super().__init__(model, header)
        self.order, self.train_set, self.val_set, self.builder = batches, train_set, val_set, builder
        self.steps, self.eval_every, self.batch_size = len(batches), eval_every, batch_size
        self.window, self.best, self.best_state, self.last_row = [], float("inf"), None, 0.0
        self.cache_val, self.val_batches = cache_val, None
        self.bn_calibration, self.calib_batches = bn_calibration, None

    def evaluated_model(self):
        """The model an evaluation measures: the training model itself, or with ``bn_calibration`` a
        copy whose batch-norm statistics are recomputed (:func:`recalibrate_bn`) over the first
        ``bn_calibration`` batches of the training set in order (all of it if smaller; prepared at the
        first evaluation and kept). The training model, its running statistics and the RNG are untouched."""
        if not self.bn_calibration:
            return self.model
        if self.calib_batches is None:
            self.calib_batches = prepared_in_order(self.train_set, self.builder, self.batch_size,
                                                   self.bn_calibration * self.batch_size)
        return recalibrate_bn(copy.deepcopy(self.model), self.calib_batches)

    def validate(self, model) -> dict:
        """:func:`evaluate_in_order` of ``model`` on the validation set; with ``cache_val`` its batches
        (APRs and their tables, or pixel tensors) are prepared at the first evaluation and kept."""
        if not self.cache_val:
            return evaluate_in_order(model, self.val_set, self.builder, self.batch_size)
        if self.val_batches is None:
            self.val_batches = prepared_in_order(self.val_set, self.builder, self.batch_size)
        return evaluate(model, self.val_batches)

    def resumable(self, st):
        i = st["next_iteration"]
        if i > self.steps:
            return f"has trained {i} iterations, more than this run's {self.steps}"
        if i < self.steps and i % self.eval_every:
            return (f"ends with an evaluation at iteration {i}, which a run of {self.steps} iterations "
                    f"evaluating every {self.eval_every} does not make")
        return None

    def restore(self, st):
        self.rows, self.best, self.best_state = st["rows"], st["best"], st["best_state"]
        return 0, st["next_iteration"]

    def progress(self, phase, step):
        return {"rows": self.rows, "best": self.best, "best_state": self.best_state,
                "next_iteration": phase * self.steps + step}

    def batches(self, phase, first):
        return IndexBatches(self.train_set, self.order[first:], self.builder)

    def start_phase(self, phase, first):
        self.last_row = time.perf_counter()

    def after_step(self, phase, step, result, wait_s):
        self.window.append(result)
        it = step + 1
        if it % self.eval_every and it != self.steps:
            return False
        evaluated = self.evaluated_model()
        val = self.validate(evaluated)
        w = self.window
        self.rows.append({"iteration": it, "train_loss": float(np.mean([r[0] for r in w])),
                          "train_accuracy": float(np.mean([r[1] for r in w])),
                          "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                          "step_s": float(np.mean([r[2] for r in w])), "wall_s": time.perf_counter() - self.last_row})
        self.last_row = time.perf_counter()
        self.window = []
        if val["loss"] < self.best:
            self.best = val["loss"]
            self.best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
        return True


class _Epochs(_Run):
    """Epochs over a training set in a fresh order each (drawn from (seed, epoch)), on the set's
    ``augmented(epoch)`` view if it has one; evaluation after each epoch."""

    def __init__(self, model, train_set, val_set, builder, n_epochs, batch_size, seed, header):
        super().__init__(model, header)
        self.train_set, self.val_set, self.builder = train_set, val_set, builder
        self.n_phases, self.batch_size, self.seed = n_epochs, batch_size, seed
        self.steps = -(-len(train_set) // batch_size)
        self.window, self.t_epoch, self.t0 = [], 0.0, 0.0

    def resumable(self, st):
        if st["epoch"] < self.n_phases or (st["epoch"] == self.n_phases and st["next_batch"] == 0):
            return None
        return f"is at epoch {st['epoch']} batch {st['next_batch']}, beyond this run's {self.n_phases} epochs"

    def restore(self, st):
        self.rows, self.window, self.t_epoch = st["rows"], st["window"], st["epoch_time_s"]
        return st["epoch"], st["next_batch"]

    def progress(self, phase, step):
        elapsed = time.perf_counter() - self.t0 if step else 0.0
        return {"rows": self.rows, "epoch": phase, "next_batch": step, "window": self.window, "epoch_time_s": elapsed}

    def batches(self, phase, first):
        view = self.train_set.augmented(phase) if hasattr(self.train_set, "augmented") else self.train_set
        order = np.random.default_rng([self.seed, phase]).permutation(len(self.train_set))
        return IndexBatches(view, [order[i * self.batch_size:(i + 1) * self.batch_size]
                                    for i in range(first, self.steps)], self.builder)

    def start_phase(self, phase, first):
        self.t0, self.t_epoch = time.perf_counter() - self.t_epoch, 0.0

    def after_step(self, phase, step, result, wait_s):
        self.window.append(result)
        return True

    def end_phase(self, phase):
        val = evaluate_in_order(self.model, self.val_set, self.builder, self.batch_size)
        w = self.window
        self.rows.append({"epoch": phase + 1, "train_loss": float(np.mean([r[0] for r in w])),
                          "train_accuracy": float(np.mean([r[1] for r in w])), "val_loss": val["loss"],
                          "val_accuracy": val["accuracy"], "step_s": float(np.mean([r[2] for r in w])),
                          "epoch_s": time.perf_counter() - self.t0})
        self.window = []


def train_streamed(model, stream, spec: InputSpec, n_batches: int, batch_size: int = SYNTHETIC_BATCH_SIZE,
                   lr: float = SYNTHETIC_LR, checkpoint: str | Path | Checkpoint | None = None,
                   checkpoint_every_s: float = 900.0,
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
    header = {"loop": "streamed", "batch_size": batch_size, "lr": lr, "spec": dataclasses.asdict(spec)}
    run = _Streamed(model, stream, batch_builder(spec, model), n_batches, batch_size, header)
    _fit(opt, run, _as_checkpoint(checkpoint), checkpoint_every_s, num_workers, progress, desc)
    return _table(run.rows)


def train_fixed(model, train_set, val_set, spec: InputSpec, n_iterations: int,
                batch_size: int = SYNTHETIC_BATCH_SIZE, lr: float = SYNTHETIC_LR, weight_decay: float = 0.0,
                eval_every: int = 50, seed: int = 0,
                checkpoint: str | Path | Checkpoint | None = None, checkpoint_every_s: float = 900.0,
                num_workers: int = 0, progress: bool = True, desc: str = "train",
                cache_val: bool = False, bn_calibration: int | None = None) -> tuple[pd.DataFrame, dict]:
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
    its checkpoint is not extended. A checkpoint beyond the budget is not resumed. ``cache_val`` keeps
    the prepared validation batches in memory from the first evaluation on (the same results, without
    forming the APRs and their tables again at every evaluation; memory: the whole prepared set).

    ``bn_calibration`` (a number of batches): each evaluation measures a copy of the model whose
    batch-norm statistics are the population statistics of the first ``bn_calibration`` batches of
    ``train_set`` in order (:func:`aprlib.train.recalibrate_bn`) instead of the running averages
    tracked in training, and the kept model carries those statistics. Training itself is unchanged
    (the same steps, bitwise). Recorded in the checkpoint's settings: a checkpoint written without it
    is not resumed with it."""
    if n_iterations < 1 or eval_every < 1:
        raise ValueError("n_iterations and eval_every must be positive")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError("train_set and val_set must not be empty")
    batches = fixed_batch_order(len(train_set), n_iterations, batch_size, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    header = {"loop": "fixed", "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
              "eval_every": eval_every, "seed": seed, "spec": dataclasses.asdict(spec), "n_train": len(train_set),
              "n_val": len(val_set)}
    if bn_calibration is not None:
        if isinstance(bn_calibration, bool) or not isinstance(bn_calibration, int) or bn_calibration < 1:
            raise ValueError(f"bn_calibration must be a positive number of batches or None, got {bn_calibration!r}")
        if not batch_norms(model):
            raise ValueError("bn_calibration recomputes batch-norm statistics, but the model has no batch normalisation")
        header["bn_calibration"] = bn_calibration
    run = _Fixed(model, batches, train_set, val_set, batch_builder(spec, model), eval_every, batch_size, header,
                 cache_val=cache_val, bn_calibration=bn_calibration)
    _fit(opt, run, _as_checkpoint(checkpoint), checkpoint_every_s, num_workers, progress, desc)
    return _table(run.rows), run.best_state


def train_epochs(model, train_set, val_set, spec: InputSpec, n_epochs: int,
                 batch_size: int = NATURAL_BATCH_SIZE, lr: float = NATURAL_LR, seed: int = 0,
                 checkpoint: str | Path | Checkpoint | None = None, checkpoint_every_s: float = 900.0,
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
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    header = {"loop": "epochs", "batch_size": batch_size, "lr": lr, "seed": seed, "spec": dataclasses.asdict(spec),
              "n_train": len(train_set), "n_val": len(val_set)}
    run = _Epochs(model, train_set, val_set, batch_builder(spec, model), n_epochs, batch_size, seed, header)
    _fit(opt, run, _as_checkpoint(checkpoint), checkpoint_every_s, num_workers, progress, desc)
    return _table(run.rows)

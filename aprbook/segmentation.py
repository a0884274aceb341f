"""Beyond the thesis: segmentation on the APR. The experiment code of the chapter that trains an APR
U-Net and a pixel U-Net of the same widths side by side on synthetic nuclei, measures what one
training step of each costs against the image size, and scores both on StarDist's real sample.

Data (:func:`make_set`, :func:`stream_set`, :func:`heldout_set`): images (2D, (H, W)) or volumes (3D,
(Z, Y, X)) of :func:`aprlib.data.nuclei.generate`, each normalised on its own by percentiles
(:data:`aprbook.settings.SEGMENTATION_PERCENTILES`, as the field does); the binary target is the
generator's foreground mask (0 background, 1 nucleus). A :class:`SegSet` holds the normalised images,
their masks and their APRs (``form_apr`` of the normalised image with
:data:`aprbook.settings.SEGMENTATION_FORMATION` at the run's E, ``rel_error``, ``sigma_th``, in the
normalised image's units, and ``gradient_smoothing``; the thesis's formation, unsmoothed, gives APRs of
nearly all pixels on these noisy images, see that constant) and gives the same images as an APR batch with its masks
(:meth:`SegSet.apr_batch`) and as a pixel batch (B, 1, *S) with its (B, *S) int64 targets
(:meth:`SegSet.pixel_batch`). Image ``j`` of training step ``s`` has seed ``(data_seed, 0, s, j)``, held-out
image ``j`` ``(data_seed, 1, j)``: a seeded stream of fresh images and a fixed held-out set.

Training (:func:`train_pair`): both U-Nets (:class:`aprlib.models.APRUNet`, :class:`aprlib.models.PixelUNet`,
two classes, softmax) start from the same weights (``torch.manual_seed(seed)``, the pixel net built,
its weights copied into every level kernel of the APR net by :func:`aprlib.models.load_pixel_weights`),
train with Adam at ``lr`` on the same batches, the two interleaved step by step, the APR net with
:func:`aprlib.train.segmentation.particle_cross_entropy` (equal to the pixel cross-entropy of its
piecewise-constant reconstruction), the pixel net with ``F.cross_entropy``. Every ``eval_every`` steps
(and after the last) both are scored in eval mode on the held-out set on the pixel grid: the APR net's
particle argmax painted on the pixels (:func:`aprlib.train.segmentation.particle_predictions_to_pixels`),
the pixel net's argmax, each against the masks with :func:`aprlib.train.segmentation.dice`, averaged
over the held-out images. A step's time (``step_s``, seconds) is forward, loss, backward and Adam's
step; the APR net's includes building its index tables on the step's fresh batch (its formation,
``formation_s``, is data preparation and timed apart). One thread by default. For a seed the losses
and Dice scores are the same from run to run (the times are not).

Cost (:func:`step_cost_vs_size`): one training step of each U-Net on one sparse image (a fixed number of
nuclei on canvases of growing side, less noisy imaging, :data:`aprbook.settings.SEGMENTATION_LOW_NOISE`),
median time of interleaved rounds, and with ``memory`` the peak resident memory of one step in a fresh
process forked from :mod:`aprbook.scaling`'s measuring server (as :mod:`aprbook.cost3d` does).

Real data (:func:`evaluate_stardist`): trained networks scored on StarDist's sample image / volume
(:func:`aprlib.data.stardist_samples.stardist_sample`), normalised and formed as in training; a result
with ``available`` False and the reason where StarDist is not installed.

Checkpoints (:func:`train_pair`'s ``checkpoint``): both networks, both Adam states, the torch RNG, the
steps done and the curve so far, every ``checkpoint_every`` steps, after the last and at a stop signal;
a resumed run continues at the next step with the losses and Dice of an uninterrupted run.

Stored runs (:mod:`aprbook.segmentation_runs`): each training run (id ``seg{ndim}d_E{rel_error}_s{seed}``,
weights and data seeded by the seed) and each cost run in its own :class:`aprbook.provenance.ResultStore`
under ``results/segmentation/``, checkpointed under ``results/checkpoints/segmentation/<profile>/``;
loaded for the notebook by :func:`aprbook.segmentation_runs.load_runs` / ``load_cost``. Command line::

    python -m aprbook.segmentation train --profile book --ndim 2 --seeds 1 2 3 [--rel-error 0.1 0.2 ...]
        [--results-dir results] [--checkpoint-dir results/checkpoints] [--recompute]
    python -m aprbook.segmentation cost --profile book --ndim 2 3

Settings: :data:`aprbook.profiles.PROFILES` ``["segmentation"]`` (``train_2d``/``train_3d``: the fields of
:class:`SegmentationConfig`; ``cost_2d``/``cost_3d``: :func:`step_cost_vs_size`'s arguments; ``seeds``
and ``checkpoint_every``: the stored runs').
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .settings import (SEGMENTATION_FORMATION, SEGMENTATION_LOW_NOISE, SEGMENTATION_LR, SEGMENTATION_PERCENTILES,
                       SEGMENTATION_REFERENCE_SIDE, checkpoint_params)

__all__ = ["SegmentationConfig", "SegSet", "SegmentationRun", "config_from_profile", "nuclei_params", "make_set",
           "stream_set", "heldout_set", "reference_intensity_map", "make_networks", "heldout_dice", "train_pair", "step_cost_vs_size",
           "evaluate_stardist"]

_NORMS = ("batch", None)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) and math.isfinite(float(v))


def _check_int(name, v, minimum):
    if not _is_int(v) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")


def _check_radius(radius_range):
    r = radius_range
    if r is not None and (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(_is_num(v) for v in r)
                          or not 0 < r[0] <= r[1]):
        raise ValueError(f"radius_range must be None or (low, high) with 0 < low <= high, got {r!r}")


@dataclass(frozen=True)
class SegmentationConfig:
    """The settings of one side-by-side training run (lengths in pixels / voxels).

    ``ndim`` 2 (images ``size`` x ``size``) or 3 (volumes ``size``^3); ``n_objects`` nuclei per image
    (None: the generator's density, 23 in 256^2, 8 in 64^3) of largest semi-axis in ``radius_range``
    (None: the generator's 6 ... 12); ``batch_size`` fresh images per step, ``n_steps`` steps, held-out
    Dice every ``eval_every`` steps on ``n_heldout`` images; Adam at ``lr``; the APRs at E ``rel_error``,
    ``sigma_th`` (normalised units) and ``gradient_smoothing`` (:data:`aprbook.settings.SEGMENTATION_FORMATION`);
    ``low_noise``: the imaging of :data:`aprbook.settings.SEGMENTATION_LOW_NOISE` instead of the
    generator's default; the U-Nets' ``depth``, ``base_channels``, ``convs_per_block``,
    ``kernel_size``, ``norm`` and the APR net's ``n_level_kernels``; ``seed`` the weights', ``data_seed``
    the images'; ``threads`` torch threads during the run."""

    ndim: int = 2
    size: int = 256
    n_objects: int | None = None
    radius_range: tuple | None = None
    batch_size: int = 8
    n_steps: int = 2000
    eval_every: int = 100
    n_heldout: int = 16
    lr: float = SEGMENTATION_LR
    rel_error: float = SEGMENTATION_FORMATION.rel_error
    sigma_th: float = SEGMENTATION_FORMATION.sigma_th
    gradient_smoothing: float = SEGMENTATION_FORMATION.gradient_smoothing
    low_noise: bool = False
    depth: int = 3
    base_channels: int = 16
    convs_per_block: int = 2
    kernel_size: int = 3
    n_level_kernels: int = 2
    norm: str | None = "batch"
    seed: int = 0
    data_seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.ndim not in (2, 3) or not _is_int(self.ndim):
            raise ValueError(f"ndim must be 2 or 3, got {self.ndim!r}")
        _check_int("size", self.size, 8)
        if self.n_objects is not None:
            _check_int("n_objects", self.n_objects, 0)
        _check_radius(self.radius_range)
        if self.radius_range is not None:
            object.__setattr__(self, "radius_range", tuple(float(v) for v in self.radius_range))
        for name, minimum in (("batch_size", 1), ("n_steps", 1), ("eval_every", 1), ("n_heldout", 1), ("depth", 0),
                              ("base_channels", 1), ("convs_per_block", 1), ("kernel_size", 1),
                              ("n_level_kernels", 1), ("seed", 0), ("data_seed", 0), ("threads", 1)):
            _check_int(name, getattr(self, name), minimum)
        for name in ("lr", "rel_error", "sigma_th"):
            v = getattr(self, name)
            if not _is_num(v) or not v > 0:
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        v = self.gradient_smoothing
        if not _is_num(v) or v < 0:
            raise ValueError(f"gradient_smoothing must be a number >= 0, got {v!r}")
        if not isinstance(self.low_noise, (bool, np.bool_)):
            raise ValueError(f"low_noise must be True or False, got {self.low_noise!r}")
        if self.norm not in _NORMS:
            raise ValueError(f"norm must be 'batch' or None, got {self.norm!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size!r}")

    @property
    def shape(self) -> tuple:
        return (self.size,) * self.ndim

    def params(self) -> dict:
        """The settings as a plain dict (e.g. for :class:`aprbook.provenance.ResultStore`)."""
        d = dataclasses.asdict(self)
        d["radius_range"] = list(d["radius_range"]) if d["radius_range"] is not None else None
        return d


def config_from_profile(profile: str, ndim: int, **overrides) -> SegmentationConfig:
    """The :class:`SegmentationConfig` of ``profile``'s ``train_2d`` / ``train_3d``, fields replaced by
    ``overrides``; a key that is no field is an error."""
    from .profiles import profile_settings
    if ndim not in (2, 3) or not _is_int(ndim):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    cfg = {**profile_settings("segmentation", profile)[f"train_{ndim}d"], **overrides}
    fields = {f.name for f in dataclasses.fields(SegmentationConfig)}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise ValueError(f"unknown segmentation settings {unknown}; known: {sorted(fields)}")
    return SegmentationConfig(**cfg)


# --- data -------------------------------------------------------------------------------------------
def nuclei_params(n_objects=None, radius_range=None, low_noise: bool = False):
    """The :class:`aprlib.data.nuclei.NucleiParams` of a run: the generator's defaults with ``n_objects``
    (None: its density), ``radius_range`` (None: its own) and, with ``low_noise``,
    :data:`aprbook.settings.SEGMENTATION_LOW_NOISE`."""
    from aprlib.data.nuclei import NucleiParams
    kw = {}
    if n_objects is not None:
        kw["n_objects"] = int(n_objects)
    if radius_range is not None:
        kw["radius_range"] = tuple(float(v) for v in radius_range)
    if low_noise:
        kw.update(SEGMENTATION_LOW_NOISE)
    return NucleiParams(**kw)


def _form(image: np.ndarray, ndim: int, rel_error: float, sigma_th: float,
          gradient_smoothing: float = SEGMENTATION_FORMATION.gradient_smoothing):
    from aprlib.apr import form_apr
    return form_apr(image, SEGMENTATION_FORMATION, ndim=ndim, rel_error=float(rel_error), sigma_th=float(sigma_th),
                    gradient_smoothing=float(gradient_smoothing))


def _normalise(image, intensity_map=None) -> np.ndarray:
    """``image`` normalised by its own percentiles (:data:`aprbook.settings.SEGMENTATION_PERCENTILES`), or
    with ``intensity_map`` ``(lo, hi)`` by that fixed map: ``(image - lo) / (hi - lo)`` (float32)."""
    from aprlib.data.nuclei import normalize_percentile
    if intensity_map is None:
        return normalize_percentile(image, *SEGMENTATION_PERCENTILES)
    lo, hi = (float(v) for v in intensity_map)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"intensity_map must be (lo, hi) with lo < hi, got {intensity_map!r}")
    return ((np.asarray(image, dtype=np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))).astype(np.float32)


def reference_intensity_map(ndim: int, low_noise: bool = True) -> tuple:
    """``(lo, hi)``: the percentiles (:data:`aprbook.settings.SEGMENTATION_PERCENTILES`) of one reference
    image of the generator's default density at :data:`aprbook.settings.SEGMENTATION_REFERENCE_SIDE`
    (256^2 in 2D, 64^3 in 3D; seed ``(0, 3, ndim)``), with the cost runs' imaging (``low_noise``). The cost
    runs normalise every canvas with this one map, so that a canvas's intensities do not depend on its
    size: a canvas's own percentiles, on a sparse canvas (a few nuclei in 2048^2: 0.03% foreground), are
    both background noise, and stretching the noise to [0, 1] made its APR keep nearly every pixel (CR
    1.04 at 1024^2 and 2048^2, measured 2026-12-07; the chapter shows it)."""
    from aprlib.data.nuclei import generate
    if ndim not in (2, 3) or not _is_int(ndim):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    side = SEGMENTATION_REFERENCE_SIDE[ndim]
    img = generate((side,) * ndim, nuclei_params(low_noise=low_noise), (0, 3, ndim)).image
    lo, hi = np.percentile(np.asarray(img, dtype=np.float32), list(SEGMENTATION_PERCENTILES))
    return float(lo), float(hi)


class SegSet:
    """Images normalised by percentiles, their binary masks and their APRs, one of each per image.

    ``images``: float32 arrays of one shape S ((H, W) or (Z, Y, X)); ``masks``: bool arrays of S;
    ``aprs``: the APRs of the images (None: formed here at ``rel_error``, ``sigma_th`` and
    ``gradient_smoothing``, the other fields :data:`aprbook.settings.SEGMENTATION_FORMATION`'s);
    ``formation_s``: seconds spent forming them."""

    def __init__(self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], *, rel_error: float,
                 sigma_th: float, gradient_smoothing: float = SEGMENTATION_FORMATION.gradient_smoothing, aprs=None):
        if len(images) == 0 or len(images) != len(masks):
            raise ValueError(f"a SegSet needs one mask per image and at least one image, got {len(images)} images "
                             f"and {len(masks)} masks")
        shape = np.shape(images[0])
        if len(shape) not in (2, 3):
            raise ValueError(f"images must be 2D or 3D, got shape {shape}")
        for im, m in zip(images, masks):
            if np.shape(im) != shape or np.shape(m) != shape:
                raise ValueError(f"every image and mask must have shape {shape}, got {np.shape(im)} / {np.shape(m)}")
        self.ndim, self.shape = len(shape), tuple(shape)
        self.images = [np.asarray(im, dtype=np.float32) for im in images]
        self.masks = [np.asarray(m, dtype=bool) for m in masks]
        t0 = time.perf_counter()
        self.aprs = list(aprs) if aprs is not None else [_form(im, self.ndim, rel_error, sigma_th, gradient_smoothing)
                                                         for im in self.images]
        self.formation_s = time.perf_counter() - t0

    def __len__(self) -> int:
        return len(self.images)

    def apr_batch(self):
        """(APRBatch of the APRs, the masks as a list of bool arrays)."""
        from aprlib.apr import APRBatch
        return APRBatch(self.aprs), list(self.masks)

    def pixel_batch(self):
        """(x (B, 1, *S) float32 tensor of the normalised images, target (B, *S) int64 tensor of the masks)."""
        x = torch.from_numpy(np.stack(self.images)[:, None].copy())
        y = torch.from_numpy(np.stack(self.masks).astype(np.int64))
        return x, y

    @property
    def n_particles(self) -> int:
        return int(sum(a.n_particles for a in self.aprs))


def make_set(shape, seeds: Sequence, *, n_objects=None, radius_range=None, rel_error=SEGMENTATION_FORMATION.rel_error,
             sigma_th=SEGMENTATION_FORMATION.sigma_th, gradient_smoothing=SEGMENTATION_FORMATION.gradient_smoothing,
             low_noise: bool = False, intensity_map=None) -> SegSet:
    """A :class:`SegSet` of one :func:`aprlib.data.nuclei.generate` image (volume) of ``shape`` per seed of
    ``seeds`` (each an int or a tuple of ints), with :func:`nuclei_params`'s parameters, each normalised
    by its own percentiles or, with ``intensity_map`` ``(lo, hi)``, by that fixed map."""
    from aprlib.data.nuclei import generate
    params = nuclei_params(n_objects, radius_range, low_noise)
    samples = [generate(tuple(shape), params, s) for s in seeds]
    return SegSet([_normalise(s.image, intensity_map) for s in samples], [s.mask for s in samples], rel_error=rel_error,
                  sigma_th=sigma_th, gradient_smoothing=gradient_smoothing)


def _cfg_set(cfg: SegmentationConfig, seeds) -> SegSet:
    return make_set(cfg.shape, seeds, n_objects=cfg.n_objects, radius_range=cfg.radius_range,
                    rel_error=cfg.rel_error, sigma_th=cfg.sigma_th, gradient_smoothing=cfg.gradient_smoothing,
                    low_noise=cfg.low_noise)


def stream_set(cfg: SegmentationConfig, step: int) -> SegSet:
    """The ``batch_size`` fresh training images of step ``step`` (seeds ``(data_seed, 0, step, j)``)."""
    _check_int("step", step, 0)
    return _cfg_set(cfg, [(cfg.data_seed, 0, int(step), j) for j in range(cfg.batch_size)])


def heldout_set(cfg: SegmentationConfig) -> SegSet:
    """The fixed held-out images (seeds ``(data_seed, 1, j)``, j < ``n_heldout``): never trained on."""
    return _cfg_set(cfg, [(cfg.data_seed, 1, j) for j in range(cfg.n_heldout)])


# --- networks and training ----------------------------------------------------------------------------
def _unet_kwargs(cfg) -> dict:
    return dict(ndim=cfg.ndim, depth=cfg.depth, base_channels=cfg.base_channels, convs_per_block=cfg.convs_per_block,
                kernel_size=cfg.kernel_size, norm=cfg.norm)


def make_networks(cfg: SegmentationConfig):
    """(APR U-Net, pixel U-Net), 1 channel in, 2 classes out, of ``cfg``'s widths, with the same initial
    weights (the pixel net's under ``torch.manual_seed(cfg.seed)``, copied into every level kernel of the
    APR net). The global torch RNG is left seeded."""
    from aprlib.models import APRUNet, PixelUNet, load_pixel_weights
    torch.manual_seed(cfg.seed)
    pixel = PixelUNet(1, 2, **_unet_kwargs(cfg))
    apr = APRUNet(1, 2, n_level_kernels=cfg.n_level_kernels, **_unet_kwargs(cfg))
    load_pixel_weights(apr, pixel)
    return apr, pixel


@contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _apr_step(net, opt, data: SegSet) -> float:
    from aprlib.train.segmentation import particle_cross_entropy, particle_targets
    batch, masks = data.apr_batch()
    opt.zero_grad(set_to_none=True)
    out = net(batch)
    loss = particle_cross_entropy(out.features, particle_targets(batch, masks, 2))
    loss.backward()
    opt.step()
    return float(loss.detach())


def _pixel_step(net, opt, data: SegSet) -> float:
    x, y = data.pixel_batch()
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


@torch.no_grad()
def _predict(apr_net, pixel_net, data: SegSet):
    """Per-image pixel label maps of each net (eval mode, restored after): (apr list, pixel list)."""
    from aprlib.train.segmentation import particle_predictions_to_pixels
    modes = apr_net.training, pixel_net.training
    apr_net.eval(), pixel_net.eval()
    try:
        batch, _ = data.apr_batch()
        apr_pred = [p.numpy() for p in particle_predictions_to_pixels(batch, apr_net(batch).features)]
        x, _ = data.pixel_batch()
        pixel_pred = list(pixel_net(x).argmax(1).numpy())
    finally:
        apr_net.train(modes[0]), pixel_net.train(modes[1])
    return apr_pred, pixel_pred


def heldout_dice(apr_net, pixel_net, data: SegSet) -> dict:
    """Mean foreground Dice over ``data``'s images of each net on the pixel grid (eval mode):
    ``{"apr": float, "pixel": float}``, each in [0, 1] (an image where both prediction and truth are
    empty scores 1)."""
    from aprlib.train.segmentation import dice
    apr_pred, pixel_pred = _predict(apr_net, pixel_net, data)
    return {"apr": float(np.mean([dice(p, m) for p, m in zip(apr_pred, data.masks)])),
            "pixel": float(np.mean([dice(p, m) for p, m in zip(pixel_pred, data.masks)]))}


class SegmentationRun(NamedTuple):
    """What :func:`train_pair` returns: ``curve`` (DataFrame, one row per step and network), ``summary``
    (dict), and the two trained networks."""
    curve: pd.DataFrame
    summary: dict
    apr_net: torch.nn.Module
    pixel_net: torch.nn.Module


class _Optimizers:
    """The two Adam optimizers of a pair as one (``state_dict`` / ``load_state_dict`` of both, by side),
    so that a pair's checkpoint is read and checked as any training loop's (:mod:`aprlib.train.checkpoint`)."""

    def __init__(self, opts: dict):
        self.opts = opts

    def state_dict(self) -> dict:
        return {side: opt.state_dict() for side, opt in self.opts.items()}

    def load_state_dict(self, state: dict) -> None:
        for side, opt in self.opts.items():
            opt.load_state_dict(state[side])


def _checkpoint_loop(cfg: SegmentationConfig) -> dict:
    """What a pair's checkpoint records of the run that wrote it and is compared on load (besides its
    :class:`aprlib.train.Checkpoint` configuration): the settings without the run's length
    (:func:`aprbook.settings.checkpoint_params`: ``n_steps``), so that a longer run extends a shorter one's
    checkpoint."""
    return {"loop": "aprbook.segmentation.train_pair", "settings": checkpoint_params(cfg.params())}


#: the entries a pair's checkpoint holds besides networks, optimizers and torch RNG
_CHECKPOINT_ENTRIES = ("steps_done", "rows")


def train_pair(cfg: SegmentationConfig, progress: bool = False, checkpoint=None,
               checkpoint_every: int | None = None) -> SegmentationRun:
    """Train the APR U-Net and the pixel U-Net of ``cfg`` side by side (module docstring).

    ``curve`` columns: ``step`` (1-based), ``network`` ("apr" / "pixel"), ``loss`` (the step's training
    cross-entropy, per pixel), ``heldout_dice`` (after the step, at every ``eval_every``-th step and the
    last; NaN elsewhere), ``step_s`` (seconds), ``formation_s`` (the step's APR formation, seconds; the
    APR rows only, 0 for the pixel rows), ``n_particles`` / ``n_pixels`` of the step's batch.
    ``summary``: the settings (:meth:`SegmentationConfig.params`), the final held-out Dice, the median step
    time and the mean particles per image of each network's inputs, the held-out set's particles and
    pixels.

    Checkpoints: with ``checkpoint`` (an :class:`aprlib.train.Checkpoint` or a path; None: none) both
    networks, both Adam states, the torch RNG, the steps done and the curve's rows so far are saved there
    (atomically) every ``checkpoint_every`` steps (None: only as follows), after the last step, and,
    when a SIGINT or SIGTERM arrives, after the step under way (then :class:`aprlib.train.TrainingStopped`
    is raised; a second signal interrupts at once). A run resumes the first of the checkpoint's ``path``
    and ``archive`` that holds these settings but for ``n_steps`` (:func:`_checkpoint_loop`; and the
    checkpoint's configuration, its key) and no more steps than ``n_steps``: it continues at the next
    step, and its losses and held-out Dice are those of an uninterrupted run (every step's images are
    seeded by the step; the times are the sessions' own). A checkpoint of a shorter run is extended (its
    last held-out Dice, if off this run's evaluation grid, is dropped as an uninterrupted run never
    computed it). A checkpoint that cannot be read is moved aside with a warning and the run starts
    afresh; one of other settings is left in place, with a printed line (:mod:`aprlib.train.checkpoint`)."""
    from aprlib.train import TrainingStopped
    from aprlib.train.checkpoint import _as_checkpoint, _load_checkpoint, _save_checkpoint
    from aprlib.train.loops import _stop_on_signal
    if not isinstance(cfg, SegmentationConfig):
        raise TypeError(f"cfg must be a SegmentationConfig, got {type(cfg).__name__}")
    if checkpoint_every is not None:
        _check_int("checkpoint_every", checkpoint_every, 1)
    ck = _as_checkpoint(checkpoint)
    rows = []
    with _threads(cfg.threads):
        apr_net, pixel_net = make_networks(cfg)
        opts = {"apr": torch.optim.Adam(apr_net.parameters(), lr=cfg.lr),
                "pixel": torch.optim.Adam(pixel_net.parameters(), lr=cfg.lr)}
        pair, pair_opt, loop = torch.nn.ModuleDict({"apr": apr_net, "pixel": pixel_net}), _Optimizers(opts), None
        done = 0
        if ck is not None:
            loop = _checkpoint_loop(cfg)

            def resumable(state):
                n, saved = state["steps_done"], state["rows"]
                if not _is_int(n) or n < 0 or not isinstance(saved, list) or len(saved) != 2 * n:
                    n_rows = len(saved) if isinstance(saved, list) else type(saved).__name__
                    return f"holds an inconsistent progress ({n!r} steps, {n_rows} curve rows)"
                return None if n <= cfg.n_steps else f"has trained {n} steps, more than this run's {cfg.n_steps}"
            state = _load_checkpoint(ck, loop, pair, pair_opt, resumable, _CHECKPOINT_ENTRIES)
            if state is not None:
                done, rows = int(state["steps_done"]), [dict(r) for r in state["rows"]]
                torch.set_rng_state(state["torch_rng"])
                for r in rows:  # a shorter run's last evaluation, off this run's grid
                    if r["step"] % cfg.eval_every != 0 and r["step"] != cfg.n_steps:
                        r["heldout_dice"] = math.nan
                if progress:
                    print(f"resumed at step {done}/{cfg.n_steps} from {ck.path}", flush=True)

        def save(steps_done):
            _save_checkpoint(ck, loop, pair, pair_opt, steps_done=steps_done, rows=rows)

        held = heldout_set(cfg)
        n_pix = int(np.prod(cfg.shape)) * cfg.batch_size
        with _stop_on_signal(ck is not None) as stop_signal:
            for step in range(done + 1, cfg.n_steps + 1):
                data = stream_set(cfg, step - 1)
                t0 = time.perf_counter()
                apr_loss = _apr_step(apr_net, opts["apr"], data)
                t1 = time.perf_counter()
                pixel_loss = _pixel_step(pixel_net, opts["pixel"], data)
                t2 = time.perf_counter()
                evaluate = step % cfg.eval_every == 0 or step == cfg.n_steps
                d = heldout_dice(apr_net, pixel_net, held) if evaluate else {"apr": math.nan, "pixel": math.nan}
                rows.append({"step": step, "network": "apr", "loss": apr_loss, "heldout_dice": d["apr"],
                             "step_s": t1 - t0, "formation_s": data.formation_s, "n_particles": data.n_particles,
                             "n_pixels": n_pix})
                rows.append({"step": step, "network": "pixel", "loss": pixel_loss, "heldout_dice": d["pixel"],
                             "step_s": t2 - t1, "formation_s": 0.0, "n_particles": n_pix, "n_pixels": n_pix})
                if progress and evaluate:
                    print(f"step {step}/{cfg.n_steps}: loss apr {apr_loss:.4f} pixel {pixel_loss:.4f}, held-out "
                          f"Dice apr {d['apr']:.3f} pixel {d['pixel']:.3f}", flush=True)
                if ck is None:
                    continue
                if step == cfg.n_steps or (checkpoint_every and step % checkpoint_every == 0):
                    save(step)
                if stop_signal and step < cfg.n_steps:  # a finished run is not stopped
                    if checkpoint_every is None or step % checkpoint_every != 0:
                        save(step)
                    raise TrainingStopped(stop_signal[0], ck.path, step)
    curve = pd.DataFrame(rows)
    summary = {"settings": cfg.params(), "heldout_particles": held.n_particles,
               "heldout_pixels": int(np.prod(cfg.shape)) * len(held)}
    for side in ("apr", "pixel"):
        c = curve[curve.network == side]
        summary[f"{side}_final_dice"] = float(c.heldout_dice.iloc[-1])
        summary[f"{side}_final_loss"] = float(c.loss.iloc[-1])
        summary[f"{side}_median_step_s"] = float(c.step_s.median())
    summary["mean_particles_per_image"] = float(curve[curve.network == "apr"].n_particles.mean() / cfg.batch_size)
    return SegmentationRun(curve, summary, apr_net, pixel_net)


# --- cost against image size ---------------------------------------------------------------------------
def _cost_parts(spec: dict):
    """The sparse image of one cost measurement (its SegSet) and fresh networks and optimisers."""
    cfg = SegmentationConfig(ndim=spec["ndim"], size=spec["size"], n_objects=spec["n_objects"],
                             radius_range=spec["radius_range"], batch_size=1, depth=spec["depth"],
                             base_channels=spec["base_channels"], n_level_kernels=spec["n_level_kernels"],
                             rel_error=spec["rel_error"], sigma_th=spec["sigma_th"],
                             gradient_smoothing=spec["gradient_smoothing"], low_noise=True, seed=spec["seed"],
                             data_seed=spec["seed"], threads=spec["threads"])
    imap = reference_intensity_map(cfg.ndim) if spec.get("normalise", "reference") == "reference" else None
    data = make_set(cfg.shape, [(spec["seed"], 2, spec["size"])], n_objects=cfg.n_objects,
                    radius_range=cfg.radius_range, rel_error=cfg.rel_error, sigma_th=cfg.sigma_th,
                    gradient_smoothing=cfg.gradient_smoothing, low_noise=True, intensity_map=imap)
    apr_net, pixel_net = make_networks(cfg)
    return cfg, data, {"apr": (apr_net, torch.optim.Adam(apr_net.parameters(), lr=cfg.lr), _apr_step),
                       "pixel": (pixel_net, torch.optim.Adam(pixel_net.parameters(), lr=cfg.lr), _pixel_step)}


def _fresh(data: SegSet) -> SegSet:
    """The same images with copies of their APRs without cached tables, so that every APR step builds them."""
    from aprlib.apr import APR
    return SegSet(data.images, data.masks, rel_error=1, sigma_th=1,
                  aprs=[APR.from_dict(a.to_dict()) for a in data.aprs])


def _memory_child(spec: dict) -> dict:
    """In a fresh process (:func:`aprbook.scaling._run_child`): the peak resident memory (kB above what the
    process held before the step: image, APR, networks) of one training step of ``spec["side"]``'s net."""
    import resource

    from . import scaling as sc
    torch.set_num_threads(spec["threads"])
    cfg, data, parts = _cost_parts(spec)
    net, opt, step = parts[spec["side"]]
    old_soft, old_hard = resource.getrlimit(resource.RLIMIT_AS)
    if spec.get("mem_limit_bytes"):
        resource.setrlimit(resource.RLIMIT_AS, (int(spec["mem_limit_bytes"]), old_hard))
    try:
        base = sc._rss_kb()
        reset = sc._reset_peak()
        step(net, opt, data)
        return {"mode": spec["mode"], "fit": True, "peak_kb": sc._peak_kb() - base, "peak_reset": reset}
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (old_soft, old_hard))


def step_cost_vs_size(ndim: int = 2, sizes: Sequence[int] = (256, 512, 1024, 2048), *, n_objects: int = 4,
                      radius_range=None, repeats: int = 3, burn_in: int = 1, depth: int = 3, base_channels: int = 16,
                      n_level_kernels: int = 2, rel_error: float = SEGMENTATION_FORMATION.rel_error,
                      sigma_th: float = SEGMENTATION_FORMATION.sigma_th,
                      gradient_smoothing: float = SEGMENTATION_FORMATION.gradient_smoothing, seed: int = 0,
                      threads: int = 1, normalise: str = "reference",
                      memory: bool = False, mem_limit_gb: float | None = 16.0) -> pd.DataFrame:
    """One row per canvas side of ``sizes`` (images size^2 or volumes size^3 holding ``n_objects`` nuclei,
    :data:`aprbook.settings.SEGMENTATION_LOW_NOISE` imaging): the median time (s) of one training step
    (forward, cross-entropy, backward, Adam) of each U-Net on that one image over ``repeats`` rounds
    after ``burn_in``, the two nets interleaved in each round (the APR net's step builds its index tables
    on a fresh copy of the APR each time; formation is not timed: ``formation_s`` is its one time),
    ``threads`` torch threads; particles and pixels. With ``memory``, ``apr_peak_mb`` / ``pixel_peak_mb``:
    the peak resident memory (MB, 10^6 bytes) one step adds in a fresh process under an address-space
    limit of ``mem_limit_gb`` (a step that runs out has ``*_fit`` False and NaN memory). ``normalise``:
    "reference" (every canvas with :func:`reference_intensity_map`'s one map) or "canvas" (each canvas by
    its own percentiles, as the training images are; on sparse canvases this stretches the background
    noise, see :func:`reference_intensity_map`)."""
    if normalise not in ("reference", "canvas"):
        raise ValueError(f"normalise must be 'reference' or 'canvas', got {normalise!r}")
    if ndim not in (2, 3) or not _is_int(ndim):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ValueError(f"sizes must be a non-empty list of sides, got {sizes!r}")
    for s in sizes:
        _check_int("every size", s, 8)
    _check_int("repeats", repeats, 1)
    _check_int("burn_in", burn_in, 0)
    _check_int("threads", threads, 1)
    if mem_limit_gb is not None and (not _is_num(mem_limit_gb) or not mem_limit_gb > 0.1):
        raise ValueError(f"mem_limit_gb must be None or a number of GB above 0.1, got {mem_limit_gb!r}")
    _check_radius(radius_range)
    rows = []
    for size in sorted(sizes):
        spec = {"ndim": int(ndim), "size": int(size), "n_objects": n_objects,
                "radius_range": list(radius_range) if radius_range is not None else None, "depth": depth,
                "base_channels": base_channels, "n_level_kernels": n_level_kernels, "rel_error": rel_error,
                "sigma_th": sigma_th, "gradient_smoothing": gradient_smoothing, "seed": seed, "threads": threads,
                "normalise": normalise}
        with _threads(threads):
            cfg, data, parts = _cost_parts(spec)
            times = {"apr": [], "pixel": []}
            for r in range(burn_in + repeats):
                for side in ("apr", "pixel") if r % 2 == 0 else ("pixel", "apr"):
                    net, opt, step = parts[side]
                    d = _fresh(data) if side == "apr" else data
                    t0 = time.perf_counter()
                    step(net, opt, d)
                    if r >= burn_in:
                        times[side].append(time.perf_counter() - t0)
        row = {"ndim": int(ndim), "size": int(size), "pixels": int(np.prod(data.shape)),
               "particles": data.n_particles, "cr": float(np.prod(data.shape)) / data.n_particles,
               "formation_s": data.formation_s, "apr_step_s": statistics.median(times["apr"]),
               "pixel_step_s": statistics.median(times["pixel"]), "repeats": repeats, "threads": threads}
        if memory:
            from .scaling import _run_child
            limit = int(mem_limit_gb * 1e9) if mem_limit_gb else None
            for side in ("apr", "pixel"):
                m = _run_child({**spec, "call": "aprbook.segmentation:_memory_child", "mode": f"segmentation_{side}",
                                "side": side, "mem_limit_bytes": limit})
                row[f"{side}_fit"] = bool(m["fit"])
                row[f"{side}_peak_mb"] = m["peak_kb"] * 1e3 / 1e6 if m["fit"] else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


# --- StarDist's real sample ------------------------------------------------------------------------------
def evaluate_stardist(apr_net, pixel_net, ndim: int = 2, *, rel_error: float = SEGMENTATION_FORMATION.rel_error,
                      sigma_th: float = SEGMENTATION_FORMATION.sigma_th,
                      gradient_smoothing: float = SEGMENTATION_FORMATION.gradient_smoothing, threads: int = 1) -> dict:
    """Foreground Dice of the trained ``apr_net`` and ``pixel_net`` (2 classes, of ``ndim``) on StarDist's
    sample image (``ndim=2``, 512^2) or volume (``ndim=3``, 31 x 61 x 57), normalised by percentiles and
    formed as in training, scored on the pixel grid against ``labels > 0``: ``{"available": True,
    "apr_dice", "pixel_dice", "particles", "pixels", "shape"}``, or ``{"available": False, "reason"}``
    where StarDist (or its sample files) is missing."""
    if ndim not in (2, 3) or not _is_int(ndim):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    for name, net in (("apr_net", apr_net), ("pixel_net", pixel_net)):
        if getattr(net, "ndim", None) != ndim:
            raise ValueError(f"{name} must be a {ndim}D U-Net, got {type(net).__name__} of ndim "
                             f"{getattr(net, 'ndim', None)!r}")
    from aprlib.data.stardist_samples import stardist_sample
    try:
        image, labels = stardist_sample(ndim)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        return {"available": False, "reason": str(e)}
    with _threads(threads):
        data = SegSet([_normalise(image)], [labels > 0], rel_error=rel_error, sigma_th=sigma_th,
                      gradient_smoothing=gradient_smoothing)
        d = heldout_dice(apr_net, pixel_net, data)
    return {"available": True, "apr_dice": d["apr"], "pixel_dice": d["pixel"], "particles": data.n_particles,
            "pixels": int(np.prod(data.shape)), "shape": list(data.shape)}


if __name__ == "__main__":  # python -m aprbook.segmentation train|cost ...: the stored runs' command line
    from aprbook.segmentation_runs import main
    main()

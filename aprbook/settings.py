"""One home for each setting of the book's training runs (issue 39, item 7).

Constants. The thesis's values live in aprlib, whose loops and :class:`aprlib.train.InputSpec` take
them as defaults (:data:`aprlib.apr.THESIS_FORMATION`, :data:`aprlib.train.SYNTHETIC_LR` and the rest),
the normalisations in :data:`aprlib.train.NORMALISATIONS`; they are imported here, and the book's own
choices are set here, for :mod:`aprbook.profiles` to refer to instead of retyping numbers.

Run configurations. A training run's settings are one frozen dataclass per kind of run
(:class:`StreamedRunConfig`, :class:`FiniteRunConfig`, :class:`NaturalRunConfig`) whose fields ARE the
parameters that identify its stored result: :meth:`RunConfig.params` is the result store's parameters
(:class:`aprbook.provenance.ResultStore` hashes them into its ``params_hash``) and
:func:`checkpoint_params` the checkpoint's (the same without :data:`LENGTH_FIELDS`, the fields that
set only a run's length, so that a run extends its own checkpoint). A run is built from its run dict
and its profile's settings (:meth:`RunConfig.of`): a run's key that is no field, or a profile setting
that is neither a field nor one of the kind's :attr:`RunConfig.PROFILE_KEYS`, is an error, so a new
setting cannot be left out of the keys.

The fields keep the parameters the stored runs recorded (``tests/data/run_identities.json`` freezes
them): a field marked :data:`UNSET` by default is left out of the parameters when no value is given,
as runs of profiles without it recorded them (e.g. ``normalise`` for the first streamed runs, which
ran on intensities as generated); a field's value None is recorded as None.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aprlib.apr import THESIS_FORMATION, APRParameters
from aprlib.train import NATURAL_BATCH_SIZE, NATURAL_LR, NORMALISATIONS, SYNTHETIC_BATCH_SIZE, SYNTHETIC_LR

__all__ = ["THESIS_FORMATION", "SYNTHETIC_LR", "SYNTHETIC_BATCH_SIZE", "NATURAL_LR", "NATURAL_BATCH_SIZE",
           "NORMALISATIONS", "BOOK_NORMALISATION", "SENSITIVITY_NORMALISATIONS", "FIG46_WEIGHT_DECAY",
           "FIG46_SPATIAL_DROPOUT", "FIG46_DROPOUT", "SEGMENTATION_FORMATION", "SEGMENTATION_PERCENTILES",
           "SEGMENTATION_LR", "SEGMENTATION_LOW_NOISE", "SEGMENTATION_REFERENCE_SIDE", "LENGTH_FIELDS", "UNSET", "RunConfig", "StreamedRunConfig",
           "FiniteRunConfig", "NaturalRunConfig", "checkpoint_params"]

#: How the book's synthetic runs (streamed_converged, streamed_primary, finite_converged) feed intensities
#: to the networks: 'dataset', one affine map to zero mean and unit variance of intensities uniform in
#: [0, 1], as the pilots' decision rule fixed in advance (:mod:`aprbook.pilots`).
BOOK_NORMALISATION = "dataset"
#: The other normalisations, the arms of the intensity-sensitivity runs (streamed_primary): None
#: (intensities as generated, the thesis-era code) and 'image' (per-image standardisation).
SENSITIVITY_NORMALISATIONS = tuple(n for n in NORMALISATIONS if n != BOOK_NORMALISATION)
#: The thesis's regularisation of the networks on finite datasets (4.1.3.4, Fig 4.6): Adam's weight
#: decay, the dropout rate of the spatial (channel) dropout and that of the fully connected layers.
FIG46_WEIGHT_DECAY, FIG46_SPATIAL_DROPOUT, FIG46_DROPOUT = 1e-4, 0.3, 0.5

# --- beyond the thesis: segmentation on the APR (aprbook.segmentation) ---------------------------------
#: How the segmentation chapter forms its APRs (2D and 3D alike), on percentile-normalised images
#: (:data:`SEGMENTATION_PERCENTILES`: background ~0, brightest nuclei ~1): the thesis's E = 0.1, LibAPR's
#: gradient smoothing (3.0) and ``sigma_th`` 0.2 in normalised units. Not the thesis's formation (no
#: smoothing, sigma_th 0.01): on :mod:`aprlib.data.nuclei`'s default imaging its APRs resolve the noise
#: and are nearly all pixels. Measured on one 256^2 image of the default density (23 nuclei; seed
#: (0, 1, 0), 2026-12-07): CR 1.1 without smoothing at sigma_th 0.1, 0.2 or 0.3; with smoothing 2.5 at
#: 0.1, 3.7 at 0.2, 4.1 at 0.3 (low-noise imaging, :data:`SEGMENTATION_LOW_NOISE`: 4.1, 4.4, 4.4). E,
#: sigma_th and the smoothing are a run's settings (``rel_error``, ``sigma_th``, ``gradient_smoothing``).
SEGMENTATION_FORMATION = APRParameters(rel_error=0.1, gradient_smoothing=3.0, sigma_th=0.2)
#: Per-image input normalisation of the segmentation runs, as the field does (CSBDeep / StarDist):
#: the (1, 99.8) percentiles map to 0 and 1, unclipped (:func:`aprlib.data.nuclei.normalize_percentile`).
SEGMENTATION_PERCENTILES = (1.0, 99.8)
#: Adam's learning rate for both U-Nets (the usual U-Net value, not tuned here).
SEGMENTATION_LR = 1e-3
#: The imaging of the sparse canvases of the segmentation cost runs (:func:`aprbook.segmentation.step_cost_vs_size`):
#: less noise than the generator's default (whose background noise the APR resolves, CR about 1), so the
#: APR of a sparse canvas is sparse (CR about 9 at 512^2 with 4 nuclei, :func:`aprlib.data.nuclei.sparse_volume`).
SEGMENTATION_LOW_NOISE = {"photon_scale": 2000.0, "read_noise": 0.003}
#: The side of the reference image whose percentiles normalise every canvas of the segmentation cost
#: runs (:func:`aprbook.segmentation.reference_intensity_map`): the training images' (256^2, 64^3).
SEGMENTATION_REFERENCE_SIDE = {2: 256, 3: 64}

#: The fields that set only a run's length (batches, iterations or epochs, a ladder of budgets, the
#: budget a run is extended to, the training steps of a segmentation run,
#: :class:`aprbook.segmentation.SegmentationConfig`): the one place they are marked. A checkpoint's key
#: leaves exactly these out (:func:`checkpoint_params`), and so does the comparison of a run with its
#: longer twin.
LENGTH_FIELDS = ("n_batches", "budgets", "at_least", "n_iterations", "n_epochs", "n_steps")


class _Unset:
    """The value of a field given no value: left out of the run's parameters."""

    def __repr__(self) -> str:
        return "UNSET"

    def __reduce__(self):
        return "UNSET"


#: A field given no value (see the module docstring).
UNSET: Any = _Unset()


def _optional(**kw):
    return field(default=UNSET, **kw)


def checkpoint_params(params: dict) -> dict:
    """A run's parameters as its checkpoint's configuration records them: without :data:`LENGTH_FIELDS`."""
    return {k: v for k, v in params.items() if k not in LENGTH_FIELDS}


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """The settings of one training run (the base of the three kinds): ``id``, the run's id (a
    directory name under ``results/<experiment>/``), and ``seed``, the seed of its initialisation
    (and of its data order or stream)."""

    id: str
    seed: int

    #: The profile settings of this kind that are not fields, and what each does: they list the runs
    #: (seeds, sizes), name where runs are stored, reach a run through its run dict (e.g.
    #: ``pixel_channels_last`` as a pixel run's ``channels_last``), or change no result (analysis windows,
    #: caching). Any other setting of a profile is refused.
    PROFILE_KEYS: ClassVar[dict[str, str]] = {}
    #: The length field a ladder of ``budgets`` stands for (left unset in a profile with budgets).
    LADDER_REPLACES: ClassVar[str | None] = None
    #: Allowed values of fields that name a choice.
    CHOICES: ClassVar[dict[str, tuple]] = {}
    #: Fields that are counts (positive ints) where set.
    COUNTS: ClassVar[tuple[str, ...]] = ()

    # --- building -----------------------------------------------------------------------------
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def check_profile(cls, cfg: dict) -> None:
        """ValueError naming any setting of ``cfg`` that is neither a field nor in :attr:`PROFILE_KEYS`."""
        unknown = sorted(set(cfg) - set(cls.field_names()) - set(cls.PROFILE_KEYS))
        if unknown:
            where = f" of {cfg['experiment']}" if "experiment" in cfg else ""
            raise ValueError(f"unknown setting(s) {unknown} in a profile{where} of {cls.__name__} runs: a setting "
                             f"that changes a run's result must be a field ({', '.join(cls.field_names())}), so that "
                             f"it keys the run's store and checkpoint; the others are {sorted(cls.PROFILE_KEYS)}")

    @classmethod
    def of(cls, run: dict, cfg: dict, **derived) -> RunConfig:
        """The configuration of ``run`` (a run dict of :mod:`aprbook.runs`) under a profile's settings
        ``cfg``. A field takes its value from ``derived`` (values the caller computes, e.g. a finite run's
        ``eval_every``), else from the run (a run's own setting, e.g. a sensitivity arm's ``normalise``,
        wins over the profile's), else from the profile; with ``budgets`` in the profile, the ladder
        stands for the run's length (:attr:`LADDER_REPLACES` stays unset). ValueError for a key of the
        run that is no field, a profile setting :meth:`check_profile` refuses, or a field with no value."""
        names = cls.field_names()
        stray = sorted(set(run) - set(names))
        if stray:
            raise ValueError(f"run {run.get('id')!r} has {stray}, which {cls.__name__} has no field for: a run's "
                             f"setting must be a field, or it would be left out of the run's store and checkpoint keys")
        cls.check_profile(cfg)
        skip = {cls.LADDER_REPLACES} if "budgets" in cfg else set()
        values = {}
        for name in names:
            if name in derived:
                values[name] = derived[name]
            elif name in run:
                values[name] = run[name]
            elif name in cfg and name not in skip:
                values[name] = cfg[name]
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.default is dataclasses.MISSING and f.name not in values]
        if missing:
            raise ValueError(f"run {run.get('id')!r}: neither the run nor its profile gives {missing} "
                             f"({cls.__name__})")
        return cls(**values)

    @classmethod
    def from_params(cls, params: dict) -> RunConfig:
        """The configuration a stored run's parameters (``provenance.json``'s ``params``) record;
        ``from_params(p).params() == p`` for every stored run (the migration's check)."""
        unknown = sorted(set(params) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"stored parameters {unknown} are no fields of {cls.__name__}")
        return cls(**params)

    # --- checking -----------------------------------------------------------------------------
    def __post_init__(self):
        where = f"{type(self).__name__} {self.id!r}"
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"{where}: id must be a non-empty string")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"{where}: seed must be an int, got {self.seed!r}")
        normalise = getattr(self, "normalise", UNSET)
        if normalise is not UNSET and normalise not in NORMALISATIONS:
            raise ValueError(f"{where}: normalise={normalise!r} is not one of aprlib.train.NORMALISATIONS "
                             f"{NORMALISATIONS}")
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{where}: {name}={getattr(self, name)!r} is not one of {allowed}")
        for name in self.COUNTS:
            value = getattr(self, name)
            if value is not UNSET and not _positive_int(value):
                raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")
        lr = getattr(self, "lr")
        if not _number(lr) or lr <= 0:
            raise ValueError(f"{where}: lr must be a positive number, got {lr!r}")
        budgets = getattr(self, "budgets", UNSET)
        if budgets is not UNSET and (not isinstance(budgets, list) or not budgets
                                     or not all(_positive_int(b) for b in budgets)):
            raise ValueError(f"{where}: budgets must be a non-empty list of positive ints, got {budgets!r}")
        if self.LADDER_REPLACES is not None:
            given = [n for n in (self.LADDER_REPLACES, "budgets") if getattr(self, n) is not UNSET]
            if len(given) != 1:
                raise ValueError(f"{where}: give exactly one of {self.LADDER_REPLACES} and budgets (the run's "
                                 f"length), got {given or 'neither'}")
        channels_last = getattr(self, "channels_last", UNSET)
        if channels_last is not UNSET and channels_last is not True:
            raise ValueError(f"{where}: channels_last is True (a pixel run of a profile with "
                             f"pixel_channels_last) or unset, got {channels_last!r}")

    # --- the keys -----------------------------------------------------------------------------
    def params(self) -> dict:
        """The result store's parameters: every field given a value, in field order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not UNSET}

    def checkpoint_params(self) -> dict:
        """The checkpoint's parameters: :meth:`params` without :data:`LENGTH_FIELDS`."""
        return checkpoint_params(self.params())

    @property
    def input_normalise(self) -> str | None:
        """The normalisation the run's input gets (:class:`aprlib.train.InputSpec`): None when unset."""
        normalise = getattr(self, "normalise", UNSET)
        return None if normalise is UNSET else normalise


_SYNTHETIC_LISTING = {
    "experiment": "the experiment the runs are stored under: results/<experiment>/<run id>/<profile>/",
    "seeds": "the seeds every run is trained with",
    "extra_seeds": "seeds added for the runs named in extra_seeds_for",
    "extra_seeds_for": "the runs that get extra_seeds",
    "pixel_channels_last": "pixel runs in torch's channels-last layout (a pixel run's channels_last)",
}


@dataclass(frozen=True, kw_only=True)
class StreamedRunConfig(RunConfig):
    """A run on streamed synthetic data (thesis 4.1.3.2-4.1.3.3; Fig 4.3, 4.4, Table 4.2): experiments
    streamed_training, streamed_converged and streamed_primary (:func:`aprbook.runs.streamed_runs`,
    :func:`aprbook.runs.primary_runs`). Batch b holds stream elements ``b * batch_size`` onwards of the
    stream seeded ``1000 + seed``."""

    #: the network's name in the figures, e.g. 'APR_A same', 'Pix_B'
    network: str
    #: the thesis's network family, 'A' or 'B'
    family: str
    #: 'full' (APRNet), 'same' or 'close' (APRNet with pixel-like pooling variants), 'pixel' (the pixel network)
    variant: str
    #: the APR's relative error threshold E (dimensionless; APR runs), None for pixel runs
    rel_error: float | None
    #: the side (px) pixel runs' images are bilinearly downsampled to, None for APR runs
    resolution: int | None
    #: the images' side (px)
    size: int
    #: images per batch
    batch_size: int
    #: Adam's learning rate
    lr: float
    #: the intensities' normalisation (aprlib.train.NORMALISATIONS; a sensitivity arm's own), unset: as generated
    normalise: str | None = _optional()
    #: True: a pixel run in torch's channels-last layout (the same results up to rounding, faster on CPU)
    channels_last: bool = _optional()
    #: length: the batches of a run without a ladder
    n_batches: int = _optional()
    #: length: the ladder of budgets (batches) at which a run is checked for a plateau
    budgets: list = _optional()
    #: length: the budget (batches) a run is extended to at least (profile's extend_to)
    at_least: int = _optional()

    PROFILE_KEYS: ClassVar[dict[str, str]] = {
        **_SYNTHETIC_LISTING,
        "extend_to": "run id -> budget the run is extended to (the run's at_least)",
        "sensitivity": "streamed_primary: networks and normalisations of the sensitivity arms (an arm's normalise)",
        "twin": "streamed_primary: the experiment whose longer runs a primary run is read from",
        "smooth": "batches in the running mean of the learning curves (figures only)",
        "last": "batches at a run's end over which Table 4.2's error is measured (analysis only)",
    }
    LADDER_REPLACES: ClassVar[str | None] = "n_batches"
    CHOICES: ClassVar[dict[str, tuple]] = {"family": ("A", "B"), "variant": ("full", "same", "close", "pixel")}
    COUNTS: ClassVar[tuple[str, ...]] = ("size", "batch_size", "n_batches", "at_least")


@dataclass(frozen=True, kw_only=True)
class FiniteRunConfig(RunConfig):
    """A run on a finite synthetic training set (thesis 4.1.3.4, Fig 4.6): experiments finite_datasets
    and finite_converged (:func:`aprbook.runs.finite_runs`). The training set is the first ``per_class``
    images per class of a set drawn from ``data_seed``; validation and test sets from ``data_seed + 1``
    to ``data_seed + 3``."""

    #: 'APR_B' or 'Pix_B'
    network: str
    #: training images per class
    per_class: int
    #: True: Pix_B in torch's channels-last layout
    channels_last: bool = _optional()
    #: the images' side (px)
    size: int
    #: images per batch
    batch_size: int
    #: length: the iterations of a run without a ladder
    n_iterations: int = _optional()
    #: length: the ladder of iteration budgets (each rounded up to a multiple of eval_every)
    budgets: list = _optional()
    #: Adam's learning rate
    lr: float
    #: Adam's weight decay
    weight_decay: float
    #: validation and test images per class
    eval_per_class: int
    #: the seed of the training set (validation and test sets: data_seed + 1, + 2, + 3)
    data_seed: int
    #: the APR's relative error threshold E of APR_B's input (dimensionless)
    rel_error: float
    #: dropout rate of the spatial (channel) dropout
    spatial_dropout: float
    #: dropout rate before the fully connected layers
    dropout: float
    #: the intensities' normalisation (aprlib.train.NORMALISATIONS), unset: as generated
    normalise: str | None = _optional()
    #: training batches whose population statistics batch normalisation uses in evaluations; unset: the
    #: running averages of training
    bn_calibration: int = _optional()
    #: iterations between evaluations (the profile's eval_every; with budgets at most one epoch:
    #: aprbook.runs.finite_eval_every)
    eval_every: int

    PROFILE_KEYS: ClassVar[dict[str, str]] = {
        **_SYNTHETIC_LISTING,
        "per_class": "the training-set sizes (images per class), one run each",
        "cache_val": "keeps the prepared validation batches in memory (the same results, faster)",
        "eval_per_epoch": "with budgets: False evaluates every eval_every iterations whatever the set's size "
                          "(finite_primary); default True, at least once per epoch (the run's eval_every records it)",
    }
    LADDER_REPLACES: ClassVar[str | None] = "n_iterations"
    CHOICES: ClassVar[dict[str, tuple]] = {"network": ("APR_B", "Pix_B")}
    COUNTS: ClassVar[tuple[str, ...]] = ("per_class", "size", "batch_size", "n_iterations", "eval_per_class",
                                         "bn_calibration", "eval_every")


@dataclass(frozen=True, kw_only=True)
class NaturalRunConfig(RunConfig):
    """A run on natural images (thesis 4.2.4; Fig 4.9, Table 4.4): experiment natural_training
    (:func:`aprbook.runs.natural_runs`), on the stand-in patches or on a Dogs-vs-Cats folder."""

    #: 'pixels', 'pixels_expanded' or 'apr'
    network: str
    #: the APR's relative error threshold E (dimensionless; 'apr'), None for the pixel networks
    rel_error: float | None
    #: the images' side (px)
    size: int
    #: training images
    n_train: int
    #: validation images
    n_val: int
    #: length: passes over the training set
    n_epochs: int
    #: images per batch
    batch_size: int
    #: Adam's learning rate
    lr: float
    #: the seed of the data (the split, the stand-in's photographs and the augmentation)
    data_seed: int
    #: 'stand_in' (aprlib.data.natural.StandInPatches) or 'dogs_vs_cats' (a data folder)
    source: str

    PROFILE_KEYS: ClassVar[dict[str, str]] = {
        "seeds": "the seeds every run is trained with",
        "e_values": "the E of the APR runs, one run each",
    }
    CHOICES: ClassVar[dict[str, tuple]] = {"network": ("pixels", "pixels_expanded", "apr"),
                                           "source": ("stand_in", "dogs_vs_cats")}
    COUNTS: ClassVar[tuple[str, ...]] = ("size", "n_train", "n_val", "n_epochs", "batch_size")

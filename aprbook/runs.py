"""The training runs of thesis chapter 4, each stored on its own so that a profile can be computed
across sessions and processes:

- streamed synthetic data (Fig 4.3, 4.4, Table 4.2): ``results/streamed_training/<run>/<profile>/``
  (the first runs: a fixed number of batches) and ``results/streamed_converged/<run>/<profile>/``
  (standardised intensities, extended until converged: profiles ``streamed_converged``; notebook 05
  judges the thesis's claims on these);
- finite synthetic datasets (Fig 4.6): ``results/finite_datasets/<run>/<profile>/`` (a fixed budget)
  and ``results/finite_converged/<run>/<profile>/`` (staged budgets until the kept model lies in the
  first 80% of the budget: profiles ``finite_converged``);
- natural images (Fig 4.9, Table 4.4): ``results/natural_training/<run>/<profile>/`` (stand-in) or
  ``results/natural_training_dogs_vs_cats/<run>/<profile>/`` (the real data).

Command line: ``python -m aprbook.runs streamed|converged|finite|finite_converged|natural --profile book [RUN_ID ...]``
computes the runs of a profile (those named, in the order named, else all), as notebooks 05, 06
and 08 do; runs whose stored result is fresh are skipped, interrupted runs resume from checkpoints.
Ctrl-C or SIGTERM stops it with a message and exit status 128 + the signal's number: while a run
trains, after saving its checkpoint; otherwise (testing a kept model, storing) at once
(:func:`stop_outside_training`).

Checkpoints. A run's checkpoint belongs to one configuration: it is
``<checkpoint_dir>/<experiment>/<profile>/<run id>-<key>.ckpt``, where ``key``
(:func:`aprlib.train.checkpoint_key`) hashes the run's parameters as its result store records
them (the fields of its :mod:`aprbook.settings` configuration), the profile, the aprlib version and
:data:`aprlib.train.CHECKPOINT_FORMAT`, but not the fields that set the run's length
(:data:`aprbook.settings.LENGTH_FIELDS`: ``n_batches``, ``n_iterations`` or ``n_epochs``, a ladder
of ``budgets``, ``at_least``). The file stores that configuration
and the loop's settings, and is resumed only if they equal the requested ones: a run whose settings
changed (e.g. the learning rate) starts afresh. All three loops give the same first batches whatever
the budget, so a checkpoint within the new budget is resumed (an interrupted run continues; a
completed run is extended to a larger budget with the result a straight run of that budget gives;
a finite-dataset run only from an iteration on its evaluation grid, a multiple of ``eval_every``,
since a run evaluates at its last iteration too), and one beyond it is not (the run restarts, and
says why). A run in stages (``budgets``) continues at the budget its checkpoint lies in. A
checkpoint that cannot be read (truncated, corrupt, or holding anything but tensors and plain data:
checkpoints load with ``torch.load(weights_only=True)``) is moved aside to ``<name>.corrupt-<time>``
with a warning naming it, and the run restarts.

When a run completes (its tables and provenance are stored), its checkpoint is archived to
``<checkpoint_dir>/<experiment>/<profile>/done/<run id>-<key>.ckpt``, where nothing resumes it
blindly: only a later run of the same key within whose budget it lies resumes it (an extension, or
the same budget recomputed after its stored tables were found damaged). ``recompute=True`` deletes
the run's checkpoint and its archived one (and an unkeyed ``<run id>.ckpt`` of older aprlib
versions, which is never resumed) before training.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aprlib.train import (Checkpoint, InputSpec, TrainingStopped, batch_builder, checkpoint_key, evaluate_in_order,
                          train_epochs, train_fixed, train_streamed)

from .learning_curves import accuracy_ci
from .provenance import ResultStore, remove_orphan_temporaries
from .settings import LENGTH_FIELDS, FiniteRunConfig, NaturalRunConfig, StreamedRunConfig, checkpoint_params

__all__ = ["streamed_runs", "streamed_network", "run_streamed", "compute_streamed", "primary_runs", "primary_store", "primary_twin",
           "primary_metrics", "compute_primary", "finite_runs", "run_finite", "compute_finite",
           "accuracy_ci", "natural_runs", "natural_datasets", "run_natural", "compute_natural", "run_checkpoint",
           "staged_store", "stop_outside_training", "RunStopped", "CHECKPOINT_DIR"]

#: where runs checkpoint, relative to the repository's root: inside the repository, where an unfinished
#: run's checkpoint (a few MB) is committed so that a fresh clone resumes it (``.gitignore`` keeps the
#: archives of finished runs, ``done/``, and smoke runs out)
CHECKPOINT_DIR = "results/checkpoints"

STREAMED_NOTEBOOK = "notebooks/05_streamed_training.ipynb"
FINITE_NOTEBOOK = "notebooks/06_finite_datasets.ipynb"
NATURAL_NOTEBOOK = "notebooks/08_natural_networks.ipynb"


def _networks(family: str, variant: str, channels_last: bool = False, **kw):
    """The network of a run; ``channels_last`` (pixel networks only: a run's ``channels_last``) selects
    :class:`aprlib.models.PixelNet`'s faster layout."""
    from aprlib.models import apr_network, pixel_network
    if variant == "pixel":
        return pixel_network(family, channels_last=channels_last, **kw)
    return apr_network(family, variant, **kw)


def _layout(cfg: dict, variant: str) -> dict:
    """``{"channels_last": True}`` for a pixel run of a profile with ``pixel_channels_last`` (the
    layout is then one of the run's parameters, so it keys the run's store and checkpoint), else {}.
    Runs of profiles without it keep their parameters, and their stored results stay fresh."""
    return {"channels_last": True} if variant == "pixel" and cfg.get("pixel_channels_last") else {}


def run_checkpoint(store: ResultStore, checkpoint_dir, budget: str | None = None) -> Checkpoint:
    """The checkpoint of the run stored in ``store`` (experiment ``<experiment>/<run id>``): its
    configuration is the store's profile and parameters without the fields that set the run's length
    (:data:`aprbook.settings.LENGTH_FIELDS`: its budget, ladder or ``at_least``); see the module
    docstring. ``budget``, if given, must be one of those fields (it changes nothing)."""
    if budget is not None and budget not in LENGTH_FIELDS:
        raise ValueError(f"budget {budget!r} is not a field that sets a run's length {LENGTH_FIELDS}")
    experiment, rid = store.experiment.split("/", 1)
    config = {"profile": store.profile, "params": checkpoint_params(store.params)}
    where = Path(checkpoint_dir) / experiment / store.profile
    name = f"{rid}-{checkpoint_key(config)}.ckpt"
    return Checkpoint(where / name, config, archive=where / "done" / name)


def _compute(store: ResultStore, checkpoint_dir, recompute: bool, train) -> ResultStore:
    """Unless ``store`` is fresh: ``train(checkpoint)`` -> (tables {name: DataFrame}, seeds, extra
    provenance), saved into the store; then the run's checkpoint (:func:`run_checkpoint`) is archived.
    ``recompute`` deletes the run's checkpoints first."""
    if recompute or not store.fresh:
        store.start()
        ck = run_checkpoint(store, checkpoint_dir)
        legacy = ck.path.with_name(f"{store.experiment.split('/', 1)[1]}.ckpt")
        if recompute:
            for path in (ck.path, ck.archive, legacy):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        elif legacy.exists():
            print(f"{legacy}: a checkpoint of an older aprlib, which did not record its settings: not resumed "
                  f"(this run's checkpoint is {ck.path.name})", flush=True)
        if ck.path.parent.is_dir():
            remove_orphan_temporaries(ck.path.parent)
        tables, seeds, extra = train(ck)
        for name, df in tables.items():
            store.save_table(name, df)
        store.finish(seeds=seeds, extra={**extra, "torch_threads": torch.get_num_threads()})
        if ck.path.exists():  # completed: archived, to be resumed only by a run of the same key and a budget >= it
            ck.archive.parent.mkdir(parents=True, exist_ok=True)
            os.replace(ck.path, ck.archive)
    return store


# --- streamed data: thesis 4.1.3.2-4.1.3.3 --------------------------------------------------------
def streamed_runs(cfg: dict) -> list[dict]:
    """The streamed-data runs of Fig 4.3 / 4.4 and Table 4.2 for a profile's settings: one dict per
    (network, input, seed) with a stable ``id`` (``<network>_<input>_s<seed>``, e.g. ``APR_B_E0.4_s1``).

    Every run has the seeds ``cfg['seeds']``; ``cfg['extra_seeds']`` are added for each entry of
    ``cfg['extra_seeds_for']``: a network's name (its runs on the full input: E = 0.1, or pixels at
    full resolution), or a network and input as in the ids (``"APR_B_E0.4"``, ``"Pix_B_px128"``).
    ``cfg['extend_to']`` (run id -> batches, a budget of the ladder) gives a run ``at_least``: it is
    first checked for convergence there (a run extended to the budget of the runs it is compared with)."""
    size = cfg["size"]
    base = [("APR_A", "A", "full", 0.1, None), ("APR_A same", "A", "same", 0.1, None),
            ("APR_A close", "A", "close", 0.1, None), ("Pix_A", "A", "pixel", None, size),
            ("APR_B", "B", "full", 0.1, None), ("APR_B same", "B", "same", 0.1, None),
            ("APR_B close", "B", "close", 0.1, None), ("Pix_B", "B", "pixel", None, size),
            ("APR_B", "B", "full", 0.4, None), ("APR_B", "B", "full", 0.6, None), ("APR_B", "B", "full", 0.8, None),
            ("Pix_B", "B", "pixel", None, size // 2), ("Pix_B", "B", "pixel", None, size // 4)]
    runs = []
    extra_for = cfg.get("extra_seeds_for", [])
    for network, family, variant, e, res in base:
        seeds = list(cfg["seeds"])
        inp = f"E{e}" if e is not None else f"px{res}"
        prefix = f"{network.replace(' ', '_')}_{inp}"
        if (network in extra_for and e in (None, 0.1) and res in (None, size)) or prefix in extra_for:
            seeds += list(cfg.get("extra_seeds", []))
        for seed in seeds:
            rid = f"{prefix}_s{seed}"
            at_least = {"at_least": int(cfg["extend_to"][rid])} if rid in cfg.get("extend_to", {}) else {}
            runs.append({"id": rid, "network": network, "family": family,
                         "variant": variant, "rel_error": e, "resolution": res, "seed": seed,
                         **_layout(cfg, variant), **at_least})
    unknown = sorted(set(cfg.get("extend_to", {})) - {r["id"] for r in runs})
    if unknown:
        raise ValueError(f"extend_to names runs this profile does not have: {unknown}")
    return runs


def _budgets(cfg: dict) -> list[int]:
    """The budgets at which a streamed run is checked for convergence: ``cfg['budgets']`` (ending at
    ``cfg['n_batches']``), else the single budget ``cfg['n_batches']``."""
    budgets = [int(b) for b in cfg.get("budgets", [cfg["n_batches"]])]
    if not budgets or budgets != sorted(set(budgets)) or budgets[0] < 1 or budgets[-1] != cfg["n_batches"]:
        raise ValueError(f"budgets must increase from a positive number to n_batches = {cfg['n_batches']}, "
                         f"got {cfg.get('budgets')}")
    return budgets


def _first_stage(budgets: list[int], done: int) -> int:
    """Index of the budget at which a run in stages continues, its checkpoint having trained ``done``
    batches or iterations: the first budget >= ``done`` (a run that had passed a budget was checked
    there); 0 if ``done`` is past the last (that checkpoint is not resumed: the run restarts)."""
    return next((i for i, b in enumerate(budgets) if b >= done), 0)


def streamed_network(c: StreamedRunConfig) -> tuple:
    """(network, :class:`aprlib.train.InputSpec`) of a streamed run's configuration: the network
    initialised from the run's seed (``torch.manual_seed(c.seed)`` first) and how its images reach it."""
    torch.manual_seed(c.seed)
    model = _networks(c.family, c.variant, channels_last=c.channels_last is True)
    spec = (InputSpec("pixel", resolution=c.resolution, normalise=c.input_normalise) if c.variant == "pixel"
            else InputSpec("apr", rel_error=c.rel_error, normalise=c.input_normalise))
    return model, spec


def run_streamed(run: dict, cfg: dict, checkpoint=None, progress: bool = True, n_batches: int | None = None
                 ) -> pd.DataFrame:
    """Train one run of :func:`streamed_runs` (seeded initialisation and data stream) for
    ``n_batches`` (default ``cfg['n_batches']``) with the settings of its store's key
    (:class:`aprbook.settings.StreamedRunConfig`): intensities reach the network as the run's
    ``normalise`` says, else ``cfg['normalise']`` (:class:`aprlib.train.InputSpec`; default: as generated)."""
    from aprlib.data.synthetic import SyntheticShapesStream
    c = StreamedRunConfig.of(run, cfg)  # a sensitivity arm's own normalisation wins
    model, spec = streamed_network(c)
    stream = SyntheticShapesStream(seed=1000 + c.seed, size=(c.size, c.size))
    return train_streamed(model, stream, spec, n_batches or cfg["n_batches"], c.batch_size, c.lr,
                          checkpoint=checkpoint, progress=progress, desc=c.id)


def staged_store(make, params: dict, stages, trained: str, stopped: str) -> ResultStore:
    """The result store of a run in stages (``params['budgets']``: a ladder of budgets), built by
    ``make(params)``; ``stages(ladder)`` gives a ladder's budgets as the run trains them.

    A run stops at the first budget at which it is done (its plateau test passed, or trained out) or at the last;
    its store records the ladder it ran under. A stored run that stopped early, at budget k of its
    ladder, is the run any ladder with the same first k budgets gives (every check up to that
    budget is the same): its store, under the ladder it recorded, is returned for such a ladder, so
    lengthening the ladder leaves it fresh. The provenance names the budget it stopped at
    (``trained``: iterations or batches) and whether it stopped early (``stopped``). Otherwise (no
    such stored run, or one that spent its whole ladder: a longer ladder extends it from its
    archived checkpoint) the store under ``params`` is returned. Only an earlier ladder's store has its
    files checked here (it is returned only if fresh); the caller checks the others'."""
    store = make(params)
    prov = store.provenance() or {}
    if "budgets" not in params or prov.get("params_hash") == store.key:
        return store
    old = prov.get("params") or {}
    ladder = old.get("budgets")
    if (not prov.get(stopped) or not isinstance(ladder, list)
            or {k: v for k, v in old.items() if k != "budgets"} != {k: v for k, v in params.items() if k != "budgets"}):
        return store
    ran, want = stages(ladder), stages(params["budgets"])
    k = ran.index(prov.get(trained)) + 1 if prov.get(trained) in ran else None
    if k is None or ran[:k] != want[:k]:
        return store
    earlier = make({**params, "budgets": ladder})
    return earlier if earlier.fresh else store


def streamed_store(run: dict, cfg: dict, profile: str, results_dir) -> ResultStore:
    """The result store of one streamed run (with ``cfg['budgets']``, they stand for ``n_batches``,
    and a run stored as plateaued under a shorter ladder of the same first budgets stays fresh:
    :func:`staged_store`)."""
    params = StreamedRunConfig.of(run, cfg).params()
    experiment = cfg.get("experiment", "streamed_training")
    return staged_store(lambda p: ResultStore(results_dir, f"{experiment}/{run['id']}", profile, p,
                                              notebook=STREAMED_NOTEBOOK),
                        params, lambda ladder: [int(b) for b in ladder], "batches_trained", "plateaued")


def compute_streamed(run: dict, cfg: dict, profile: str, results_dir, checkpoint_dir, recompute: bool = False,
                     progress: bool = True) -> ResultStore:
    """Train ``run`` unless its stored result is fresh; returns the run's store (table 'metrics').

    With ``cfg['budgets']`` (e.g. 3000, 6000, 9000 batches) the run trains to the first budget, and
    is extended to the next (resuming its checkpoint) until it passes the plateau test
    (:func:`aprbook.learning_curves.plateaued`) or the last budget is spent; the provenance records
    ``plateaued``, the test's numbers (``plateau_test``) and the batches trained. (A pass is not
    convergence: runs passed at 3000 batches went on improving; :mod:`aprbook.plan` judges every run
    at 3000 batches.) A run interrupted after its first budget
    continues at the budget its checkpoint lies in (:func:`_first_stage`), not from scratch. A run
    with ``at_least`` skips the budgets below it (its archived checkpoint, which leaves ``at_least``
    out of its key, is extended)."""
    from .learning_curves import plateaued
    budgets = _budgets(cfg)
    if run.get("at_least") is not None:  # extended to the budget of the runs it is compared with
        if run["at_least"] not in budgets:
            raise ValueError(f"{run['id']}: at_least {run['at_least']} is not a budget of {budgets}")
        budgets = [b for b in budgets if b >= run["at_least"]]

    def train(ckpt):
        first = _first_stage(budgets, ckpt.saved_progress("next_batch"))
        for budget in budgets[first:]:
            metrics = run_streamed(run, cfg, checkpoint=ckpt, progress=progress, n_batches=budget)
            ok, info = plateaued(metrics)
            if ok:
                break
        # budgets passed before this session were checked then; checked again here (their rows are
        # this run's first rows), a run that passed at one is the prefix of its rows up to it
        for budget in budgets[:first]:
            ok_b, info_b = plateaued(metrics.iloc[:budget])
            if ok_b:
                metrics, ok, info = metrics.iloc[:budget].copy(), ok_b, info_b
                break
        # wall_time_s covers only the last (resumed) session; compute_s sums every batch's wait + step.
        return ({"metrics": metrics}, {"init": run["seed"], "stream": 1000 + run["seed"]},
                {"compute_s": round(float(metrics.step_s.sum() + metrics.wait_s.sum()), 1),
                 "batches_trained": len(metrics), "plateaued": ok, "plateau_test": info["reason"]})

    # the checkpoint's key leaves out the budget(s): a run extends its own checkpoint
    return _compute(streamed_store(run, cfg, profile, results_dir), checkpoint_dir, recompute, train)


# --- the thesis's protocol: 3000 batches, no ladder (issue 39) ------------------------------------
def primary_runs(cfg: dict) -> list[dict]:
    """The runs of the thesis's protocol (profiles ``streamed_primary``): every network and input of
    :func:`streamed_runs` with the seeds ``cfg['seeds']`` (no ladder, no ``extend_to``), then the
    sensitivity arms: for each normalisation of ``cfg['sensitivity']['normalise']`` (None: as
    generated) the full-input runs of its ``networks`` again, with ``normalise`` in the run and ids
    ``norm_<none|image>__<id>`` (e.g. ``norm_none__APR_B_E0.1_s2``)."""
    from .streamed_claims import figure_runs
    base = streamed_runs({k: v for k, v in cfg.items() if k not in ("extend_to", "extra_seeds_for")})
    arms = []
    sens = cfg.get("sensitivity") or {}
    for norm in sens.get("normalise", []):
        if norm == cfg.get("normalise"):
            raise ValueError(f"sensitivity arm normalise={norm!r} is the profile's own setting")
        arms += [{**r, "id": f"norm_{norm or 'none'}__{r['id']}", "normalise": norm}
                 for r in figure_runs(base, cfg["size"]) if r["network"] in sens.get("networks", [])]
    return base + arms


def _primary_params(run: dict, cfg: dict) -> dict:
    """A primary run's parameters as its store records them (:class:`aprbook.settings.StreamedRunConfig`):
    the run's own (its ``normalise`` too, for a sensitivity arm) and the profile's size, batch size,
    length, learning rate and normalisation."""
    return StreamedRunConfig.of(run, cfg).params()


def primary_twin(run: dict, cfg: dict, profile: str, results_dir) -> ResultStore | None:
    """The stored run of experiment ``cfg['twin']`` (e.g. streamed_converged) whose first
    ``cfg['n_batches']`` rows are ``run``: the same id and, but for their lengths
    (:data:`aprbook.settings.LENGTH_FIELDS`), the same parameters, fresh and trained at least that long;
    else None."""
    if not cfg.get("twin") or "normalise" in run:
        return None
    from .profiles import profile_settings
    twin_cfg = profile_settings(cfg["twin"], profile)
    twin = next((r for r in streamed_runs(twin_cfg) if r["id"] == run["id"]), None)
    if twin is None:
        return None
    store = streamed_store(twin, twin_cfg, profile, results_dir)
    # the same parameters but for the length: what a checkpoint's key compares
    if checkpoint_params(store.params) != checkpoint_params(_primary_params(run, cfg)) or not store.fresh:
        return None
    return store if (store.provenance() or {}).get("batches_trained", 0) >= cfg["n_batches"] else None


def primary_store(run: dict, cfg: dict, profile: str, results_dir) -> ResultStore:
    """The store a primary run is read from: its twin's (:func:`primary_twin`) where there is one,
    else its own, ``results/streamed_primary/<run>/<profile>/``. Read its metrics with
    :func:`primary_metrics` (a twin holds more rows than the protocol's)."""
    twin = primary_twin(run, cfg, profile, results_dir)
    if twin is not None:
        return twin
    return ResultStore(results_dir, f"{cfg.get('experiment', 'streamed_primary')}/{run['id']}", profile,
                       _primary_params(run, cfg), notebook=STREAMED_NOTEBOOK)


def primary_metrics(store: ResultStore, cfg: dict) -> pd.DataFrame:
    """The first ``cfg['n_batches']`` rows of a primary run's metrics (all of them for its own store)."""
    return store.load_table("metrics").iloc[:cfg["n_batches"]].reset_index(drop=True)


def compute_primary(run: dict, cfg: dict, profile: str, results_dir, checkpoint_dir, recompute: bool = False,
                    progress: bool = True) -> ResultStore:
    """Train ``run`` for ``cfg['n_batches']`` batches unless it or its twin is stored; returns the store
    it is read from (:func:`primary_store`). No convergence test: the provenance records the batches
    trained and the compute time only."""
    store = primary_store(run, cfg, profile, results_dir)
    if store.experiment.split("/", 1)[0] != cfg.get("experiment", "streamed_primary"):
        return store  # the twin: trained longer under another experiment, never retrained from here

    def train(ckpt):
        metrics = run_streamed(run, cfg, checkpoint=ckpt, progress=progress)
        return ({"metrics": metrics}, {"init": run["seed"], "stream": 1000 + run["seed"]},
                {"compute_s": round(float(metrics.step_s.sum() + metrics.wait_s.sum()), 1),
                 "batches_trained": len(metrics)})

    return _compute(store, checkpoint_dir, recompute, train)


# --- finite datasets: thesis 4.1.3.4 --------------------------------------------------------------
def finite_runs(cfg: dict) -> list[dict]:
    """The Fig 4.6 runs: APR_B and Pix_B (with the thesis's dropout and weight decay) on each
    nested training-set size (images per class), for each seed (``cfg['seeds']``, plus
    ``cfg['extra_seeds']`` at the sizes in ``cfg['extra_seeds_for']``)."""
    runs = []
    for n in cfg["per_class"]:
        seeds = list(cfg["seeds"]) + (list(cfg.get("extra_seeds", [])) if n in cfg.get("extra_seeds_for", []) else [])
        runs += [{"id": f"{net}_n{n}_s{seed}", "network": net, "per_class": n, "seed": seed,
                  **_layout(cfg, "pixel" if net.startswith("Pix") else "full")}
                 for seed in seeds for net in ("APR_B", "Pix_B")]
    seed_order = {s: i for i, s in enumerate(dict.fromkeys(r["seed"] for r in runs))}
    return sorted(runs, key=lambda r: seed_order[r["seed"]])  # seed 1 of every size first, as before


def finite_eval_every(cfg: dict, per_class: int) -> int:
    """Iterations between evaluations of a run on ``per_class`` images per class: ``cfg['eval_every']``,
    or with ``cfg['budgets']`` (staged runs) at most the iterations of one epoch, so that the small
    sets are evaluated at least once per epoch, unless ``cfg['eval_per_epoch']`` is False
    (finite_primary: every ``eval_every`` iterations whatever the set's size, so that evaluation stays
    a bounded share of a run's compute)."""
    from aprlib.data.synthetic import NUM_CLASSES
    if "budgets" not in cfg or not cfg.get("eval_per_epoch", True):
        return int(cfg["eval_every"])
    return max(1, min(int(cfg["eval_every"]), NUM_CLASSES * per_class // cfg["batch_size"]))


def finite_budgets(cfg: dict, per_class: int) -> list[int]:
    """The iteration budgets of a run, staged (``cfg['budgets']``, each rounded up to a multiple of
    the run's evaluation interval so that a run extends its own checkpoint) or ``[n_iterations]``."""
    if "budgets" not in cfg:
        return [int(cfg["n_iterations"])]
    e = finite_eval_every(cfg, per_class)
    budgets = sorted({-(-int(b) // e) * e for b in cfg["budgets"]})
    if budgets[0] < 1:
        raise ValueError(f"budgets must be positive, got {cfg['budgets']}")
    return budgets


def finite_datasets(cfg: dict) -> dict:
    """Training (largest size; smaller sets are its prefixes), validation, test and the shifted
    ("more extreme") test set of Fig 4.6, each balanced over the six classes."""
    from aprlib.data.synthetic import NUM_CLASSES, GeneratorParams, SyntheticShapes
    size, seed = (cfg["size"], cfg["size"]), cfg["data_seed"]
    return {"train": SyntheticShapes(NUM_CLASSES * max(cfg["per_class"]), seed, size),
            "val": SyntheticShapes(NUM_CLASSES * cfg["eval_per_class"], seed + 1, size),
            "test": SyntheticShapes(NUM_CLASSES * cfg["eval_per_class"], seed + 2, size),
            "test_extreme": SyntheticShapes(NUM_CLASSES * cfg["eval_per_class"], seed + 3, size,
                                            params=GeneratorParams.extreme())}


class _Prefix:
    """The first ``n`` items of a dataset with an ``image(i)`` method (nested training sets)."""

    def __init__(self, dataset, n: int):
        if n > len(dataset):
            raise ValueError(f"prefix of {n} items from a dataset of {len(dataset)}")
        self.dataset, self.n = dataset, n

    def __len__(self):
        return self.n

    def image(self, i: int):
        return self.dataset.image(i)


def _best_iteration(metrics: pd.DataFrame, budget: int | None = None) -> int:
    """The iteration of the model a finite-data run keeps: the first minimum of the validation loss
    over its evaluations (``metrics`` rows; with ``budget``, those of a run of that many iterations)."""
    m = metrics if budget is None else metrics[metrics.iteration <= budget]
    return int(m.iteration.iloc[int(np.argmin(m.val_loss.to_numpy()))])


def _finite_config(run: dict, cfg: dict) -> FiniteRunConfig:
    """The settings of a run of :func:`finite_runs` that key its store and checkpoint."""
    return FiniteRunConfig.of(run, cfg, eval_every=finite_eval_every(cfg, run["per_class"]))


def finite_network(run: dict, cfg: dict):
    """(network, InputSpec) of a run of :func:`finite_runs`: APR_B or Pix_B with the profile's dropout,
    on APRs at ``cfg['rel_error']`` or on pixels; initialised from the torch RNG as it stands."""
    c = _finite_config(run, cfg)
    variant = "pixel" if c.network.startswith("Pix") else "full"
    model = _networks("B", variant, channels_last=c.channels_last is True, spatial_dropout=c.spatial_dropout,
                      dropout=c.dropout)
    spec = (InputSpec("pixel", normalise=c.input_normalise) if variant == "pixel"
            else InputSpec("apr", rel_error=c.rel_error, normalise=c.input_normalise))
    return model, spec


def _train_finite(run: dict, cfg: dict, checkpoint, progress: bool, n_iterations: int | None) -> tuple:
    """Train one run of :func:`finite_runs` for ``n_iterations`` (default ``cfg['n_iterations']``);
    returns (metrics per evaluation, the kept state, the network, its InputSpec, the datasets)."""
    from aprlib.data.synthetic import NUM_CLASSES
    torch.manual_seed(run["seed"])
    model, spec = finite_network(run, cfg)
    data = finite_datasets(cfg)
    train = _Prefix(data["train"], NUM_CLASSES * run["per_class"])
    metrics, best = train_fixed(model, train, data["val"], spec, n_iterations or cfg["n_iterations"],
                                cfg["batch_size"], cfg["lr"], weight_decay=cfg["weight_decay"],
                                eval_every=finite_eval_every(cfg, run["per_class"]), seed=run["seed"],
                                checkpoint=checkpoint, progress=progress, desc=run["id"],
                                cache_val=cfg.get("cache_val", False), bn_calibration=cfg.get("bn_calibration"))
    return metrics, best, model, spec, data


def _test_finite(metrics: pd.DataFrame, best: dict, model, spec, data: dict, cfg: dict) -> tuple[pd.DataFrame, ...]:
    """Load the kept state ``best`` into ``model`` and test it on both test sets: (test results with
    Wilson 95% CIs, confusion counts: one row per test set, true class and predicted class)."""
    from aprlib.data.synthetic import CLASS_NAMES
    model.load_state_dict(best)
    builder = batch_builder(spec, model)
    rows, confusion = [], []
    best_it = _best_iteration(metrics)
    for name in ("test", "test_extreme"):
        t0 = time.perf_counter()
        res = evaluate_in_order(model, data[name], builder, cfg["batch_size"])
        correct = round(res["accuracy"] * res["n"])
        lo, hi = accuracy_ci(correct, res["n"])
        rows.append({"test_set": name, "accuracy": res["accuracy"], "ci_low": lo, "ci_high": hi, "n": res["n"],
                     "loss": res["loss"], "best_iteration": best_it, "test_s": time.perf_counter() - t0})
        confusion += [{"test_set": name, "true": CLASS_NAMES[t], "predicted": CLASS_NAMES[p], "count": int(c)}
                      for (t, p), c in np.ndenumerate(res["confusion"])]
    return pd.DataFrame(rows), pd.DataFrame(confusion)


def run_finite(run: dict, cfg: dict, checkpoint=None, progress: bool = True, n_iterations: int | None = None
               ) -> tuple[pd.DataFrame, ...]:
    """Train one run of :func:`finite_runs` for ``n_iterations`` (default ``cfg['n_iterations']``),
    select the minimum-validation-loss model and test it on both test sets. Returns (metrics per
    evaluation, test results with Wilson 95% CIs, confusion counts: one row per test set, true
    class and predicted class)."""
    trained = _train_finite(run, cfg, checkpoint, progress, n_iterations)
    return trained[0], *_test_finite(*trained, cfg)


def finite_store(run: dict, cfg: dict, profile: str, results_dir) -> ResultStore:
    """The result store of one finite-dataset run (with ``cfg['budgets']``, they stand for
    ``n_iterations``, and a run stored as trained out under a shorter ladder of the same first
    budgets stays fresh: :func:`staged_store`; the run's evaluation interval is recorded as
    ``eval_every``)."""
    params = _finite_config(run, cfg).params()
    experiment = cfg.get("experiment", "finite_datasets")
    return staged_store(lambda p: ResultStore(results_dir, f"{experiment}/{run['id']}", profile, p,
                                              notebook=FINITE_NOTEBOOK),
                        params, lambda ladder: finite_budgets({**cfg, "budgets": ladder}, run["per_class"]),
                        "iterations_trained", "kept_early")


def compute_finite(run: dict, cfg: dict, profile: str, results_dir, checkpoint_dir, recompute: bool = False,
                   progress: bool = True) -> ResultStore:
    """Train and test ``run`` unless its stored result is fresh; tables 'metrics', 'test' and 'confusion'.

    With ``cfg['budgets']`` the run trains to the first budget (:func:`finite_budgets`) and is
    extended to the next (resuming its checkpoint) until its kept model lies in the first 80% of the
    budget (:func:`aprbook.learning_curves.kept_early`) or the last budget is spent; the provenance
    records ``kept_early``, the iterations trained and the best iteration. A run interrupted after
    its first budget continues at the budget its checkpoint lies in (:func:`_first_stage`)."""
    from .learning_curves import kept_early

    budgets = finite_budgets(cfg, run["per_class"])

    def stages(ckpt, first):
        # the kept model is tested only at the budget the run stops at (trained out, or the last)
        for budget in budgets[first:]:
            trained = _train_finite(run, cfg, ckpt, progress, budget)
            metrics = trained[0]
            best_it = _best_iteration(metrics)
            early = kept_early(best_it, budget)
            if early:
                break
        return (metrics, *_test_finite(*trained, cfg), budget, best_it, early)

    def train(ckpt):
        first = _first_stage(budgets, ckpt.saved_progress("next_iteration"))
        metrics, test, confusion, budget, best_it, early = stages(ckpt, first)
        # budgets passed before this session were checked then; checked again here (the evaluations
        # up to a budget are this run's first rows): if the run should have stopped at one, its kept
        # model and tests are those of that budget, which only a run from the start gives back
        if any(kept_early(_best_iteration(metrics, b), b) for b in budgets[:first]):
            print(f"{run['id']}: its checkpoint is past a budget at which the run stops; the run restarts",
                  flush=True)
            metrics, test, confusion, budget, best_it, early = stages(ckpt, 0)
        # wall_time_s covers only the last (resumed) session; compute_s sums training and validation
        # over every session (metrics.wall_s) and the testing (of the last budget)
        extra = {"compute_s": round(float(metrics.wall_s.sum() + test.test_s.sum()), 1),
                 "iterations_trained": int(budget), "best_iteration": best_it, "kept_early": early}
        return ({"metrics": metrics, "test": test, "confusion": confusion},
                {"init_and_order": run["seed"], "data": cfg["data_seed"]}, extra)

    return _compute(finite_store(run, cfg, profile, results_dir), checkpoint_dir, recompute, train)


# --- natural images: thesis 4.2.4 -----------------------------------------------------------------
def natural_runs(cfg: dict) -> list[dict]:
    """The Fig 4.9 / Table 4.4 runs: the pixel network, the expanded pixel network and the APRNet
    (RGB + level channel) at each E of Table 4.4, for each seed."""
    runs = []
    for seed in cfg["seeds"]:
        runs += [{"id": f"{net}_s{seed}", "network": net, "rel_error": None, "seed": seed}
                 for net in ("pixels", "pixels_expanded")]
        runs += [{"id": f"apr_E{e}_s{seed}", "network": "apr", "rel_error": e, "seed": seed} for e in cfg["e_values"]]
    return runs


def natural_datasets(cfg: dict, data_dir=None) -> tuple:
    """(train, validation) sets: the Dogs-vs-Cats folder split ``n_train`` / ``n_val`` (thesis
    24000 / 1000) when ``data_dir`` is given, else the stand-in patches (train and validation from
    disjoint parts of each photograph). Training items are augmented per epoch."""
    from aprlib.data.natural import ImageFiles, StandInPatches, dogs_vs_cats_files, split_files
    if data_dir:
        files = dogs_vs_cats_files(data_dir)
        train, val = split_files(files, n_val=cfg["n_val"], seed=cfg["data_seed"])
        if cfg["n_train"] < len(train):
            keep = np.random.default_rng(cfg["data_seed"] + 1).choice(len(train), cfg["n_train"], replace=False)
            train = [train[i] for i in sorted(keep)]
        return (ImageFiles(train, cfg["size"], seed=cfg["data_seed"]), ImageFiles(val, cfg["size"]))
    train = StandInPatches(cfg["n_train"], "train", seed=cfg["data_seed"], size=cfg["size"])
    return train, StandInPatches(cfg["n_val"], "val", seed=cfg["data_seed"], size=cfg["size"], _photos=train.photos)


def run_natural(run: dict, cfg: dict, data_dir=None, checkpoint=None, progress: bool = True) -> pd.DataFrame:
    """Train one run of :func:`natural_runs`; returns one row per epoch (validation accuracy: Fig 4.9)."""
    from aprlib.models import apr_network, pixel_network
    train, val = natural_datasets(cfg, data_dir)
    n_classes = 2 if data_dir else train.n_classes
    torch.manual_seed(run["seed"])
    if run["network"] == "apr":
        model, spec = apr_network("apr", n_classes=n_classes), InputSpec("apr", rel_error=run["rel_error"])
    else:
        model, spec = pixel_network(run["network"], n_classes=n_classes), InputSpec("pixel")
    return train_epochs(model, train, val, spec, cfg["n_epochs"], cfg["batch_size"], cfg["lr"], seed=run["seed"],
                        checkpoint=checkpoint, progress=progress, desc=run["id"])


def natural_store(run: dict, cfg: dict, profile: str, results_dir, data_dir=None) -> ResultStore:
    """The result store of one natural-image run (stand-in and real data are kept apart)."""
    experiment = "natural_training_dogs_vs_cats" if data_dir else "natural_training"
    params = NaturalRunConfig.of(run, cfg, source="dogs_vs_cats" if data_dir else "stand_in").params()
    return ResultStore(results_dir, f"{experiment}/{run['id']}", profile, params, notebook=NATURAL_NOTEBOOK)


def compute_natural(run: dict, cfg: dict, profile: str, results_dir, checkpoint_dir, recompute: bool = False,
                    progress: bool = True, data_dir=None) -> ResultStore:
    """Train ``run`` unless its stored result is fresh; table 'metrics' (one row per epoch)."""
    def train(ckpt):
        metrics = run_natural(run, cfg, data_dir, checkpoint=ckpt, progress=progress)
        return ({"metrics": metrics}, {"init_and_order": run["seed"], "data": cfg["data_seed"]},
                {"compute_s": round(float(metrics.epoch_s.sum()), 1)})

    return _compute(natural_store(run, cfg, profile, results_dir, data_dir), checkpoint_dir, recompute, train)


# The command line's experiments: (profile name, run list, compute, result store) of each.
EXPERIMENTS = {"streamed": ("streamed_training", streamed_runs, compute_streamed, streamed_store),
               "converged": ("streamed_converged", streamed_runs, compute_streamed, streamed_store),
               "primary": ("streamed_primary", primary_runs, compute_primary, primary_store),
               "finite": ("finite_datasets", finite_runs, compute_finite, finite_store),
               "finite_converged": ("finite_converged", finite_runs, compute_finite, finite_store),
               "finite_primary": ("finite_primary", finite_runs, compute_finite, finite_store),
               "natural": ("natural_training", natural_runs, compute_natural, natural_store)}


@dataclass
class StoredRuns:
    """The runs of one experiment's profile that a notebook renders (:func:`load_runs`).

    ``cfg``: the profile's settings; ``runs``: every run of the profile (run dicts, in order);
    ``stores``: run id -> result store of each run loaded (stored and fresh, or just trained);
    ``missing``: ids of the runs neither stored nor trained."""
    cfg: dict
    runs: list
    stores: dict
    missing: list

    @property
    def loaded(self) -> list:
        """The run dicts of the runs loaded, in the profile's order."""
        return [r for r in self.runs if r["id"] in self.stores]

    def tables(self, name: str) -> dict:
        """Run id -> the run's table ``name`` (e.g. 'metrics', 'test'), for every run loaded."""
        return {rid: store.load_table(name) for rid, store in self.stores.items()}

    def provenances(self) -> dict:
        """Run id -> the run's provenance, for every run loaded."""
        return {rid: store.provenance() for rid, store in self.stores.items()}


def load_runs(experiment: str, profile: str, results_dir, checkpoint_dir, train_missing: bool = False,
              recompute: bool = False, cfg: dict | None = None, **extra) -> StoredRuns:
    """The runs of ``experiment`` (a key of :data:`EXPERIMENTS`: 'streamed', 'converged', 'finite',
    'finite_converged', 'natural') at ``profile``: each stored run whose stored result is fresh is
    loaded (its files checked once); the others are trained (resuming their checkpoints) if
    ``train_missing``, else listed as missing; with ``recompute`` every run is trained afresh.
    ``cfg``: the profile's settings (default: ``profile_settings`` of the experiment); ``extra``:
    passed to the experiment's store and compute functions (``data_dir`` for 'natural')."""
    from .profiles import profile_settings
    if experiment not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {sorted(EXPERIMENTS)}, got {experiment!r}")
    name, list_runs, compute, make_store = EXPERIMENTS[experiment]
    cfg = profile_settings(name, profile) if cfg is None else cfg
    runs = list_runs(cfg)
    stores, missing = {}, []
    for run in runs:
        store = make_store(run, cfg, profile, results_dir, **extra)
        if not recompute and store.fresh:
            stores[run["id"]] = store
        elif train_missing or recompute:
            stores[run["id"]] = compute(run, cfg, profile, results_dir, checkpoint_dir, recompute, **extra)
        else:
            missing.append(run["id"])
    return StoredRuns(cfg, runs, stores, missing)


class RunStopped(Exception):
    """A SIGINT or SIGTERM that reached ``python -m aprbook.runs`` outside a training loop (while a
    run tests its kept model, or stores its result): ``signal``, the signal's name."""

    def __init__(self, signum: int):
        self.signal = signal.Signals(signum).name
        super().__init__(f"{self.signal} outside training: stopped; its checkpoint holds the training done "
                         f"(a store counts only once its provenance is written); run it again to resume")


@contextlib.contextmanager
def stop_outside_training():
    """SIGINT and SIGTERM raise :class:`RunStopped` at once while this is active, except inside a
    training loop with a checkpoint, which installs its own handler (it saves first) and restores
    this one after. Without it a SIGTERM between a run's budgets killed the process silently. The
    previous handlers are restored on leaving; main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, _frame):
        raise RunStopped(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def main(argv=None) -> None:
    import argparse
    from .profiles import check_options, profile_settings
    ap = argparse.ArgumentParser(prog="python -m aprbook.runs", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", choices=list(EXPERIMENTS),
                    help="converged: the streamed runs trained to convergence (profiles 'streamed_converged'); "
                         "finite_converged: Fig 4.6 with staged budgets (profiles 'finite_converged')")
    ap.add_argument("--data-dir", default=None, help="natural: the Dogs-vs-Cats training folder (default: stand-in)")
    ap.add_argument("--profile", default="book", choices=["smoke", "book", "paper"])
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR,
                    help="where unfinished runs checkpoint (default %(default)s: committed, so a fresh clone resumes them)")
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("runs", nargs="*", help="run ids (default: every run of the profile)")
    args = ap.parse_intermixed_args(argv)
    # a data folder must exist; results and checkpoints go to directories (created if absent)
    check_options(ap, profile=args.profile, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
                  data_dir=args.data_dir)
    if args.data_dir is not None and args.experiment != "natural":
        ap.error(f"--data-dir is for the natural-image runs only, not {args.experiment}")
    name, list_runs, compute, _ = EXPERIMENTS[args.experiment]
    extra = {"data_dir": args.data_dir} if args.experiment == "natural" else {}
    cfg = profile_settings(name, args.profile)
    runs = {r["id"]: r for r in list_runs(cfg)}
    unknown = [r for r in args.runs if r not in runs]
    if unknown:
        ap.error(f"unknown run ids {unknown}; this profile has {sorted(runs)}")
    for rid in args.runs or list(runs):
        try:
            with stop_outside_training():
                store = compute(runs[rid], cfg, args.profile, args.results_dir, args.checkpoint_dir,
                                args.recompute, **extra)
        except (TrainingStopped, RunStopped) as e:  # Ctrl-C or SIGTERM: the checkpoint is saved, the runs
            print(f"{rid}: {e}", file=sys.stderr, flush=True)  # after it are not started
            raise SystemExit(128 + signal.Signals[e.signal].value) from None
        print(f"{rid}: {store.dir}", flush=True)
        if args.experiment == "primary":  # its network at the budget, in evaluation mode on held-out images
            from .heldout import compute_heldout, heldout_settings
            held, status = compute_heldout(runs[rid], cfg, heldout_settings(args.profile), args.profile,
                                           args.results_dir, args.checkpoint_dir)
            print(f"{rid}: held-out test {status if held is None else 'in ' + str(held.dir)}", flush=True)


if __name__ == "__main__":
    main()

"""Stored, resumable runs of the segmentation chapter (:mod:`aprbook.segmentation`), so that a profile
can be computed across sessions and processes, as :mod:`aprbook.runs` does for the thesis's runs.

Training runs: one per (``ndim``, E ``rel_error``, seed ``s``), id ``seg{ndim}d_E{rel_error}_s{s}``
(e.g. ``seg2d_E0.1_s1``, :func:`run_id`): the profile's ``train_2d`` / ``train_3d``
(:func:`aprbook.segmentation.config_from_profile`) at that E, with weights seed ``s`` and data seed
``s`` (``seed`` and ``data_seed`` of :class:`aprbook.segmentation.SegmentationConfig`:
:func:`run_config`). Each is trained by :func:`aprbook.segmentation.train_pair` and scored on StarDist's
sample (:func:`aprbook.segmentation.evaluate_stardist`), then stored in
``results/segmentation/<run id>/<profile>/`` (:class:`aprbook.provenance.ResultStore`, parameters
:meth:`SegmentationConfig.params`) with the tables ``curve`` (train_pair's curve), ``summary`` (one row:
the run's keys, the summary's numbers and the settings as ``cfg_<field>`` columns, :func:`summary_table`)
and ``stardist`` (one row per network, :func:`stardist_table`). A run whose store is fresh is skipped
(unless ``recompute``).

Checkpoints, as :mod:`aprbook.runs` keeps them (:func:`aprbook.runs.run_checkpoint`): a run checkpoints
to ``results/checkpoints/segmentation/<profile>/<run id>-<key>.ckpt`` every ``checkpoint_every`` steps
(the profile's setting), after its last step and when stopped by SIGINT / SIGTERM between steps; the
key (:func:`aprlib.train.checkpoint_key`) hashes the profile and the run's settings without its length
(``n_steps``, one of :data:`aprbook.settings.LENGTH_FIELDS`), so a run of other settings never resumes
it and a longer run of the same settings extends it. A resumed run gives the losses and Dice of an
uninterrupted one. An unreadable checkpoint is moved aside (``<name>.corrupt-<time>``, with a warning)
and the run restarts. Once the run's tables and provenance are stored the checkpoint is archived to
``.../done/`` (``recompute`` deletes both first).

Cost runs: :func:`aprbook.segmentation.step_cost_vs_size` with the profile's ``cost_2d`` / ``cost_3d``
arguments, stored in ``results/segmentation/cost_{ndim}d/<profile>/`` (table ``cost``).

Notebook loaders: :func:`load_runs` (every stored training run of a profile) and :func:`load_cost`.

Command line (``python -m aprbook.segmentation`` delegates to :func:`main`)::

    python -m aprbook.segmentation train --profile book --ndim 2 --seeds 1 2 3 [--rel-error 0.1 0.2 ...]
        [--results-dir results] [--checkpoint-dir results/checkpoints] [--recompute]
    python -m aprbook.segmentation cost --profile book --ndim 2 3 [--results-dir results] [--recompute]

runs one after another in the order given (ndim, then E, then seed); without ``--seeds`` /
``--rel-error`` the profile's ``seeds`` and its training E, without ``--ndim`` 2 and 3. Ctrl-C or
SIGTERM stops it with a message and exit status 128 + the signal's number (while a run trains, after
saving its checkpoint).
"""
from __future__ import annotations

import json
import math
import re
import signal
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .provenance import ResultStore
from .runs import CHECKPOINT_DIR, RunStopped, _compute, stop_outside_training
from .segmentation import SegmentationConfig, config_from_profile, evaluate_stardist, step_cost_vs_size, train_pair

__all__ = ["EXPERIMENT", "NOTEBOOK", "run_id", "parse_run_id", "run_config", "run_store", "summary_table",
           "stardist_table", "compute_run", "planned_runs", "run_planned", "cost_store", "compute_cost", "load_runs", "load_cost", "stored_provenances", "load_canvas_cost", "CANVAS_COST", "main"]

#: the experiment under ``results/`` (and ``results/checkpoints/``) of every segmentation store
EXPERIMENT = "segmentation"
NOTEBOOK = "notebooks/12_segmentation.ipynb"

_RUN_ID = re.compile(r"seg([23])d_E([0-9][0-9.e+-]*)_s([0-9]+)")
_KEYS = ["run", "ndim", "rel_error", "seed"]


# --- training runs --------------------------------------------------------------------------------------
def run_id(ndim: int, rel_error: float, seed: int) -> str:
    """``seg{ndim}d_E{rel_error}_s{seed}``, E as a Python float prints it (``seg2d_E0.1_s1``)."""
    return f"seg{int(ndim)}d_E{float(rel_error)}_s{int(seed)}"


def parse_run_id(rid: str) -> tuple[int, float, int]:
    """(ndim, rel_error, seed) of a run id of :func:`run_id`; ValueError for anything else (also for a
    spelling :func:`run_id` does not write, e.g. ``E0.10``)."""
    m = _RUN_ID.fullmatch(str(rid))
    if m is None:
        raise ValueError(f"{rid!r} is not a segmentation run id (seg<2|3>d_E<rel_error>_s<seed>)")
    try:
        parsed = int(m.group(1)), float(m.group(2)), int(m.group(3))
    except ValueError:
        raise ValueError(f"{rid!r} is not a segmentation run id (seg<2|3>d_E<rel_error>_s<seed>)") from None
    if run_id(*parsed) != rid:
        raise ValueError(f"{rid!r} is not how run_id writes E {parsed[1]} and seed {parsed[2]} ({run_id(*parsed)})")
    return parsed


def run_config(profile: str, ndim: int, rel_error: float | None = None, seed: int = 1) -> SegmentationConfig:
    """The settings of run (``ndim``, ``rel_error``, ``seed``) of ``profile``: its ``train_{ndim}d`` with
    E ``rel_error`` (None: the profile's) as a float, weights seed and data seed ``seed``."""
    base = config_from_profile(profile, ndim)
    e = base.rel_error if rel_error is None else rel_error
    if isinstance(e, bool) or not isinstance(e, (int, float, np.integer, np.floating)):
        raise ValueError(f"rel_error must be a positive number, got {e!r}")
    return config_from_profile(profile, ndim, rel_error=float(e), seed=seed, data_seed=seed)


def _run_id_of(cfg: SegmentationConfig) -> str:
    if cfg.seed != cfg.data_seed:
        raise ValueError(f"a stored segmentation run has data_seed = seed (its run id names one seed), got seed "
                         f"{cfg.seed} and data_seed {cfg.data_seed}")
    return run_id(cfg.ndim, cfg.rel_error, cfg.seed)


def run_store(cfg: SegmentationConfig, profile: str, results_dir) -> ResultStore:
    """The result store of a training run: ``<results_dir>/segmentation/<run id>/<profile>/``, keyed by
    ``cfg.params()``."""
    return ResultStore(results_dir, f"{EXPERIMENT}/{_run_id_of(cfg)}", profile, params=cfg.params(),
                       notebook=NOTEBOOK)


def _cell(v):
    """A setting as one CSV cell: numbers, strings, bools and None as they are, anything else as JSON."""
    return v if v is None or isinstance(v, (bool, int, float, str, np.generic)) else json.dumps(v)


def summary_table(summary: dict, cfg: SegmentationConfig) -> pd.DataFrame:
    """One row: the run's keys (run, ndim, rel_error, seed), the scalar fields of ``summary``
    (:func:`aprbook.segmentation.train_pair`'s: final Dice and loss of each net, median step time in s,
    particles) and the settings as ``cfg_<field>`` (lists as JSON)."""
    row = {"run": _run_id_of(cfg), "ndim": cfg.ndim, "rel_error": float(cfg.rel_error), "seed": cfg.seed}
    row.update({k: v for k, v in summary.items() if k != "settings" and not isinstance(v, (dict, list, tuple))})
    row.update({f"cfg_{k}": _cell(v) for k, v in summary["settings"].items()})
    return pd.DataFrame([row])


def stardist_table(result: dict) -> pd.DataFrame:
    """One row per network (``apr``, ``pixel``) of :func:`aprbook.segmentation.evaluate_stardist`'s
    ``result``: ``available``, ``dice`` (foreground Dice on the pixel grid), the sample's ``particles``
    (of its APR), ``pixels`` and ``shape`` (``"H x W"``), ``reason`` (why not available; empty otherwise).
    Where StarDist is not available, dice, particles and pixels are NaN and ``reason`` says why."""
    if result.get("available"):
        shape = " x ".join(str(s) for s in result["shape"])
        return pd.DataFrame([{"network": side, "available": True, "dice": float(result[f"{side}_dice"]),
                              "particles": int(result["particles"]), "pixels": int(result["pixels"]),
                              "shape": shape, "reason": ""} for side in ("apr", "pixel")])
    return pd.DataFrame([{"network": side, "available": False, "dice": math.nan, "particles": math.nan,
                          "pixels": math.nan, "shape": "", "reason": str(result.get("reason", "not available"))}
                         for side in ("apr", "pixel")])


def _checkpoint_every(profile: str) -> int:
    from .profiles import profile_settings
    return int(profile_settings(EXPERIMENT, profile)["checkpoint_every"])


def compute_run(cfg: SegmentationConfig, profile: str, results_dir, checkpoint_dir=CHECKPOINT_DIR,
                recompute: bool = False, progress: bool = True, checkpoint_every: int | None = None) -> ResultStore:
    """Train run ``cfg`` (of :func:`run_config`) of ``profile`` unless its store is fresh, resuming its
    checkpoint (module docstring; every ``checkpoint_every`` steps, default the profile's), score it on
    StarDist's sample and store the tables ``curve``, ``summary`` and ``stardist``; returns the store.
    The provenance records the seeds, ``compute_s`` (the training steps and their formation over every
    session, s), ``steps_trained`` and whether StarDist was available."""
    if not isinstance(cfg, SegmentationConfig):
        raise TypeError(f"cfg must be a SegmentationConfig, got {type(cfg).__name__}")
    every = _checkpoint_every(profile) if checkpoint_every is None else checkpoint_every
    store = run_store(cfg, profile, results_dir)

    def train(ck):
        run = train_pair(cfg, progress=progress, checkpoint=ck, checkpoint_every=every)
        sd = evaluate_stardist(run.apr_net, run.pixel_net, cfg.ndim, rel_error=cfg.rel_error, sigma_th=cfg.sigma_th,
                               gradient_smoothing=cfg.gradient_smoothing, threads=cfg.threads)
        if progress:
            print(f"{store.experiment}: StarDist sample " + (f"Dice apr {sd['apr_dice']:.3f} pixel "
                                                            f"{sd['pixel_dice']:.3f}" if sd["available"]
                                                            else f"not available ({sd['reason']})"), flush=True)
        curve = run.curve
        tables = {"curve": curve, "summary": summary_table(run.summary, cfg), "stardist": stardist_table(sd)}
        extra = {"compute_s": round(float(curve.step_s.sum() + curve.formation_s.sum()), 1),
                 "steps_trained": int(curve.step.max()), "stardist_available": bool(sd["available"])}
        return tables, {"weights": cfg.seed, "data": cfg.data_seed}, extra

    return _compute(store, checkpoint_dir, recompute, train)


def planned_runs(profile: str) -> list[str]:
    """The run ids of the chapter's plan (:mod:`aprbook.segmentation_claims`) at ``profile``, in the order
    to compute them: every seed of the profile's ``seeds`` at the training E in 3D, then in 2D, then seed 1
    of each E of ``sweep_rel_errors`` in 2D (Dice against E)."""
    from .profiles import profile_settings
    s = profile_settings(EXPERIMENT, profile)
    out = []
    for ndim in (3, 2):
        e = config_from_profile(profile, ndim).rel_error
        out += [run_id(ndim, e, seed) for seed in s["seeds"]]
    out += [run_id(2, float(e), 1) for e in s.get("sweep_rel_errors", [])]
    return list(dict.fromkeys(out))


def run_planned(profile: str, results_dir="results", checkpoint_dir=CHECKPOINT_DIR, recompute: bool = False,
                progress: bool = False, costs: bool = True) -> list[ResultStore]:
    """Compute every run of :func:`planned_runs` whose store is not fresh (all with ``recompute``),
    resuming checkpoints, and with ``costs`` the cost runs of both dimensions; returns the stores."""
    stores = []
    for rid in planned_runs(profile):
        ndim, e, seed = parse_run_id(rid)
        stores.append(compute_run(run_config(profile, ndim, e, seed), profile, results_dir, checkpoint_dir,
                                  recompute=recompute, progress=progress))
    if costs:
        stores += [compute_cost(ndim, profile, results_dir, recompute=recompute) for ndim in (2, 3)]
    return stores


# --- cost runs -----------------------------------------------------------------------------------------
def _cost_args(ndim: int, profile: str) -> dict:
    from .profiles import profile_settings
    if ndim not in (2, 3) or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    kw = dict(profile_settings(EXPERIMENT, profile)[f"cost_{ndim}d"])
    if kw.get("ndim", ndim) != ndim:
        raise ValueError(f"profile {profile}'s cost_{ndim}d has ndim {kw['ndim']}")
    return {**kw, "ndim": ndim}


def cost_store(ndim: int, profile: str, results_dir) -> ResultStore:
    """The store of the cost run of ``ndim``: ``<results_dir>/segmentation/cost_{ndim}d/<profile>/``, keyed by
    the profile's ``cost_{ndim}d`` arguments of :func:`aprbook.segmentation.step_cost_vs_size`."""
    return ResultStore(results_dir, f"{EXPERIMENT}/cost_{ndim}d", profile, params=_cost_args(ndim, profile),
                       notebook=NOTEBOOK)


def compute_cost(ndim: int, profile: str, results_dir, recompute: bool = False) -> ResultStore:
    """Measure :func:`aprbook.segmentation.step_cost_vs_size` with the profile's ``cost_{ndim}d`` arguments
    unless its store is fresh; table ``cost`` (one row per canvas side)."""
    store = cost_store(ndim, profile, results_dir)
    if recompute or not store.fresh:
        store.start()
        df = step_cost_vs_size(**store.params)
        store.save_table("cost", df)
        store.finish(seeds={"weights_and_image": store.params.get("seed", 0)},
                     extra={"compute_s": round(float(df.apr_step_s.sum() + df.pixel_step_s.sum()), 3),
                            "torch_threads": torch.get_num_threads()})
    return store


# --- loaders for the notebook --------------------------------------------------------------------------
def _stale(store: ResultStore, prov: dict | None) -> str | None:
    """Why ``store`` (built from the profile's current settings) may not be loaded, or None."""
    if prov is None:
        return f"{store.dir} holds no provenance.json (not finished): skipped"
    if prov.get("params_hash") != store.key:
        old = prov.get("params") or {}
        diff = sorted(k for k in set(old) | set(store.params)
                      if old.get(k, "<absent>") != store.params.get(k, "<absent>"))
        why = f"differs in {', '.join(diff)}" if diff else "another parameter hash"
        return (f"{store.dir} was stored for other settings than profile {store.profile}'s ({why}): stale, skipped; "
                "compute it again (python -m aprbook.segmentation ... --recompute)")
    problems = store.verify(prov)
    if problems:
        return f"{store.dir} is damaged ({'; '.join(problems)}): skipped; compute it again (--recompute)"
    return None


def load_runs(results_dir, profile: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Every stored training run of ``profile`` (``<results_dir>/segmentation/seg*/<profile>/``), in run id
    order: (curves: the ``curve`` tables with columns run, ndim, rel_error, seed first; summaries: the
    ``summary`` rows; stardist: the ``stardist`` rows with the run's keys first).

    A store is loaded only if it was stored for the settings the profile gives its run id now
    (:func:`run_config`), is finished and its files match their checksums (:meth:`ResultStore.verify`);
    any other (stale, unfinished, damaged, or a directory that is no run id) is skipped with a
    RuntimeWarning naming it and why."""
    base = Path(results_dir) / EXPERIMENT
    curves, summaries, stardist = [], [], []
    for d in sorted(base.glob(f"seg*/{profile}")):
        if not d.is_dir():
            continue
        rid = d.parent.name
        try:
            ndim, e, seed = parse_run_id(rid)
            cfg = run_config(profile, ndim, e, seed)
        except ValueError as err:
            warnings.warn(f"{d}: not a segmentation run of profile {profile} ({err}): skipped", RuntimeWarning,
                          stacklevel=2)
            continue
        store = run_store(cfg, profile, results_dir)
        why = _stale(store, store.provenance())
        if why:
            warnings.warn(why, RuntimeWarning, stacklevel=2)
            continue
        keys = {"run": rid, "ndim": ndim, "rel_error": e, "seed": seed}
        c = store.load_table("curve")
        curves.append(pd.concat([pd.DataFrame({k: [v] * len(c) for k, v in keys.items()}), c], axis=1))
        summaries.append(store.load_table("summary"))
        s = store.load_table("stardist")
        stardist.append(pd.concat([pd.DataFrame({k: [v] * len(s) for k, v in keys.items()}), s], axis=1))

    def cat(frames):
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=_KEYS)
    return cat(curves), cat(summaries), cat(stardist)


def load_cost(results_dir, profile: str) -> pd.DataFrame:
    """The stored cost tables of ``profile`` (2D, then 3D; one row per ndim and canvas side, columns of
    :func:`aprbook.segmentation.step_cost_vs_size`); a store stored for other arguments than the
    profile's, or damaged, is skipped with a RuntimeWarning; a missing one is left out."""
    frames = []
    for ndim in (2, 3):
        store = cost_store(ndim, profile, results_dir)
        prov = store.provenance()
        if prov is None:
            continue
        why = _stale(store, prov)
        if why:
            warnings.warn(why, RuntimeWarning, stacklevel=2)
            continue
        frames.append(store.load_table("cost"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["ndim", "size"])


#: the first 2D cost measurement, each canvas normalised by its own percentiles (see :func:`load_canvas_cost`)
CANVAS_COST = "cost_2d_canvas"


def load_canvas_cost(results_dir, profile: str) -> pd.DataFrame:
    """The first 2D cost measurement (2026-12-07), made before the cost runs normalised every canvas with
    one reference map (:func:`aprbook.segmentation.reference_intensity_map`): each canvas by its own
    percentiles, which on a sparse canvas are background noise. Kept as the record of why that rule
    changed, not judged. Its table (columns of :func:`aprbook.segmentation.step_cost_vs_size`), or an
    empty frame where none is stored; files that do not match their recorded checksums are refused with
    a RuntimeWarning (empty frame)."""
    store = ResultStore(results_dir, f"{EXPERIMENT}/{CANVAS_COST}", profile, {})
    if store.provenance() is None:
        return pd.DataFrame(columns=["ndim", "size"])
    problems = store.verify()
    if problems:
        warnings.warn(f"{store.dir} is damaged ({'; '.join(problems)}): not shown", RuntimeWarning, stacklevel=2)
        return pd.DataFrame(columns=["ndim", "size"])
    return pd.read_csv(store.dir / "cost.csv")


def stored_provenances(results_dir, profile: str) -> dict:
    """{store name: provenance} of the training runs :func:`load_runs` loads (by run id) and the cost
    runs :func:`load_cost` loads (``cost_2d``, ``cost_3d``): the input of
    :func:`aprbook.provenance.summary_params` for the chapter's summary store, which is then fresh
    exactly while these stored runs are unchanged."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # load_runs / load_cost warn about what they skip
        _, summaries, _ = load_runs(results_dir, profile)
        for rid in summaries.get("run", pd.Series(dtype=str)).tolist():
            ndim, e, seed = parse_run_id(rid)
            out[rid] = run_store(run_config(profile, ndim, e, seed), profile, results_dir).provenance()
        for ndim in (2, 3):
            store = cost_store(ndim, profile, results_dir)
            prov = store.provenance()
            if prov is not None and _stale(store, prov) is None:
                out[f"cost_{ndim}d"] = prov
    return out


# --- command line --------------------------------------------------------------------------------------
def main(argv=None) -> None:
    import argparse

    from aprlib.train import TrainingStopped

    from .profiles import PROFILE_NAMES, check_options, profile_settings
    ap = argparse.ArgumentParser(prog="python -m aprbook.segmentation",
                                 description="Stored, resumable runs of the segmentation chapter: 'train' (APR and "
                                             "pixel U-Nets side by side) or 'cost' (one training step against the "
                                             "image size).")
    ap.add_argument("command", choices=["train", "cost"])
    ap.add_argument("--profile", default="book", choices=list(PROFILE_NAMES))
    ap.add_argument("--ndim", type=int, nargs="+", choices=[2, 3], default=[2, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="train: seeds (weights and data; default: the profile's seeds)")
    ap.add_argument("--rel-error", type=float, nargs="+", default=None,
                    help="train: the APRs' E (default: the profile's)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR,
                    help="train: where unfinished runs checkpoint (default %(default)s)")
    ap.add_argument("--recompute", action="store_true", help="compute even stores that are fresh")
    ap.add_argument("--quiet", action="store_true", help="train: no per-evaluation progress lines")
    args = ap.parse_args(argv)
    check_options(ap, profile=args.profile, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir)
    ndims = list(dict.fromkeys(args.ndim))

    def stopped(name, e):  # Ctrl-C or SIGTERM: the checkpoint is saved, the runs after it are not started
        print(f"{name}: {e}", file=sys.stderr, flush=True)
        raise SystemExit(128 + signal.Signals[e.signal].value) from None

    if args.command == "cost":
        if args.seeds is not None or args.rel_error is not None:
            ap.error("--seeds and --rel-error are for train; cost takes the profile's cost_2d / cost_3d")
        for ndim in ndims:
            store = cost_store(ndim, args.profile, args.results_dir)
            if store.fresh and not args.recompute:
                print(f"cost_{ndim}d: fresh, skipped ({store.dir})", flush=True)
                continue
            print(f"cost_{ndim}d: measuring (sizes {store.params['sizes']})", flush=True)
            try:
                with stop_outside_training():
                    compute_cost(ndim, args.profile, args.results_dir, recompute=args.recompute)
            except RunStopped as e:
                stopped(f"cost_{ndim}d", e)
            print(f"cost_{ndim}d: stored in {store.dir}", flush=True)
        return

    seeds = args.seeds if args.seeds is not None else list(profile_settings(EXPERIMENT, args.profile)["seeds"])
    configs = {}
    try:
        for ndim in ndims:
            for e in args.rel_error if args.rel_error is not None else [None]:
                for seed in seeds:
                    cfg = run_config(args.profile, ndim, e, seed)
                    rid = _run_id_of(cfg)
                    if rid in configs:
                        ap.error(f"run {rid} given twice")
                    configs[rid] = cfg
    except ValueError as err:
        ap.error(str(err))
    for rid, cfg in configs.items():
        store = run_store(cfg, args.profile, args.results_dir)
        if store.fresh and not args.recompute:
            print(f"{rid}: fresh, skipped ({store.dir})", flush=True)
            continue
        print(f"{rid}: training {cfg.n_steps} steps ({cfg.ndim}D, size {cfg.size}, batch {cfg.batch_size})",
              flush=True)
        try:
            with stop_outside_training():
                compute_run(cfg, args.profile, args.results_dir, args.checkpoint_dir, args.recompute,
                            progress=not args.quiet)
        except (TrainingStopped, RunStopped) as e:
            stopped(rid, e)
        print(f"{rid}: stored in {store.dir}", flush=True)


if __name__ == "__main__":
    main()

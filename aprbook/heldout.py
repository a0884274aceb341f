"""An evaluation-mode test on held-out images of the streamed runs at the thesis's budget (issue 39).

The thesis reads its streamed runs by their running training error: each batch is fresh, so the error
on a batch before its update estimates the generalisation error, but of the network in training mode
(batch norm with that batch's statistics). This module tests each primary run's network as a user
would use it: in evaluation mode (batch norm with its running statistics, dropout off), after
exactly the protocol's budget (``n_batches`` of the profile ``streamed_primary``), on a held-out
stream of the same generator that no run trains on (:data:`HELDOUT_STREAM_SEED`; the training
streams are seeded ``1000 + seed``).

The weights at the budget come from the run's archived checkpoint (``results/checkpoints/
streamed_primary/<profile>/done/<run id>-<key>.ckpt``, written when the run finished): used only if
its header was written for this run's key and configuration and it has trained exactly the budget.
Runs read from a longer twin (``streamed_converged``) kept no weights at the budget, and archives are
not committed (only their results are): such a run is listed as not computed, with the reason.

Results: ``results/streamed_heldout/<run id>/<profile>/heldout.csv`` (one row: held-out error, loss,
images, and the run's running error over the last ``last`` of its batches beside it); the provenance
names the checkpoint file and its sha256. Command line: ``python -m aprbook.heldout --profile book
[RUN_ID ...]`` evaluates every primary run (or those named) whose weights are at hand and whose
result is not stored.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import torch

from .provenance import ResultStore
from .settings import StreamedRunConfig

__all__ = ["HELDOUT_STREAM_SEED", "EXPERIMENT", "heldout_settings", "budget_weights", "heldout_store",
           "compute_heldout", "heldout_table", "main"]

#: the seed of the held-out stream (the training streams are ``1000 + seed``, seeds >= 1)
HELDOUT_STREAM_SEED = 90_000
EXPERIMENT = "streamed_heldout"
_NOTEBOOK = "notebooks/05_streamed_training.ipynb"


def heldout_settings(profile: str) -> dict:
    """The held-out test's settings at ``profile`` (:data:`aprbook.profiles.PROFILES`
    ``streamed_heldout``): ``n_images`` (the first images of the held-out stream) and ``batch_size``."""
    from .profiles import profile_settings
    return profile_settings(EXPERIMENT, profile)


class _StreamPrefix:
    """The first ``n`` elements of a stream, as a dataset with ``len`` and ``image(i)``."""

    def __init__(self, stream, n: int):
        self.stream, self.n = stream, int(n)

    def __len__(self):
        return self.n

    def image(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(f"held-out image {i} outside 0 ... {self.n - 1}")
        return self.stream.image(i)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _own_store(run: dict, cfg: dict, profile: str, results_dir) -> tuple:
    """(the store ``run`` is read from, None), or (that store, why it holds no weights at the budget)
    where it is a longer twin's (:func:`aprbook.runs.primary_store`)."""
    from .runs import primary_store
    store = primary_store(run, cfg, profile, results_dir)
    if store.experiment.split("/", 1)[0] != cfg.get("experiment", "streamed_primary"):
        return store, f"read from the longer run {store.experiment}: its weights at batch {cfg['n_batches']} were not kept"
    return store, None


def budget_weights(run: dict, cfg: dict, profile: str, results_dir, checkpoint_dir) -> tuple:
    """(state dict, checkpoint path, its sha256) of ``run``'s network after exactly ``cfg['n_batches']``
    batches, else (None, reason, None). ``cfg``: the ``streamed_primary`` profile's settings. Only the
    run's own archived (or, if complete, unarchived) checkpoint is used, and only if its header names
    this run's key and configuration and it has trained exactly the budget."""
    from .runs import run_checkpoint
    store, twin = _own_store(run, cfg, profile, results_dir)
    if twin:
        return None, twin, None
    ck = run_checkpoint(store, checkpoint_dir)
    notes = []
    for path in (ck.archive, ck.path):
        if path is None or not path.exists():
            continue
        state, why = ck.load_matching(path)
        if state is None:
            notes.append(why)
            continue
        done = int(state.get("next_batch", -1))
        if done != cfg["n_batches"]:
            notes.append(f"{path.name} has trained {done} batches, not {cfg['n_batches']}")
            continue
        return state["model"], path, _sha256(path)
    why = "; ".join(notes) if notes else f"no checkpoint of it at {ck.archive.parent} (archives are not committed)"
    return None, why, None


def heldout_store(run: dict, cfg: dict, hcfg: dict, profile: str, results_dir) -> ResultStore:
    """The store of ``run``'s held-out test: its parameters are the run's (as its own store records
    them), the budget, the held-out stream's seed and the test's settings."""
    params = {"run": StreamedRunConfig.of(run, cfg).params(), "budget": cfg["n_batches"],
              "stream_seed": HELDOUT_STREAM_SEED, **hcfg}
    return ResultStore(results_dir, f"{EXPERIMENT}/{run['id']}", profile, params, notebook=_NOTEBOOK)


def compute_heldout(run: dict, cfg: dict, hcfg: dict, profile: str, results_dir, checkpoint_dir,
                    recompute: bool = False) -> tuple:
    """(store or None, status): ``run``'s held-out test, loaded if stored and fresh (unless ``recompute``),
    else computed from its weights at the budget (:func:`budget_weights`); None and the reason where
    neither is possible."""
    from aprlib.data.synthetic import SyntheticShapesStream
    from aprlib.train import batch_builder, evaluate_in_order

    from .runs import primary_metrics, primary_store, streamed_network
    store = heldout_store(run, cfg, hcfg, profile, results_dir)
    if store.fresh and not recompute:
        return store, "stored"
    weights, where, sha = budget_weights(run, cfg, profile, results_dir, checkpoint_dir)
    if weights is None:
        return None, where
    c = StreamedRunConfig.of(run, cfg)
    model, spec = streamed_network(c)
    model.load_state_dict(weights)
    data = _StreamPrefix(SyntheticShapesStream(seed=HELDOUT_STREAM_SEED, size=(c.size, c.size)), hcfg["n_images"])
    store.start()
    res = evaluate_in_order(model, data, batch_builder(spec, model), hcfg["batch_size"])
    metrics = primary_metrics(primary_store(run, cfg, profile, results_dir), cfg)
    running = 1.0 - float(metrics.accuracy.iloc[-cfg["last"]:].mean())
    store.save_table("heldout", pd.DataFrame([{
        "run": run["id"], "batches": cfg["n_batches"], "heldout_error": 1.0 - res["accuracy"],
        "heldout_loss": res["loss"], "n_images": res["n"], "running_error_last": running,
        "last": cfg["last"]}]))
    store.finish(seeds={"heldout_stream": HELDOUT_STREAM_SEED, "init": c.seed},
                 extra={"checkpoint": str(Path(where).name), "checkpoint_sha256": sha,
                        "torch_threads": torch.get_num_threads()})
    return store, "computed"


def _why_not_stored(run: dict, cfg: dict, profile: str, results_dir) -> str:
    """Why ``run`` has no stored held-out test, without reading any checkpoint."""
    store, twin = _own_store(run, cfg, profile, results_dir)
    if twin:
        return twin
    if not store.fresh:
        return "the run is not finished"
    return "finished, not tested yet (python -m aprbook.heldout)"


def heldout_table(profile: str, results_dir, checkpoint_dir=None, compute: bool = False,
                  recompute: bool = False) -> pd.DataFrame:
    """One row per primary run (:func:`aprbook.runs.primary_runs`): run, network, setting (the
    intensities' normalisation), seed, the held-out error in evaluation mode and the running training
    error over the last ``last`` batches of the budget (NaN where not computed) and ``status``
    ('computed', or 'not computed: <reason>'). With ``compute``, runs whose weights are at hand are
    evaluated first (with ``recompute``, every one whose weights are at hand again); else only stored
    results are read."""
    from .profiles import profile_settings
    from .runs import CHECKPOINT_DIR, primary_runs
    cfg, hcfg = profile_settings("streamed_primary", profile), heldout_settings(profile)
    rows = []
    for run in primary_runs(cfg):
        store = heldout_store(run, cfg, hcfg, profile, results_dir)
        if compute or recompute:
            store, status = compute_heldout(run, cfg, hcfg, profile, results_dir, checkpoint_dir or CHECKPOINT_DIR,
                                            recompute)
        elif not store.fresh:
            store, status = None, _why_not_stored(run, cfg, profile, results_dir)
        norm = run.get("normalise", cfg.get("normalise"))
        row = {"run": run["id"], "network": run["network"], "setting": norm if isinstance(norm, str) else "none",
               "seed": run["seed"], "heldout_error": float("nan"), "running_error_last": float("nan")}
        if store is None:
            row["status"] = f"not computed: {status}"
        else:
            t = store.load_table("heldout").iloc[0]
            row.update(heldout_error=float(t.heldout_error), running_error_last=float(t.running_error_last),
                       status="computed")
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    import argparse

    from .profiles import check_options, profile_settings
    from .runs import CHECKPOINT_DIR, primary_runs
    ap = argparse.ArgumentParser(prog="python -m aprbook.heldout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="book", choices=["smoke", "book", "paper"])
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    ap.add_argument("--recompute", action="store_true")
    ap.add_argument("runs", nargs="*", help="primary run ids (default: every one)")
    args = ap.parse_args(argv)
    check_options(ap, profile=args.profile, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir)
    cfg, hcfg = profile_settings("streamed_primary", args.profile), heldout_settings(args.profile)
    runs = {r["id"]: r for r in primary_runs(cfg)}
    unknown = [r for r in args.runs if r not in runs]
    if unknown:
        ap.error(f"unknown run ids {unknown}; this profile has {sorted(runs)}")
    for rid in args.runs or list(runs):
        store, status = compute_heldout(runs[rid], cfg, hcfg, args.profile, args.results_dir, args.checkpoint_dir,
                                        args.recompute)
        if store is None:
            print(f"{rid}: not computed: {status}", flush=True)
        else:
            t = store.load_table("heldout").iloc[0]
            print(f"{rid}: {status}: held-out error {t.heldout_error:.4f} (evaluation mode, {int(t.n_images)} images) "
                  f"vs running {t.running_error_last:.4f}", flush=True)


if __name__ == "__main__":
    main()

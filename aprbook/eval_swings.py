"""Why the validation loss of a Fig 4.6 run swings between evaluations (issue 13).

A finite-data run without ``bn_calibration`` (:func:`aprlib.train.train_fixed`; the Fig 4.6 reruns
before commit 8d9ddde, and the first fixed-budget runs) is evaluated in evaluation mode: batch
normalisation uses its running statistics (exponential averages, momentum 0.1, of the training
batches' statistics) and dropout is off. Their validation loss jumps between evaluations a few dozen iterations apart (APR_B at
200 per class: 0.73, 2.48, 1.13) while the training loss falls smoothly. :func:`swing_trace`
continues a stored run from its checkpoint and, at each evaluation, measures the validation loss
three ways on the same model and the same images:

- ``running``: evaluation mode as the run measures it (running statistics);
- ``recalibrated``: evaluation mode after the running statistics are replaced by the exact
  averages over a fixed set of training batches (:func:`aprlib.train.recalibrate_bn`, the "precise BN" of
  Wu & Johnson 2021, *Rethinking "Batch" in BatchNorm*), the weights unchanged;
- ``batch_stats``: batch normalisation on each validation batch's own statistics, dropout off.

If ``recalibrated`` follows the training curve while ``running`` swings, the swings come from the
running statistics lagging weights that change quickly, not from the weights themselves.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch
from torch import nn

from aprlib.train import batch_builder, batch_norms, evaluate, recalibrate_bn
from aprlib.train import IndexBatches, fixed_batch_order, prepared_in_order, train_step

__all__ = ["evaluate_batch_stats", "swing_trace", "trace_finite_run", "calibration_sensitivity"]


def evaluate_batch_stats(model: nn.Module, batches) -> dict:
    """:func:`aprlib.train.evaluate` with batch normalisation on each batch's own statistics and dropout
    off: on a copy whose batch norms keep no running statistics (torch then normalises with the
    batch's in evaluation mode); ``model`` is untouched."""
    m = copy.deepcopy(model)
    for bn in batch_norms(m):
        bn.track_running_stats, bn.running_mean, bn.running_var = False, None, None
    return evaluate(m, batches)


def swing_trace(model: nn.Module, optimizer, train_set, train_order: list[np.ndarray], val_batches: list,
                calib_batches: list, builder, eval_every: int, start_iteration: int, n_evals: int) -> pd.DataFrame:
    """Continue training ``model`` on ``train_set`` along ``train_order`` (index arrays of the
    batches from ``start_iteration`` on) and evaluate every ``eval_every`` iterations, ``n_evals``
    times. ``val_batches`` and ``calib_batches``: prepared ``(inputs, labels)`` batches. One row per
    evaluation: iteration, mean training loss since the last evaluation, and the validation loss and
    accuracy ``running`` / ``recalibrated`` / ``batch_stats`` (module docstring)."""
    if len(train_order) < eval_every * n_evals:
        raise ValueError(f"train_order has {len(train_order)} batches, {eval_every * n_evals} needed")
    rows, it = [], start_iteration

    def measure(train_loss):
        run = evaluate(model, val_batches)
        recal = evaluate(recalibrate_bn(copy.deepcopy(model), calib_batches), val_batches)
        bstat = evaluate_batch_stats(model, val_batches)
        rows.append({"iteration": it, "train_loss": train_loss,
                     "val_loss_running": run["loss"], "val_accuracy_running": run["accuracy"],
                     "val_loss_recalibrated": recal["loss"], "val_accuracy_recalibrated": recal["accuracy"],
                     "val_loss_batch_stats": bstat["loss"], "val_accuracy_batch_stats": bstat["accuracy"]})

    measure(float("nan"))
    batches = IndexBatches(train_set, train_order, builder)
    for e in range(n_evals):
        model.train()
        losses = [train_step(model, optimizer, *batches[e * eval_every + j])[0] for j in range(eval_every)]
        it += eval_every
        measure(float(np.mean(losses)))
    return pd.DataFrame(rows)


def _restore_run(run: dict, cfg: dict, checkpoint_path):
    """The model (weights, running statistics), optimizer, torch RNG and saved state of a stored Fig 4.6
    run's checkpoint (``torch.load(weights_only=True)``; its saved settings must be ``run``'s and
    ``cfg``'s), with the run's batch builder, training prefix and datasets."""
    from aprlib.data.synthetic import NUM_CLASSES
    from .runs import _Prefix, finite_datasets, finite_network
    state = torch.load(checkpoint_path, weights_only=True)
    params = state.get("checkpoint", {}).get("config", {}).get("params", {})
    mismatch = [k for k in ("id", "per_class", "seed", "lr", "weight_decay", "rel_error", "normalise")
                if k in params and k in {**cfg, **run} and params[k] != {**cfg, **run}[k]]
    if mismatch:
        raise ValueError(f"checkpoint {checkpoint_path} is not run {run['id']} of this profile "
                         f"(differs in {', '.join(mismatch)})")
    model, spec = finite_network(run, cfg)
    model.load_state_dict(state["model"])
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    data = finite_datasets(cfg)
    return model, opt, state, batch_builder(spec, model), _Prefix(data["train"], NUM_CLASSES * run["per_class"]), data


def trace_finite_run(run: dict, cfg: dict, checkpoint_path, n_evals: int = 8, val_per_class: int = 200,
                     n_calib_batches: int = 20) -> pd.DataFrame:
    """:func:`swing_trace` for a stored Fig 4.6 run (``run`` of :func:`aprbook.runs.finite_runs`, ``cfg``
    its profile): load its checkpoint (:func:`_restore_run`), continue along the batch order the run
    would have trained next (:func:`aprlib.train.train_fixed`'s order from the run's seed) and
    evaluate every ``finite_eval_every`` iterations on the first ``val_per_class`` images per class of
    the run's validation set. The recalibration batches are the first ``n_calib_batches`` batches of
    the continuation's own order (training images only)."""
    from aprlib.data.synthetic import NUM_CLASSES
    from .runs import finite_eval_every
    model, opt, state, builder, train, data = _restore_run(run, cfg, checkpoint_path)
    every, start = finite_eval_every(cfg, run["per_class"]), int(state["next_iteration"])
    n_total, bs = start + every * n_evals, cfg["batch_size"]
    batches = fixed_batch_order(len(train), n_total, bs, run["seed"])
    val = prepared_in_order(data["val"], builder, bs, NUM_CLASSES * val_per_class)
    calib_set = IndexBatches(train, batches[start:start + n_calib_batches], builder)
    calib = [calib_set[i] for i in range(len(calib_set))]
    out = swing_trace(model, opt, train, batches[start:], val, calib, builder, every, start, n_evals)
    return out.assign(run=run["id"])


def calibration_sensitivity(run: dict, cfg: dict, checkpoint_path, sizes=(1, 2, 5, 10, 20), val_per_class: int = 200
                            ) -> pd.DataFrame:
    """How the recalibrated validation loss of a stored run's checkpointed model depends on the
    calibration set: for each ``k`` in ``sizes``, the statistics of the first ``k`` training batches
    in order (the rule of ``bn_calibration``) and of the ``k`` batches that follow them (other
    images), where the training set has them. One row per (first_batch, n_batches) with the
    validation loss and accuracy; a row with ``n_batches`` 0 is the model's running averages."""
    from aprlib.data.synthetic import NUM_CLASSES
    model, _, state, builder, train, data = _restore_run(run, cfg, checkpoint_path)
    bs = cfg["batch_size"]
    val = prepared_in_order(data["val"], builder, bs, NUM_CLASSES * val_per_class)
    n_batches = len(train) // bs
    # every training batch a calibration below uses: the first 2 * max(sizes), whole batches only
    calib = prepared_in_order(train, builder, bs, min(n_batches, 2 * max(sizes)) * bs)
    res = evaluate(model, val)
    rows = [{"first_batch": 0, "n_batches": 0, "val_loss": res["loss"], "val_accuracy": res["accuracy"]}]
    for k in sizes:
        for first in (0, k):
            if first + k > n_batches:
                continue
            m = recalibrate_bn(copy.deepcopy(model), calib[first:first + k])
            res = evaluate(m, val)
            rows.append({"first_batch": first, "n_batches": k, "val_loss": res["loss"], "val_accuracy": res["accuracy"]})
    return pd.DataFrame(rows).assign(run=run["id"], iteration=int(state["next_iteration"]))


def main(argv=None) -> int:
    """``python -m aprbook.eval_swings CHECKPOINT``: :func:`trace_finite_run` of the checkpoint of a
    Fig 4.6 run of the ``finite_converged`` book profile (an archived one, ``checkpoints/
    finite_converged/book/done/<run>-<key>.ckpt``, of a run computed before ``bn_calibration``), stored
    as ``results/finite_converged/eval_swings/book/swings.csv`` with its provenance (the checkpoint's
    sha256 among the parameters)."""
    import argparse
    import hashlib
    from pathlib import Path

    from .profiles import profile_settings
    from .provenance import ResultStore
    from .runs import finite_runs
    ap = argparse.ArgumentParser(prog="python -m aprbook.eval_swings", description=main.__doc__)
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--n-evals", type=int, default=10)
    ap.add_argument("--val-per-class", type=int, default=200)
    ap.add_argument("--calib-batches", type=int, default=20)
    ap.add_argument("--results-dir", type=Path, default=Path("results"))
    ap.add_argument("--sensitivity", action="store_true",
                    help="instead: calibration_sensitivity of the checkpointed model (results/finite_converged/"
                         "eval_calibration/book/calibration.csv)")
    a = ap.parse_args(argv)
    if not a.checkpoint.is_file():
        ap.error(f"no checkpoint file {a.checkpoint}")
    cfg = profile_settings("finite_converged", "book")
    header = torch.load(a.checkpoint, weights_only=True).get("checkpoint", {})
    run_id = header.get("config", {}).get("params", {}).get("id")
    run = next((r for r in finite_runs(cfg) if r["id"] == run_id), None)
    if run is None:
        ap.error(f"{a.checkpoint} is not the checkpoint of a finite_converged book run (its id: {run_id!r})")
    sha = hashlib.sha256(a.checkpoint.read_bytes()).hexdigest()
    if a.sensitivity:
        name, table, params = "eval_calibration", "calibration", {"val_per_class": a.val_per_class}

        def compute():
            return calibration_sensitivity(run, cfg, a.checkpoint, val_per_class=a.val_per_class), None
    else:
        name, table = "eval_swings", "swings"
        params = {"n_evals": a.n_evals, "val_per_class": a.val_per_class, "calib_batches": a.calib_batches}

        def compute():
            df = trace_finite_run(run, cfg, a.checkpoint, n_evals=a.n_evals, val_per_class=a.val_per_class,
                                  n_calib_batches=a.calib_batches)
            return df, {"source_iteration": int(df.iteration.iloc[0])}
    store = ResultStore(a.results_dir, f"finite_converged/{name}", "book",
                        {"run": run_id, "checkpoint_sha256": sha, **params},
                        notebook="notebooks/06_finite_datasets.ipynb")
    store.start()
    df, extra = compute()
    store.save_table(table, df)
    store.finish(seeds={"init_and_order": run["seed"], "data": cfg["data_seed"]}, extra=extra)
    print(df.round(3).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

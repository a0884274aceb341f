"""Every missing run of an experiment's profile, as jobs of a Dask cluster: one command runs them on
all local cores by default, skips the runs already stored (fresh), and resumes interrupted ones from
their checkpoints (each run checkpoints as it trains).

    python -m aprbook.sweep converged --profile book                   # this machine, one worker per core
    python -m aprbook.sweep converged --profile book --workers 2       # two workers
    python -m aprbook.sweep converged --profile paper --scheduler tcp://head-node:8786   # a cluster

For a cluster, start a Dask scheduler and workers (for SLURM: dask-jobqueue's ``SLURMCluster``, or
``dask scheduler`` on one node and ``dask worker tcp://head-node:8786 --nthreads 1`` in job scripts)
on a shared file system holding the repository, and pass the scheduler's address: the same runs are
then sent there. Each job trains one run with one thread (torch and the C++ kernels), as the book's
runs are made, and writes its results with the run's provenance.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .runs import CHECKPOINT_DIR, EXPERIMENTS

__all__ = ["pending", "run_job", "sweep", "main"]


def _runs(experiment: str, profile: str) -> tuple[dict, dict]:
    from .profiles import profile_settings
    name, list_runs, _compute, _store = EXPERIMENTS[experiment]
    cfg = profile_settings(name, profile)
    return cfg, {r["id"]: r for r in list_runs(cfg)}


def pending(experiment: str, profile: str, results_dir="results", runs=None, data_dir=None) -> list[str]:
    """Run ids of ``experiment`` at ``profile`` whose stored results are missing or not fresh."""
    cfg, all_runs = _runs(experiment, profile)
    _, _, _, store = EXPERIMENTS[experiment]
    extra = {"data_dir": data_dir} if experiment == "natural" else {}
    ids = list(runs) if runs else list(all_runs)
    unknown = [r for r in ids if r not in all_runs]
    if unknown:
        raise ValueError(f"unknown run ids {unknown}; {experiment} at profile {profile} has {sorted(all_runs)}")
    return [r for r in ids if not store(all_runs[r], cfg, profile, results_dir, **extra).fresh]


def run_job(experiment: str, run_id: str, profile: str, results_dir, checkpoint_dir, data_dir=None,
            threads: int = 1) -> dict:
    """One job: train (or resume, or skip if fresh) one run with ``threads`` threads; returns its
    result directory, whether it is stored, and the job's wall time."""
    import torch

    from aprlib import _core
    torch.set_num_threads(threads)
    _core.set_num_threads(threads)
    t0 = time.perf_counter()
    cfg, all_runs = _runs(experiment, profile)
    _, _, compute, _ = EXPERIMENTS[experiment]
    extra = {"data_dir": data_dir} if experiment == "natural" else {}
    store = compute(all_runs[run_id], cfg, profile, results_dir, checkpoint_dir, False, progress=False, **extra)
    return {"run": run_id, "dir": str(store.dir), "stored": store.fresh, "wall_s": time.perf_counter() - t0}


def sweep(experiment: str, profile: str = "book", runs=None, workers: int | None = None, scheduler: str | None = None,
          results_dir="results", checkpoint_dir=CHECKPOINT_DIR, data_dir=None, verbose: bool = True) -> list[dict]:
    """Every pending run of ``experiment`` at ``profile`` (or of ``runs``) as a job on a Dask
    cluster: a local one with ``workers`` single-threaded worker processes (default: one per core),
    or the scheduler at ``scheduler``. Returns one record per job run (none if nothing is pending)."""
    todo = pending(experiment, profile, results_dir, runs, data_dir)
    if verbose:
        print(f"{experiment} at profile {profile}: {len(todo)} run(s) to compute"
              + (f": {', '.join(todo)}" if todo else ""), flush=True)
    if not todo:
        return []
    from dask.distributed import Client, LocalCluster, as_completed
    results_dir, checkpoint_dir = str(Path(results_dir).resolve()), str(Path(checkpoint_dir).resolve())
    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=min(n, len(todo)), threads_per_worker=1, processes=True,
                               dashboard_address=None, env={"OMP_NUM_THREADS": "1"})
        client = Client(cluster)
    try:
        futures = [client.submit(run_job, experiment, rid, profile, results_dir, checkpoint_dir, data_dir,
                                 key=f"{experiment}-{profile}-{rid}", pure=False) for rid in todo]
        out = []
        for fut in as_completed(futures):
            r = fut.result()
            out.append(r)
            if verbose:
                print(f"{r['run']}: {'stored' if r['stored'] else 'NOT stored'} in {r['dir']} "
                      f"({r['wall_s'] / 60:.1f} min)", flush=True)
        return out
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def main(argv=None) -> int:
    from .profiles import check_options
    ap = argparse.ArgumentParser(prog="python -m aprbook.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", choices=sorted(EXPERIMENTS))
    ap.add_argument("runs", nargs="*", help="run ids (default: every pending run of the profile)")
    ap.add_argument("--profile", default="book", choices=["smoke", "book", "paper"])
    ap.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    ap.add_argument("--scheduler", default=None, help="address of a Dask scheduler (e.g. tcp://host:8786)")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--checkpoint-dir", default=CHECKPOINT_DIR)
    ap.add_argument("--data-dir", default=None, help="natural: the Dogs-vs-Cats training folder (default: stand-in)")
    ap.add_argument("--dry-run", action="store_true", help="list the pending runs and stop")
    args = ap.parse_intermixed_args(argv)
    check_options(ap, profile=args.profile, results_dir=args.results_dir, checkpoint_dir=args.checkpoint_dir,
                  data_dir=args.data_dir)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers {args.workers}: at least one worker")
    if args.workers is not None and args.scheduler is not None:
        ap.error("--workers is for the local cluster; a --scheduler's workers are started with it")
    if args.data_dir is not None and args.experiment != "natural":
        ap.error(f"--data-dir is for the natural-image runs only, not {args.experiment}")
    try:
        todo = pending(args.experiment, args.profile, args.results_dir, args.runs, args.data_dir)
    except ValueError as e:
        ap.error(str(e))
    if args.dry_run:
        print("\n".join(todo) if todo else "nothing to compute")
        return 0
    sweep(args.experiment, args.profile, args.runs, args.workers, args.scheduler, args.results_dir,
          args.checkpoint_dir, args.data_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

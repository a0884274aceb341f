"""Freeze the identity of every training run: ``tests/data/run_identities.json``.

For every experiment of :data:`aprbook.runs.EXPERIMENTS` and every profile (smoke, book, paper), each
run's inputs (the run dict and the profile's settings) and what the code makes of them: the result
store's parameters and ``params_hash`` (from an empty results directory, so that the run's own store
is what is recorded), the checkpoint's configuration and key (:func:`aprbook.runs.run_checkpoint`),
and, for the book profile, the store the run is read from among the committed results (a staged run
stored under an earlier ladder, a primary run's twin) with its freshness.

The file is the reference of the migration to typed run configurations (issue 39, item 7): it was
written by this script from the code before that change (commit f6004fd), and
``tests/test_run_identities.py`` asserts that the code of today gives every run the same identity.
Run it again only to record an intended change of identities, and say so in the commit.

    python tools/freeze_run_identities.py [OUT]
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aprlib  # noqa: E402
from aprlib.train import CHECKPOINT_FORMAT  # noqa: E402

from aprbook.profiles import PROFILE_NAMES, profile_settings  # noqa: E402
from aprbook.runs import EXPERIMENTS, run_checkpoint  # noqa: E402

#: the parameter a run's checkpoint leaves out, as the compute functions name it
BUDGET = {"streamed": "n_batches", "converged": "n_batches", "primary": "n_batches", "finite": "n_iterations",
          "finite_converged": "n_iterations", "natural": "n_epochs"}
#: keyword arguments of the store functions: the natural runs on the stand-in and on a data folder
EXTRAS = {"natural": {"": {}, "dogs_vs_cats": {"data_dir": "DATA_DIR"}}}


def identities() -> dict:
    out = {"aprlib": aprlib.__version__, "checkpoint_format": CHECKPOINT_FORMAT, "profiles": {}, "runs": []}
    with tempfile.TemporaryDirectory() as empty:
        for experiment, (name, list_runs, _, make_store) in EXPERIMENTS.items():
            for profile in PROFILE_NAMES:
                cfg = profile_settings(name, profile)
                out["profiles"][f"{experiment}/{profile}"] = cfg
                budget = "budgets" if "budgets" in cfg else BUDGET[experiment]
                for variant, extra in EXTRAS.get(experiment, {"": {}}).items():
                    for run in list_runs(cfg):
                        store = make_store(run, cfg, profile, empty, **extra)
                        ck = run_checkpoint(store, "CKPT", budget)
                        entry = {"experiment": experiment, "profile": profile, "variant": variant, "extra": extra,
                                 "run": run, "store": store.experiment, "params": store.params,
                                 "params_hash": store.key,
                                 # the checkpoint's configuration: the profile and the params without these
                                 "checkpoint": {"left_out": sorted(set(store.params) - set(ck.config["params"])),
                                                "key": ck.key, "path": ck.path.as_posix()}}
                        assert ck.config == {"profile": profile, "params": {
                            k: v for k, v in store.params.items() if k not in entry["checkpoint"]["left_out"]}}
                        if profile == "book":
                            stored = make_store(run, cfg, profile, ROOT / "results", **extra)
                            entry["stored"] = {"store": stored.experiment, "params_hash": stored.key,
                                               "fresh": stored.fresh}
                        out["runs"].append(entry)
    return out


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "data" / "run_identities.json"
    data = identities()
    # one line a run, so that a change of identities reads as a diff of the runs it touches
    runs = ",\n  ".join(json.dumps(r, sort_keys=True) for r in data.pop("runs"))
    head = json.dumps(data, indent=1, sort_keys=True)
    path.write_text(head[:-2] + f',\n "runs": [\n  {runs}\n ]\n}}\n')
    print(f"{path}: {len(json.loads(path.read_text())['runs'])} runs")

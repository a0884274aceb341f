"""Every training run keeps its identity (issue 39, item 7): the result store's parameters and
``params_hash`` and the checkpoint's key that the code gives each run equal those the code gave before
the runs' settings became typed configurations (:mod:`aprbook.settings`), as frozen in
``tests/data/run_identities.json`` by ``tools/freeze_run_identities.py`` at commit f6004fd; so no
committed run is orphaned or recomputed, and no checkpoint is left behind."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import aprlib
from aprlib.train import CHECKPOINT_FORMAT

from aprbook.runs import EXPERIMENTS, run_checkpoint

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
FROZEN = json.loads((ROOT / "tests" / "data" / "run_identities.json").read_text())


def _entries(group: str) -> list[dict]:
    experiment, profile = group.split("/")
    return [e for e in FROZEN["runs"] if e["experiment"] == experiment and e["profile"] == profile]


def test_the_reference_covers_every_experiment_and_profile():
    assert {g.split("/")[0] for g in FROZEN["profiles"]} == set(EXPERIMENTS)
    assert {g.split("/")[1] for g in FROZEN["profiles"]} == {"smoke", "book", "paper"}
    assert all(_entries(g) for g in FROZEN["profiles"])


@pytest.mark.parametrize("group", sorted(FROZEN["profiles"]))
def test_every_run_keeps_its_store_and_checkpoint_keys(group, tmp_path):
    """From the frozen inputs (the profile's settings and each run), today's code lists the same runs
    and gives each the same store (experiment, params, params_hash) and checkpoint (the configuration
    is the profile and the params without the run's length; the key and file name too, while aprlib's
    version and the checkpoint format are those of the freeze, which are part of every key by design)."""
    experiment, profile = group.split("/")
    cfg = FROZEN["profiles"][group]
    _, list_runs, _, make_store = EXPERIMENTS[experiment]
    same_code = (aprlib.__version__, CHECKPOINT_FORMAT) == (FROZEN["aprlib"], FROZEN["checkpoint_format"])
    entries = _entries(group)
    for variant in {e["variant"] for e in entries}:
        assert list_runs(cfg) == [e["run"] for e in entries if e["variant"] == variant]
    for e in entries:
        where = f"{group}: {e['run']['id']} {e['variant']}"
        store = make_store(e["run"], cfg, profile, tmp_path / "empty", **e["extra"])
        assert store.experiment == e["store"], where
        assert store.params == e["params"], where
        assert store.key == e["params_hash"], where
        ck = run_checkpoint(store, "CKPT")
        left_out = e["checkpoint"]["left_out"]
        assert ck.config == {"profile": profile, "params": {k: v for k, v in e["params"].items()
                                                            if k not in left_out}}, where
        if same_code:
            assert (ck.key, ck.path.as_posix()) == (e["checkpoint"]["key"], e["checkpoint"]["path"]), where


def test_committed_runs_stay_fresh():
    """Every book-profile run the frozen code read from a fresh committed store (its own, one stored
    under an earlier ladder of budgets, or a primary run's twin) is read from that store, fresh. A store
    recomputed since the freeze (its provenance records another params_hash) is skipped."""
    checked = 0
    for e in FROZEN["runs"]:
        stored = e.get("stored")
        if not stored or not stored["fresh"]:
            continue
        prov = json.loads((RESULTS / stored["store"] / "book" / "provenance.json").read_text())
        if prov.get("params_hash") != stored["params_hash"]:
            continue
        cfg = FROZEN["profiles"][f"{e['experiment']}/book"]
        store = EXPERIMENTS[e["experiment"]][3](e["run"], cfg, "book", RESULTS, **e["extra"])
        where = f"{e['experiment']}: {e['run']['id']}"
        assert (store.experiment, store.key) == (stored["store"], stored["params_hash"]), where
        assert store.fresh, where
        checked += 1
    assert checked >= 100  # 110 at the freeze


#: the typed configuration of the runs of each experiment directory under results/
KINDS = {"streamed_training": "StreamedRunConfig", "streamed_converged": "StreamedRunConfig",
         "streamed_primary": "StreamedRunConfig", "finite_datasets": "FiniteRunConfig",
         "finite_converged": "FiniteRunConfig", "natural_training": "NaturalRunConfig",
         "natural_training_dogs_vs_cats": "NaturalRunConfig"}


def test_every_stored_run_maps_to_a_configuration_with_its_params_hash():
    """The migration's check on the stored runs themselves: every committed run's recorded parameters
    (``results/<experiment>/<run>/<profile>/provenance.json``) are a configuration of its kind whose
    parameters are those recorded, and hash to the recorded ``params_hash``: no stored run is orphaned
    by the typed configurations, whatever profile it was computed under."""
    import aprbook.settings as settings
    from aprbook.provenance import _params_hash
    checked = 0
    for experiment, kind in KINDS.items():
        for path in sorted((RESULTS / experiment).glob("*/*/provenance.json")):
            prov = json.loads(path.read_text())
            if prov["params"].get("id") != path.parent.parent.name:
                continue  # an analysis stored beside the runs (e.g. finite_converged/eval_swings), not a run
            config = getattr(settings, kind).from_params(prov["params"])
            assert config.params() == prov["params"], path
            assert _params_hash(prov["profile"], config.params()) == prov["params_hash"], path
            checked += 1
    assert checked >= 80  # 81 at the freeze

"""The evaluation-mode held-out test of the primary runs (aprbook.heldout): only the run's own weights
at exactly the budget are used, the held-out stream is one no run trains on, and the stored result is
read back without the checkpoint."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from aprbook import heldout
from aprbook.heldout import HELDOUT_STREAM_SEED, budget_weights, compute_heldout, heldout_table
from aprbook.profiles import PROFILES, profile_settings
from aprbook.runs import CHECKPOINT_DIR, compute_primary, primary_runs, primary_store, run_checkpoint

RUN = "norm_image__APR_B_E0.1_s1"


def _smoke():
    cfg = profile_settings("streamed_primary", "smoke")
    runs = {r["id"]: r for r in primary_runs(cfg)}
    return cfg, runs, heldout.heldout_settings("smoke")


def test_no_run_trains_on_the_heldout_stream():
    for name in ("streamed_primary", "streamed_converged", "streamed_training"):
        for profile in PROFILES[name]:
            seeds = profile_settings(name, profile).get("seeds", [])
            assert seeds and all(1000 + s != HELDOUT_STREAM_SEED for s in seeds)


def test_heldout_of_a_finished_run(tmp_path):
    """A finished run's archived checkpoint gives its network at the budget; the evaluation-mode error
    on the held-out images is stored with the checkpoint's sha256, and read back without it."""
    cfg, runs, hcfg = _smoke()
    results, ckdir = tmp_path / "results", tmp_path / CHECKPOINT_DIR
    compute_primary(runs[RUN], cfg, "smoke", results, ckdir, progress=False)
    weights, path, sha = budget_weights(runs[RUN], cfg, "smoke", results, ckdir)
    assert weights is not None and "/done/" in path.as_posix() and len(sha) == 64
    store, status = compute_heldout(runs[RUN], cfg, hcfg, "smoke", results, ckdir)
    assert status == "computed"
    row = store.load_table("heldout").iloc[0]
    assert row.n_images == hcfg["n_images"] and 0.0 <= row.heldout_error <= 1.0
    metrics = primary_store(runs[RUN], cfg, "smoke", results).load_table("metrics")
    assert row.running_error_last == pytest.approx(1 - metrics.accuracy.iloc[-cfg["last"]:].mean())
    assert store.provenance()["checkpoint_sha256"] == sha
    shutil.rmtree(ckdir)  # as in a fresh clone: archives are not committed
    t = heldout_table("smoke", results, ckdir)
    got = t.set_index("run").loc[RUN]
    assert got.status == "computed" and got.heldout_error == row.heldout_error
    assert (t[t.run != RUN].status == "not computed: the run is not finished").all()


def test_heldout_error_is_the_evaluation_mode_error(tmp_path):
    """The stored error is that of the network in evaluation mode (batch norm's running statistics)."""
    from aprlib.data.synthetic import SyntheticShapesStream
    from aprlib.train import batch_builder
    from aprlib.train.loops import _in_order
    from aprbook.runs import streamed_network
    from aprbook.settings import StreamedRunConfig
    cfg, runs, hcfg = _smoke()
    results, ckdir = tmp_path / "results", tmp_path / CHECKPOINT_DIR
    compute_primary(runs[RUN], cfg, "smoke", results, ckdir, progress=False)
    store, _ = compute_heldout(runs[RUN], cfg, hcfg, "smoke", results, ckdir)
    model, spec = streamed_network(StreamedRunConfig.of(runs[RUN], cfg))
    model.load_state_dict(budget_weights(runs[RUN], cfg, "smoke", results, ckdir)[0])
    model.eval()
    data = heldout._StreamPrefix(SyntheticShapesStream(seed=HELDOUT_STREAM_SEED, size=(cfg["size"],) * 2),
                                 hcfg["n_images"])
    ds = _in_order(data, batch_builder(spec, model), hcfg["batch_size"])
    wrong = 0
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[i]
            wrong += int((model(x).argmax(1) != y).sum())
    np.testing.assert_allclose(store.load_table("heldout").heldout_error.iloc[0], wrong / hcfg["n_images"])


def test_weights_of_another_budget_or_run_are_not_used(tmp_path):
    cfg, runs, hcfg = _smoke()
    results, ckdir = tmp_path / "results", tmp_path / CHECKPOINT_DIR
    short = {**cfg, "n_batches": 2}  # the same run's key (the budget is not in it), trained 2 batches
    compute_primary(runs[RUN], short, "smoke", results, ckdir, progress=False)
    w, why, _ = budget_weights(runs[RUN], cfg, "smoke", results, ckdir)
    assert w is None and "has trained 2 batches, not 4" in why
    store, status = compute_heldout(runs[RUN], cfg, hcfg, "smoke", results, ckdir)
    assert store is None and "has trained 2 batches" in status
    # another run's checkpoint under this run's name
    other = "norm_none__APR_B_E0.1_s1"
    compute_primary(runs[other], cfg, "smoke", results, ckdir, progress=False)
    mine = run_checkpoint(primary_store(runs[RUN], cfg, "smoke", results), ckdir).archive
    theirs = run_checkpoint(primary_store(runs[other], cfg, "smoke", results), ckdir).archive
    shutil.copy(theirs, mine)
    w, why, _ = budget_weights(runs[RUN], cfg, "smoke", results, ckdir)
    assert w is None and "written for other settings" in why
    mine.write_bytes(b"not a checkpoint")
    w, why, _ = budget_weights(runs[RUN], cfg, "smoke", results, ckdir)
    assert w is None and "cannot be read" in why


def test_a_run_read_from_its_longer_twin_has_no_weights_at_the_budget(tmp_path, monkeypatch):
    import aprbook.runs as runs_mod
    cfg, runs, hcfg = _smoke()
    twin_store = primary_store(runs["APR_B_E0.1_s1"], cfg, "smoke", tmp_path)

    class Twin:
        experiment = "streamed_converged/APR_B_E0.1_s1"
    monkeypatch.setattr(runs_mod, "primary_store", lambda *a, **k: Twin())
    w, why, _ = budget_weights(runs["APR_B_E0.1_s1"], cfg, "smoke", tmp_path, tmp_path / "ck")
    assert w is None and "longer run streamed_converged/APR_B_E0.1_s1" in why
    assert twin_store.experiment.startswith("streamed_primary/")


def test_the_primary_command_tests_each_run_it_trains(tmp_path, capsys):
    from aprbook import runs
    results, ckdir = tmp_path / "results", tmp_path / "ck"
    runs.main(["primary", "--profile", "smoke", "--results-dir", str(results), "--checkpoint-dir", str(ckdir), RUN])
    out = capsys.readouterr().out
    assert f"{RUN}: held-out test in" in out
    cfg, all_runs, hcfg = _smoke()
    assert heldout.heldout_store(all_runs[RUN], cfg, hcfg, "smoke", results).fresh

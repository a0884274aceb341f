"""Stored, resumable segmentation runs (aprbook.segmentation_runs and train_pair's checkpoints), at smoke
scale: a run stopped between steps (a real SIGTERM, raised by the data stream) or cut short and resumed
gives the curve of an uninterrupted run; checkpoints of other settings are not resumed and corrupt ones
are moved aside; stored runs are found by load_runs (stale ones skipped with a warning); the command
line stores runs and archives their checkpoints."""
from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
import torch

import aprlib.train.checkpoint as ckmod
from aprbook import segmentation as seg
from aprbook import segmentation_runs as sr
from aprbook.runs import run_checkpoint
from aprlib.train import Checkpoint, TrainingStopped

#: the curve's columns that must be equal (the times are the sessions' own)
COLS = ["step", "network", "loss", "heldout_dice", "n_particles", "n_pixels"]


def _cfg(ndim, **kw):
    return seg.config_from_profile("smoke", ndim, **{"n_steps": 5, "eval_every": 2, **kw})


def _same_run(a, b):
    pd.testing.assert_frame_equal(a.curve[COLS].reset_index(drop=True), b.curve[COLS].reset_index(drop=True))
    for net in ("apr_net", "pixel_net"):
        for (n, x), (_, y) in zip(getattr(a, net).state_dict().items(), getattr(b, net).state_dict().items()):
            assert torch.equal(x, y), (net, n)


def _stop_at(monkeypatch, step):
    """A SIGTERM to this process while the images of training step ``step`` (1-based) are made."""
    orig = seg.stream_set

    def stream(cfg, s):
        if s == step - 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return orig(cfg, s)
    monkeypatch.setattr(seg, "stream_set", stream)


@pytest.mark.parametrize("ndim", [2, 3])
def test_a_run_stopped_between_steps_resumes_to_the_uninterrupted_run(ndim, tmp_path, monkeypatch):
    cfg = _cfg(ndim)
    straight = seg.train_pair(cfg)
    path = tmp_path / "run.ckpt"
    with monkeypatch.context() as m:
        _stop_at(m, 3)
        with pytest.raises(TrainingStopped) as stop:
            seg.train_pair(cfg, checkpoint=path, checkpoint_every=100)
    assert stop.value.steps_done == 3 and stop.value.signal == "SIGTERM" and path.exists()
    assert torch.load(path, weights_only=True)["steps_done"] == 3
    resumed = seg.train_pair(cfg, checkpoint=path)
    _same_run(straight, resumed)
    assert torch.load(path, weights_only=True)["steps_done"] == cfg.n_steps  # saved after the last step


def test_a_shorter_run_is_extended_to_the_longer_runs_curve(tmp_path):
    # the shorter run evaluated at its last step (3), off the longer run's grid: dropped on resuming
    path = tmp_path / "run.ckpt"
    short = seg.train_pair(_cfg(2, n_steps=3), checkpoint=path)
    assert not np.isnan(short.curve[short.curve.step == 3].heldout_dice).any()
    _same_run(seg.train_pair(_cfg(2)), seg.train_pair(_cfg(2), checkpoint=path))


def test_checkpoints_every_k_steps_and_after_the_last(tmp_path, monkeypatch):
    saved = []
    orig = ckmod._save_checkpoint

    def spy(ck, loop, model, optimizer, **progress):
        saved.append(progress["steps_done"])
        assert len(progress["rows"]) == 2 * progress["steps_done"]
        return orig(ck, loop, model, optimizer, **progress)
    monkeypatch.setattr(ckmod, "_save_checkpoint", spy)
    seg.train_pair(_cfg(2), checkpoint=tmp_path / "run.ckpt", checkpoint_every=2)
    assert saved == [2, 4, 5]
    with pytest.raises(ValueError, match="checkpoint_every"):
        seg.train_pair(_cfg(2), checkpoint=tmp_path / "run.ckpt", checkpoint_every=0)


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, capsys):
    path = tmp_path / "run.ckpt"
    seg.train_pair(_cfg(2, n_steps=2), checkpoint=path)
    capsys.readouterr()
    other = _cfg(2, lr=2e-3)
    run = seg.train_pair(other, checkpoint=path)
    out = capsys.readouterr().out
    assert "another configuration" in out and "settings.lr" in out and "not resumed" in out
    _same_run(seg.train_pair(other), run)
    # a checkpoint of more steps than the run is not resumed either
    seg.train_pair(_cfg(2, n_steps=4), checkpoint=path)
    capsys.readouterr()
    _same_run(seg.train_pair(_cfg(2, n_steps=2)), seg.train_pair(_cfg(2, n_steps=2), checkpoint=path))
    assert "more than this run's 2" in capsys.readouterr().out
    # the store's checkpoint: keyed by every setting but the run's length
    a = run_checkpoint(sr.run_store(sr.run_config("smoke", 2, 0.1, 1), "smoke", tmp_path), tmp_path / "ck")
    longer = run_checkpoint(sr.run_store(seg.SegmentationConfig(**{**sr.run_config("smoke", 2, 0.1, 1).params(),
                                                                    "n_steps": 9}), "smoke", tmp_path), tmp_path / "ck")
    for other in (sr.run_config("smoke", 2, 0.2, 1), sr.run_config("smoke", 2, 0.1, 2)):
        assert run_checkpoint(sr.run_store(other, "smoke", tmp_path), tmp_path / "ck").key != a.key
    assert longer.key == a.key and longer.path == a.path
    assert a.path == tmp_path / "ck" / "segmentation" / "smoke" / f"seg2d_E0.1_s1-{a.key}.ckpt"
    assert a.archive == a.path.parent / "done" / a.path.name


def test_a_corrupt_checkpoint_is_moved_aside(tmp_path):
    path = tmp_path / "run.ckpt"
    seg.train_pair(_cfg(2, n_steps=2), checkpoint=path)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.warns(RuntimeWarning, match="unreadable.*moved aside"):
        run = seg.train_pair(_cfg(2), checkpoint=path)
    assert len(list(tmp_path.glob("run.ckpt.corrupt-*"))) == 1
    _same_run(seg.train_pair(_cfg(2)), run)
    # a checkpoint of this run's settings that lacks the pair's progress: moved aside too
    state = torch.load(path, weights_only=True)
    del state["rows"]
    torch.save(state, path)
    with pytest.warns(RuntimeWarning, match="lacks the entry 'rows'"):
        seg.train_pair(_cfg(2), checkpoint=path)
    assert len(list(tmp_path.glob("run.ckpt.corrupt-*"))) == 2


def test_run_ids():
    assert sr.run_id(2, 0.1, 1) == "seg2d_E0.1_s1" and sr.parse_run_id("seg3d_E0.25_s12") == (3, 0.25, 12)
    for bad in ("seg4d_E0.1_s1", "seg2d_E0.10_s1", "seg2d_E0.1", "cost_2d", "seg2d_Ex_s1"):
        with pytest.raises(ValueError):
            sr.parse_run_id(bad)
    cfg = sr.run_config("smoke", 2, 0.2, 3)
    assert (cfg.rel_error, cfg.seed, cfg.data_seed) == (0.2, 3, 3)
    assert sr.run_config("smoke", 2, seed=1).rel_error == seg.config_from_profile("smoke", 2).rel_error
    with pytest.raises(ValueError, match="data_seed"):
        sr.run_store(seg.config_from_profile("smoke", 2, seed=1, data_seed=2), "smoke", "results")
    with pytest.raises(ValueError):
        sr.run_config("smoke", 2, -0.1, 1)


def test_a_stored_run_is_found_by_load_runs(tmp_path):
    cfg = sr.run_config("smoke", 2, 0.1, 1)
    store = sr.compute_run(cfg, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    assert store.fresh and store.dir == tmp_path / "results" / "segmentation" / "seg2d_E0.1_s1" / "smoke"
    curves, summaries, stardist = sr.load_runs(tmp_path / "results", "smoke")
    assert set(curves.run) == {"seg2d_E0.1_s1"} and len(curves) == 2 * cfg.n_steps
    assert list(curves.columns[:4]) == ["run", "ndim", "rel_error", "seed"]
    assert (curves["ndim"] == 2).all() and (curves.rel_error == 0.1).all() and (curves.seed == 1).all()
    assert len(summaries) == 1 and summaries.cfg_n_steps.iloc[0] == cfg.n_steps
    assert summaries.apr_final_dice.iloc[0] == pytest.approx(curves[curves.network == "apr"].heldout_dice.iloc[-1])
    assert list(stardist.network) == ["apr", "pixel"] and "available" in stardist
    assert sr.load_runs(tmp_path / "results", "book")[0].empty  # another profile's runs
    # a damaged store, a store of other settings and a stray directory are skipped with a warning
    curve = store.dir / "curve.csv"
    curve.write_text(curve.read_text()[:-20])
    (tmp_path / "results" / "segmentation" / "seg2d_Ex_s1" / "smoke").mkdir(parents=True)
    with pytest.warns(RuntimeWarning) as record:
        assert sr.load_runs(tmp_path / "results", "smoke")[0].empty
    text = " ".join(str(w.message) for w in record)
    assert "damaged" in text and "curve.csv" in text and "seg2d_Ex_s1" in text
    (tmp_path / "results" / "segmentation" / "seg2d_Ex_s1" / "smoke").rmdir()
    sr.compute_run(cfg, "smoke", tmp_path / "results", tmp_path / "ck", recompute=True, progress=False)
    assert len(sr.load_runs(tmp_path / "results", "smoke")[0]) == 2 * cfg.n_steps
    old = seg.SegmentationConfig(**{**cfg.params(), "radius_range": cfg.radius_range, "n_steps": 2})
    sr.compute_run(old, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)  # as if the profile changed
    with pytest.warns(RuntimeWarning, match="other settings.*n_steps"):
        assert sr.load_runs(tmp_path / "results", "smoke")[0].empty


def test_the_command_line_stores_runs_and_archives_checkpoints(tmp_path, capsys):
    results, ck = tmp_path / "results", tmp_path / "ck"
    args = ["train", "--profile", "smoke", "--ndim", "2", "--seeds", "1", "--results-dir", str(results),
            "--checkpoint-dir", str(ck), "--quiet"]
    sr.main(args)
    store = sr.run_store(sr.run_config("smoke", 2, None, 1), "smoke", results)
    assert store.fresh
    for table in ("curve", "summary", "stardist"):
        assert (store.dir / f"{table}.csv").is_file()
    checkpoint = run_checkpoint(store, ck)
    assert not checkpoint.path.exists() and checkpoint.archive.exists()
    assert "seg2d_E0.1_s1: stored in" in capsys.readouterr().out
    sr.main(args)
    assert "seg2d_E0.1_s1: fresh, skipped" in capsys.readouterr().out
    # cost, and bad input
    sr.main(["cost", "--profile", "smoke", "--ndim", "2", "--results-dir", str(results)])
    cost = sr.load_cost(results, "smoke")
    assert list(cost["size"]) == [32, 64] and (cost["ndim"] == 2).all()
    for bad in (["train", "--profile", "huge"], ["train", "--ndim", "4"], ["train", "--seeds", "1", "1"],
                ["train", "--rel-error", "-1"], ["cost", "--seeds", "1"]):
        with pytest.raises(SystemExit) as e:
            sr.main(bad + ["--results-dir", str(results)])
        assert e.value.code == 2


def test_the_command_line_resumes_a_stopped_run(tmp_path, monkeypatch, capsys):
    results, ck = tmp_path / "results", tmp_path / "ck"
    args = ["train", "--profile", "smoke", "--ndim", "2", "--seeds", "2", "--rel-error", "0.2",
            "--results-dir", str(results), "--checkpoint-dir", str(ck), "--quiet"]
    with monkeypatch.context() as m:
        _stop_at(m, 2)
        with pytest.raises(SystemExit) as e:
            sr.main(args)
    assert e.value.code == 128 + signal.SIGTERM
    assert "SIGTERM: training stopped after 2 steps" in capsys.readouterr().err
    cfg = sr.run_config("smoke", 2, 0.2, 2)
    store = sr.run_store(cfg, "smoke", results)
    checkpoint = run_checkpoint(store, ck)
    assert checkpoint.path.exists() and not store.fresh
    sr.main(args)
    assert store.fresh and not checkpoint.path.exists() and checkpoint.archive.exists()
    straight = seg.train_pair(cfg)
    pd.testing.assert_frame_equal(store.load_table("curve")[COLS], straight.curve[COLS], check_dtype=False)

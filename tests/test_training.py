"""Training loops: determinism, checkpoint/resume, model selection, input specs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aprlib.data.synthetic import SyntheticShapes, SyntheticShapesStream
from aprlib.models import apr_network, pixel_network
from aprlib.train import BatchBuilder, InputSpec, evaluate, layer_plan, train_fixed, train_streamed

SIZE = (48, 48)


def _apr_model(seed=0, **kw):
    torch.manual_seed(seed)
    return apr_network("A", "same", **kw)


def test_streamed_training_resumes_exactly(tmp_path):
    stream = SyntheticShapesStream(seed=3, size=SIZE)
    spec = InputSpec("apr")
    straight = _apr_model(dropout=0.5)  # dropout: the restored torch RNG must be the straight run's
    ref = train_streamed(straight, stream, spec, n_batches=6, batch_size=4, progress=False)
    ckpt = tmp_path / "run.ckpt"
    first = _apr_model(dropout=0.5)
    train_streamed(first, stream, spec, n_batches=3, batch_size=4, checkpoint=ckpt, progress=False)
    assert ckpt.exists()
    resumed_model = _apr_model(seed=99, dropout=0.5)  # different initialisation: the checkpoint must override it
    resumed = train_streamed(resumed_model, stream, spec, n_batches=6, batch_size=4, checkpoint=ckpt,
                             progress=False)
    assert resumed.batch.tolist() == list(range(6))
    np.testing.assert_allclose(resumed.loss, ref.loss, rtol=1e-5)
    for (k, a), b in zip(straight.state_dict().items(), resumed_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_worker_processes_give_the_same_batches():
    stream = SyntheticShapesStream(seed=4, size=SIZE)
    a = train_streamed(_apr_model(), stream, InputSpec("apr"), n_batches=3, batch_size=4, progress=False)
    b = train_streamed(_apr_model(), stream, InputSpec("apr"), n_batches=3, batch_size=4, num_workers=1,
                       progress=False)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)
    assert (a.step_s > 0).all() and (a.wait_s >= 0).all()


def test_fixed_training_keeps_the_minimum_validation_loss_model():
    train = SyntheticShapes(24, seed=5, size=SIZE)
    val = SyntheticShapes(12, seed=6, size=SIZE)
    model = _apr_model()
    metrics, best = train_fixed(model, train, val, InputSpec("apr"), n_iterations=12, batch_size=6, eval_every=3,
                                lr=3e-3, progress=False)
    assert metrics.iteration.tolist() == [3, 6, 9, 12]
    model.load_state_dict(best)
    builder = BatchBuilder(InputSpec("apr"), layer_plan(model))
    val_batch = [builder([val.image(i) for i in range(12)])]
    assert evaluate(model, val_batch)["loss"] == pytest.approx(metrics.val_loss.min(), rel=1e-4)


def _fixed_case():
    """A small fixed-dataset run with dropout (the restored torch RNG matters): training and validation
    sets, a fresh seeded model per call, and train_fixed's settings."""
    def model():
        torch.manual_seed(0)
        return apr_network("A", "same", spatial_dropout=0.3, dropout=0.5)

    kw = dict(batch_size=6, eval_every=2, lr=3e-3, weight_decay=1e-4, seed=2, progress=False)
    return SyntheticShapes(18, seed=8, size=SIZE), SyntheticShapes(6, seed=9, size=SIZE), model, kw


def test_fixed_training_resumes_exactly(tmp_path):
    """A run interrupted after an evaluation (where checkpoints are written) and resumed gives the
    straight run's metrics and selected model; dropout makes the restored torch RNG matter."""
    train, val, model, kw = _fixed_case()
    ref, ref_best = train_fixed(model(), train, val, InputSpec("apr"), n_iterations=6, **kw)
    ckpt = tmp_path / "fixed.ckpt"
    train_fixed(model(), train, val, InputSpec("apr"), n_iterations=4, checkpoint=ckpt, checkpoint_every_s=0, **kw)
    resumed, best = train_fixed(model(), train, val, InputSpec("apr"), n_iterations=6, checkpoint=ckpt, **kw)
    assert resumed.iteration.tolist() == [2, 4, 6]
    assert (resumed.wall_s > 0).all() and (resumed.wall_s >= resumed.step_s).all()  # both sessions' rows
    np.testing.assert_allclose(resumed[["train_loss", "val_loss"]], ref[["train_loss", "val_loss"]], rtol=1e-5)
    for k in ref_best:
        torch.testing.assert_close(best[k], ref_best[k], rtol=1e-5, atol=1e-6, msg=k)
    with pytest.raises(ValueError, match="empty"):
        train_fixed(model(), SyntheticShapes(0, seed=1, size=SIZE), val, InputSpec("apr"), n_iterations=1)


def test_fixed_training_with_bn_calibration(tmp_path):
    """bn_calibration: the same training steps; each evaluation measures a copy whose batch-norm
    statistics are those of the first training batches (the kept model carries them); a checkpoint
    written without it is not resumed with it."""
    from aprlib.train import batch_norms, recalibrate_bn
    train, val, model, kw = _fixed_case()
    plain_model = model()  # each made just before its run: dropout draws from the torch RNG model() seeds
    plain, _ = train_fixed(plain_model, train, val, InputSpec("apr"), n_iterations=6, **kw)
    cal_model = model()
    cal, best = train_fixed(cal_model, train, val, InputSpec("apr"), n_iterations=6, bn_calibration=2, **kw)
    # training is untouched: the same losses and the same final weights and running statistics
    np.testing.assert_array_equal(cal.train_loss, plain.train_loss)
    for (k, a), b in zip(plain_model.state_dict().items(), cal_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert not np.allclose(cal.val_loss, plain.val_loss)  # but the evaluations measure other statistics
    # the last evaluation is of the final weights recalibrated on training items 0-11 (2 batches of 6)
    builder = BatchBuilder(InputSpec("apr"), layer_plan(cal_model))
    calib = [builder([train.image(i) for i in range(j, j + 6)]) for j in (0, 6)]
    recal = recalibrate_bn(cal_model, calib)
    assert evaluate(recal, [builder([val.image(i) for i in range(6)])])["loss"] == pytest.approx(
        cal.val_loss.iloc[-1], rel=1e-5)
    # the kept model carries recalibrated statistics (num_batches_tracked counts the calibration batches)
    assert all(int(best[k]) == 2 for k in best if k.endswith("num_batches_tracked"))
    assert len(batch_norms(cal_model)) > 0
    # a checkpoint of the run without calibration is not resumed by the run with it
    ckpt = tmp_path / "fixed.ckpt"
    train_fixed(model(), train, val, InputSpec("apr"), n_iterations=4, checkpoint=ckpt, checkpoint_every_s=0, **kw)
    resumed, _ = train_fixed(model(), train, val, InputSpec("apr"), n_iterations=6, checkpoint=ckpt,
                             bn_calibration=2, **kw)
    np.testing.assert_allclose(resumed.val_loss, cal.val_loss, rtol=1e-5)  # restarted, not resumed
    with pytest.raises(ValueError, match="bn_calibration"):
        train_fixed(model(), train, val, InputSpec("apr"), n_iterations=2, bn_calibration=0, **kw)
    with pytest.raises(ValueError, match="no batch normalisation"):  # before any training step
        train_fixed(apr_network("A", "same").features[0][0], train, val, InputSpec("apr"), n_iterations=2,
                    bn_calibration=1, **kw)


def test_finite_runs_smoke(tmp_path):
    """Fig 4.6 runs: nested training sets, both test sets with Wilson intervals, stored results."""
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_finite, finite_datasets, finite_runs
    cfg = profile_settings("finite_datasets", "smoke")
    runs = finite_runs(cfg)
    assert {r["network"] for r in runs} == {"APR_B", "Pix_B"}
    assert sorted({r["per_class"] for r in runs}) == cfg["per_class"]
    book = profile_settings("finite_datasets", "book")
    assert book["per_class"] == [20, 50, 100, 200, 500, 1000, 2000] and book["eval_per_class"] == 500
    data = finite_datasets(cfg)
    assert np.bincount(data["test_extreme"].labels).tolist() == [cfg["eval_per_class"]] * 6
    store = compute_finite(runs[0], cfg, "smoke", tmp_path / "results", tmp_path / "ckpt", progress=False)
    test = store.load_table("test")
    assert test.test_set.tolist() == ["test", "test_extreme"]
    assert ((test.ci_low <= test.accuracy) & (test.accuracy <= test.ci_high)).all()
    confusion = store.load_table("confusion")  # 6 x 6 counts per test set, consistent with the accuracy
    for row in test.itertuples():
        c = confusion[confusion.test_set == row.test_set]
        assert len(c) == 36 and c["count"].sum() == row.n
        assert c[c["true"] == c["predicted"]]["count"].sum() == pytest.approx(row.accuracy * row.n)
        assert (c.groupby("true")["count"].sum() == cfg["eval_per_class"]).all()
    assert store.fresh and store.provenance()["seeds"]["data"] == cfg["data_seed"]
    metrics = store.load_table("metrics")  # compute_s: training and validation of every session + testing
    assert store.provenance()["compute_s"] == pytest.approx(metrics.wall_s.sum() + test.test_s.sum(), abs=0.1)


def test_cached_validation_gives_the_same_run():
    """cache_val keeps the prepared validation batches: the same metrics and kept model as preparing
    them at every evaluation."""
    train, val = SyntheticShapes(8, seed=8, size=SIZE), SyntheticShapes(6, seed=9, size=SIZE)
    kw = dict(batch_size=4, eval_every=2, lr=3e-3, seed=2, progress=False)
    a, best_a = train_fixed(_apr_model(), train, val, InputSpec("apr"), 5, **kw)
    b, best_b = train_fixed(_apr_model(), train, val, InputSpec("apr"), 5, cache_val=True, **kw)
    cols = ["iteration", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_array_equal(a[cols], b[cols])
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)


def test_staged_finite_runs(tmp_path):
    """Fig 4.6 with staged budgets (finite_converged): evaluation at least once per epoch, budgets on
    the evaluation grid, the run stops at the first budget whose kept model lies in its first 80%
    (else at the last), stored apart from the fixed-budget runs with the extra seeds at the small sizes."""
    from aprbook.learning_curves import kept_early
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_finite, finite_budgets, finite_eval_every, finite_runs
    book = profile_settings("finite_converged", "book")
    runs = finite_runs(book)
    for n in (20, 50, 100):
        assert sorted({r["seed"] for r in runs if r["per_class"] == n}) == [1, 2, 3]
    assert {r["seed"] for r in runs if r["per_class"] == 2000} == {1}
    for n in book["per_class"]:
        e = finite_eval_every(book, n)
        assert e <= max(1, 6 * n // book["batch_size"]) and e <= book["eval_every"]  # at least once per epoch
        assert all(b % e == 0 for b in finite_budgets(book, n))
    assert finite_eval_every(book, 20) == 3 and finite_budgets(book, 100) == [608, 1200, 2400, 4800, 9008]
    cfg = profile_settings("finite_converged", "smoke")
    run = finite_runs(cfg)[0]
    store = compute_finite(run, cfg, "smoke", tmp_path / "results", tmp_path / "ckpt", progress=False)
    assert store.dir.parts[-3] == "finite_converged" and store.fresh
    prov = store.provenance()
    budgets = finite_budgets(cfg, run["per_class"])
    assert prov["iterations_trained"] in budgets
    assert prov["kept_early"] == kept_early(prov["best_iteration"], prov["iterations_trained"])
    if prov["iterations_trained"] < budgets[-1]:
        assert prov["kept_early"]
    metrics = store.load_table("metrics")
    assert metrics.iteration.iloc[-1] == prov["iterations_trained"]
    e = finite_eval_every(cfg, run["per_class"])
    assert (np.diff(metrics.iteration.to_numpy()) <= e).all()


def test_staged_finite_run_resumes_a_checkpoint_past_its_first_budget(tmp_path, capsys, monkeypatch):
    """A finite-data run stopped after its first budget continues at the budget its checkpoint lies
    in; if it should have stopped at a budget it passed, it restarts and ends as a straight run."""
    import aprbook.learning_curves as lc
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_finite, finite_budgets, finite_runs, finite_store, run_checkpoint, run_finite
    cfg = profile_settings("finite_converged", "smoke")
    run = finite_runs(cfg)[0]
    assert finite_budgets(cfg, run["per_class"]) == [3, 6]
    cols = ["iteration", "train_loss", "val_loss"]

    def resumed_from_4(where, kept_early):
        monkeypatch.setattr(lc, "kept_early", kept_early)
        ck = run_checkpoint(finite_store(run, cfg, "smoke", where / "results"), where / "ck", "budgets")
        run_finite(run, cfg, checkpoint=ck, progress=False, n_iterations=4)
        assert ck.saved_progress("next_iteration") == 4
        capsys.readouterr()
        store = compute_finite(run, cfg, "smoke", where / "results", where / "ck", progress=False)
        return store, capsys.readouterr().out

    store, out = resumed_from_4(tmp_path / "a", lambda best, n: False)  # never stops early: trains to 6
    assert "not resumed" not in out and "restarts" not in out
    straight = run_finite(run, cfg, progress=False, n_iterations=6)
    np.testing.assert_array_equal(store.load_table("metrics")[cols], straight[0][cols])
    np.testing.assert_array_equal(store.load_table("test").accuracy, straight[1].accuracy)
    assert store.provenance()["iterations_trained"] == 6

    store, out = resumed_from_4(tmp_path / "b", lambda best, n: n == 3)  # stops at 3: only a restart gives it
    assert "the run restarts" in out
    straight = run_finite(run, cfg, progress=False, n_iterations=3)
    np.testing.assert_array_equal(store.load_table("metrics")[cols], straight[0][cols])
    np.testing.assert_array_equal(store.load_table("test").accuracy, straight[1].accuracy)
    assert store.provenance()["iterations_trained"] == 3 and store.provenance()["kept_early"] is True


def test_a_staged_finite_run_tests_only_the_budget_it_stops_at(tmp_path, monkeypatch):
    """The kept model is tested once, at the budget where the run stops (the last, here), not at
    every budget it passes; the stored test is that of a straight run of that length."""
    import aprbook.learning_curves as lc
    import aprbook.runs as runs
    from aprbook.profiles import profile_settings
    cfg = profile_settings("finite_converged", "smoke")
    run = runs.finite_runs(cfg)[0]
    tested, evaluate = [], runs.evaluate_in_order
    monkeypatch.setattr(runs, "evaluate_in_order",
                        lambda model, ds, *a: tested.append(len(ds)) or evaluate(model, ds, *a))
    monkeypatch.setattr(lc, "kept_early", lambda best, n: False)  # never trained out: both budgets
    store = runs.compute_finite(run, cfg, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    assert store.provenance()["iterations_trained"] == cfg["budgets"][-1]
    assert len(tested) == 2  # test and test_extreme, once
    straight = runs.run_finite(run, cfg, progress=False, n_iterations=cfg["budgets"][-1])
    np.testing.assert_array_equal(store.load_table("test").accuracy, straight[1].accuracy)
    np.testing.assert_array_equal(store.load_table("test").best_iteration, straight[1].best_iteration)


def test_lengthening_the_budget_ladder_keeps_runs_that_stopped_early_and_extends_the_others(tmp_path, capsys,
                                                                                           monkeypatch):
    """A run stored as trained out at a budget stays fresh under a longer ladder with the same budgets
    up to it (not under one that changes them); a run that spent its whole ladder is extended by a
    longer one from its archived checkpoint, to the result of a straight run under that ladder."""
    import aprbook.learning_curves as lc
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_finite, finite_runs, finite_store, load_runs, run_finite
    cfg = profile_settings("finite_converged", "smoke")
    run = finite_runs(cfg)[0]
    longer, other = {**cfg, "budgets": [3, 6, 12]}, {**cfg, "budgets": [4, 6, 12]}
    cols = ["iteration", "train_loss", "val_loss"]

    monkeypatch.setattr(lc, "kept_early", lambda best, n: n == 3)  # trained out at its first budget
    a = tmp_path / "a"
    compute_finite(run, cfg, "smoke", a / "results", a / "ck", progress=False)
    kept = finite_store(run, longer, "smoke", a / "results")
    assert kept.fresh and kept.params["budgets"] == [3, 6] and kept.provenance()["iterations_trained"] == 3
    assert run["id"] in load_runs("finite_converged", "smoke", a / "results", a / "ck", cfg=longer).stores
    assert not finite_store(run, other, "smoke", a / "results").fresh  # its first budget differs
    monkeypatch.setattr(lc, "kept_early", lambda best, n: False)  # a run stored as not trained out:
    store = compute_finite(run, cfg, "smoke", a / "results", a / "ck", recompute=True, progress=False)
    assert store.provenance()["iterations_trained"] == 6 and not store.provenance()["kept_early"]
    assert not finite_store(run, longer, "smoke", a / "results").fresh
    capsys.readouterr()
    store = compute_finite(run, longer, "smoke", a / "results", a / "ck", progress=False)
    assert "resuming from" in capsys.readouterr().out  # extended from its archived checkpoint at 6
    assert store.params["budgets"] == [3, 6, 12] and store.provenance()["iterations_trained"] == 12
    straight = run_finite(run, cfg, progress=False, n_iterations=12)
    np.testing.assert_array_equal(store.load_table("metrics")[cols], straight[0][cols])
    np.testing.assert_array_equal(store.load_table("test").accuracy, straight[1].accuracy)
    assert finite_store(run, longer, "smoke", a / "results").fresh
    assert not finite_store(run, cfg, "smoke", a / "results").fresh  # the shorter ladder's run is gone


def test_a_streamed_run_converged_early_stays_fresh_under_a_longer_ladder(tmp_path, monkeypatch):
    """The same rule for the streamed runs: converged at a budget, fresh under any ladder with the
    same budgets up to it; not converged, stale under a longer ladder."""
    import aprbook.learning_curves as lc
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_streamed, streamed_runs, streamed_store
    cfg = profile_settings("streamed_converged", "smoke")
    run, first = streamed_runs(cfg)[0], cfg["budgets"][0]
    longer = {**cfg, "budgets": [*cfg["budgets"], 2 * cfg["budgets"][-1]],
              "n_batches": 2 * cfg["budgets"][-1]}
    for ok, fresh in ((True, True), (False, False)):
        monkeypatch.setattr(lc, "plateaued", lambda m, ok=ok: (ok, {"reason": "test"}))
        where = tmp_path / str(ok)
        store = compute_streamed(run, cfg, "smoke", where / "results", where / "ck", progress=False)
        assert store.provenance()["batches_trained"] == (first if ok else cfg["budgets"][-1])
        assert streamed_store(run, longer, "smoke", where / "results").fresh is fresh
    assert not streamed_store(run, {**cfg, "budgets": [first + 1, *cfg["budgets"][1:]]}, "smoke",
                              tmp_path / "True" / "results").fresh


def test_a_streamed_seed_extended_to_its_siblings_budget_resumes_its_archived_checkpoint(tmp_path, capsys,
                                                                                         monkeypatch):
    """extend_to gives a run at_least: a run stored as converged at the first budget is stale, resumes
    its archived checkpoint (whose key leaves at_least out) and trains to at_least, where it is first
    checked; the result equals a straight run of that length. A budget not on the ladder or an unknown
    run id is an error."""
    import aprbook.learning_curves as lc
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_streamed, run_streamed, streamed_runs, streamed_store
    cfg = profile_settings("streamed_converged", "smoke")
    run = streamed_runs(cfg)[0]
    checked = []
    monkeypatch.setattr(lc, "plateaued", lambda m: (checked.append(len(m)) or True, {"reason": "test"}))
    store = compute_streamed(run, cfg, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    assert store.provenance()["batches_trained"] == cfg["budgets"][0] and checked == [cfg["budgets"][0]]
    longer = {**cfg, "extend_to": {run["id"]: cfg["budgets"][-1]}}
    (ext,) = [r for r in streamed_runs(longer) if r["id"] == run["id"]]
    assert ext["at_least"] == cfg["budgets"][-1]
    assert not streamed_store(ext, longer, "smoke", tmp_path / "results").fresh
    checked.clear()
    capsys.readouterr()
    store = compute_streamed(ext, longer, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    assert "resuming from" in capsys.readouterr().out and checked == [cfg["budgets"][-1]]
    assert store.provenance()["batches_trained"] == cfg["budgets"][-1] and store.params["at_least"] == ext["at_least"]
    straight = run_streamed(run, cfg, progress=False, n_batches=cfg["budgets"][-1])
    np.testing.assert_array_equal(store.load_table("metrics")[["batch", "loss", "accuracy"]],
                                  straight[["batch", "loss", "accuracy"]])
    with pytest.raises(ValueError, match="not a budget"):
        compute_streamed({**ext, "at_least": cfg["budgets"][-1] + 1}, longer, "smoke", tmp_path / "r2",
                         tmp_path / "ck2", progress=False)
    with pytest.raises(ValueError, match="extend_to names runs"):
        streamed_runs({**cfg, "extend_to": {"APR_Z_s9": 4}})


def test_accuracy_ci_is_wilson():
    from aprbook.learning_curves import accuracy_ci
    lo, hi = accuracy_ci(2850, 3000)
    p, z, n = 0.95, 1.959964, 3000  # Wilson score interval by hand
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert lo == pytest.approx(centre - half, abs=1e-6) and hi == pytest.approx(centre + half, abs=1e-6)


def test_pixel_inputs_and_downsampling():
    imgs = [np.random.default_rng(i).random((64, 64)).astype(np.float32) for i in range(3)]
    x = BatchBuilder(InputSpec("pixel", resolution=32)).inputs(imgs)
    assert x.shape == (3, 1, 32, 32)
    assert torch.allclose(x.mean(), torch.from_numpy(np.stack(imgs)).mean(), atol=0.01)
    stream = SyntheticShapesStream(seed=7, size=SIZE)
    torch.manual_seed(0)
    out = train_streamed(pixel_network("A"), stream, InputSpec("pixel"), n_batches=2, batch_size=3, progress=False)
    assert len(out) == 2 and np.isfinite(out.loss).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="kind"):
        InputSpec("voxels")
    with pytest.raises(ValueError, match="positive"):
        train_streamed(_apr_model(), SyntheticShapesStream(seed=1, size=SIZE), InputSpec(), n_batches=0)


def test_streamed_runs_cover_fig_4_3_4_4_and_table_4_2():
    from aprbook.profiles import profile_settings
    from aprbook.runs import streamed_runs
    for profile in ("smoke", "book", "paper"):
        cfg = profile_settings("streamed_training", profile)
        runs = streamed_runs(cfg)
        ids = [r["id"] for r in runs]
        assert len(ids) == len(set(ids))
        first = [r for r in runs if r["seed"] == cfg["seeds"][0]]
        assert len(first) == 13  # 4 A nets, 4 B nets, APR_B at 3 more E, Pix_B at 2 more resolutions
        assert {r["rel_error"] for r in first if r["network"] == "APR_B"} == {0.1, 0.4, 0.6, 0.8}
        assert {r["resolution"] for r in first if r["network"] == "Pix_B"} == {cfg["size"], cfg["size"] // 2,
                                                                               cfg["size"] // 4}


def test_book_runs_to_convergence_have_three_seeds_of_every_compared_network_and_input():
    """Comparisons (Fig 4.3/4.4 between networks, Table 4.2 between inputs) need 3 seeds of each side;
    the 'same' and 'close' variants run one; an extra-seed entry names a network or a network and input."""
    from aprbook.profiles import profile_settings
    from aprbook.runs import streamed_runs
    from aprbook.streamed_claims import THESIS_42, table4_2_input
    cfg = profile_settings("streamed_converged", "book")
    runs = streamed_runs(cfg)
    assert len({r["id"] for r in runs}) == len(runs)
    per_input = {}
    for r in runs:
        per_input.setdefault(table4_2_input(r, cfg["size"]) or r["network"], []).append(r["seed"])
    assert {k: sorted(v) for k, v in per_input.items() if k in THESIS_42} == {k: [1, 2, 3] for k in THESIS_42}
    for net in ("APR_A", "Pix_A"):
        assert sorted(per_input[net]) == [1, 2, 3]
    for net in ("APR_A same", "APR_A close", "APR_B same", "APR_B close"):
        assert per_input[net] == [1]
    with_prefix = streamed_runs({**cfg, "extra_seeds_for": ["Pix_B_px64"], "extend_to": {}})
    assert sorted(r["id"] for r in with_prefix if r["id"].startswith("Pix_B_px64")) == \
        ["Pix_B_px64_s1", "Pix_B_px64_s2", "Pix_B_px64_s3"]
    assert all(r["seed"] == 1 for r in with_prefix if not r["id"].startswith("Pix_B_px64"))


def test_converged_profiles_run_pixel_networks_channels_last():
    """The runs to convergence give their pixel networks the channels-last layout as a parameter of
    the run (so it keys their stores and checkpoints); the APR runs and the earlier experiments'
    runs keep their parameters unchanged."""
    from aprbook.profiles import profile_settings
    from aprbook.runs import _networks, finite_runs, streamed_runs
    for profile in ("smoke", "book", "paper"):
        for runs in (streamed_runs(profile_settings("streamed_converged", profile)),
                     finite_runs(profile_settings("finite_converged", profile))):
            pixel = [r for r in runs if r["network"].startswith("Pix")]
            assert pixel and all(r["channels_last"] is True for r in pixel)
            assert not any("channels_last" in r for r in runs if not r["network"].startswith("Pix"))
        for runs in (streamed_runs(profile_settings("streamed_training", profile)),
                     finite_runs(profile_settings("finite_datasets", profile))):
            assert not any("channels_last" in r for r in runs)
    net = _networks("B", "pixel", channels_last=True)
    assert net.channels_last and net.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_evaluate_confusion_counts():
    """Rows are true classes, columns predictions; counts add over batches."""
    class Fixed(torch.nn.Module):
        def forward(self, x):
            return F.one_hot(x[:, 0].long(), 3).float()  # predicts the class stored in the input

    batches = [(torch.tensor([[0.], [1.], [2.]]), torch.tensor([0, 2, 2])),
               (torch.tensor([[1.], [1.]]), torch.tensor([1, 0]))]
    res = evaluate(Fixed(), batches)
    assert res["confusion"].tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 1]]
    assert res["accuracy"] == pytest.approx(3 / 5) and res["n"] == 5


def test_load_runs_loads_the_stored_trains_the_missing_only_when_asked_and_never_uses_a_corrupt_store(
        tmp_path, monkeypatch):
    from aprbook import runs as runs_mod
    from aprbook.profiles import profile_settings
    name, list_runs, compute, make_store = runs_mod.EXPERIMENTS["converged"]
    monkeypatch.setitem(runs_mod.EXPERIMENTS, "converged", (name, lambda cfg: list_runs(cfg)[:2], compute, make_store))
    res, ck = tmp_path / "results", tmp_path / "checkpoints"
    first = runs_mod.load_runs("converged", "smoke", res, ck)
    two = [r["id"] for r in first.runs]
    assert first.stores == {} and first.missing == two and first.loaded == []
    cfg = profile_settings(name, "smoke")
    compute(first.runs[0], cfg, "smoke", res, ck, progress=False)
    again = runs_mod.load_runs("converged", "smoke", res, ck)
    assert list(again.stores) == two[:1] and again.missing == two[1:]
    metrics = again.tables("metrics")[two[0]]
    assert len(metrics) == cfg["budgets"][-1] and again.provenances()[two[0]]["params_hash"]
    trained = runs_mod.load_runs("converged", "smoke", res, ck, train_missing=True)
    assert list(trained.stores) == two and trained.missing == []
    # a stored file altered after the run: that run is not loaded, it is missing again
    path = trained.stores[two[1]].dir / "metrics.csv"
    path.write_text(path.read_text() + "0,0,0\n")
    assert runs_mod.load_runs("converged", "smoke", res, ck).missing == two[1:]
    with pytest.raises(ValueError, match="experiment"):
        runs_mod.load_runs("nonsense", "smoke", res, ck)

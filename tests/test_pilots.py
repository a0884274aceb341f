"""The pilots of the slow learning and the runs trained to convergence: input normalisation, pixel
padding, the pilot grid, staged budgets."""

import numpy as np
import pandas as pd
import pytest
import torch

from aprbook.pilots import (DECISION_RULE, FACTORS, compute_pilot, factor_effects, factor_table, pilot_runs,
                            pilot_summary)
from aprbook.profiles import profile_settings
from aprbook.runs import compute_streamed, run_checkpoint, run_streamed, streamed_runs, streamed_store
from aprlib.data.synthetic import generate_batch
from aprlib.models import pixel_network
from aprlib.train import BatchBuilder, InputSpec


@pytest.mark.parametrize("norm", ["dataset", "image"])
def test_normalised_apr_and_pixel_inputs_take_the_same_map(norm):
    images, _ = generate_batch(3, seed=5, size=(64, 64))
    raw_apr = BatchBuilder(InputSpec("apr"))(list(zip(images, [0, 1, 2])))[0]
    apr = BatchBuilder(InputSpec("apr", normalise=norm))(list(zip(images, [0, 1, 2])))[0]
    pix = BatchBuilder(InputSpec("pixel", normalise=norm))(list(zip(images, [0, 1, 2])))[0]
    for i, im in enumerate(images):
        shift, scale = InputSpec("pixel", normalise=norm).affine(im)
        # the structure is that of the raw image; only the intensities change, by the pixels' map
        assert np.array_equal(apr[i].level, raw_apr[i].level) and np.array_equal(apr[i].y, raw_apr[i].y)
        np.testing.assert_allclose(apr[i].intensities, (raw_apr[i].intensities - shift) / scale, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pix[i, 0].numpy(), (im - shift) / scale, rtol=1e-5, atol=1e-5)
    if norm == "image":
        assert abs(float(pix[0].mean())) < 1e-4 and abs(float(pix[0].std(unbiased=False)) - 1) < 1e-3


def test_normalise_rejects_unknown_values_and_constant_images():
    with pytest.raises(ValueError, match="normalise must be one of"):
        InputSpec("pixel", normalise="per_pixel")
    shift, scale = InputSpec("pixel", normalise="image").affine(np.full((8, 8), 0.3, np.float32))
    assert shift == pytest.approx(0.3) and scale == 1.0  # a constant image maps to zero, not NaN


def test_pixel_padding_mode_changes_the_border_only():
    torch.manual_seed(0)
    zeros = pixel_network("A")
    torch.manual_seed(0)
    rep = pixel_network("A", padding_mode="replicate")
    x = torch.full((1, 1, 32, 32), 0.7)
    conv_z, conv_r = zeros.features[0][0], rep.features[0][0]
    assert conv_r.padding_mode == "replicate"
    out_z, out_r = conv_z(x), conv_r(x)
    assert torch.allclose(out_z[..., 5:-5, 5:-5], out_r[..., 5:-5, 5:-5])
    assert not torch.allclose(out_z[..., :5, :], out_r[..., :5, :])
    # a constant image has a constant response with replication: no artificial frame
    assert torch.allclose(out_r, out_r[..., 16:17, 16:17].expand_as(out_r), atol=1e-5)


def test_pilot_grid_changes_one_factor_at_a_time(tmp_path):
    cfg = profile_settings("pilots", "smoke")
    runs = pilot_runs(cfg)
    assert len({r["id"] for r in runs}) == len(runs)
    assert {r["factor"] for r in runs} == set(FACTORS) and len(FACTORS) >= 7
    for name, f in FACTORS.items():
        assert name == "baseline" or len(set(f) - {"tests", "networks"}) == 1, name
    stores = {r["id"]: compute_pilot(r, cfg, "smoke", tmp_path, progress=False)
              for r in runs if r["factor"] in ("baseline", "norm_image")}
    metrics = {k: s.load_table("metrics") for k, s in stores.items()}
    summary = pilot_summary(metrics, runs, window=2)
    assert len(summary) == len(metrics) and summary.batches.eq(cfg["n_batches"]).all()
    table = factor_table(summary)
    assert (table.loc[table.factor == "baseline", "change_vs_baseline"] == 0).all()


def test_staged_budgets_equal_a_straight_run(tmp_path):
    cfg = profile_settings("streamed_converged", "smoke")
    assert cfg["budgets"][-1] == cfg["n_batches"]
    run = next(r for r in streamed_runs(cfg) if r["network"] == "Pix_A")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    prov = store.provenance()
    assert prov["experiment"].startswith("streamed_converged/") and prov["params"]["normalise"] == "dataset"
    assert prov["plateaued"] is False and prov["batches_trained"] == cfg["n_batches"]  # too short to judge
    straight = run_streamed(run, cfg, progress=False)
    pd.testing.assert_frame_equal(store.load_table("metrics")[["batch", "loss", "accuracy"]],
                                  straight[["batch", "loss", "accuracy"]], check_exact=True)
    with pytest.raises(ValueError, match="budgets must increase"):
        compute_streamed(run, {**cfg, "budgets": [4, 2]}, "smoke", tmp_path / "r2", tmp_path / "c2", progress=False)


def test_staged_run_resumes_a_checkpoint_past_its_first_budget(tmp_path, capsys, monkeypatch):
    """A run stopped after its first budget (here at batch 3 of budgets [2, 4]) continues at the
    budget its checkpoint lies in, and ends as a straight run; if it should have stopped at a budget
    it passed, its result is its rows up to that budget."""
    import aprbook.learning_curves as lc
    cfg = profile_settings("streamed_converged", "smoke")
    assert cfg["budgets"] == [2, 4]
    run = next(r for r in streamed_runs(cfg) if r["network"] == "Pix_A")
    straight = run_streamed(run, cfg, progress=False)

    def stopped_at_3(where):
        ck = run_checkpoint(streamed_store(run, cfg, "smoke", where / "results"), where / "ck", "budgets")
        saved = run_streamed(run, cfg, checkpoint=ck, progress=False, n_batches=3)
        assert ck.saved_progress("next_batch") == 3
        capsys.readouterr()
        return saved

    saved = stopped_at_3(tmp_path / "a")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "a" / "results", tmp_path / "a" / "ck", progress=False)
    assert "not resumed" not in capsys.readouterr().out
    metrics = store.load_table("metrics")
    pd.testing.assert_frame_equal(metrics[["batch", "loss", "accuracy"]], straight[["batch", "loss", "accuracy"]],
                                  check_exact=True)
    assert metrics.step_s[:3].tolist() == saved.step_s.tolist()  # the first 3 batches were not retrained
    assert store.provenance()["batches_trained"] == 4

    # a run that converges at 2 batches (a stand-in criterion): resumed at 4, it keeps its first 2 rows
    monkeypatch.setattr(lc, "plateaued", lambda m: (len(m) == 2, {"reason": f"stand-in at {len(m)}"}))
    saved = stopped_at_3(tmp_path / "b")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "b" / "results", tmp_path / "b" / "ck", progress=False)
    assert "not resumed" not in capsys.readouterr().out
    prov = store.provenance()
    assert prov["batches_trained"] == 2 and prov["plateaued"] is True and prov["plateau_test"] == "stand-in at 2"
    pd.testing.assert_frame_equal(store.load_table("metrics")[["batch", "loss", "accuracy"]],
                                  straight[["batch", "loss", "accuracy"]].iloc[:2], check_exact=True)


def test_factor_effects_judge_changes_against_the_seed_range():
    rows = [("baseline", 1, 0.50), ("baseline", 2, 0.56),     # baseline range 0.06
            ("fast", 1, 0.70), ("fast", 2, 0.72),             # +0.21 > 0.06
            ("slow", 1, 0.30), ("slow", 2, 0.40),             # -0.18 < -0.10 (its own range)
            ("noise", 1, 0.45), ("noise", 2, 0.65),           # +0.02 within 0.20
            ("single", 1, 0.90)]                              # one seed: no noise to judge against
    summary = pd.DataFrame([{"factor": f, "network": "N", "seed": s, "acc_last": a} for f, s, a in rows])
    eff = factor_effects(factor_table(summary)).set_index("factor").effect
    assert eff.to_dict() == {"fast": "speeds up", "slow": "slows down", "noise": "no clear effect", "single": "untested"}


def test_decision_rule_is_stated():
    assert DECISION_RULE.startswith("1. A pilot") and "Per-image standardisation is not adopted" in DECISION_RULE

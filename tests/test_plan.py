"""The analysis plan of the streamed claims (aprbook.plan) and the runs of the thesis's protocol
(aprbook.runs.primary_*): claims judged at the primary budget with no convergence gate, one comparison
per sub-claim, twins read at their first batches, and runs that resume from a fresh clone."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aprbook.plan import (NOT_COMPUTED, PLAN, PlanJudge, judge_plan, plan_table, primary_expected, sensitivity_text,
                          sensitivity_verdicts)
from aprbook.profiles import profile_settings
from aprbook.runs import (compute_primary, compute_streamed, primary_metrics, primary_runs, primary_store,
                          primary_twin, run_streamed, streamed_runs)
from aprbook.streamed_claims import summarise
from aprbook.verdicts import SubClaim, reason_class, reason_counts

ROOT = Path(__file__).resolve().parents[1]
CFG = {"size": 256, "batch_size": 36, "n_batches": 3000, "smooth": 50, "last": 100}


def _curve(reach: int, n: int = 3000, final: float = 0.9, seed: int = 0, still_learning: bool = True) -> pd.DataFrame:
    """Per-batch accuracies of 36 images rising linearly from 0.2 to ``final`` by batch ``reach``
    (still rising by 0.08 over the last fifth when ``still_learning``: unconverged by the plateau test)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    p = np.clip(0.2 + (final - 0.2) * t / reach, 0, final)
    if still_learning:
        p = np.minimum(p + 0.08 * np.clip((t - 0.8 * n) / (0.2 * n), 0, 1), 0.99)
    acc = rng.binomial(36, p) / 36
    return pd.DataFrame({"batch": t, "loss": 1 - acc, "accuracy": acc})


def _runs(nets: dict) -> tuple[list[dict], dict]:
    """run dicts and metrics: ``nets`` maps a network name to the batches at which its seeds reach
    the top of their curve"""
    runs, metrics = [], {}
    for net, reaches in nets.items():
        pixel = net.startswith("Pix")
        for seed, reach in enumerate(reaches, 1):
            rid = f"{net.replace(' ', '_')}_{'px256' if pixel else 'E0.1'}_s{seed}"
            runs.append({"id": rid, "network": net, "family": net.split("_")[1][0],
                         "variant": "pixel" if pixel else (net.split(" ")[1] if " " in net else "full"),
                         "rel_error": None if pixel else 0.1, "resolution": 256 if pixel else None, "seed": seed})
            metrics[rid] = _curve(reach, seed=seed + 10 * len(runs))
    return runs, metrics


def _claim(results, name):
    (c,) = [c for _, c in results if c.name == name]
    return c


def test_a_time_to_threshold_claim_is_decided_on_unconverged_runs():
    """APR_B reaches 0.9 long before Pix_B on every seed; every run is still improving at its end.
    The plan decides the speed claim; the earlier rule left it inconclusive for want of convergence."""
    from aprbook.streamed_claims import Judge
    runs, metrics = _runs({"APR_B": [300, 320, 340], "Pix_B": [1500, 1600, 1700]})
    summary = summarise(runs, metrics, CFG)
    assert not summary.plateaued.any()  # the runs are still learning by the plateau test
    results = judge_plan(summary, runs, CFG)
    assert _claim(results, "APR_B converges faster than Pix_B").status == "holds"
    # the same comparison by the earlier Judge, gated on convergence, could not be decided
    old = Judge(summary, runs, 256).compare("x", [("APR_B", "Pix_B")], "batches_to_0.9")
    assert old.status == "inconclusive" and "unconverged" in old.evidence
    # and reversed, it fails: the plan decides both ways
    runs, metrics = _runs({"APR_B": [1500, 1600, 1700], "Pix_B": [300, 320, 340]})
    assert _claim(judge_plan(summarise(runs, metrics, CFG), runs, CFG),
                  "APR_B converges faster than Pix_B").status == "fails"


def test_a_one_seed_variant_never_makes_a_three_seed_comparison_inconclusive():
    runs, metrics = _runs({"APR_B": [300, 320, 340], "Pix_B": [1500, 1600, 1700], "APR_B same": [600]})
    expected = runs + [{**runs[-1], "id": f"APR_B_same_E0.1_s{s}", "seed": s} for s in (2, 3)]
    results = judge_plan(summarise(runs, metrics, CFG), expected, CFG)
    assert _claim(results, "APR_B converges faster than Pix_B").status == "holds"
    variant = _claim(results, "APR_B converges faster than APR_B same")
    assert variant.status == "inconclusive" and NOT_COMPUTED in variant.evidence
    assert reason_class(variant) == "not computed"
    # every sub-claim of the plan compares at most one pair of networks
    assert all(len(p.nets) <= 2 for p in PLAN if p.kind != "reading")


def test_reason_classes():
    assert reason_class(SubClaim("a", "holds")) == ""
    assert reason_class(SubClaim("a", "inconclusive", f"{NOT_COMPUTED}: X_s2")) == "not computed"
    assert reason_class(SubClaim("a", "inconclusive", "A: 1; B: 2 (underpowered: 1 and 3 seeds)")) == "underpowered"
    assert reason_class(SubClaim("a", "inconclusive", "runs disagree")) == "within noise"
    assert reason_class(SubClaim("a", "inconclusive", "kept a model from the last 20% of the budget: X")) == \
        "not trained out"
    claims = [SubClaim("a", "inconclusive", f"{NOT_COMPUTED}: X"), SubClaim("b", "holds"),
              SubClaim("c", "inconclusive", "runs disagree"), SubClaim("d", "inconclusive", f"{NOT_COMPUTED}: Y")]
    assert reason_counts(claims) == "not computed 2, within noise 1" and reason_counts(claims[1:2]) == ""


def test_the_plan_table_states_a_statistic_and_a_rule_for_every_sub_claim():
    table = plan_table()
    assert len(table) == len(PLAN) and table.notna().all().all()
    assert (table.statistic.str.len() > 10).all() and (table.rule.str.len() > 10).all()
    assert len(set(table["sub-claim"])) == len(table)  # one row per sub-claim


def test_table_4_2_magnitudes_are_judged_against_the_thesis():
    from aprbook.plan import _magnitude
    p = next(p for p in PLAN if p.kind == "magnitude" and p.nets == ("Pix 64",))
    assert _magnitude(p, {"Pix 64": np.array([0.08, 0.09, 0.07])}, 36).status == "holds"
    assert _magnitude(p, {"Pix 64": np.array([0.2, 0.3, 0.25])}, 36).status == "fails"
    assert _magnitude(p, {"Pix 64": np.array([0.08, 0.3, 0.25])}, 36).status == "inconclusive"


def test_primary_runs_have_three_seeds_of_every_network_and_the_sensitivity_arms():
    cfg = profile_settings("streamed_primary", "book")
    runs = primary_runs(cfg)
    plan_runs = primary_expected(runs)
    per_net = pd.Series([r["id"].rsplit("_s", 1)[0] for r in plan_runs]).value_counts()
    assert (per_net == 3).all() and len(per_net) == 13
    arms = [r for r in runs if "normalise" in r]
    assert len(arms) == 12 and {r["normalise"] for r in arms} == {None, "image"}
    assert {r["network"] for r in arms} == {"APR_B", "Pix_B"}
    assert all(r["id"].startswith(f"norm_{r['normalise'] or 'none'}__") for r in arms)
    with pytest.raises(ValueError, match="profile's own"):
        primary_runs({**cfg, "sensitivity": {"networks": ["APR_B"], "normalise": ["dataset"]}})


def test_a_primary_run_is_its_twins_first_batches_and_a_sensitivity_arm_trains_its_own(tmp_path):
    """The twin (a streamed_converged run, trained longer) stands for the primary run: the same
    parameters but for the length, and its first n_batches rows equal a straight primary run's."""
    cfg = profile_settings("streamed_primary", "smoke")
    conv = profile_settings("streamed_converged", "smoke")
    run = next(r for r in primary_runs(cfg) if r["id"] == "APR_A_same_E0.1_s1")
    assert primary_twin(run, cfg, "smoke", tmp_path / "r") is None
    twin = next(r for r in streamed_runs(conv) if r["id"] == run["id"])
    compute_streamed(twin, conv, "smoke", tmp_path / "r", tmp_path / "c", progress=False)
    store = primary_store(run, cfg, "smoke", tmp_path / "r")
    assert store.experiment == f"streamed_converged/{run['id']}"
    assert compute_primary(run, cfg, "smoke", tmp_path / "r", tmp_path / "c", progress=False).dir == store.dir
    straight = run_streamed(run, cfg, progress=False)
    got = primary_metrics(store, cfg)
    assert len(got) == cfg["n_batches"]
    np.testing.assert_array_equal(got[["batch", "loss", "accuracy"]], straight[["batch", "loss", "accuracy"]])
    # a twin with other settings is not a twin
    assert primary_twin(run, {**cfg, "lr": 1e-3}, "smoke", tmp_path / "r") is None
    arm = next(r for r in primary_runs(cfg) if r["id"] == "norm_none__APR_B_E0.1_s1")
    own = compute_primary(arm, cfg, "smoke", tmp_path / "r", tmp_path / "c", progress=False)
    prov = own.provenance()
    assert own.experiment == "streamed_primary/norm_none__APR_B_E0.1_s1" and prov["params"]["normalise"] is None
    assert "converged" not in prov and prov["batches_trained"] == cfg["n_batches"]


def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_an_interrupted_run_resumes_from_a_fresh_clone(tmp_path):
    """A run stopped half-way leaves its checkpoint under results/checkpoints, which the repository's
    .gitignore lets git commit (the archives of finished runs and smoke runs it ignores); a fresh clone
    of that commit finishes the run from the checkpoint, with the straight run's numbers."""
    from aprbook.runs import CHECKPOINT_DIR, run_checkpoint
    cfg = {**profile_settings("streamed_primary", "smoke"), "n_batches": 4}
    run = next(r for r in primary_runs(cfg) if r["id"] == "norm_image__APR_B_E0.1_s1")
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    # the book profile's path layout, with the smoke run's settings (smoke paths are ignored, rightly)
    store = primary_store(run, cfg, "book", repo / "results")
    ck = run_checkpoint(store, repo / CHECKPOINT_DIR, "n_batches")
    ck.path.parent.mkdir(parents=True)
    half = run_streamed(run, cfg, checkpoint=ck, progress=False, n_batches=2)  # stopped after 2 of 4 batches
    assert ck.path.exists() and len(half) == 2
    for ignored in (ck.archive, repo / CHECKPOINT_DIR / "streamed_primary" / "smoke" / "x.ckpt"):
        ignored.parent.mkdir(parents=True, exist_ok=True)
        ignored.write_bytes(b"")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "unfinished run")
    tracked = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    assert ck.path.relative_to(repo).as_posix() in tracked
    assert not any("/done/" in t or "/smoke/" in t for t in tracked)
    clone = tmp_path / "clone"
    _git(tmp_path, "clone", "-q", str(repo), str(clone))
    done = compute_primary(run, cfg, "book", clone / "results", clone / CHECKPOINT_DIR, progress=False)
    got = done.load_table("metrics")
    np.testing.assert_array_equal(got.step_s[:2], half.step_s)  # the first two batches were not trained again
    straight = run_streamed(run, cfg, progress=False)
    np.testing.assert_array_equal(got[["batch", "loss", "accuracy"]], straight[["batch", "loss", "accuracy"]])
    assert not (clone / ck.path.relative_to(repo)).exists()  # finished: archived under done/, ignored by git


def test_plan_judge_gates_only_on_runs_not_computed():
    runs, metrics = _runs({"APR_A": [800, 850, 900]})
    summary = summarise(runs, metrics, CFG)
    j = PlanJudge(summary, runs, 256)
    assert j.gate(["APR_A"]) is None
    assert NOT_COMPUTED in j.gate(["Pix_A"])


def test_no_committed_provenance_calls_a_run_converged():
    """The streamed runs' stopping test passes runs that go on learning: provenance names it for what it
    is (``plateaued``, ``plateau_test``), and no committed run is recorded as "converged"."""
    import json
    provs = sorted((ROOT / "results").glob("**/provenance.json"))
    assert provs
    for path in provs:
        prov = json.loads(path.read_text())
        assert "converged" not in prov and "convergence" not in prov, path


def test_rename_provenance_keys(tmp_path):
    import json
    from aprbook.provenance import rename_provenance_keys
    a, b, c = (tmp_path / x / "provenance.json" for x in "abc")
    for path, prov in ((a, {"converged": True, "convergence": "r", "params_hash": "h"}), (b, {"params_hash": "h"}),
                       (c, {"converged": False, "plateaued": True})):
        path.parent.mkdir()
        path.write_text(json.dumps(prov))
    with pytest.raises(ValueError, match="both"):
        rename_provenance_keys(tmp_path)
    c.unlink()
    assert rename_provenance_keys(tmp_path) == [a]
    assert json.loads(a.read_text()) == {"plateaued": True, "plateau_test": "r", "params_hash": "h"}
    assert json.loads(b.read_text()) == {"params_hash": "h"} and rename_provenance_keys(tmp_path) == []


def _sensitivity_rows(setting, apr, pix):
    """Rows of a sensitivity table: APR_B and Pix_B seeds with (to 0.5, to 0.9, error) each."""
    return [{"setting": setting, "network": net, "seed": i + 1, "batches_to_0.5": v[0], "batches_to_0.9": v[1],
             "error_3000": v[2]} for net, vals in (("APR_B", apr), ("Pix_B", pix)) for i, v in enumerate(vals)]


def test_sensitivity_verdicts_and_their_sentence():
    fast, slow = (200, 900, 0.04), (500, 2500, 0.11)
    rows = _sensitivity_rows("dataset", [fast] * 3, [slow] * 3) + _sensitivity_rows("none", [fast] * 3, [slow] * 3)
    partial = pd.DataFrame(rows + _sensitivity_rows("image", [fast] * 3, [slow]))
    v = sensitivity_verdicts(partial)
    assert list(v.dataset) == ["holds"] * 3 and list(v.none) == ["holds"] * 3
    assert list(v.image) == ["inconclusive"] * 3 and list(v.changes) == ["not yet known"] * 3
    text = sensitivity_text(partial, v)
    assert text.startswith("no change between the settings decided so far (dataset, none)")
    assert "image (APR_B 3, Pix_B 1 seeds stored)" in text
    # a setting that reverses a comparison: the comparison changes
    reversed_ = pd.DataFrame(rows + _sensitivity_rows("image", [fast] * 3, [(100, 2500, 0.11)] * 3))
    v = sensitivity_verdicts(reversed_)
    assert list(v.changes) == ["yes", "no", "no"]
    assert sensitivity_text(reversed_, v) == (
        "yes: APR_B reaches 0.5 before Pix_B (holds with the book's setting and with intensities as generated, fails "
        "with per-image standardisation); the same under every setting: APR_B reaches 0.9 before Pix_B; APR_B errs "
        "less than Pix_B after 3000 batches")
    full = pd.DataFrame(rows + _sensitivity_rows("image", [fast] * 3, [slow] * 3))
    v = sensitivity_verdicts(full)
    assert sensitivity_text(full, v).startswith("no change: every comparison")
    # nothing under a setting: not computed
    v = sensitivity_verdicts(pd.DataFrame(rows))
    assert list(v.image) == ["not computed"] * 3
    assert "image (APR_B 0, Pix_B 0 seeds stored)" in sensitivity_text(pd.DataFrame(rows), v)

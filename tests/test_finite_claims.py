"""The sub-claims of Fig 4.6 (aprbook.finite_claims) on made-up test results: a run not stored, a
model kept late or fewer than three seeds never let a claim hold or fail; with three seeds each, every
seed of APR_B must beat every seed of Pix_B."""
from __future__ import annotations

import pandas as pd
import pytest

from aprbook import finite_claims
from aprbook.finite_claims import fig4_6_claims, size_claim
from aprbook.learning_curves import accuracy_ci
from aprbook.runs import finite_runs
from aprbook.verdicts import verdict

CFG = {"per_class": [20, 50, 1000, 2000], "seeds": [1], "extra_seeds_for": [20, 50, 1000, 2000],
       "extra_seeds": [2, 3]}
RUNS = finite_runs(CFG)


def stored(acc=lambda r: 0.9 if r["network"] == "APR_B" else 0.8, best=lambda r: 300, budget=lambda r: 600,
           drop=()):
    """test and metrics tables of every run but those in drop: accuracy acc(run) on 3000 test images"""
    tests, metrics = {}, {}
    for r in RUNS:
        if r["id"] in drop:
            continue
        rows = []
        for name in ("test", "test_extreme"):
            a = acc(r)
            lo, hi = accuracy_ci(round(a * 3000), 3000)
            rows.append({"test_set": name, "accuracy": a, "ci_low": lo, "ci_high": hi, "n": 3000,
                         "best_iteration": best(r)})
        tests[r["id"]] = pd.DataFrame(rows)
        metrics[r["id"]] = pd.DataFrame({"iteration": range(50, budget(r) + 1, 50)})
    return finite_claims.test_table(RUNS, tests, metrics)


def test_the_table_records_each_runs_budget_and_skips_runs_not_stored():
    t = stored(budget=lambda r: 1200 if r["per_class"] == 20 else 600, drop=("Pix_B_n50_s2",))
    assert "Pix_B_n50_s2" not in set(t.run) and len(t) == 2 * (len(RUNS) - 1)
    assert set(t[t.per_class == 20].budget) == {1200} and set(t[t.per_class == 50].budget) == {600}


def test_every_seed_ahead_holds_and_one_seed_behind_fails():
    claims = fig4_6_claims(stored(), RUNS, CFG["per_class"])
    assert [c.status for c in claims[:2]] == ["holds", "holds"]
    behind = lambda r: 0.75 if r["id"] == "APR_B_n20_s2" else 0.9 if r["network"] == "APR_B" else 0.8  # noqa: E731
    assert size_claim(stored(acc=behind), RUNS, 20, "apr_better").status == "fails"


def test_similar_needs_neither_network_ahead_on_every_seed_and_pixels_higher_on_average():
    acc = {1: (0.90, 0.91), 2: (0.92, 0.905), 3: (0.91, 0.925)}  # seed: (APR_B, Pix_B); Pix_B higher on average
    t = stored(acc=lambda r: acc[r["seed"]][r["network"] == "Pix_B"])
    assert size_claim(t, RUNS, 2000, "similar").status == "holds"
    t = stored(acc=lambda r: acc[r["seed"]][r["network"] == "APR_B"])  # the APR network higher on average
    assert size_claim(t, RUNS, 2000, "similar").status == "fails"


@pytest.mark.parametrize("case", ["missing", "late", "underpowered"])
def test_what_makes_a_claim_inconclusive(case):
    if case == "missing":
        t, runs, word = stored(drop=("Pix_B_n20_s3",)), RUNS, "Pix_B_n20_s3"
    elif case == "late":
        t, runs, word = stored(best=lambda r: 550 if r["id"] == "APR_B_n20_s1" else 300), RUNS, "last 20%"
    else:
        cfg = {**CFG, "extra_seeds_for": []}
        runs = finite_runs(cfg)
        t, word = stored(drop=[r["id"] for r in RUNS if r["seed"] > 1]), "underpowered"
    c = size_claim(t, runs, 20, "apr_better")
    assert c.status == "inconclusive" and word in c.evidence
    if case == "late":  # the late seed is named by its run id, the seeds kept early are not
        assert "APR_B_n20_s1 (iteration 550 of 600)" in c.evidence and "APR_B_n20_s2 (" not in c.evidence
    assert verdict(fig4_6_claims(t, runs, CFG["per_class"])).word != "confirmed"


def test_a_size_with_no_run_of_a_network_names_the_runs_not_computed():
    t = stored(drop=[r["id"] for r in RUNS if r["per_class"] == 50 and r["network"] == "Pix_B"])
    c = size_claim(t, RUNS, 50, "apr_better")
    assert c.status == "inconclusive" and "Pix_B_n50_s1" in c.evidence and "last 20%" not in c.evidence
    late = stored(best=lambda r: 550 if r["id"] == "APR_B_n50_s1" else 300,
                  drop=[r["id"] for r in RUNS if r["per_class"] == 50 and r["network"] == "Pix_B"])
    c = size_claim(late, RUNS, 50, "apr_better")  # the run present and kept late is named too
    assert c.status == "inconclusive" and "Pix_B_n50_s1" in c.evidence
    assert "APR_B_n50_s1 (iteration 550 of 600)" in c.evidence
    with pytest.raises(ValueError, match="kind"):
        size_claim(t, RUNS, 50, "bigger")


def test_evaluation_cost_separates_training_from_evaluation():
    from aprbook.finite_claims import evaluation_cost
    # 4 evaluations, every 10 iterations, steps of 0.5 s, evaluations of 15 s (30 steps)
    m = pd.DataFrame({"iteration": [10, 20, 30, 40], "step_s": [0.5] * 4, "wall_s": [10 * 0.5 + 15.0] * 4})
    row = evaluation_cost({"r": m}).iloc[0]
    assert row.interval == 10 and row.eval_s == pytest.approx(15) and row.eval_steps == pytest.approx(30)
    assert row.eval_share == pytest.approx(15 / 20)
    # an evaluation of 30 steps every 90 iterations: a quarter of the run
    m2 = m.assign(iteration=[90, 180, 270, 360], wall_s=90 * 0.5 + 15.0)
    assert evaluation_cost({"r": m2}).eval_share.iloc[0] == pytest.approx(15 / 60)

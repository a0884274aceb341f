"""The sub-claims of Fig 4.3, Fig 4.4 and Table 4.2 (aprbook.streamed_claims) on made-up learning
curves: a missing or unconverged run never lets a claim hold or fail, comparisons need every seed of
one network to beat every seed of the other, and Table 4.2 follows from seed 1's last batches."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aprbook.learning_curves import final_error
from aprbook.runs import streamed_runs
from aprbook.streamed_claims import (THESIS_42, Judge, compared_final_errors, extensions_needed, no_run_decides, summarise,
                                     table4_2, table4_2_claims)
from aprbook.verdicts import verdict

CFG = {"size": 256, "batch_size": 36, "n_batches": 400, "seeds": [1], "smooth": 20, "last": 40,
       "extra_seeds_for": ["APR_A", "Pix_A", "APR_B", "Pix_B"], "extra_seeds": [2, 3]}
RUNS = streamed_runs(CFG)


def curve(tau: float, final_acc: float = 0.98, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """a learning curve rising from 1/6 to final_acc with time constant tau (batches), flat at the end
    (so converged by the criterion when tau << n), per-batch accuracies Binomial(36, p) / 36"""
    b = np.arange(n)
    p = final_acc - (final_acc - 1 / 6) * np.exp(-b / tau)
    acc = np.random.default_rng(seed).binomial(36, p) / 36
    return pd.DataFrame({"batch": b, "loss": -np.log(np.clip(acc, 1e-3, 1)), "accuracy": acc,
                         "step_s": 0.1, "wait_s": 0.01})


def all_metrics(tau_of=lambda r: 40.0, final_of=lambda r: 0.98) -> dict:
    return {r["id"]: curve(tau_of(r), final_of(r), seed=i) for i, r in enumerate(RUNS)}


def claim(claims, start):
    (c,) = [c for c in claims if c.name.startswith(start)]
    return c


def test_summarise_skips_runs_not_stored_and_judges_convergence():
    metrics = all_metrics()
    rising = curve(40.0)
    rising["accuracy"] = np.linspace(0.2, 0.9, len(rising))  # still rising at its end
    metrics["APR_A_E0.1_s1"] = rising
    del metrics["Pix_A_px256_s2"]
    s = summarise(RUNS, metrics, CFG)
    assert len(s) == len(RUNS) - 1 and "Pix_A_px256_s2" not in set(s.run)
    conv = s.set_index("run").plateaued
    assert not conv["APR_A_E0.1_s1"] and conv["APR_A_E0.1_s2"]


def test_a_network_with_a_run_not_stored_is_not_judged():
    metrics = all_metrics(tau_of=lambda r: 20.0 if r["network"].startswith("APR") else 80.0)
    del metrics["Pix_A_px256_s3"]
    judge = Judge(summarise(RUNS, metrics, CFG), RUNS, CFG["size"])
    c = claim(judge.fig4_3(), "APR_A converges faster than Pix_A")
    assert c.status == "inconclusive" and "Pix_A_px256_s3" in c.evidence
    # the same runs all stored: every APR_A seed reaches 0.5 before every Pix_A seed
    judge = Judge(summarise(RUNS, all_metrics(tau_of=lambda r: 20.0 if r["network"].startswith("APR") else 80.0),
                            CFG), RUNS, CFG["size"])
    assert claim(judge.fig4_3(), "APR_A converges faster than Pix_A").status == "holds"


def test_one_seed_out_of_order_fails_a_comparison():
    tau = lambda r: 80.0 if r["id"] == "APR_A_E0.1_s2" else 20.0 if r["network"].startswith("APR") else 60.0  # noqa: E731
    judge = Judge(summarise(RUNS, all_metrics(tau_of=tau), CFG), RUNS, CFG["size"])
    assert claim(judge.fig4_3(), "APR_A converges faster than Pix_A").status == "fails"


def test_an_unconverged_run_makes_its_claims_inconclusive_and_the_verdict_never_confirmed():
    tau = lambda r: 400.0 if r["id"] == "Pix_B_px256_s1" else 20.0 if r["network"].startswith("APR") else 60.0  # noqa: E731
    judge = Judge(summarise(RUNS, all_metrics(tau_of=tau), CFG), RUNS, CFG["size"])
    claims = judge.fig4_4()
    dips = claim(claims, "Pix_B shows pronounced dips")
    assert dips.status == "inconclusive" and "unconverged" in dips.evidence and "Pix_B_px256_s1" in dips.evidence
    assert verdict(claims).word != "confirmed"
    metrics = all_metrics(tau_of=tau)
    del metrics["Pix_B_px256_s2"]  # a run still missing does not hide the unconverged one, which no run changes
    dips = claim(Judge(summarise(RUNS, metrics, CFG), RUNS, CFG["size"]).fig4_4(), "Pix_B shows pronounced dips")
    assert "runs not computed: Pix_B_px256_s2" in dips.evidence and "Pix_B_px256_s1 (400 batches)" in dips.evidence
    claims = Judge(summarise(RUNS, metrics, CFG), RUNS, CFG["size"]).fig4_4()
    assert "Pix_B shows pronounced dips" in no_run_decides(claims)
    assert "Pix_B virtually perfect within a few hundred batches" not in no_run_decides(claims)  # waits for s2


def test_near_perfect_reads_the_first_batches_of_every_seed():
    fast = lambda r: 10.0  # noqa: E731  (0.95 running accuracy well within 500 batches)
    judge = Judge(summarise(RUNS, all_metrics(tau_of=fast), CFG), RUNS, CFG["size"])
    assert claim(judge.fig4_4(), "APR_B virtually perfect").status == "holds"
    judge = Judge(summarise(RUNS, all_metrics(tau_of=fast, final_of=lambda r: 0.9), CFG), RUNS, CFG["size"])
    assert claim(judge.fig4_4(), "APR_B virtually perfect").status == "fails"
    metrics = all_metrics(tau_of=fast)
    del metrics["APR_B_E0.1_s3"]
    judge = Judge(summarise(RUNS, metrics, CFG), RUNS, CFG["size"])
    c = claim(judge.fig4_4(), "APR_B virtually perfect")
    assert c.status == "inconclusive" and "APR_B_E0.1_s3" in c.evidence


def test_table_4_2_follows_from_seed_1_and_its_readings_need_three_seeds_per_input():
    metrics = all_metrics()
    table, runs_of, errors = table4_2(RUNS, metrics, CFG)
    assert list(table.input) == list(THESIS_42)
    row = table.set_index("input").loc["APR 0.1"]
    assert row.error_mean == pytest.approx(final_error(metrics["APR_B_E0.1_s1"], CFG["last"])[0])
    assert row.n_seeds == 3 and row.seeds_min <= row.error_mean <= row.seeds_max
    assert sorted(runs_of["Pix 256"]) == ["Pix_B_px256_s1", "Pix_B_px256_s2", "Pix_B_px256_s3"]
    claims, ordering = table4_2_claims(summarise(RUNS, metrics, CFG), RUNS, runs_of, errors, CFG["size"])
    assert ordering is not None and len(claims) == len(ordering)
    # E = 0.4, 0.6, 0.8 and the downsampled pixels have one seed each in this profile: underpowered
    assert claims[0].status in ("holds", "fails")  # APR 0.1 vs Pix 256: three seeds each
    assert all(c.status == "inconclusive" and "underpowered" in c.evidence for c in claims[1:])


def test_table_4_2_with_an_input_missing_is_inconclusive():
    metrics = all_metrics()
    del metrics["Pix_B_px64_s1"]
    table, runs_of, errors = table4_2(RUNS, metrics, CFG)
    assert "Pix 64" not in set(table.input)
    claims, ordering = table4_2_claims(summarise(RUNS, metrics, CFG), RUNS, runs_of, errors, CFG["size"])
    assert ordering is None and [c.status for c in claims] == ["inconclusive"] and "Pix 64" in claims[0].evidence
    assert "unconverged" not in claims[0].evidence
    rising = curve(40.0)
    rising["accuracy"] = np.linspace(0.2, 0.9, len(rising))  # a stored input still improving is named too
    metrics["APR_B_E0.4_s1"] = rising
    claims, _ = table4_2_claims(summarise(RUNS, metrics, CFG), RUNS, runs_of, errors, CFG["size"])
    assert "Pix 64" in claims[0].evidence and "APR_B_E0.4_s1 (400 batches)" in claims[0].evidence


def test_final_errors_of_seeds_trained_for_different_lengths_are_not_compared():
    """A seed extended to a longer budget (its error still falling) against siblings stopped earlier:
    final-error comparisons on it are inconclusive and name the lengths; speed comparisons, which read
    the first batches, are not affected; equal lengths are judged."""
    fast = lambda r: 20.0 if r["network"].startswith("APR") else 60.0  # noqa: E731
    metrics = all_metrics(tau_of=fast)
    longer = curve(20.0, n=800, seed=99)
    metrics["APR_A_close_E0.1_s1"] = longer  # one seed each for 'close' and 'same': lengths within a network
    metrics["APR_A_E0.1_s2"] = curve(20.0, n=800, seed=98)
    judge = Judge(summarise(RUNS, metrics, CFG), RUNS, CFG["size"])
    ends = claim(judge.fig4_3(), "each stage of level-specific kernels (same, close, full) ends more accurate")
    assert ends.status == "inconclusive" and "different numbers of batches" in ends.evidence
    assert "APR_A_E0.1_s2 800" in ends.evidence and "APR_A_E0.1_s1 400" in ends.evidence
    assert claim(judge.fig4_3(), "APR_A converges faster than Pix_A").status == "holds"
    judge = Judge(summarise(RUNS, all_metrics(tau_of=fast), CFG), RUNS, CFG["size"])
    ends = claim(judge.fig4_3(), "each stage of level-specific kernels (same, close, full) ends more accurate")
    assert "different numbers" not in ends.evidence


def test_table_4_2_readings_need_an_inputs_seeds_trained_equally_long():
    cfg = {**CFG, "extra_seeds_for": [*CFG["extra_seeds_for"], "APR_B_E0.4", "APR_B_E0.6", "APR_B_E0.8",
                                       "Pix_B_px128", "Pix_B_px64"]}
    runs = streamed_runs(cfg)
    metrics = {r["id"]: curve(20.0, seed=i) for i, r in enumerate(runs)}
    metrics["APR_B_E0.1_s2"] = curve(20.0, n=800, seed=97)
    table, runs_of, errors = table4_2(runs, metrics, cfg)
    claims, _ = table4_2_claims(summarise(runs, metrics, cfg), runs, runs_of, errors, cfg["size"])
    assert claims[0].status == "inconclusive" and "APR_B_E0.1_s2 800" in claims[0].evidence  # APR 0.1 vs Pix 256
    assert all("different numbers" not in c.evidence for c in claims[1:4])  # readings without APR 0.1
    assert claims[4].status == "inconclusive"  # APR 0.1 ... 0.8 grows with E
    # every seed of one input trained longer than the inputs it is compared with: not compared either
    metrics = {r["id"]: curve(20.0, n=800 if r["id"].startswith("Pix_B_px64") else 400, seed=i)
               for i, r in enumerate(runs)}
    table, runs_of, errors = table4_2(runs, metrics, cfg)
    claims, _ = table4_2_claims(summarise(runs, metrics, cfg), runs, runs_of, errors, cfg["size"])
    assert claims[3].status == "inconclusive" and "Pix_B_px64_s1 800" in claims[3].evidence  # 128 > 0.8 > 64
    assert claims[0].status in ("holds", "fails")  # APR 0.1 vs Pix 256: all 400


def test_extensions_needed_lists_the_runs_shorter_than_the_longest_they_are_compared_with():
    metrics = all_metrics()
    metrics["APR_B_E0.1_s1"] = curve(20.0, n=800, seed=96)
    summary = summarise(RUNS, metrics, CFG)
    table, runs_of, errors = table4_2(RUNS, metrics, CFG)
    judge = Judge(summary, RUNS, CFG["size"])
    need = extensions_needed(summary, compared_final_errors(judge, runs_of))
    assert set(need.comparison) == {"Table 4.2"} and (need.to == 800).all() and (need.batches == 400).all()
    assert set(need.run) == {rid for ids in runs_of.values() for rid in ids} - {"APR_B_E0.1_s1"}
    assert extensions_needed(summarise(RUNS, all_metrics(), CFG), compared_final_errors(judge, runs_of)).empty

"""The segmentation chapter's plan and its rules (aprbook.segmentation_claims), on made-up tables."""
import math

import numpy as np
import pandas as pd
import pytest

from aprbook import segmentation_claims as sc


def _curves(dice: dict, ndim=2, n_evals=5, extra_noise=0.0) -> pd.DataFrame:
    """Curves of runs {(rel_error, seed): (apr final Dice, pixel final Dice)}: evaluations every 10 steps,
    the last FINAL_EVALS at the given value, the earlier ones lower."""
    rows = []
    for (e, s), (a, p) in dice.items():
        run = f"seg{ndim}d_E{e}_s{s}"
        for k in range(1, n_evals + 1):
            late = k > n_evals - sc.FINAL_EVALS
            for net, v in (("apr", a), ("pixel", p)):
                rows.append({"run": run, "ndim": ndim, "rel_error": e, "seed": s, "step": 10 * k, "network": net,
                             "heldout_dice": v if late else v - 0.3})
                rows.append({"run": run, "ndim": ndim, "rel_error": e, "seed": s, "step": 10 * k - 5, "network": net,
                             "heldout_dice": math.nan})
    return pd.DataFrame(rows)


def _status(claims, name_part):
    got = [c for c in claims if name_part in c.name]
    assert len(got) == 1, [c.name for c in claims]
    return got[0]


def test_plan_has_a_rule_for_every_judged_subclaim():
    judged = sc.judge(_curves({}), None, None)
    names = {c.name for cl in judged.values() for c in cl}
    assert names == {p.name for p in sc.PLAN}
    assert set(judged) == set(sc.ITEMS)
    t = sc.plan_table()
    assert len(t) == len(sc.PLAN) and t.rule.str.len().min() > 20


def test_final_dice_is_the_mean_of_the_last_evaluations():
    c = _curves({(0.1, 1): (0.8, 0.9)})
    f = sc.final_dice(c)
    assert len(f) == 2
    assert f.set_index("network").dice.to_dict() == pytest.approx({"apr": 0.8, "pixel": 0.9})
    assert set(f.steps) == {50}


@pytest.mark.parametrize("diffs,status", [((0.0, 0.01, 0.019), "holds"), ((0.03, 0.05, 0.021), "fails"),
                                          ((0.01, 0.03, 0.0), "inconclusive")])
def test_accuracy_rule(diffs, status):
    c = _curves({(0.1, s + 1): (0.9 - d, 0.9) for s, d in enumerate(diffs)})
    claim = sc.accuracy_claim(sc.final_dice(c), 2)
    assert claim.status == status, claim.evidence


def test_accuracy_needs_three_seeds_and_says_not_computed():
    c = _curves({(0.1, 1): (0.9, 0.9), (0.1, 2): (0.9, 0.9)})
    claim = sc.accuracy_claim(sc.final_dice(c), 2)
    assert claim.status == "inconclusive" and "not computed" in claim.evidence
    # the other dimension's runs do not count
    assert sc.accuracy_claim(sc.final_dice(c), 3).status == "inconclusive"


def test_information_loss_rule():
    base = {(0.1, s): (0.80 + 0.01 * s, 0.9) for s in (1, 2, 3)}  # E = 0.1 seeds: 0.81 ... 0.83
    for apr_hi, status in ((0.70, "holds"), (0.84, "fails"), (0.82, "inconclusive")):
        c = _curves({**base, (0.4, 1): (0.75, 0.9), (0.8, 1): (apr_hi, 0.9)})
        claim = sc.information_loss_claim(sc.final_dice(c))
        assert claim.status == status, claim.evidence
        assert "E = 0.8" in claim.evidence  # the largest E is the one judged
    c = _curves(base)
    assert "not computed" in sc.information_loss_claim(sc.final_dice(c)).evidence


def _cost(ndim, size, apr_s, pix_s, apr_mb, pix_mb, pixel_fit=True):
    return {"ndim": ndim, "size": size, "cr": 50.0, "apr_step_s": apr_s, "pixel_step_s": pix_s, "apr_peak_mb": apr_mb,
            "pixel_peak_mb": pix_mb, "apr_fit": True, "pixel_fit": pixel_fit}


def test_cost_rules_at_the_largest_size():
    cost = pd.DataFrame([_cost(2, 256, 1, 1, 1, 1), _cost(2, 2048, 1.0, 6.0, 100, 400),
                         _cost(3, 128, 1.0, 9.0, 1, 9)])
    claims = sc.cost_claims(cost)
    assert _status(claims, "2D (>= 2048^2): APR step >= 5x faster").status == "holds"
    assert _status(claims, "2D (>= 2048^2): APR step >= 5x less").status == "fails"  # x4.0
    for c in claims:
        if c.name.startswith("3D"):
            assert c.status == "inconclusive" and "not computed" in c.evidence  # 128^3 < 256^3


def test_cost_memory_of_a_pixel_step_that_ran_out_counts_as_the_limit():
    cost = pd.DataFrame([_cost(3, 256, 1.0, 10.0, 1000.0, math.nan, pixel_fit=False)])
    c = _status(sc.cost_claims(cost, mem_limit_gb=16.0), "3D (>= 256^3): APR step >= 5x less")
    assert c.status == "holds" and "ran out" in c.evidence
    c = _status(sc.cost_claims(cost, mem_limit_gb=None), "3D (>= 256^3): APR step >= 5x less")
    assert c.status == "inconclusive"


def test_stardist_rule_uses_the_primary_e_and_available_rows():
    rows = []
    for s in (1, 2, 3):
        rows += [{"run": f"seg2d_E0.1_s{s}", "ndim": 2, "rel_error": 0.1, "seed": s, "network": "apr", "dice": 0.70,
                  "available": True},
                 {"run": f"seg2d_E0.1_s{s}", "ndim": 2, "rel_error": 0.1, "seed": s, "network": "pixel", "dice": 0.75,
                  "available": True},
                 {"run": f"seg2d_E0.8_s{s}", "ndim": 2, "rel_error": 0.8, "seed": s, "network": "apr", "dice": 0.75,
                  "available": True}]
    st = pd.DataFrame(rows)
    assert sc.stardist_claim(st, 2).status == "fails"
    assert sc.stardist_claim(st, 3).status == "inconclusive"
    st.loc[:, "available"] = False
    assert "not computed" in sc.stardist_claim(st, 2).evidence


def test_verdict_rows_carry_each_items_verdict():
    judged = sc.judge(_curves({(0.1, s): (0.9, 0.9) for s in (1, 2, 3)}), None, None)
    t = sc.verdict_rows(judged)
    acc = t[t.item == "accuracy"]
    assert set(acc.verdict) == {"inconclusive"}  # 2D holds, 3D not computed: never rounded up
    assert acc.status.tolist() == ["holds", "inconclusive"]
    assert np.all(t.verdict.isin(["confirmed", "partly confirmed", "not confirmed", "inconclusive"]))


def test_paired_rules_need_a_pixel_net_that_learned():
    c = _curves({(0.1, s): (0.30, 0.31) for s in (1, 2, 3)})  # agree within 0.02, but learned little
    claim = sc.accuracy_claim(sc.final_dice(c), 2)
    assert claim.status == "inconclusive" and "underpowered" in claim.evidence
    rows = [{"run": f"seg2d_E0.1_s{s}", "ndim": 2, "rel_error": 0.1, "seed": s, "network": n, "dice": 0.6,
             "available": True} for s in (1, 2, 3) for n in ("apr", "pixel")]
    st = pd.DataFrame(rows)
    assert sc.stardist_claim(st, 2, sc.final_dice(c)).status == "inconclusive"
    good = _curves({(0.1, s): (0.9, 0.9) for s in (1, 2, 3)})
    assert sc.stardist_claim(st, 2, sc.final_dice(good)).status == "holds"  # a poor transfer is still compared


def test_nothing_stored_is_not_computed_everywhere():
    """What the loaders return when nothing is stored: frames with the key columns only."""
    empty = pd.DataFrame(columns=["run", "ndim", "rel_error", "seed"])
    judged = sc.judge(empty, empty, pd.DataFrame(columns=["ndim", "size"]))
    for c in (c for cl in judged.values() for c in cl):
        assert c.status == "inconclusive" and "not computed" in c.evidence, c

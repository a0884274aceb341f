"""The thesis's claims on finite training sets (Fig 4.6), judged from the stored runs' test results by
the rules that notebook 06 states before its results.

``tests``: one row per (run, test set) as :func:`test_table` builds it from the runs' ``test`` tables
(columns run, network, per_class, seed, budget, test_set, accuracy, ci_low, ci_high, best_iteration);
``expected``: every run of the profile (:func:`aprbook.runs.finite_runs`), so that a sub-claim resting on
a size with a run not stored yet is *inconclusive*, naming the runs.

- "The APRNets trained on very small datasets perform significantly better than their pixel
  counterpart": one sub-claim for each of the two smallest sets (:func:`fig4_6_claims`).
- On the larger sets the two perform similarly, the pixel networks slightly better: one sub-claim for
  each of the two largest sets.
- A sub-claim resting on a run whose kept model comes from the last 20% of its budget
  (:func:`aprbook.learning_curves.kept_early`), or with fewer than :data:`MIN_SEEDS` seeds of either
  network at its size, is *inconclusive*; with enough seeds, "significantly better" holds if every seed
  of APR_B beats every seed of Pix_B (:func:`aprbook.learning_curves.seeds_beat`), "similar, pixels
  slightly better" if neither beats the other on every seed and Pix_B's mean accuracy is the higher.
  The Wilson intervals of the single runs are evidence only (they cover the test set's sampling, not
  the spread between training runs).
"""
from __future__ import annotations

import pandas as pd

from .learning_curves import kept_early, seeds_beat
from .verdicts import SubClaim

__all__ = ["MIN_SEEDS", "KEEP_FRAC", "NETWORKS", "test_table", "wide_table", "better", "overlap", "numbers",
           "size_claim", "fig4_6_claims", "evaluation_cost"]

#: seeds of each network a comparison at one size needs
MIN_SEEDS = 3
#: a kept model must come from the first KEEP_FRAC of its run's budget
KEEP_FRAC = 0.8
#: APR network, pixel network
NETWORKS = ("APR_B", "Pix_B")


def test_table(runs: list[dict], tests: dict[str, pd.DataFrame], metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The test rows of the stored runs (``tests`` and ``metrics``: run id -> the run's ``test`` and
    ``metrics`` tables; runs not in them are skipped), with the run's id, network, size, seed and budget
    (its last evaluated iteration, which is the budget it trained to)."""
    rows = [tests[r["id"]].assign(run=r["id"], network=r["network"], per_class=r["per_class"], seed=r["seed"],
                                  budget=int(metrics[r["id"]].iteration.max()))
            for r in runs if r["id"] in tests]
    if not rows:
        return pd.DataFrame(columns=["test_set", "accuracy", "ci_low", "ci_high", "best_iteration", "run", "network",
                                     "per_class", "seed", "budget"])
    return pd.concat(rows, ignore_index=True)


def wide_table(tests: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and interval bounds by (test set, size) and (network, quantity); with several seeds,
    their means."""
    return (tests.pivot_table(index=["test_set", "per_class"], columns="network",
                              values=["accuracy", "ci_low", "ci_high"])
            .swaplevel(axis=1).sort_index(axis=1))


def better(wide: pd.DataFrame, a: str, b: str, sizes, test_set: str = "test") -> list:
    """The sizes at which network a beats b with disjoint 95% intervals."""
    w = wide.loc[test_set]
    return [n for n in sizes if w.loc[n, (a, "ci_low")] > w.loc[n, (b, "ci_high")]]


def overlap(wide: pd.DataFrame, sizes, test_set: str = "test") -> list:
    """The sizes at which the two networks' 95% intervals overlap."""
    apr, pix = NETWORKS
    return [n for n in sizes if not better(wide, apr, pix, [n], test_set) and not better(wide, pix, apr, [n], test_set)]


def numbers(wide: pd.DataFrame, sizes, test_set: str = "test") -> str:
    """'<n>/class: APR <accuracy>, pixels <accuracy>; ...' for the given sizes."""
    w = wide.loc[test_set]
    apr, pix = NETWORKS
    return "; ".join(f"{n}/class: APR {w.loc[n, (apr, 'accuracy')]:.3f}, pixels {w.loc[n, (pix, 'accuracy')]:.3f}"
                     for n in sizes)


def size_claim(tests: pd.DataFrame, expected: list[dict], n: int, kind: str) -> SubClaim:
    """One sub-claim of Fig 4.6 at ``n`` images per class: ``kind`` "apr_better" (APR_B significantly
    better) or "similar" (similar, Pix_B slightly better); judged on the first test set."""
    if kind not in ("apr_better", "similar"):
        raise ValueError(f"kind is 'apr_better' or 'similar', got {kind!r}")
    apr, pix = NETWORKS
    name = (f"{apr} significantly better than {pix} at {n} per class" if kind == "apr_better" else
            f"similar at {n} per class, {pix} slightly better")
    first = tests[tests.test_set == "test"]
    a, p = (first[(first.network == net) & (first.per_class == n)] for net in NETWORKS)
    absent = [r["id"] for r in expected if r["per_class"] == n and r["id"] not in set(first.run)]
    late = [f"{r.run} (iteration {int(r.best_iteration)} of {int(r.budget)})" for d in (a, p)
            for r in d.itertuples() if not kept_early(r.best_iteration, r.budget, KEEP_FRAC)]
    late_reason = [f"kept a model from the last 20% of the budget: {', '.join(late)}"] if late else []
    if a.empty or p.empty:  # the runs of the network present are still checked, so that none is hidden
        return SubClaim(name, "inconclusive", "; ".join([f"runs not computed at {n} per class"
                                                         + (f": {', '.join(absent)}" if absent else "")]
                                                        + late_reason))
    wide = wide_table(tests)
    w = wide.loc["test"]
    iv = lambda net: f"{w.loc[n, (net, 'accuracy')]:.3f} [{w.loc[n, (net, 'ci_low')]:.3f}, {w.loc[n, (net, 'ci_high')]:.3f}]"  # noqa: E731
    single = (n in better(wide, apr, pix, [n]) if kind == "apr_better" else
              n in overlap(wide, [n]) and w.loc[n, (pix, "accuracy")] > w.loc[n, (apr, "accuracy")])
    budgets = sorted(set(a.budget) | set(p.budget))
    evidence = (f"{apr} {iv(apr)}, {pix} {iv(pix)} (interval criterion on these runs: "
                f"{'met' if single else 'not met'}); kept models from iterations "
                + ", ".join(f"{int(b)}" for b in a.best_iteration) + f" ({apr}) and "
                + ", ".join(f"{int(b)}" for b in p.best_iteration) + f" ({pix}) of "
                + ", ".join(str(int(b)) for b in budgets))
    reasons = ([f"runs not computed: {', '.join(absent)}"] if absent else []) + late_reason + (
        [f"underpowered: {len(a)} and {len(p)} run(s), {MIN_SEEDS} of each needed"]
        if min(len(a), len(p)) < MIN_SEEDS else [])
    if reasons:
        return SubClaim(name, "inconclusive", evidence + "; " + "; ".join(reasons))
    if kind == "apr_better":
        status = seeds_beat(a.accuracy, p.accuracy, lower_is_better=False, min_seeds=MIN_SEEDS)[0]
    else:
        apart = "holds" in {seeds_beat(a.accuracy, p.accuracy, False, MIN_SEEDS)[0],
                            seeds_beat(p.accuracy, a.accuracy, False, MIN_SEEDS)[0]}
        status = "holds" if not apart and p.accuracy.mean() > a.accuracy.mean() else "fails"
    return SubClaim(name, status, evidence + f"; accuracy by seed: {apr} " + ", ".join(f"{v:.3f}" for v in a.accuracy)
                    + f"; {pix} " + ", ".join(f"{v:.3f}" for v in p.accuracy))


def fig4_6_claims(tests: pd.DataFrame, expected: list[dict], per_class) -> list[SubClaim]:
    """Fig 4.6's sub-claims: APR_B significantly better at the two smallest sizes of ``per_class``,
    similar with Pix_B slightly better at the two largest."""
    sizes = sorted(per_class)
    return ([size_claim(tests, expected, n, "apr_better") for n in sizes[:2]]
            + [size_claim(tests, expected, n, "similar") for n in sizes[-2:]])


def evaluation_cost(metrics: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """What evaluation costs in each run (``metrics``: run id -> its table, one row per evaluation with
    the iteration, the median training step ``step_s`` of the interval before it and the interval's
    wall time ``wall_s``, training and evaluation): columns run, interval (iterations between
    evaluations), step_s (median seconds per training step), eval_s (median seconds per evaluation:
    the interval's wall time less its training steps), eval_steps (an evaluation in training steps)
    and eval_share (evaluation's share of the run's wall time). The basis of the evaluation interval of
    finite_primary (aprbook.profiles)."""
    rows = []
    for rid, m in metrics.items():
        interval = m.iteration.diff().fillna(m.iteration.iloc[0])
        eval_s = m.wall_s - m.step_s * interval
        rows.append({"run": rid, "interval": int(interval.median()), "step_s": float(m.step_s.median()),
                     "eval_s": float(eval_s.median()), "eval_steps": float(eval_s.median() / m.step_s.median()),
                     "eval_share": float(eval_s.sum() / m.wall_s.sum())})
    return pd.DataFrame(rows, columns=["run", "interval", "step_s", "eval_s", "eval_steps", "eval_share"])

"""The analysis plan of the streamed-data claims (Fig 4.3, Fig 4.4, Table 4.2), fixed in code before the
runs it calls for (issue 39), and its judgement of the stored runs.

The thesis's own protocol is primary: 3000 streamed batches of 36 fresh images, Adam at 5e-4, the
error of Table 4.2 from the last 100 of those batches. Every run is read at that budget (the first
3000 rows of a longer run are the 3000-batch run: :func:`aprbook.runs.primary_metrics`), so that no
sub-claim waits for a convergence test, and final errors are always compared at equal budgets.

Each row of :data:`PLAN` is one sub-claim comparing one thing: a variant the thesis compares (the
'same' and 'close' APRNets) gets its own three seeds and its own sub-claims, so that a comparison of
three-seed networks never turns on a one-seed variant. The rules, by kind:

- ``faster`` (time to a threshold): the batch at which the 50-batch running accuracy first reaches
  the threshold, censored at 3000 (never reached counts as the slowest). *holds* if every seed of the
  first network reaches it before every seed of the second, *fails* otherwise
  (:func:`aprbook.learning_curves.seeds_beat`); no convergence is needed: the statistic is read
  from the first batches, which every run has.
- ``more_accurate``: the mean error over the last 100 of the 3000 batches; the same all-seeds rule.
- ``dips`` / ``no_dips``: every seed's largest dip of the 20-batch running accuracy, over the 3000
  batches, against its noise floor (simulated from the run's dip-free fit,
  :func:`aprbook.learning_curves.dip_noise_floor`); all seeds as claimed: *holds*; none: *fails*;
  mixed: *inconclusive (within noise)*.
- ``deeper_dips``: the largest dip, all-seeds rule, the first network's dips deeper.
- ``near_perfect``: the running accuracy reaches 0.95 within 500 batches ("virtually perfect after
  a few hundred batches"), every seed: *holds*; none: *fails*; mixed: *inconclusive*.
- Table 4.2's readings (``equal``, ``between``, ``increasing``) on the seeds' final errors as in
  :func:`aprbook.streamed_claims.table4_2_claims`, and its ``magnitude`` (the thesis's error for the
  input): *holds* if every seed's final error lies within the thesis's mean plus two of its standard
  deviations (at least the spread that per-batch errors of 36 images allow,
  :func:`aprbook.learning_curves.min_batch_sd`), *fails* if every seed's lies beyond it.

Noise model: the seeds (initialisation and data stream) are the replicates. With three seeds each
and no difference between two networks, "every seed of A beats every seed of B" has probability
1/20 (:func:`aprbook.learning_curves.seeds_beat`), the false-positive rate of every ``faster``,
``more_accurate`` and ``deeper_dips`` row. A sub-claim stays *inconclusive* for a named reason only:
runs not computed (:data:`NOT_COMPUTED`), or seeds that disagree on a per-run rule (within noise):
:func:`aprbook.verdicts.reason_class`.
:data:`CHANGED_AFTER_RESULTS` lists what this plan changed after results of the earlier plan
existed, and why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .learning_curves import min_batch_sd, seeds_beat
from .streamed_claims import NEAR_PERFECT, THESIS_42, WITHIN, Judge, summarise, table4_2_input
from .verdicts import SubClaim, reason_class

__all__ = ["Planned", "PLAN", "CHANGED_AFTER_RESULTS", "NOT_COMPUTED", "plan_table", "primary_expected",
           "PlanJudge", "judge_plan", "primary_summary", "seconds_per_batch", "compute_plan",
           "SETTINGS", "SETTING_COLUMNS", "HEADLINES", "sensitivity_table", "sensitivity_verdicts", "sensitivity_summary",
           "sensitivity_text"]

#: the words that name runs not computed yet in an inconclusive sub-claim's evidence
NOT_COMPUTED = "runs not computed"


@dataclass(frozen=True)
class Planned:
    """One sub-claim of the plan: ``item`` (thesis figure or table), ``name`` (the claim, in a few
    words), ``kind`` (the rule, see the module docstring), ``nets`` (the networks, or Table 4.2
    inputs, it rests on, in the order the rule reads them) and ``arg`` (the threshold of a
    ``faster`` row; the reading of a Table 4.2 row)."""
    item: str
    name: str
    kind: str
    nets: tuple
    arg: float | str | None = None

    @property
    def statistic(self) -> str:
        if self.kind == "faster":
            return f"batch at running accuracy {self.arg:g} (50-batch mean; censored at 3000)"
        return {"more_accurate": "mean error over batches 2901-3000",
                "dips": "largest dip of the 20-batch running accuracy vs its noise floor",
                "no_dips": "largest dip of the 20-batch running accuracy vs its noise floor",
                "deeper_dips": "largest dip of the 20-batch running accuracy",
                "near_perfect": f"batch at running accuracy {NEAR_PERFECT:g}",
                "reading": "mean error over batches 2901-3000",
                "magnitude": "mean error over batches 2901-3000"}[self.kind]

    @property
    def rule(self) -> str:
        a, b = (self.nets + (None,))[:2]
        return {"faster": f"holds if every seed of {a} reaches it before every seed of {b}, else fails",
                "more_accurate": f"holds if every seed of {a} errs less than every seed of {b}, else fails",
                "dips": "every seed beyond its floor: holds; none: fails; mixed: inconclusive",
                "no_dips": "no seed beyond its floor: holds; every seed: fails; mixed: inconclusive",
                "deeper_dips": f"holds if every seed of {a} dips deeper than every seed of {b}, else fails",
                "near_perfect": f"every seed within {WITHIN} batches: holds; none: fails; mixed: inconclusive",
                "reading": {"equal": "fails if every seed of one input beats every seed of the other, else holds",
                            "between": "holds if each input beats the next on every pair of seeds, else fails",
                            "increasing": "holds if each E beats the next on every pair of seeds, else fails"
                            }.get(self.arg, ""),
                "magnitude": "every seed within the thesis's mean + 2 sd (sd at least the 36-image floor): "
                             "holds; every seed beyond: fails; mixed: inconclusive"}[self.kind]


def _stages(fam: str) -> list[Planned]:
    item = "Fig 4.3" if fam == "A" else "Fig 4.4"
    same, close, full = f"APR_{fam} same", f"APR_{fam} close", f"APR_{fam}"
    return [Planned(item, f"{close} converges faster than {same}", "faster", (close, same), 0.5),
            Planned(item, f"{full} converges faster than {close}", "faster", (full, close), 0.5)]


#: The plan: one row per sub-claim, in the thesis's order.
PLAN: list[Planned] = [
    # Fig 4.3: the A networks
    Planned("Fig 4.3", "APR_A converges faster than Pix_A", "faster", ("APR_A", "Pix_A"), 0.5),
    Planned("Fig 4.3", "APR_A same converges faster than Pix_A", "faster", ("APR_A same", "Pix_A"), 0.5),
    Planned("Fig 4.3", "APR_A close converges faster than Pix_A", "faster", ("APR_A close", "Pix_A"), 0.5),
    *_stages("A"),
    Planned("Fig 4.3", "APR_A close ends more accurate than APR_A same", "more_accurate", ("APR_A close", "APR_A same")),
    Planned("Fig 4.3", "APR_A ends more accurate than APR_A close", "more_accurate", ("APR_A", "APR_A close")),
    Planned("Fig 4.3", "Pix_A shows pronounced dips", "dips", ("Pix_A",)),
    Planned("Fig 4.3", "APR_A same shows pronounced dips", "dips", ("APR_A same",)),
    Planned("Fig 4.3", "APR_A same dips deeper than APR_A close", "deeper_dips", ("APR_A same", "APR_A close")),
    Planned("Fig 4.3", "APR_A close dips deeper than APR_A", "deeper_dips", ("APR_A close", "APR_A")),
    # Fig 4.4: the B networks
    *[Planned("Fig 4.4", f"{b} converges faster than {a}", "faster", (b, a), 0.5)
      for a, b in [("APR_A", "APR_B"), ("APR_A same", "APR_B same"), ("APR_A close", "APR_B close"),
                   ("Pix_A", "Pix_B")]],
    *[Planned("Fig 4.4", f"{n} virtually perfect within a few hundred batches", "near_perfect", (n,))
      for n in ("APR_B", "APR_B same", "APR_B close", "Pix_B")],
    Planned("Fig 4.4", "Pix_B shows pronounced dips", "dips", ("Pix_B",)),
    Planned("Fig 4.4", "APR_B same shows pronounced dips", "dips", ("APR_B same",)),
    Planned("Fig 4.4", "APR_B does not dip beyond noise", "no_dips", ("APR_B",)),
    Planned("Fig 4.4", "APR_B close does not dip beyond noise", "no_dips", ("APR_B close",)),
    *[Planned("Fig 4.4", f"{a} converges faster than {b}", "faster", (a, b), 0.9)
      for a in ("APR_B", "APR_B close") for b in ("Pix_B", "APR_B same")],
    # Table 4.2: its readings, then its numbers
    Planned("Table 4.2", "lossless APR and full-resolution pixels perform equally", "reading",
            ("APR 0.1", "Pix 256"), "equal"),
    Planned("Table 4.2", "E = 0.4 lies between full and once-downsampled pixels", "reading",
            ("Pix 256", "APR 0.4", "Pix 128"), "between"),
    Planned("Table 4.2", "E = 0.6 performs roughly like once-downsampled pixels", "reading",
            ("APR 0.6", "Pix 128"), "equal"),
    Planned("Table 4.2", "E = 0.8 lies between once and twice-downsampled pixels", "reading",
            ("Pix 128", "APR 0.8", "Pix 64"), "between"),
    Planned("Table 4.2", "APR error grows with E", "reading", ("APR 0.1", "APR 0.4", "APR 0.6", "APR 0.8"),
            "increasing"),
    *[Planned("Table 4.2", f"{k} errs {m:.2%} after 3000 batches", "magnitude", (k,))
      for k, (m, _) in THESIS_42.items()],
]

#: What this plan changed after the earlier plan's results existed, and why (shown in chapter 05).
CHANGED_AFTER_RESULTS = pd.DataFrame([
    {"rule": "budget of every verdict",
     "before": "each run trained 3000 batches and extended by 3000 until a convergence criterion passed (up to "
               "9000); errors compared at the length each run stopped at",
     "now": "the thesis's 3000 batches for every run; longer runs are read at their first 3000 batches and "
            "their later batches are context",
     "why": "the criterion passed runs at 3000 that lowered their error by another 44-57% when trained on, so "
            "'converged' was not true of them; the thesis states 3000"},
    {"rule": "convergence gate",
     "before": "a sub-claim resting on a run stored unconverged was inconclusive",
     "now": "no gate: time-to-threshold claims read the first batches; final errors are compared at equal "
            "budgets",
     "why": "the gate could never open for the longest-trained runs, and a claim about speed needs no "
            "convergence"},
    {"rule": "one comparison per sub-claim",
     "before": "sub-claims bundled a one-seed variant with three-seed networks",
     "now": "every pair its own sub-claim; the 'same' and 'close' variants three seeds each",
     "why": "a decided comparison became inconclusive through the one-seed part"},
    {"rule": "Table 4.2's magnitudes",
     "before": "not judged",
     "now": "each input's error against the thesis's mean + 2 sd",
     "why": "the thesis states numbers, and a reader asks whether ours match them"},
])


def plan_table() -> pd.DataFrame:
    """The plan as a table: item, sub-claim, statistic, runs (networks or inputs, three seeds each),
    rule."""
    return pd.DataFrame([{"item": p.item, "sub-claim": p.name, "statistic": p.statistic,
                          "runs": ", ".join(p.nets) + " (3 seeds each)", "rule": p.rule} for p in PLAN])


def primary_expected(runs: list[dict]) -> list[dict]:
    """The runs the plan rests on among :func:`aprbook.runs.primary_runs`: the book's own intensity
    setting (the sensitivity arms, which carry their own ``normalise``, are judged apart)."""
    return [r for r in runs if "normalise" not in r]


class PlanJudge(Judge):
    """:class:`aprbook.streamed_claims.Judge` under the plan: every run is read at the primary budget,
    so nothing is gated on convergence; a sub-claim waits only for runs not computed."""

    def gate(self, nets) -> str | None:
        absent = [rid for n in nets for rid in self.missing.get(n, [])]
        if absent or any(n not in self.by_net for n in nets):
            return f"{NOT_COMPUTED}: " + ", ".join(absent or [n for n in nets if n not in self.by_net])
        return None


def _by_input(summary: pd.DataFrame, size: int) -> dict:
    """Table 4.2's input -> the stored runs' final errors (one per seed, in seed order)."""
    out = {}
    for r in summary.sort_values("seed").itertuples():
        key = table4_2_input({"family": r.family, "variant": r.variant, "rel_error": r.rel_error,
                              "resolution": r.resolution}, size)
        if key is not None:
            out.setdefault(key, []).append(r.error_mean)
    return {k: np.asarray(v) for k, v in out.items()}


def _reading(p: Planned, errs: dict) -> SubClaim:
    e = {k: errs[k] for k in p.nets}
    evidence = "final errors by seed: " + "; ".join(f"{k} " + ", ".join(f"{v:.4f}" for v in e[k]) for k in p.nets)
    if p.arg == "equal":
        a, b = p.nets
        sep = {seeds_beat(e[a], e[b])[0], seeds_beat(e[b], e[a])[0]}
        return SubClaim(p.name, "fails" if "holds" in sep else "holds", evidence)
    steps = [seeds_beat(e[lo], e[hi])[0] for lo, hi in zip(p.nets, p.nets[1:])]
    return SubClaim(p.name, "holds" if all(s == "holds" for s in steps) else "fails", evidence)


def _magnitude(p: Planned, errs: dict, batch_size: int) -> SubClaim:
    (k,) = p.nets
    mean, sd = THESIS_42[k]
    limit = mean + 2 * max(sd, min_batch_sd(mean, batch_size))
    within = [bool(v <= limit) for v in errs[k]]
    status = "holds" if all(within) else "fails" if not any(within) else "inconclusive"
    return SubClaim(p.name, status, "final error by seed " + ", ".join(f"{v:.4f}" for v in errs[k])
                    + f" vs the thesis's {mean:.4f} + 2 x {max(sd, min_batch_sd(mean, batch_size)):.4f} = {limit:.4f}"
                    + ("; seeds disagree (within noise)" if status == "inconclusive" else ""))


def judge_plan(summary: pd.DataFrame, expected: list[dict], cfg: dict) -> list[tuple[str, SubClaim]]:
    """Every row of :data:`PLAN` judged on ``summary`` (:func:`aprbook.streamed_claims.summarise` of the
    runs read at the primary budget) with ``expected`` (:func:`primary_expected`) naming the runs each
    network must have: ``[(item, SubClaim), ...]`` in the plan's order."""
    j = PlanJudge(summary, expected, cfg["size"])
    errs = _by_input(summary, cfg["size"]) if len(summary) else {}
    expected_of = {}
    for r in expected:
        key = table4_2_input(r, cfg["size"])
        if key is not None:
            expected_of.setdefault(key, []).append(r["id"])
    stored = set(summary.run) if len(summary) else set()
    out = []
    for p in PLAN:
        if p.kind == "faster":
            c = j.compare(p.name, [p.nets], f"batches_to_{p.arg:g}", what=f"batch at running accuracy {p.arg:g}")
        elif p.kind == "more_accurate":
            c = j.compare(p.name, [p.nets], "error_mean", what="error over the last 100 of 3000 batches")
        elif p.kind == "deeper_dips":
            c = j.compare(p.name, [p.nets], "max_dip", lower_is_better=False, what="largest dip")
        elif p.kind in ("dips", "no_dips"):
            c = j.dips(p.nets[0], p.kind == "dips")
            c = SubClaim(p.name, c.status, c.evidence)
        elif p.kind == "near_perfect":
            c = j.near_perfect(p.nets[0])
        else:
            absent = [rid for k in p.nets for rid in expected_of.get(k, []) if rid not in stored]
            absent += [k for k in p.nets if k not in errs and not expected_of.get(k)]
            if absent:
                c = SubClaim(p.name, "inconclusive", f"{NOT_COMPUTED}: " + ", ".join(absent))
            else:
                c = _reading(p, errs) if p.kind == "reading" else _magnitude(p, errs, cfg["batch_size"])
        out.append((p.item, c))
    return out


def _summary_of(stored, runs: list[dict], cfg: dict) -> pd.DataFrame:
    from .runs import primary_metrics
    metrics = {r["id"]: primary_metrics(stored.stores[r["id"]], cfg) for r in runs}
    return summarise(runs, metrics, cfg)


def primary_summary(stored, cfg: dict) -> pd.DataFrame:
    """:func:`aprbook.streamed_claims.summarise` of the plan's runs among ``stored`` (a
    :class:`aprbook.runs.StoredRuns` of experiment 'primary'), each read at the primary budget."""
    return _summary_of(stored, primary_expected(stored.loaded), cfg)


def sensitivity_summary(stored, cfg: dict) -> pd.DataFrame:
    """:func:`aprbook.streamed_claims.summarise` of the headline runs (APR_B at E = 0.1, Pix_B at full
    size) under every intensity setting among ``stored``, with their ``normalise`` ('none' for as
    generated), each read at the primary budget: the input of :func:`sensitivity_table`."""
    from .streamed_claims import figure_runs
    heads = [r for r in figure_runs(stored.loaded, cfg["size"]) if r["network"] in ("APR_B", "Pix_B")]
    summary = _summary_of(stored, heads, cfg)
    if len(summary):
        norm = {r["id"]: r.get("normalise", cfg.get("normalise")) for r in heads}
        summary["normalise"] = [norm[rid] for rid in summary.run]
    return summary



# --- the compute plan: each missing run, its cost and the sub-claims it can decide ----------------
def _net_input(run: dict) -> str:
    """'<network> <input>' of a run dict (e.g. 'APR_B E0.1', 'Pix_B px64'): runs of one network and
    input cost the same per batch."""
    return f"{run['network']} " + (f"E{run['rel_error']}" if run["rel_error"] is not None else f"px{run['resolution']}")


def seconds_per_batch(runs: list[dict], provs: dict) -> dict:
    """'<network> <input>' -> the median compute seconds per batch of its stored runs (their
    provenance's ``compute_s`` over ``batches_trained``), measured on this project's machines."""
    got = {}
    for r in runs:
        p = provs.get(r["id"])
        if p and p.get("compute_s") and p.get("batches_trained"):
            got.setdefault(_net_input(r), []).append(p["compute_s"] / p["batches_trained"])
    return {k: float(np.median(v)) for k, v in got.items()}


def compute_plan(runs: list[dict], missing: list[str], provs: dict, n_batches: int) -> pd.DataFrame:
    """The runs not stored yet, in the order to compute them: columns run, network, est_hours (one
    core: ``n_batches`` at the median seconds per batch of the stored runs of its network and input,
    :func:`seconds_per_batch`; NaN where none is stored), decides (the sub-claims of :data:`PLAN`
    that wait for it, or 'the sensitivity table' for an arm) and per_hour (sub-claims per
    core-hour). Sorted by sub-claims per core-hour, the cheapest first among equals; a run that
    decides nothing comes last and is not run under the plan."""
    rate = seconds_per_batch(runs, provs)
    rows = []
    for r in runs:
        if r["id"] not in missing:
            continue
        if "normalise" in r:
            decides = ["the sensitivity table"]
        else:
            decides = [p.name for p in PLAN if r["network"] in p.nets and p.kind != "reading"
                       and p.kind != "magnitude"]
        hours = rate.get(_net_input(r), np.nan) * n_batches / 3600
        rows.append({"run": r["id"], "network": _net_input(r), "est_hours": round(hours, 2),
                     "decides": "; ".join(decides), "n_decides": len(decides),
                     "per_hour": len(decides) / hours if hours and np.isfinite(hours) else np.nan})
    df = pd.DataFrame(rows, columns=["run", "network", "est_hours", "decides", "n_decides", "per_hour"])
    return df.sort_values(["per_hour", "est_hours"], ascending=[False, True], na_position="last",
                          kind="stable").reset_index(drop=True)


# --- the sensitivity of the headline comparisons to the input intensities (issue 39, item 4) -----
#: the intensity settings, by the name the book uses: the book's ('dataset'), as generated (None),
#: per-image standardisation ('image')
SETTINGS = {"dataset": "standardised per data set (the book's)", None: "as generated (thesis-era code)",
            "image": "standardised per image (the field's practice)"}
#: the settings' names as columns of the sensitivity tables, in the book's order (None is "none")
SETTING_COLUMNS = ("dataset", "none", "image")
#: each setting in a few words, for sentences ("holds with ...")
_SETTING_WORDS = {"dataset": "with the book's setting", "none": "with intensities as generated",
                  "image": "with per-image standardisation"}
#: the B networks' headline comparisons, APR_B at E = 0.1 against Pix_B at full size
HEADLINES = [("batches_to_0.5", "APR_B reaches 0.5 before Pix_B"), ("batches_to_0.9", "APR_B reaches 0.9 before Pix_B"),
             ("error_mean", "APR_B errs less than Pix_B after 3000 batches")]


def sensitivity_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per stored run of the headline networks under each setting (:data:`SETTINGS`): setting,
    network, seed, batches to 0.5 and 0.9 (50-batch running accuracy; empty: not within 3000), error
    over the last 100 of 3000 batches. ``summary``: :func:`aprbook.streamed_claims.summarise` of the
    full-input APR_B and Pix_B runs read at the primary budget, with a ``normalise`` column."""
    cols = ["setting", "network", "seed", "batches_to_0.5", "batches_to_0.9", "error_3000"]
    if summary.empty:
        return pd.DataFrame(columns=cols)
    rows = summary[summary.network.isin(["APR_B", "Pix_B"])]
    out = pd.DataFrame({"setting": [n if isinstance(n, str) else "none" for n in rows.normalise],
                        "network": rows.network, "seed": rows.seed, "batches_to_0.5": rows["batches_to_0.5"],
                        "batches_to_0.9": rows["batches_to_0.9"], "error_3000": rows.error_mean})
    order = {name: i for i, name in enumerate(SETTING_COLUMNS)}
    return out.sort_values(["setting", "network", "seed"], key=lambda c: c.map(order) if c.name == "setting" else c
                           ).reset_index(drop=True)[cols]


def sensitivity_verdicts(table: pd.DataFrame) -> pd.DataFrame:
    """The headline comparisons under each setting of ``table`` (:func:`sensitivity_table`), by the
    plan's all-seeds rule (:func:`aprbook.learning_curves.seeds_beat`; three seeds each, else
    inconclusive: underpowered or not computed): columns comparison, one per setting, and
    changes (whether any computed setting's status differs from the book's)."""
    rows = []
    for col, name in HEADLINES:
        row = {"comparison": name}
        for setting in SETTING_COLUMNS:
            t = table[table.setting == setting]
            a, b = t[t.network == "APR_B"][col.replace("error_mean", "error_3000")], \
                t[t.network == "Pix_B"][col.replace("error_mean", "error_3000")]
            if len(a) == 0 or len(b) == 0:
                row[setting] = "not computed"
                continue
            row[setting] = seeds_beat(a.to_numpy(), b.to_numpy())[0]
        decided = {s: row[s] for s in SETTING_COLUMNS if row[s] in ("holds", "fails")}
        row["changes"] = ("yes" if len(set(decided.values())) > 1 else "no" if len(decided) == 3
                          else "not yet known")
        rows.append(row)
    return pd.DataFrame(rows, columns=["comparison", *SETTING_COLUMNS, "changes"])


def sensitivity_text(table: pd.DataFrame, verdicts: pd.DataFrame) -> str:
    """One sentence on whether a headline comparison changes with the input setting: the comparisons
    that change (their status differs between decided settings), each with its status under each
    setting, and those that do not; else whether every setting is
    decided, and for each undecided setting the seeds stored of each network. ``table``:
    :func:`sensitivity_table`; ``verdicts``: :func:`sensitivity_verdicts` of it."""
    changed = verdicts[verdicts.changes == "yes"]
    if len(changed):
        def by_status(row):
            groups = {}
            for s in SETTING_COLUMNS:
                groups.setdefault(row[s], []).append(_SETTING_WORDS[s])
            return ", ".join(f"{status} {' and '.join(names)}" for status, names in groups.items())
        kept = verdicts[verdicts.changes == "no"].comparison.tolist()
        return ("yes: " + "; ".join(f"{row.comparison} ({by_status(row)})" for _, row in changed.iterrows())
                + (f"; the same under every setting: {'; '.join(kept)}" if kept else ""))
    undecided = [s for s in SETTING_COLUMNS if not verdicts[s].isin(["holds", "fails"]).all()]
    if not undecided:
        return "no change: every comparison has the same status under the three settings"
    decided = [s for s in SETTING_COLUMNS if s not in undecided]
    seeds = [f"{s} ({', '.join(f'{net} {int(((table.setting == s) & (table.network == net)).sum())}' for net in ('APR_B', 'Pix_B'))} seeds stored)"
             for s in undecided]
    head = (f"no change between the settings decided so far ({', '.join(decided)})" if len(decided) > 1
            else "not yet known")
    return f"{head}; undecided, for want of three seeds of each network: {'; '.join(seeds)}"

"""The thesis's claims on the streamed runs (Fig 4.3, Fig 4.4, Table 4.2), judged from the runs'
learning curves by the rules that notebook 05 states before its results.

The pieces, in the order the notebook uses them:

- :func:`summarise`: one row per stored run (final error, batches to 0.5/0.9/0.95 running accuracy,
  largest dip and its noise floor, the convergence criterion).
- :class:`Judge`: the sub-claims of Fig 4.3 (:meth:`Judge.fig4_3`) and Fig 4.4 (:meth:`Judge.fig4_4`)
  from that summary. A sub-claim resting on a network with a run not stored yet (``expected`` names
  every run of the profile), or with a run still improving by the plateau test, is *inconclusive*;
  comparisons between networks need every seed of one network to beat every seed of the other
  (:func:`aprbook.learning_curves.seeds_beat`, at least :data:`MIN_SEEDS` seeds each); final errors
  are compared only between runs that trained equally long (:func:`unequal_lengths`).
- :func:`table4_2` and :func:`table4_2_claims`: Table 4.2 (seed 1 of each input, the seeds' range
  beside) and its readings, judged on the seeds' final errors.

``runs`` are the run dicts of :func:`aprbook.runs.streamed_runs`; ``metrics`` maps a run id to its
per-batch table (columns batch, loss, accuracy, ...).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .learning_curves import (dip_noise_floor, expected_accuracy, final_error, information_ordering, plateaued,
                              run_summary, sd_below_floor, seeds_beat)
from .verdicts import SubClaim

__all__ = ["MIN_SEEDS", "NEAR_PERFECT", "WITHIN", "DIP_WINDOW", "CONV_FRAC", "THESIS_42", "READINGS",
           "summarise", "NO_RUN_DECIDES", "no_run_decides", "unequal_lengths", "extensions_needed",
           "compared_final_errors", "figure_runs", "Judge", "table4_2_input", "table4_2", "table4_2_claims"]

#: seeds of each network a between-network comparison needs
MIN_SEEDS = 3
#: "virtually perfect classification after a few hundred batches": running accuracy NEAR_PERFECT within WITHIN
NEAR_PERFECT, WITHIN = 0.95, 500
#: the dips' running window (batches) and the convergence criterion's window (fraction of the run)
DIP_WINDOW, CONV_FRAC = 20, 0.1

#: Table 4.2 of the thesis: input -> (mean, standard deviation) of the error over the last 100 batches
THESIS_42 = {"APR 0.1": (0.0013, 0.0015), "Pix 256": (0.0016, 0.0028), "APR 0.4": (0.0071, 0.0031),
             "APR 0.6": (0.0102, 0.0048), "Pix 128": (0.0116, 0.0040), "APR 0.8": (0.0261, 0.0067),
             "Pix 64": (0.0770, 0.0123)}
#: the inputs each reading of :func:`aprbook.learning_curves.information_ordering` rests on, in its row
#: order, and how it is read
READINGS = [(["APR 0.1", "Pix 256"], "equal"), (["Pix 256", "APR 0.4", "Pix 128"], "between"),
            (["APR 0.6", "Pix 128"], "equal"), (["Pix 128", "APR 0.8", "Pix 64"], "between"),
            (["APR 0.1", "APR 0.4", "APR 0.6", "APR 0.8"], "increasing")]


def _never(v) -> str:
    return "not reached" if np.isnan(v) else f"{v:.0f}"


def _to(threshold: float) -> str:
    return f"batches_to_{threshold:g}"


def summarise(runs: list[dict], metrics: dict[str, pd.DataFrame], cfg: dict) -> pd.DataFrame:
    """One row per run of ``runs`` stored in ``metrics`` (the others are skipped): the run's keys
    (run, network, family, variant, rel_error, resolution, seed), its length (batches), :func:`run_summary` (running mean
    of ``cfg['smooth']`` batches, final error over the last ``cfg['last']``), the convergence criterion
    (plateaued, plateau_drop, plateau_2se: :func:`aprbook.learning_curves.plateaued`) and the largest dip beside its noise floor (dip_floor,
    dip_pronounced: simulated from the run's dip-free fit, :func:`expected_accuracy`), and beside the
    floor of a run settled at its final accuracy (dip_floor_final, dip_pronounced_final: the first
    rule, which does not describe a learning run's noise; kept to show the sensitivity)."""
    rows = []
    for r in runs:
        if r["id"] not in metrics:
            continue
        m = metrics[r["id"]]
        row = run_summary(m, cfg["smooth"], cfg["last"], dip_window=DIP_WINDOW)
        ok, conv = plateaued(m, CONV_FRAC)
        floor = dip_noise_floor(expected_accuracy(m), len(m), DIP_WINDOW, after=cfg["smooth"],
                                batch_size=cfg["batch_size"])
        floor_final = dip_noise_floor(1 - row["error_mean"], len(m), DIP_WINDOW, after=cfg["smooth"],
                                      batch_size=cfg["batch_size"])
        rows.append({"run": r["id"], "network": r["network"], "family": r["family"], "variant": r["variant"],
                     "rel_error": r["rel_error"], "resolution": r["resolution"], "seed": r["seed"],
                     "batches": len(m), **row,
                     "plateaued": ok, "plateau_drop": conv["drop"], "plateau_2se": 2 * conv["se"],
                     "dip_floor": floor, "dip_pronounced": bool(row["max_dip"] > floor),
                     "dip_floor_final": floor_final, "dip_pronounced_final": bool(row["max_dip"] > floor_final)})
    return pd.DataFrame(rows)


#: the words by which an inconclusive sub-claim's evidence says that no further run can settle it
NO_RUN_DECIDES = "no further run decides this"


def _unconverged(rows: pd.DataFrame, ids) -> str | None:
    """The reason naming the runs among ``ids`` that ``rows`` (:func:`summarise`'s table indexed by
    run) has stored unconverged, with their lengths, or None: still improving by the criterion when
    their last budget ran out (a stored run has spent its ladder), so no further run decides a
    sub-claim resting on them."""
    bad = [rid for rid in ids if rid in rows.index and not rows.plateaued[rid]]
    if not bad:
        return None
    return (f"unconverged by the criterion when their last budget ran out ({NO_RUN_DECIDES}): "
            + ", ".join(f"{rid} ({int(rows.batches[rid])} batches)" for rid in bad))


def no_run_decides(claims) -> list[str]:
    """The names of the inconclusive sub-claims among ``claims`` that rest on a run stored
    unconverged: within the budget cap no further run settles them (those waiting only for runs not
    computed yet are not listed)."""
    return [c.name for c in claims if c.status == "inconclusive" and NO_RUN_DECIDES in c.evidence]


def unequal_lengths(groups: dict) -> str | None:
    """Why the final errors of these runs cannot be compared, or None: ``groups`` maps a network (or
    Table 4.2 input) to its runs' (id, batches); every run compared, of every group, must have
    trained the same number of batches. A final error depends on how long a run trained, and the
    criterion stops a run at the first budget where it passes: it passed seeds at 3000 batches whose
    sibling, trained on, kept improving to 9000, so comparing one run's error after 3000 batches
    with another's after 9000 would measure the budgets, not the networks (or inputs). The shorter
    runs are extended to the longest one's budget (:func:`extensions_needed`, ``extend_to`` in the
    profile)."""
    lengths = {int(n) for runs in groups.values() for _, n in runs}
    if len(lengths) <= 1:
        return None
    return "runs trained for different numbers of batches: " + "; ".join(
        f"{g} " + ", ".join(f"{rid} {int(n)}" for rid, n in runs) for g, runs in groups.items())


def extensions_needed(summary: pd.DataFrame, groups: dict) -> pd.DataFrame:
    """The stored runs shorter than the longest run they are compared with: ``groups`` maps the name
    of a comparison (e.g. "Table 4.2") to the ids of the runs whose final errors it compares.
    Columns comparison, run, batches, to (the longest run's length): what ``extend_to`` in the
    profile must list for those comparisons to be judged (:func:`unequal_lengths`)."""
    cols = ["comparison", "run", "batches", "to"]
    length = summary.set_index("run").batches if len(summary) else pd.Series(dtype=int)
    rows = []
    for name, ids in groups.items():
        stored = [rid for rid in ids if rid in length.index]
        if not stored:
            continue
        to = int(length[stored].max())
        rows += [{"comparison": name, "run": rid, "batches": int(length[rid]), "to": to}
                 for rid in stored if length[rid] < to]
    return pd.DataFrame(rows, columns=cols)


def compared_final_errors(judge: "Judge", runs_of: dict) -> dict:
    """The comparisons of final errors and the stored runs each rests on (for
    :func:`extensions_needed`): Fig 4.3's stages of level-specific kernels (APR_A same, close and
    full) and Table 4.2's readings (``runs_of``: :func:`table4_2`'s input -> run ids)."""
    stages = [rid for net in ("APR_A same", "APR_A close", "APR_A") if net in judge.by_net
              for rid in judge.by_net[net].run]
    return {"Fig 4.3 (kernel stages)": stages, "Table 4.2": [rid for ids in runs_of.values() for rid in ids]}


def figure_runs(runs, size: int):
    """The runs of Fig 4.3/4.4 among ``runs`` (run dicts, or a table with rel_error and resolution
    columns such as :func:`summarise`'s): APRNets at E = 0.1 and pixel networks at full resolution."""
    if isinstance(runs, pd.DataFrame):
        return runs if runs.empty else runs[(runs.rel_error == 0.1) | (runs.resolution == size)]
    return [r for r in runs if r["rel_error"] == 0.1 or r["resolution"] == size]


class Judge:
    """The sub-claims of Fig 4.3 and Fig 4.4, from :func:`summarise`'s table of the stored runs.

    ``expected``: every run of the profile (run dicts); a network with one of them missing from
    ``summary`` is not judged yet (its sub-claims are inconclusive, naming the missing runs).
    ``size``: the full image size (pixel networks at it, APRNets at E = 0.1, are the figures' runs).
    """

    def __init__(self, summary: pd.DataFrame, expected: list[dict], size: int):
        stored = set(summary.run) if len(summary) else set()
        main = figure_runs(summary, size)
        self.by_net = {net: d for net, d in main.groupby("network")} if len(main) else {}
        self.rows = summary.set_index("run") if len(summary) else pd.DataFrame(columns=["plateaued", "batches"])
        self.missing = {}
        for r in figure_runs(expected, size):
            if r["id"] not in stored:
                self.missing.setdefault(r["network"], []).append(r["id"])

    def gate(self, nets) -> str | None:
        """Why a sub-claim resting on these networks' runs cannot be judged, or None: runs not
        computed, and (named even while others are missing, since no further run changes them) runs
        stored unconverged, which spent their whole ladder of budgets."""
        absent = [rid for n in nets for rid in self.missing.get(n, [])]
        reasons = []
        if absent or any(n not in self.by_net for n in nets):
            reasons.append("runs not computed: " + ", ".join(absent or [n for n in nets if n not in self.by_net]))
        unconverged = _unconverged(self.rows, [rid for n in nets if n in self.by_net for rid in self.by_net[n].run])
        reasons += [unconverged] if unconverged else []
        return "; ".join(reasons) or None

    def compare(self, name: str, pairs, col: str, lower_is_better: bool = True, what: str = "") -> SubClaim:
        """Between networks: for every (a, b) in ``pairs``, every seed of a beats every seed of b on ``col``."""
        nets = sorted({n for p in pairs for n in p})
        reason = self.gate(nets)
        if col == "error_mean" and not reason:  # a final error depends on how long a run trained
            reason = unequal_lengths({n: list(zip(self.by_net[n].run, self.by_net[n].batches)) for n in nets})
        results = [seeds_beat(self.by_net[a][col], self.by_net[b][col], lower_is_better, MIN_SEEDS, (a, b))
                   for a, b in pairs if a in self.by_net and b in self.by_net]
        evidence = f"{what}: " + ("; ".join(t for _, t in results) or "no pair stored")
        if reason:
            return SubClaim(name, "inconclusive", f"{evidence}; {reason}")
        statuses = {s for s, _ in results}
        status = "inconclusive" if "inconclusive" in statuses else "holds" if statuses == {"holds"} else "fails"
        return SubClaim(name, status, evidence)

    def dips(self, net: str, expect_dips: bool) -> SubClaim:
        """Every run of ``net`` has (``expect_dips``) or has not a dip beyond its noise floor; runs that
        disagree make it inconclusive."""
        name = f"{net} shows pronounced dips" if expect_dips else f"{net} does not dip beyond noise"
        if net not in self.by_net:
            return SubClaim(name, "inconclusive", f"runs not computed: {net}")
        d = self.by_net[net]
        evidence = "largest dip vs noise floor: " + ", ".join(f"{r.run} {r.max_dip:.3f} vs {r.dip_floor:.3f}"
                                                              for r in d.itertuples())
        reason = self.gate([net])
        if reason:
            return SubClaim(name, "inconclusive", f"{evidence}; {reason}")
        as_claimed = [p == expect_dips for p in d.dip_pronounced]
        status = "holds" if all(as_claimed) else "fails" if not any(as_claimed) else "inconclusive"
        return SubClaim(name, status, evidence + ("; runs disagree" if status == "inconclusive" else ""))

    def near_perfect(self, net: str) -> SubClaim:
        """The running accuracy reaches :data:`NEAR_PERFECT` within :data:`WITHIN` batches in every run
        of ``net`` (in none: fails; mixed: inconclusive). It reads the first batches only, which every
        run covers, so it does not need runs that passed the plateau test; it needs every run of the network stored."""
        name = f"{net} virtually perfect within a few hundred batches"
        if net not in self.by_net or self.missing.get(net):
            return SubClaim(name, "inconclusive", "runs not computed: " + ", ".join(self.missing.get(net, [net])))
        reached = self.by_net[net][_to(NEAR_PERFECT)]
        ok = [bool(v <= WITHIN) for v in reached]  # NaN (never reached) compares False
        status = "holds" if all(ok) else "fails" if not any(ok) else "inconclusive"
        return SubClaim(name, status, f"running accuracy {NEAR_PERFECT:g} first reached at batch "
                        + ", ".join(_never(v) for v in reached) + f" (criterion: within {WITHIN})")

    @staticmethod
    def _stages(fam: str):
        """same -> close -> full: each added stage of level-specific kernels is ahead of the one before"""
        return [(f"APR_{fam} close", f"APR_{fam} same"), (f"APR_{fam}", f"APR_{fam} close")]

    def fig4_3(self) -> list[SubClaim]:
        """The A networks (thesis Fig 4.3)."""
        at05 = "batch at running accuracy 0.5"
        return [
            self.compare("APR_A converges faster than Pix_A", [("APR_A", "Pix_A")], _to(0.5), what=at05),
            self.compare("the 'same' and 'close' APRNets converge faster than Pix_A",
                         [("APR_A same", "Pix_A"), ("APR_A close", "Pix_A")], _to(0.5), what=at05),
            self.compare("each stage of level-specific kernels (same, close, full) converges faster",
                         self._stages("A"), _to(0.5), what=at05),
            self.compare("each stage of level-specific kernels (same, close, full) ends more accurate",
                         self._stages("A"), "error_mean", what="final error"),
            self.dips("Pix_A", True),
            self.dips("APR_A same", True),
            self.compare("the dips shrink as more level-specific kernels are allowed",
                         [("APR_A same", "APR_A close"), ("APR_A close", "APR_A")], "max_dip",
                         lower_is_better=False, what="largest dip"),
        ]

    def fig4_4(self) -> list[SubClaim]:
        """The B networks (thesis Fig 4.4)."""
        return [
            self.compare("the B networks converge faster than the A networks",
                         [(n.replace("_A", "_B"), n) for n in ("APR_A", "APR_A same", "APR_A close", "Pix_A")],
                         _to(0.5), what="batch at running accuracy 0.5"),
            *[self.near_perfect(n) for n in ("APR_B", "APR_B same", "APR_B close", "Pix_B")],
            self.dips("Pix_B", True),
            self.dips("APR_B same", True),
            self.dips("APR_B", False),
            self.dips("APR_B close", False),
            self.compare("the level-adaptive APRNets (APR_B, close) converge faster than Pix_B and APR_B same",
                         [(a, b) for a in ("APR_B", "APR_B close") for b in ("Pix_B", "APR_B same")], _to(0.9),
                         what="batch at running accuracy 0.9"),
        ]

    def convergence_text(self, family: str, threshold: float) -> str:
        """'<network> at batch <b1>, <b2>, ...' for the stored runs of one family (A or B)."""
        return "; ".join(f"{net} at batch " + ", ".join(_never(v) for v in d[_to(threshold)])
                         for net, d in self.by_net.items() if net.endswith(f"_{family}") or f"_{family} " in net) \
            or "no run stored"

    def near_perfect_text(self) -> str:
        """'<network> <batch of seed 1>, <seed 2>, ...' at which the B networks' running accuracy first
        reached :data:`NEAR_PERFECT`."""
        return "; ".join(f"{net} " + ", ".join(_never(v) for v in d[_to(NEAR_PERFECT)])
                         for net, d in self.by_net.items() if "_B" in net) or "no run stored"


def table4_2_input(run: dict, size: int) -> str | None:
    """Table 4.2's row of a run ('APR 0.4', 'Pix 128', ...), or None for a run not in the table
    (A networks, the 'same' and 'close' variants)."""
    if run["family"] != "B" or run["variant"] not in ("full", "pixel"):
        return None
    if run["variant"] == "full":
        return f"APR {run['rel_error']}"
    pix = {size: "Pix 256", size // 2: "Pix 128", size // 4: "Pix 64"}  # by downsampling step
    return pix[run["resolution"]]


def _by_input(runs: list[dict], size: int) -> dict:
    """Table 4.2's input -> the ids of its runs among ``runs`` (all seeds, in order)."""
    out = {}
    for r in runs:
        key = table4_2_input(r, size)
        if key is not None:
            out.setdefault(key, []).append(r["id"])
    return out


def table4_2(runs: list[dict], metrics: dict[str, pd.DataFrame], cfg: dict):
    """Table 4.2 from the stored runs: per input, seed 1's mean and standard deviation of the error
    over the last ``cfg['last']`` batches (as the thesis, a single run), the number of seeds stored and
    the range of their final errors, the thesis's numbers and whether its standard deviation is possible
    for raw per-batch errors (:func:`aprbook.learning_curves.sd_below_floor`).

    Returns ``(table, runs_of, errors)``: ``runs_of`` maps each input to the ids of its stored runs (all
    seeds), ``errors`` each input to seed 1's per-batch errors over the last batches."""
    seed1 = cfg["seeds"][0]
    runs_of, errors, rows = _by_input([r for r in runs if r["id"] in metrics], cfg["size"]), {}, []
    for r in runs:
        key = table4_2_input(r, cfg["size"])
        if key is None or r["seed"] != seed1 or r["id"] not in metrics:
            continue
        m = metrics[r["id"]]
        errors[key] = 1 - m.accuracy.iloc[-cfg["last"]:].to_numpy()
        mean, sd = final_error(m, cfg["last"])
        finals = [final_error(metrics[rid], cfg["last"])[0] for rid in runs_of[key]]
        rows.append({"input": key, "error_mean": mean, "error_sd": sd, "n_seeds": len(finals),
                     "seeds_min": min(finals), "seeds_max": max(finals), "thesis_mean": THESIS_42[key][0],
                     "thesis_sd": THESIS_42[key][1], "step_s": m.step_s.median() if "step_s" in m else np.nan})
    floors = sd_below_floor(THESIS_42, batch_size=36, rounding=5e-5).set_index("input")
    table = pd.DataFrame(rows, columns=["input", "error_mean", "error_sd", "n_seeds", "seeds_min", "seeds_max",
                                        "thesis_mean", "thesis_sd", "step_s"])
    table = table.set_index("input").loc[[k for k in THESIS_42 if k in errors]].reset_index()
    table["thesis_sd_floor"] = [floors.loc[k, "min_sd"] for k in table.input]
    table["thesis_sd_possible"] = [not floors.loc[k, "below"] for k in table.input]
    return table, runs_of, errors


def _reading(claim, inputs, kind, single_run, runs_of, expected_of, summary) -> SubClaim:
    rows = summary.set_index("run")
    final_err, length = rows.error_mean, rows.batches
    absent = [rid for k in inputs for rid in expected_of.get(k, []) if rid not in runs_of.get(k, [])]
    unconverged = _unconverged(rows, [rid for k in inputs for rid in runs_of.get(k, [])])
    few = [k for k in inputs if len(expected_of.get(k, [])) < MIN_SEEDS]
    reasons = ([f"runs not computed: {', '.join(absent)}"] if absent else []) + (
        [unconverged] if unconverged else []) + (
        [f"underpowered: {', '.join(f'{k} {len(expected_of.get(k, []))}' for k in few)} seed(s), "
         f"{MIN_SEEDS} needed"] if few else [])
    unequal = unequal_lengths({k: [(rid, length[rid]) for rid in runs_of.get(k, [])] for k in inputs})
    reasons += [unequal] if unequal else []
    evidence = f"single runs (seed 1): {single_run}"
    if reasons:
        return SubClaim(claim, "inconclusive", f"{evidence}; " + "; ".join(reasons))
    errs = {k: final_err[runs_of[k]].to_numpy() for k in inputs}
    if kind == "equal":
        a, b = inputs
        sep = {seeds_beat(errs[a], errs[b], min_seeds=MIN_SEEDS)[0], seeds_beat(errs[b], errs[a], min_seeds=MIN_SEEDS)[0]}
        status = "fails" if "holds" in sep else "holds"
    else:
        steps = [seeds_beat(errs[lo], errs[hi], min_seeds=MIN_SEEDS)[0] for lo, hi in zip(inputs, inputs[1:])]
        status = "holds" if all(s == "holds" for s in steps) else "fails"
    return SubClaim(claim, status, evidence + "; final errors by seed: "
                    + "; ".join(f"{k} " + ", ".join(f"{v:.4f}" for v in errs[k]) for k in inputs))


def table4_2_claims(summary: pd.DataFrame, expected: list[dict], runs_of: dict, errors: dict, size: int):
    """Table 4.2's readings as sub-claims, and what seed 1 alone shows (``ordering``, the table of
    :func:`information_ordering`, or None while an input has no stored seed 1).

    Each reading compares networks on different inputs: it needs every run of its inputs stored and
    past the plateau test, at least :data:`MIN_SEEDS` seeds of each input and all of them trained equally long
    (:func:`unequal_lengths`; else *inconclusive*); then "lies
    between" and "grows with E" hold if every seed of the lower beats every seed of the higher, and
    "performs equally / roughly like" holds if neither beats the other on every seed."""
    expected_of = _by_input(expected, size)
    if len(errors) < len(THESIS_42):
        missing = [k for k in THESIS_42 if k not in errors]
        unconverged = _unconverged(summary.set_index("run"), [rid for ids in runs_of.values() for rid in ids]) \
            if len(summary) else None
        return [SubClaim("Table 4.2's readings", "inconclusive", "runs not computed: " + ", ".join(missing)
                         + (f"; {unconverged}" if unconverged else ""))], None
    ordering = information_ordering(errors)
    claims = [_reading(row.claim, inputs, kind, f"{row.values}, {'holds' if row.holds else 'does not hold'}",
                       runs_of, expected_of, summary)
              for row, (inputs, kind) in zip(ordering.itertuples(), READINGS)]
    return claims, ordering

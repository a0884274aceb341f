"""The claims of the chapter "Beyond the thesis: segmentation on the APR" (issue 42), the plan that
judges them, fixed before any of the chapter's book-profile runs existed (2026-12-07), and the
judging itself, from the stored runs (:func:`aprbook.segmentation_runs.load_runs`,
:func:`aprbook.segmentation_runs.load_cost`).

The thesis makes no claim about segmentation: these are the chapter's own, in the book's verdict
vocabulary (:mod:`aprbook.verdicts`). Four items, each with its sub-claims (:data:`PLAN` says, for
each, the statistic, the runs, and the decision rule with its noise model):

- **accuracy**: on held-out synthetic nuclei the APR U-Net's Dice is within :data:`DICE_MARGIN` of the
  pixel U-Net's at E = :data:`E_PRIMARY` (2D; 3D). Statistic: per seed, the difference pixel - APR of
  the mean held-out Dice over the run's last :data:`FINAL_EVALS` evaluations (both nets of a seed share
  the initial weights, the batches and the budget, so the difference is paired). Runs:
  ``seg{2,3}d_E0.1_s{1,2,3}``. Rule: holds if every seed's difference is <= the margin, fails if every
  seed's is above it, else inconclusive (within noise: the seeds disagree); with fewer than
  :data:`N_SEEDS` seeds stored, inconclusive (not computed).
- **information loss**: the APR U-Net's held-out Dice at the sweep's largest E is below its Dice at
  E = 0.1 (2D). Statistic: the same final mean Dice. Runs: ``seg2d_E{max}_s1`` against the seeds of
  ``seg2d_E0.1``. Noise model: the spread of the E = 0.1 seeds. Rule: holds if the large-E Dice is
  below the lowest E = 0.1 seed, fails if it is at or above the highest, else inconclusive (within
  noise). The other E of the sweep are shown (Dice against E), not judged.
- **cost**: at the largest size measured (which must be at least :data:`COST_MIN_SIZE`: 2048^2 in 2D,
  256^3 in 3D; smaller: not computed), one APR U-Net training step at one thread is at least
  :data:`COST_FACTOR` times faster, and needs at least that factor less peak memory, than the pixel
  U-Net's (four sub-claims). Statistic: the ratio of the medians of the interleaved rounds (time)
  and of the fresh-process peaks (memory). Rule: holds if the ratio is >= the factor, fails
  otherwise (a pixel step that ran out of the address-space limit counts as needing the limit).
- **real images**: on StarDist's sample image (2D) and volume (3D), networks trained on synthetic
  nuclei only (never on these) score an APR Dice within :data:`DICE_MARGIN` of the pixel Dice:
  the accuracy rule, per seed of the E = 0.1 runs. Their Dice are reported whatever the verdict.

Every paired rule counts a seed only where its pixel U-Net learned the synthetic task (held-out Dice at
least :data:`MIN_LEARNED_DICE`; else the sub-claim is inconclusive, underpowered): two networks that
learned nothing agree and decide nothing.

Nothing here asserts a result; every function reads stored tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .verdicts import SubClaim, verdict

__all__ = ["DICE_MARGIN", "E_PRIMARY", "N_SEEDS", "MIN_LEARNED_DICE", "FINAL_EVALS", "COST_FACTOR", "COST_MIN_SIZE", "ITEMS",
           "PlanRow", "PLAN", "plan_table", "final_dice", "accuracy_claim", "information_loss_claim",
           "cost_claims", "stardist_claim", "judge", "verdict_rows"]

#: The accuracy margin (held-out Dice, pixel - APR), the issue's.
DICE_MARGIN = 0.02
#: The E of the accuracy and real-image claims.
E_PRIMARY = 0.1
#: Seeds a paired comparison needs.
N_SEEDS = 3
#: A paired comparison counts only where the pixel U-Net learned: its Dice at least this (two nets that
#: learned nothing agree, and decide nothing).
MIN_LEARNED_DICE = 0.5
#: The final Dice of a run: the mean over its last this many held-out evaluations.
FINAL_EVALS = 3
#: The cost factor (time and peak memory, pixel / APR), the issue's.
COST_FACTOR = 5.0
#: The cost claims are judged at the largest size measured, which must be at least this side.
COST_MIN_SIZE = {2: 2048, 3: 256}

#: The chapter's items, in order, with the claim in a few words.
ITEMS = {
    "accuracy": f"APR U-Net within {DICE_MARGIN} held-out Dice of the pixel U-Net at E = {E_PRIMARY}",
    "information loss": "larger E costs the APR U-Net held-out Dice",
    "cost": f"APR U-Net training step >= {COST_FACTOR:g}x faster and >= {COST_FACTOR:g}x less peak memory at the "
            "largest sizes",
    "real images": f"on StarDist's real samples, APR U-Net within {DICE_MARGIN} Dice of the pixel U-Net",
}


@dataclass(frozen=True)
class PlanRow:
    """One sub-claim of the plan: its item, name, statistic, runs and rule."""
    item: str
    name: str
    statistic: str
    runs: str
    rule: str


_FINAL = f"mean held-out Dice over the run's last {FINAL_EVALS} evaluations"
_PAIRED = (f"every seed's difference <= {DICE_MARGIN}: holds; every seed's > {DICE_MARGIN}: fails; mixed: "
           f"inconclusive (within noise); fewer than {N_SEEDS} seeds: inconclusive (not computed); a seed whose "
           f"pixel U-Net's Dice is below {MIN_LEARNED_DICE}: inconclusive (underpowered: it did not learn)")


def _accuracy_name(ndim: int) -> str:
    return f"{ndim}D: APR U-Net within {DICE_MARGIN} of the pixel U-Net (E = {E_PRIMARY})"


def _cost_name(ndim: int, what: str) -> str:
    side = f"{COST_MIN_SIZE[ndim]}^{ndim}"
    return f"{ndim}D (>= {side}): APR step >= {COST_FACTOR:g}x {what}"


def _stardist_name(ndim: int) -> str:
    return f"StarDist {'image' if ndim == 2 else 'volume'}: APR U-Net within {DICE_MARGIN} Dice of the pixel U-Net"


#: The plan, one row per sub-claim (module docstring).
PLAN = (
    PlanRow("accuracy", _accuracy_name(2), f"pixel - APR {_FINAL}, per seed (paired)",
            f"seg2d_E{E_PRIMARY}_s1..{N_SEEDS}", _PAIRED),
    PlanRow("accuracy", _accuracy_name(3), f"pixel - APR {_FINAL}, per seed (paired)",
            f"seg3d_E{E_PRIMARY}_s1..{N_SEEDS}", _PAIRED),
    PlanRow("information loss", "2D: APR Dice at the largest E below its Dice at E = 0.1", f"APR {_FINAL}",
            f"seg2d_E<largest>_s1 against seg2d_E{E_PRIMARY}_s1..{N_SEEDS}",
            "below the lowest E = 0.1 seed: holds; at or above the highest: fails; between: inconclusive (within "
            "noise); a run missing: inconclusive (not computed)"),
    *(PlanRow("cost", _cost_name(nd, what), f"pixel / APR {stat} of one training step, one thread",
              f"cost_{nd}d, its largest size",
              f">= {COST_FACTOR:g}: holds; below: fails; largest size below {COST_MIN_SIZE[nd]}: inconclusive (not "
              "computed)")
      for nd in (2, 3) for what, stat in (("faster", "median time"), ("less peak memory", "peak resident memory"))),
    PlanRow("real images", _stardist_name(2), "pixel - APR Dice on the sample image, per seed (paired)",
            f"seg2d_E{E_PRIMARY}_s1..{N_SEEDS}", _PAIRED),
    PlanRow("real images", _stardist_name(3), "pixel - APR Dice on the sample volume, per seed (paired)",
            f"seg3d_E{E_PRIMARY}_s1..{N_SEEDS}", _PAIRED),
)


def plan_table() -> pd.DataFrame:
    """:data:`PLAN` as a table (item, sub-claim, statistic, runs, rule)."""
    return pd.DataFrame([{"item": p.item, "sub-claim": p.name, "statistic": p.statistic, "runs": p.runs,
                          "rule": p.rule} for p in PLAN], columns=["item", "sub-claim", "statistic", "runs", "rule"])


# --- statistics -----------------------------------------------------------------------------------------
def final_dice(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, network): ``dice``, the mean held-out Dice over the run's last
    :data:`FINAL_EVALS` evaluations, with the run's ``ndim``, ``rel_error``, ``seed`` and ``steps`` (its
    last step). ``curves``: the stored curves (columns run, ndim, rel_error, seed, step, network,
    heldout_dice; NaN Dice where a step was not evaluated)."""
    cols = ["run", "ndim", "rel_error", "seed", "network", "dice", "steps"]
    if curves is None or curves.empty or "heldout_dice" not in curves:
        return pd.DataFrame(columns=cols)
    ev = curves.dropna(subset=["heldout_dice"]).sort_values("step")
    rows = []
    for (run, net), g in ev.groupby(["run", "network"], sort=True):
        last = g.tail(FINAL_EVALS)
        rows.append({"run": run, "ndim": int(g["ndim"].iloc[0]), "rel_error": float(g.rel_error.iloc[0]),
                     "seed": int(g.seed.iloc[0]), "network": net, "dice": float(last.heldout_dice.mean()),
                     "steps": int(curves[curves.run == run].step.max())})
    return pd.DataFrame(rows, columns=cols)


def _paired(name: str, diffs: dict, what: str, pixel: dict | None = None) -> SubClaim:
    """The paired rule of :data:`_PAIRED` on ``diffs`` {seed: pixel - APR}, ``pixel`` {seed: the pixel
    U-Net's Dice}."""
    got = {s: d for s, d in diffs.items() if d is not None and math.isfinite(d)}
    ev = ", ".join(f"seed {s}: {d:+.3f}" for s, d in sorted(got.items()))
    if len(got) < N_SEEDS:
        return SubClaim(name, "inconclusive", f"not computed: {len(got)} of {N_SEEDS} seeds stored"
                                              + (f" ({what} pixel - APR: {ev})" if ev else ""))
    unlearned = sorted(s for s in got if pixel is not None and not pixel.get(s, 0.0) >= MIN_LEARNED_DICE)
    if unlearned:
        return SubClaim(name, "inconclusive", f"underpowered: the pixel U-Net's Dice is below {MIN_LEARNED_DICE} in seed "
                                              f"{', '.join(map(str, unlearned))} ({what} pixel - APR: {ev})")
    v = list(got.values())
    status = "holds" if max(v) <= DICE_MARGIN else "fails" if min(v) > DICE_MARGIN else "inconclusive"
    tail = "" if status != "inconclusive" else f"; within noise: the seeds lie on both sides of {DICE_MARGIN}"
    return SubClaim(name, status, f"{what} pixel - APR: {ev}{tail}")


def accuracy_claim(final: pd.DataFrame, ndim: int) -> SubClaim:
    """The accuracy sub-claim of ``ndim`` from :func:`final_dice`'s table."""
    f = final[(final["ndim"] == ndim) & np.isclose(final.rel_error, E_PRIMARY)]
    piv = f.pivot_table(index="seed", columns="network", values="dice")
    diffs = {int(s): float(r["pixel"] - r["apr"]) for s, r in piv.iterrows() if {"apr", "pixel"} <= set(r.index)}
    ev = "; ".join(f"seed {int(s)}: APR {r.get('apr', math.nan):.3f}, pixel {r.get('pixel', math.nan):.3f}"
                   for s, r in piv.iterrows())
    pixel = {int(s): float(r["pixel"]) for s, r in piv.iterrows() if "pixel" in r.index}
    c = _paired(_accuracy_name(ndim), diffs, "held-out Dice", pixel)
    return SubClaim(c.name, c.status, c.evidence + (f" ({ev})" if ev else ""))


def information_loss_claim(final: pd.DataFrame, ndim: int = 2) -> SubClaim:
    """The information-loss sub-claim (module docstring) from :func:`final_dice`'s table."""
    name = f"{ndim}D: APR Dice at the largest E below its Dice at E = {E_PRIMARY}"
    apr = final[(final["ndim"] == ndim) & (final.network == "apr")]
    base = apr[np.isclose(apr.rel_error, E_PRIMARY)].set_index("seed").dice
    others = apr[~np.isclose(apr.rel_error, E_PRIMARY)]
    if others.empty or len(base) < N_SEEDS:
        return SubClaim(name, "inconclusive", f"not computed: {len(base)} of {N_SEEDS} E = {E_PRIMARY} seeds and "
                                              f"{others.rel_error.nunique()} larger E stored")
    e_max = float(others.rel_error.max())
    hi = others[np.isclose(others.rel_error, e_max)].sort_values("seed").iloc[0]
    lo_b, hi_b = float(base.min()), float(base.max())
    status = "holds" if hi.dice < lo_b else "fails" if hi.dice >= hi_b else "inconclusive"
    ev = (f"E = {e_max:g} (seed {int(hi.seed)}): {hi.dice:.3f}; E = {E_PRIMARY} seeds: {lo_b:.3f} ... {hi_b:.3f}"
          + ("; within noise: inside the E = 0.1 seeds' range" if status == "inconclusive" else ""))
    return SubClaim(name, status, ev)


def cost_claims(cost: pd.DataFrame, mem_limit_gb: float | None = None) -> list[SubClaim]:
    """The four cost sub-claims from the stored cost table (columns ndim, size, apr_step_s,
    pixel_step_s, apr_peak_mb, pixel_peak_mb, apr_fit, pixel_fit, cr); ``mem_limit_gb``: the address-space
    limit of the memory measurements (a pixel step that did not fit needed at least that)."""
    out = []
    for nd in (2, 3):
        c = cost[cost["ndim"] == nd] if cost is not None and len(cost) else pd.DataFrame()
        for what, num, den in (("faster", "pixel_step_s", "apr_step_s"),
                               ("less peak memory", "pixel_peak_mb", "apr_peak_mb")):
            name = _cost_name(nd, what)
            if c.empty or int(c["size"].max()) < COST_MIN_SIZE[nd]:
                top = "none" if c.empty else f"{int(c['size'].max())}^{nd}"
                out.append(SubClaim(name, "inconclusive", f"not computed: largest size measured {top}"))
                continue
            r = c.sort_values("size").iloc[-1]
            side = f"{int(r['size'])}^{nd}, CR {r.cr:.1f}"
            a, p = float(r[den]), float(r[num])
            note = ""
            if what != "faster" and not bool(r.get("pixel_fit", True)) and mem_limit_gb:
                p, note = mem_limit_gb * 1e3, f" (the pixel step ran out of the {mem_limit_gb:g} GB limit)"
            if not (math.isfinite(a) and math.isfinite(p) and a > 0):
                out.append(SubClaim(name, "inconclusive", f"not computed: {what} not measured at {side}"))
                continue
            unit = "s" if what == "faster" else "MB"
            ratio = p / a
            out.append(SubClaim.check(name, ratio >= COST_FACTOR,
                                      f"at {side}: pixel {p:.3g} {unit}, APR {a:.3g} {unit}: x{ratio:.1f}{note}"))
    return out


def stardist_claim(stardist: pd.DataFrame, ndim: int, final: pd.DataFrame | None = None) -> SubClaim:
    """The real-image sub-claim of ``ndim`` from the stored StarDist scores (columns run, ndim,
    rel_error, seed, network, dice; ``available`` False rows are skipped). The learned gate reads the
    pixel U-Net's held-out synthetic Dice of the same run (``final``, :func:`final_dice`; None: no gate):
    a network may transfer badly to real images, which the comparison is about, but one that learned
    nothing decides nothing."""
    name = _stardist_name(ndim)
    cols = ["ndim", "rel_error", "seed", "network", "dice"]
    s = stardist if stardist is not None and set(cols) <= set(stardist.columns) else pd.DataFrame(columns=cols)
    s = s[(s["ndim"] == ndim) & np.isclose(s.rel_error.astype(float), E_PRIMARY)]
    if "available" in s:
        s = s[s.available.astype(bool)]
    piv = s.pivot_table(index="seed", columns="network", values="dice")
    diffs = {int(k): float(r["pixel"] - r["apr"]) for k, r in piv.iterrows() if {"apr", "pixel"} <= set(r.index)}
    ev = "; ".join(f"seed {int(k)}: APR {r.get('apr', math.nan):.3f}, pixel {r.get('pixel', math.nan):.3f}"
                   for k, r in piv.iterrows())
    pixel = None
    if final is not None:
        f = final[(final["ndim"] == ndim) & np.isclose(final.rel_error, E_PRIMARY) & (final.network == "pixel")]
        pixel = {int(r.seed): float(r.dice) for r in f.itertuples()}
    c = _paired(name, diffs, "Dice", pixel)
    return SubClaim(c.name, c.status, c.evidence + (f" ({ev})" if ev else ""))


def judge(curves: pd.DataFrame, stardist: pd.DataFrame, cost: pd.DataFrame, mem_limit_gb: float | None = None) -> dict:
    """{item of :data:`ITEMS`: [SubClaim, ...]} by :data:`PLAN`'s rules from the stored tables."""
    final = final_dice(curves)
    return {"accuracy": [accuracy_claim(final, 2), accuracy_claim(final, 3)],
            "information loss": [information_loss_claim(final, 2)],
            "cost": cost_claims(cost, mem_limit_gb),
            "real images": [stardist_claim(stardist, 2, final), stardist_claim(stardist, 3, final)]}


def verdict_rows(judged: dict) -> pd.DataFrame:
    """One row per sub-claim: item, verdict (of its item, :func:`aprbook.verdicts.verdict`), sub-claim,
    status, evidence."""
    rows = []
    for item, claims in judged.items():
        v = verdict(claims)
        rows += [{"item": item, "verdict": v.word, "sub-claim": c.name, "status": c.status, "evidence": c.evidence}
                 for c in claims]
    return pd.DataFrame(rows, columns=["item", "verdict", "sub-claim", "status", "evidence"])

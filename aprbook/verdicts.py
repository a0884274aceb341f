"""Verdicts on the thesis's claims, derived by rule from named sub-claims, and the reproduction
summary that gathers them from ``results/`` (never typed into the book).

A notebook states each of an item's claims as a :class:`SubClaim` whose status is "holds", "fails"
or "inconclusive" (decided by a criterion written in the notebook before the result it judges),
and :func:`verdict` derives the item's verdict from them:

- every sub-claim holds: **confirmed**;
- at least one holds and at least one fails: **partly confirmed** (the detail names which hold,
  which fail and which are inconclusive);
- none holds and at least one fails: **not confirmed**;
- none fails and at least one is inconclusive: **inconclusive**.

So a single failing or inconclusive sub-claim never yields "confirmed". Two verdicts do not come
from sub-claims: **not run** when the thesis's data could not be used (``data="stand-in"``: the
results on the stand-in are shown beside, as an illustration, but they test nothing), and
**illustration** for a figure that makes no claim (:func:`illustration`; called "reproduced" until
issue 40, which a reader took for the best verdict).

Each notebook records its verdicts with :func:`save_verdicts` into its result directory
(``verdicts.csv``: item, ours, verdict, detail; ``subclaims.csv``: every sub-claim with its status
and evidence). :func:`collect_verdicts` joins them with :data:`THESIS_ITEMS`; an item that no
notebook has covered yet is listed as "not yet judged", a status of the summary outside the
verdict vocabulary.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = ["THESIS_ITEMS", "VERDICTS", "STATUSES", "NOT_YET", "SubClaim", "Verdict", "verdict", "illustration",
           "band", "save_verdicts", "collect_verdicts", "REASONS", "reason_class", "reason_counts", "SHORT_CLAIMS",
           "BADGES", "COLOURS", "badge", "overview_figure", "dashboard_table", "BEYOND_THESIS",
           "beyond_thesis_table"]

#: The verdict vocabulary, closed: :func:`save_verdicts` refuses any other word.
VERDICTS = ("confirmed", "partly confirmed", "not confirmed", "inconclusive", "not run", "illustration")
#: The status of a sub-claim.
STATUSES = ("holds", "fails", "inconclusive")
#: What the summary shows for an item no notebook has recorded a verdict for (not a verdict).
NOT_YET = "not yet judged"

#: Every figure and table of thesis chapter 4, in order, with the thesis's claim or number.
THESIS_ITEMS = {
    "Fig 4.1": "Examples of the six classes of synthetic images, 256x256",
    "Fig 4.2": "APR of 1000 synthetic images: E <= 0.2 lossless in most cases, mean CR slightly above 50; "
               "the boundary is lost around E = 0.5",
    "Table 4.1": "Weight counts APR_A 85088, Pix_A 23520, APR_B 226592, Pix_B 109728",
    "Fig 4.3": "A networks on streamed data: APRNets converge faster; pixel and 'same' nets show dips",
    "Fig 4.4": "B networks on streamed data: near-perfect after a few hundred batches; level-adaptive APRNets "
               "converge faster and do not dip",
    "Fig 4.5": "Typical adaptation at E = 0.1, 0.4, 0.6, 0.8",
    "Table 4.2": "Error vs information loss: APR 0.1: 0.0013, Pix 256: 0.0016, APR 0.4: 0.0071, APR 0.6: 0.0102, "
                 "Pix 128: 0.0116, APR 0.8: 0.0261, Pix 64: 0.0770",
    "Fig 4.6": "Finite datasets: APRNets much better on the smallest training sets; similar (pixel slightly "
               "better) on large ones",
    "Fig 4.7": "Natural images: CR about 2 at E = 0.2, roughly doubling per step of E",
    "Fig 4.8": "Level maps and reconstructions of one natural image at several E",
    "Table 4.3": "Natural-image networks: 257473 / 371809 / 462977 weights as printed",
    "Fig 4.9": "Validation accuracy per epoch: similar final accuracy; APRNet and expanded pixels converge "
               "faster; pixel nets dip",
    "Table 4.4": "Best validation accuracy: Pixels 0.9709, expanded 0.9739, APR E = 0.2 0.9739, 0.4 0.9589, "
                 "0.6 0.9579, 0.8 0.9549",
    "Fig 4.10": "APR convolution time linear in the number of particles; backward about 2x forward",
    "Fig 4.11": "APR max-pooling time linear in the number of particles",
    "Fig 4.12": "VGG16 feature-map memory, APR/pixels, falls with the input CR, far from linearly",
}

#: Each item's claim in a few words, for the summary's compact table (the full claim: THESIS_ITEMS).
SHORT_CLAIMS = {
    "Fig 4.1": "six classes of synthetic images",
    "Fig 4.2": "APR of synthetic images: lossless at E <= 0.2, CR above 50",
    "Table 4.1": "weight counts of the four networks",
    "Fig 4.3": "A networks: APRNets learn faster; pixel and 'same' nets dip",
    "Fig 4.4": "B networks: near-perfect in a few hundred batches; APRNets faster",
    "Fig 4.5": "typical adaptation at four E",
    "Table 4.2": "error grows with information loss, APR like pixels",
    "Fig 4.6": "finite data: APRNets better on the smallest sets",
    "Fig 4.7": "natural images: CR about 2 at E = 0.2",
    "Fig 4.8": "level maps of one natural image",
    "Table 4.3": "weight counts of the natural-image networks",
    "Fig 4.9": "natural images: similar accuracy, APRNet faster",
    "Table 4.4": "natural images: best validation accuracies",
    "Fig 4.10": "convolution time linear in particles",
    "Fig 4.11": "max-pooling time linear in particles",
    "Fig 4.12": "VGG16 memory falls with CR",
}

#: A mark for each verdict, so that the compact table reads at a glance (text, no image or font needed).
BADGES = {"confirmed": "✔", "partly confirmed": "◐", "not confirmed": "✘", "inconclusive": "?",
          "not run": "–", "illustration": "▫", NOT_YET: "·"}
#: Colour-blind-safe colours (Okabe-Ito) of the verdicts in the overview figure.
COLOURS = {"confirmed": "#009E73", "partly confirmed": "#56B4E9", "not confirmed": "#D55E00",
           "inconclusive": "#E69F00", "not run": "#999999", "illustration": "#CCCCCC", NOT_YET: "#FFFFFF"}


def badge(word: str) -> str:
    """'✔ confirmed': a verdict word with its mark (:data:`BADGES`)."""
    return f"{BADGES.get(word, '')} {word}".strip()


def overview_figure(table: pd.DataFrame):
    """The overview of the summary: one row per verdict (in :data:`VERDICTS` order, then
    :data:`NOT_YET`), the items with that verdict as labelled boxes, the count beside. ``table``:
    :func:`collect_verdicts`'s (columns item, verdict). Returns the matplotlib figure (6.5 x ~2.6 in,
    text 10 pt and up: legible at the book's content width)."""
    import matplotlib.pyplot as plt
    words = [w for w in (*VERDICTS, NOT_YET) if (table.verdict == w).any()]
    fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(words) + 0.6), layout="constrained")
    for row, word in enumerate(words):
        items = table.item[table.verdict == word].tolist()
        y = len(words) - 1 - row
        ax.text(-0.02, y, f"{word} ({len(items)})", ha="right", va="center", fontsize=10)
        for k, item in enumerate(items):
            ax.add_patch(plt.Rectangle((k * 1.02, y - 0.38), 0.98, 0.76, color=COLOURS[word], ec="0.3", lw=0.6))
            ax.text(k * 1.02 + 0.49, y, item.replace("Table ", "Tab "), ha="center", va="center", fontsize=8.5)
    width = max(int((table.verdict == w).sum()) for w in words) * 1.02 if words else 1
    ax.set(xlim=(-0.05, max(width, 6)), ylim=(-0.6, len(words) - 0.4))
    ax.axis("off")
    ax.set_title(f"{len(table)} items of the thesis's chapter 4, by verdict", fontsize=11, loc="left")
    return fig


def dashboard_table(table: pd.DataFrame, link=lambda item, notebook: item) -> str:
    """The summary's compact table as Markdown: item (``link(item, notebook)``, e.g. a link to its
    chapter), the claim in a few words (:data:`SHORT_CLAIMS`), the verdict with its mark, and why an
    inconclusive item is inconclusive."""
    def cell(text):
        return str(text).replace("|", "\\|").replace("\n", " ")
    lines = ["| Item | Claim | Verdict | Why inconclusive |", "|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {link(r.item, r.notebook)} | {cell(SHORT_CLAIMS.get(r.item, ''))} | **{badge(r.verdict)}** | "
                     f"{cell(getattr(r, 'why', '')) or '–'} |")
    return "\n".join(lines)



@dataclass(frozen=True)
class SubClaim:
    """One checkable part of a thesis item's claim: its name (the claim, in a few words), status
    ("holds", "fails" or "inconclusive") and evidence (our numbers and, for an inconclusive one,
    why it cannot be decided)."""
    name: str
    status: str
    evidence: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"a sub-claim's status is one of {STATUSES}, got {self.status!r} ({self.name})")
        if not str(self.name).strip():
            raise ValueError("a sub-claim needs a name")

    @classmethod
    def check(cls, name: str, holds: bool, evidence: str = "") -> "SubClaim":
        """A sub-claim decided by a yes/no criterion (no inconclusive band)."""
        return cls(name, "holds" if holds else "fails", evidence)


#: Why a sub-claim is inconclusive, the classes the summary shows (in order of precedence): runs missing,
#: too few seeds, a Fig 4.6 run whose kept model came from the end of its budget, or a value between a
#: rule's margins or seeds that disagree.
REASONS = ("not computed", "underpowered", "not trained out", "within noise")


def reason_class(claim) -> str:
    """The class (:data:`REASONS`) of an inconclusive sub-claim (a :class:`SubClaim`, or any object with
    ``status`` and ``evidence``), read from the words its evidence uses for each reason ("runs not
    computed", "underpowered", "kept a model from the last 20%"; anything else: "within noise");
    '' for a decided one."""
    if claim.status != "inconclusive":
        return ""
    ev = str(claim.evidence)
    if "not computed" in ev:
        return "not computed"
    if "underpowered" in ev:
        return "underpowered"
    if "kept a model from the last" in ev:
        return "not trained out"
    return "within noise"


def reason_counts(claims) -> str:
    """'not computed 3, within noise 1': the inconclusive sub-claims among ``claims`` by class."""
    got = [reason_class(c) for c in claims]
    return ", ".join(f"{r} {got.count(r)}" for r in REASONS if got.count(r))


def band(value: float, holds_if, fails_if) -> str:
    """Status of a sub-claim judged with a margin: "holds" where ``holds_if(value)``, "fails" where
    ``fails_if(value)``, "inconclusive" in between (or for NaN), so that noise moves a value between
    "holds" and "inconclusive", or "inconclusive" and "fails", never straight across."""
    h, f = bool(holds_if(value)), bool(fails_if(value))
    if h and f:
        raise ValueError(f"{value}: both holds and fails; the two conditions must not overlap")
    return "holds" if h else "fails" if f else "inconclusive"


@dataclass(frozen=True)
class Verdict:
    """An item's verdict: the vocabulary word, a detail naming the sub-claims by status, and the
    sub-claims themselves. Made by :func:`verdict` or :func:`illustration`."""
    word: str
    detail: str
    subclaims: tuple = field(default=())
    data: str = "thesis"

    def __post_init__(self):
        if self.word not in VERDICTS:
            raise ValueError(f"a verdict is one of {VERDICTS}, got {self.word!r}")

    def __str__(self):
        return self.word

    def table(self) -> pd.DataFrame:
        """The sub-claims as a table (sub-claim, status, evidence), for display."""
        return pd.DataFrame([{"sub-claim": c.name, "status": c.status, "evidence": c.evidence} for c in self.subclaims],
                            columns=["sub-claim", "status", "evidence"])


def _names(claims, status):
    return "; ".join(c.name for c in claims if c.status == status)


def _detail(claims) -> str:
    parts = []
    for status in STATUSES:
        names = _names(claims, status)
        if names:
            parts.append(f"{status}: {names}")
    return ". ".join(parts)


def verdict(subclaims, data: str = "thesis") -> Verdict:
    """The verdict of an item from its sub-claims (see the module's docstring for the rule).

    ``data``: "thesis" when the sub-claims were judged on the thesis's kind of data, "stand-in" when
    the thesis's data could not be used: the verdict is then "not run" whatever the sub-claims say
    on the stand-in (they are kept in the detail, marked as the stand-in's)."""
    claims = tuple(subclaims)
    if not claims:
        raise ValueError("a verdict needs at least one sub-claim (an illustration: use illustration())")
    if not all(isinstance(c, SubClaim) for c in claims):
        raise TypeError("sub-claims must be SubClaim objects")
    if data not in ("thesis", "stand-in"):
        raise ValueError(f"data is 'thesis' or 'stand-in', got {data!r}")
    detail = _detail(claims)
    if data == "stand-in":
        return Verdict("not run", "The thesis's data could not be used here; on the stand-in, shown beside as an "
                                  f"illustration only: {detail}", claims, data)
    n = {s: sum(c.status == s for c in claims) for s in STATUSES}
    if n["holds"] == len(claims):
        word = "confirmed"
    elif n["holds"] and n["fails"]:
        word = "partly confirmed"
    elif n["fails"]:
        word = "not confirmed"
    else:
        word = "inconclusive"
    return Verdict(word, detail, claims, data)


def illustration(what: str) -> Verdict:
    """The verdict of a figure that illustrates and makes no claim: "illustration"."""
    return Verdict("illustration", f"no claim to check: {what}")


def save_verdicts(store, rows: list[dict]) -> Path:
    """Write ``verdicts.csv`` (item, ours, verdict, detail) and ``subclaims.csv`` (item, data, name,
    status, evidence) into a :class:`~aprbook.provenance.ResultStore`'s directory. Each row: item (a
    key of :data:`THESIS_ITEMS`), ours (our number, as text) and verdict, a :class:`Verdict` from
    :func:`verdict` or :func:`illustration`: a verdict typed as text is refused, and so is any word
    outside :data:`VERDICTS`."""
    table, claims = [], []
    for row in rows:
        if row["item"] not in THESIS_ITEMS:
            raise ValueError(f"unknown thesis items {[row['item']]}")
        v = row["verdict"]
        if not isinstance(v, Verdict):
            raise ValueError(f"{row['item']}: a verdict must come from aprbook.verdicts.verdict() or illustration(), "
                             f"got {v!r}")
        if v.word not in VERDICTS:  # a Verdict checks this itself; checked again for objects built around it
            raise ValueError(f"verdicts must be one of {VERDICTS}, got {v.word!r}")
        table.append({"item": row["item"], "ours": row.get("ours", ""), "verdict": v.word, "detail": v.detail})
        claims += [{"item": row["item"], "data": v.data, "name": c.name, "status": c.status, "evidence": c.evidence}
                   for c in v.subclaims]
    df = pd.DataFrame(table, columns=["item", "ours", "verdict", "detail"])
    dup = df.item[df.item.duplicated()].tolist()
    if dup:
        raise ValueError(f"items given twice: {dup}")
    store.save_table("subclaims", pd.DataFrame(claims, columns=["item", "data", "name", "status", "evidence"]))
    return store.save_table("verdicts", df)


#: The chapters beyond the thesis that judge claims of their own, each with its ``criteria.csv`` (one row
#: per sub-claim with its claim's verdict): (chapter title, results directory, the column naming the
#: claim, notebook).
BEYOND_THESIS = (("3D cost", "cost_3d", "criterion", "notebooks/02a_cost_3d.ipynb"),
                 ("Segmentation on the APR", "segmentation/chapter", "item", "notebooks/12_segmentation.ipynb"))


def beyond_thesis_table(results_dir, profile: str = "book") -> pd.DataFrame:
    """One row per claim of the chapters of :data:`BEYOND_THESIS` stored at ``profile``: chapter, claim,
    verdict (as its chapter derived it, checked to be :func:`verdict` of the stored statuses), the
    counts of sub-claims that hold, fail and are undecided, the reasons of the undecided ones and the
    notebook. A chapter not stored at ``profile`` is left out."""
    rows = []
    for chapter, where, col, notebook in BEYOND_THESIS:
        path = Path(results_dir) / where / profile / "criteria.csv"
        if not path.exists():
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        for claim, g in df.groupby(col, sort=False):
            subs = [SubClaim(r["sub-claim"], r["status"], r["evidence"]) for r in g.to_dict("records")]
            word = verdict(subs).word
            stored = set(g.verdict)
            if stored != {word}:
                raise ValueError(f"{path}: {claim}: stored verdict {sorted(stored)} is not the rule's {word!r}")
            n = {st: sum(c.status == st for c in subs) for st in STATUSES}
            rows.append({"chapter": chapter, "claim": claim, "verdict": word, "hold": n["holds"], "fail": n["fails"],
                         "undecided": n["inconclusive"],
                         "why undecided": reason_counts([c for c in subs if c.status == "inconclusive"]),
                         "notebook": notebook})
    return pd.DataFrame(rows, columns=["chapter", "claim", "verdict", "hold", "fail", "undecided", "why undecided",
                                       "notebook"])


def collect_verdicts(results_dir, profile: str = "book") -> pd.DataFrame:
    """One row per thesis item (in thesis order) with the thesis's claim, our number, the verdict
    word, its detail, why its inconclusive sub-claims are inconclusive (``why``: :func:`reason_counts`
    of the ``subclaims.csv`` beside it), and where it comes from (notebook, commit, profile, date,
    source directory).
    An item without a stored verdict has the status :data:`NOT_YET`; a stored word outside
    :data:`VERDICTS` (a ``verdicts.csv`` of an older format) is an error."""
    root = Path(results_dir)
    found = []
    for path in sorted(root.glob(f"**/{profile}/verdicts.csv")):
        prov_path = path.parent / "provenance.json"
        prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if "detail" not in df:
            raise ValueError(f"{path} has no detail column: written before verdicts were derived from sub-claims; "
                             "re-execute its notebook")
        bad = sorted(set(df.verdict) - set(VERDICTS))
        if bad:
            raise ValueError(f"{path}: verdicts outside the vocabulary {VERDICTS}: {bad}")
        sub_path = path.parent / "subclaims.csv"
        subs = pd.read_csv(sub_path, dtype=str, keep_default_na=False) if sub_path.exists() else None
        df["why"] = [reason_counts(subs[subs.item == item].itertuples()) if subs is not None else ""
                     for item in df.item]
        df["notebook"] = prov.get("notebook")
        df["commit"] = (prov.get("commit") or "unknown")[:12]
        df["date"] = (prov.get("finished_utc") or "")[:10]
        df["results"] = path.parent.relative_to(root).as_posix()
        found.append(df)
    got = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        columns=["item", "ours", "verdict", "detail", "why", "notebook", "commit", "date", "results"])
    dup = got.item[got.item.duplicated()].tolist()
    if dup:
        raise ValueError(f"items with verdicts from more than one place: {dup}")
    table = pd.DataFrame({"item": list(THESIS_ITEMS), "thesis": list(THESIS_ITEMS.values())})
    table = table.merge(got, on="item", how="left")
    table["verdict"] = table["verdict"].fillna(NOT_YET)
    table["profile"] = [profile if isinstance(n, str) else "" for n in table.notebook]
    return table.fillna("")

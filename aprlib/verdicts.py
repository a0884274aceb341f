"""The reproduction summary: every figure and table of the thesis's results chapter, the thesis's
claim, our number and the verdict, gathered from ``results/`` (never typed into the book).

Each notebook records its verdicts with :func:`save_verdicts` into its result directory
(``verdicts.csv``); :func:`collect_verdicts` joins them with :data:`THESIS_ITEMS`, so an item that
no notebook has reproduced yet still has its row.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

__all__ = ["THESIS_ITEMS", "save_verdicts", "collect_verdicts", "verdict_kind", "VERDICTS"]

#: The verdict vocabulary (the status of an item that no notebook covers yet is "not yet reproduced").
VERDICTS = ("confirmed", "partly confirmed", "not confirmed", "reproduced", "could not be run", "pending")

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


def verdict_kind(verdict: str) -> str:
    """The vocabulary word a verdict starts with (the longest match in :data:`VERDICTS`, so "partly
    confirmed on the stand-in" is "partly confirmed"), or the verdict itself when none matches
    (e.g. "not yet reproduced")."""
    matches = [w for w in VERDICTS if str(verdict).startswith(w)]
    return max(matches, key=len) if matches else str(verdict)


def save_verdicts(store, rows: list[dict]) -> Path:
    """Write ``verdicts.csv`` into a :class:`~aprlib.provenance.ResultStore`'s directory. Each row:
    item (a key of :data:`THESIS_ITEMS`), ours (our number, as text) and verdict (one of
    :data:`VERDICTS`, optionally followed by a qualifier such as "on the stand-in")."""
    df = pd.DataFrame(rows, columns=["item", "ours", "verdict"])
    unknown = sorted(set(df.item) - set(THESIS_ITEMS))
    if unknown:
        raise ValueError(f"unknown thesis items {unknown}")
    bad = [v for v in df.verdict if not any(str(v).startswith(w) for w in VERDICTS)]
    if bad:
        raise ValueError(f"verdicts must start with one of {VERDICTS}, got {bad}")
    return store.save_table("verdicts", df)


def collect_verdicts(results_dir, profile: str = "book") -> pd.DataFrame:
    """One row per thesis item (in thesis order) with the thesis's claim, our number, the verdict,
    and where it comes from (notebook, commit, profile, date, source directory)."""
    root = Path(results_dir)
    found = []
    for path in sorted(root.glob(f"**/{profile}/verdicts.csv")):
        prov_path = path.parent / "provenance.json"
        prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
        df = pd.read_csv(path, dtype=str)
        df["notebook"] = prov.get("notebook")
        df["commit"] = (prov.get("commit") or "unknown")[:12]
        df["date"] = (prov.get("finished_utc") or "")[:10]
        df["results"] = path.parent.relative_to(root).as_posix()
        found.append(df)
    got = pd.concat(found, ignore_index=True) if found else pd.DataFrame(
        columns=["item", "ours", "verdict", "notebook", "commit", "date", "results"])
    dup = got.item[got.item.duplicated()].tolist()
    if dup:
        raise ValueError(f"items with verdicts from more than one place: {dup}")
    table = pd.DataFrame({"item": list(THESIS_ITEMS), "thesis": list(THESIS_ITEMS.values())})
    table = table.merge(got, on="item", how="left")
    table["verdict"] = table["verdict"].fillna("not yet reproduced")
    table["profile"] = [profile if isinstance(n, str) else "" for n in table.notebook]
    return table.fillna("")

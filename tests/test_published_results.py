"""The committed `book` results the published book renders: the summary tables must follow from the
stored per-run metrics (no number in the book that the runs do not give), and every run must have
been computed with the parameters of the current `book` profile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aprbook.learning_curves import final_error, information_ordering
from aprbook.profiles import profile_settings
from aprbook.runs import streamed_runs, streamed_store

RESULTS = Path(__file__).resolve().parents[1] / "results"
STREAMED = RESULTS / "streamed_training" / "book"


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"{path.relative_to(RESULTS.parent)} not committed yet")


def test_stored_streamed_runs_match_the_book_profile():
    cfg = profile_settings("streamed_training", "book")
    stored = 0
    for run in streamed_runs(cfg):
        store = streamed_store(run, cfg, "book", RESULTS)
        if store.provenance() is None:
            continue
        stored += 1
        assert store.fresh, f"{run['id']}: stored with other parameters than the book profile's"
        m = store.load_table("metrics")
        assert m.batch.tolist() == list(range(cfg["n_batches"])), run["id"]
        assert m.accuracy.between(0, 1).all() and np.isfinite(m.loss).all()
    if stored == 0:
        pytest.skip("no book-profile streamed run committed")


def test_table_4_2_and_its_ordering_follow_from_the_runs():
    _need(STREAMED / "table4_2.csv")
    cfg = profile_settings("streamed_training", "book")
    table = pd.read_csv(STREAMED / "table4_2.csv").set_index("input")
    pix = {cfg["size"]: "Pix 256", cfg["size"] // 2: "Pix 128", cfg["size"] // 4: "Pix 64"}
    errors = {}
    for run in streamed_runs(cfg):
        if run["family"] != "B" or run["variant"] not in ("full", "pixel") or run["seed"] != cfg["seeds"][0]:
            continue
        key = f"APR {run['rel_error']}" if run["variant"] == "full" else pix[run["resolution"]]
        m = streamed_store(run, cfg, "book", RESULTS).load_table("metrics")
        mean, sd = final_error(m, cfg["last"])
        assert table.loc[key, "error_mean"] == pytest.approx(mean, abs=1e-12)
        assert table.loc[key, "error_sd"] == pytest.approx(sd, abs=1e-12)
        errors[key] = 1 - m.accuracy.iloc[-cfg["last"]:].to_numpy()
    stored = pd.read_csv(STREAMED / "table4_2_ordering.csv")
    recomputed = information_ordering(errors)
    assert stored.holds.tolist() == recomputed.holds.tolist()
    assert stored["values"].tolist() == recomputed["values"].tolist()


def test_no_glue_role_inside_a_literal():
    """`{glue:text}`key`` renders the role as code instead of the value: a role must stand outside backticks."""
    import json
    import re
    root = Path(__file__).resolve().parents[1]
    for nb in sorted((root / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                # a fenced ```{glue:figure} directive is fine; a single backtick before the role is not
                assert not re.search(r"(?<!`)`\{glue:", "".join(cell["source"])), f"{nb.name}: glue role in a literal"


def test_published_verdicts_follow_from_their_subclaims():
    """Every committed `book` verdict is the rule of `aprbook.verdicts.verdict` applied to the sub-claims
    stored beside it (`subclaims.csv`): no verdict typed by hand, none outside the vocabulary, and an
    item judged on the stand-in is "not run"."""
    from aprbook.verdicts import VERDICTS, SubClaim, verdict
    found = sorted(RESULTS.glob("**/book/verdicts.csv"))
    if not found:
        pytest.skip("no book verdicts committed")
    for path in found:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
        assert "detail" in table, f"{path}: no detail column (re-execute its notebook)"
        claims = pd.read_csv(path.parent / "subclaims.csv", dtype=str, keep_default_na=False)
        for row in table.itertuples():
            assert row.verdict in VERDICTS, f"{path}: {row.item}: {row.verdict!r}"
            mine = claims[claims.item == row.item]
            if row.verdict == "reproduced":  # an illustration: no sub-claims
                assert mine.empty, f"{path}: {row.item} is an illustration with sub-claims"
                continue
            assert not mine.empty, f"{path}: {row.item} has a verdict but no sub-claims"
            data = set(mine.data)
            assert len(data) == 1, f"{path}: {row.item} mixes data {data}"
            derived = verdict([SubClaim(c.name, c.status, c.evidence) for c in mine.itertuples()], data=data.pop())
            assert (derived.word, derived.detail) == (row.verdict, row.detail), f"{path}: {row.item}"

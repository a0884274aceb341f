"""The committed `book` results the published book renders: the summary tables must follow from the
stored per-run metrics (no number in the book that the runs do not give), and every run must have
been computed with the parameters of the current `book` profile."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aprbook.learning_curves import information_ordering
from aprbook.profiles import profile_settings
from aprbook.runs import streamed_runs, streamed_store
from aprbook.streamed_claims import table4_2

RESULTS = Path(__file__).resolve().parents[1] / "results"
#: notebook 05's experiments: the runs to convergence (the items' verdicts) and the first fixed-budget runs
STREAMED_EXPERIMENTS = ("streamed_converged", "streamed_training")


def _need(path: Path):
    if not path.exists():
        pytest.skip(f"{path.relative_to(RESULTS.parent)} not committed yet")


def _stored(experiment: str):
    """the book profile's settings, its runs, and the metrics of the runs committed"""
    cfg = profile_settings(experiment, "book")
    runs = streamed_runs(cfg)
    metrics = {}
    for run in runs:
        store = streamed_store(run, cfg, "book", RESULTS)
        if store.provenance() is not None:
            assert store.fresh, f"{run['id']}: stored with other parameters than the book profile's, or altered"
            metrics[run["id"]] = store.load_table("metrics")
    return cfg, runs, metrics


@pytest.mark.parametrize("experiment", STREAMED_EXPERIMENTS)
def test_stored_streamed_runs_match_the_book_profile(experiment):
    cfg, runs, metrics = _stored(experiment)
    if not metrics:
        pytest.skip(f"no book-profile {experiment} run committed")
    budgets = cfg.get("budgets", [cfg["n_batches"]])
    for rid, m in metrics.items():
        assert len(m) in budgets and m.batch.tolist() == list(range(len(m))), rid
        assert m.accuracy.between(0, 1).all() and np.isfinite(m.loss).all()


@pytest.mark.parametrize("experiment", STREAMED_EXPERIMENTS)
def test_table_4_2_and_its_ordering_follow_from_the_runs(experiment):
    _need(RESULTS / experiment / "book" / "table4_2.csv")
    cfg, runs, metrics = _stored(experiment)
    stored = pd.read_csv(RESULTS / experiment / "book" / "table4_2.csv")
    recomputed, _, errors = table4_2(runs, metrics, cfg)
    assert stored.input.tolist() == recomputed.input.tolist()
    for col in ("error_mean", "error_sd", "seeds_min", "seeds_max"):
        assert np.allclose(stored[col], recomputed[col], rtol=0, atol=1e-12), col
    assert stored.n_seeds.tolist() == recomputed.n_seeds.tolist()
    path = RESULTS / experiment / "book" / "table4_2_ordering.csv"
    if path.exists():
        ordering, again = pd.read_csv(path), information_ordering(errors)
        assert ordering.holds.tolist() == again.holds.tolist()
        assert ordering["values"].tolist() == again["values"].tolist()


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
            if row.verdict == "illustration":  # an illustration: no sub-claims
                assert mine.empty, f"{path}: {row.item} is an illustration with sub-claims"
                continue
            assert not mine.empty, f"{path}: {row.item} has a verdict but no sub-claims"
            data = set(mine.data)
            assert len(data) == 1, f"{path}: {row.item} mixes data {data}"
            derived = verdict([SubClaim(c.name, c.status, c.evidence) for c in mine.itertuples()], data=data.pop())
            assert (derived.word, derived.detail) == (row.verdict, row.detail), f"{path}: {row.item}"

import json

import pandas as pd
import pytest

from aprlib.provenance import ResultStore, figure_note
from aprlib.verdicts import THESIS_ITEMS, collect_verdicts, save_verdicts, verdict_kind


def test_every_thesis_item_has_a_row_and_verdicts_are_joined(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {"a": 1}, notebook="notebooks/x.ipynb")
    save_verdicts(store, [{"item": "Fig 4.2", "ours": "CR 40", "verdict": "partly confirmed"}])
    store.finish()
    table = collect_verdicts(tmp_path, "book")
    assert table.item.tolist() == list(THESIS_ITEMS)
    row = table.set_index("item").loc["Fig 4.2"]
    assert row.verdict == "partly confirmed" and row.notebook == "notebooks/x.ipynb" and row.profile == "book"
    assert (table.set_index("item").drop("Fig 4.2").verdict == "not yet reproduced").all()
    assert collect_verdicts(tmp_path, "paper").verdict.eq("not yet reproduced").all()


def test_bad_verdicts_are_refused(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {})
    with pytest.raises(ValueError, match="unknown thesis items"):
        save_verdicts(store, [{"item": "Fig 9.9", "ours": "", "verdict": "confirmed"}])
    with pytest.raises(ValueError, match="must start with"):
        save_verdicts(store, [{"item": "Fig 4.2", "ours": "", "verdict": "great"}])
    other = ResultStore(tmp_path, "exp2", "book", {})
    save_verdicts(store, [{"item": "Fig 4.2", "ours": "", "verdict": "confirmed"}])
    save_verdicts(other, [{"item": "Fig 4.2", "ours": "", "verdict": "confirmed"}])
    with pytest.raises(ValueError, match="more than one place"):
        collect_verdicts(tmp_path)


def test_verdict_kind_takes_the_longest_vocabulary_word():
    assert verdict_kind("partly confirmed on the stand-in") == "partly confirmed"
    assert verdict_kind("partly confirmed (forward linear)") == "partly confirmed"
    assert verdict_kind("confirmed on the stand-in") == "confirmed"
    assert verdict_kind("not confirmed") == "not confirmed"
    assert verdict_kind("pending: 7 of 14 runs computed") == "pending"
    assert verdict_kind("not yet reproduced") == "not yet reproduced"


def test_committed_verdicts_are_consistent():
    from pathlib import Path
    table = collect_verdicts(Path(__file__).resolve().parents[1] / "results", "book")
    assert len(table) == len(THESIS_ITEMS)


def test_figure_note_links_both_files(tmp_path):
    store = ResultStore(tmp_path / "results", "exp", "book", {}, notebook="notebooks/n.ipynb")
    store.finish()
    note = figure_note(store, "fig", book_root=tmp_path)
    assert "`PNG </results/exp/book/fig.png>`" in note and "`PDF </results/exp/book/fig.pdf>`" in note
    assert "notebooks/n.ipynb" in note and "profile `book`" in note

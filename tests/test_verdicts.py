import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from aprbook.provenance import ResultStore, figure_note
from aprbook.verdicts import (NOT_YET, STATUSES, SubClaim, THESIS_ITEMS, VERDICTS, Verdict, band, collect_verdicts,
                              illustration, save_verdicts, verdict)

subclaims = st.lists(st.builds(SubClaim, name=st.text(min_size=1, max_size=8).filter(str.strip),
                               status=st.sampled_from(STATUSES), evidence=st.text(max_size=8)),
                     min_size=1, max_size=12)


def C(status, name=None):
    return SubClaim(name or f"claim {status}", status, "")


def test_the_rule_on_each_case():
    assert verdict([C("holds"), C("holds", "b")]).word == "confirmed"
    v = verdict([C("holds", "fast"), C("fails", "dips"), C("inconclusive", "ordering")])
    assert v.word == "partly confirmed"
    assert "holds: fast" in v.detail and "fails: dips" in v.detail and "inconclusive: ordering" in v.detail
    assert verdict([C("fails"), C("inconclusive")]).word == "not confirmed"
    assert verdict([C("fails")]).word == "not confirmed"
    assert verdict([C("holds"), C("inconclusive")]).word == "inconclusive"
    assert verdict([C("inconclusive")]).word == "inconclusive"
    with pytest.raises(ValueError, match="at least one"):
        verdict([])
    with pytest.raises(ValueError, match="status"):
        SubClaim("x", "partly")


@settings(max_examples=300, deadline=None)
@given(subclaims)
def test_one_failing_subclaim_never_yields_confirmed(claims):
    v = verdict(claims)
    assert v.word in VERDICTS
    statuses = {c.status for c in claims}
    if "fails" in statuses:
        assert v.word in ("partly confirmed", "not confirmed")
        assert v.word == ("partly confirmed" if "holds" in statuses else "not confirmed")
    if "inconclusive" in statuses:
        assert v.word != "confirmed"
    if v.word == "confirmed":
        assert statuses == {"holds"}


@settings(max_examples=200, deadline=None)
@given(subclaims, st.integers(0, 11))
def test_adding_a_failing_or_inconclusive_subclaim_never_makes_a_verdict_confirmed(claims, at):
    for bad in ("fails", "inconclusive"):
        worse = list(claims)
        worse.insert(min(at, len(worse)), C(bad, "added"))
        assert verdict(worse).word != "confirmed"
        assert "added" in verdict(worse).detail


@settings(max_examples=100, deadline=None)
@given(subclaims)
def test_stand_in_data_is_not_run_whatever_the_subclaims_say(claims):
    v = verdict(claims, data="stand-in")
    assert v.word == "not run" and "stand-in" in v.detail


def test_all_holding_on_the_stand_in_is_still_not_run():
    assert verdict([C("holds"), C("holds", "b")], data="stand-in").word == "not run"
    with pytest.raises(ValueError, match="stand-in"):
        verdict([C("holds")], data="something else")


def test_illustrations_are_named_so_and_band_never_jumps():
    assert illustration("level maps").word == "illustration"
    holds, fails = (lambda r2: r2 >= 0.95), (lambda r2: r2 < 0.8)
    assert [band(x, holds, fails) for x in (0.99, 0.95, 0.9, 0.8, 0.79, float("nan"))] == [
        "holds", "holds", "inconclusive", "inconclusive", "fails", "inconclusive"]
    with pytest.raises(ValueError, match="overlap"):
        band(1.0, lambda x: x > 0, lambda x: x > 0.5)


def test_the_vocabulary_is_closed(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {})
    with pytest.raises(ValueError, match="unknown thesis items"):
        save_verdicts(store, [{"item": "Fig 9.9", "ours": "", "verdict": verdict([C("holds")])}])
    for word in ("great", "could not be run", "pending", "confirmed on the stand-in", "partly confirmed (forward)"):
        with pytest.raises(ValueError, match="verdict"):
            Verdict(word, "")
    # typed verdicts are refused, even a vocabulary word: a verdict comes from verdict() or illustration()
    for typed in ("confirmed", "great"):
        with pytest.raises(ValueError, match="must come from"):
            save_verdicts(store, [{"item": "Fig 4.2", "ours": "", "verdict": typed}])


def test_every_thesis_item_has_a_row_and_verdicts_are_joined(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {"a": 1}, notebook="notebooks/x.ipynb")
    v = verdict([C("holds", "lossless"), C("fails", "CR above 50")])
    save_verdicts(store, [{"item": "Fig 4.2", "ours": "CR 40", "verdict": v},
                          {"item": "Fig 4.1", "ours": "", "verdict": illustration("six classes")}])
    store.finish()
    table = collect_verdicts(tmp_path, "book")
    assert table.item.tolist() == list(THESIS_ITEMS)
    row = table.set_index("item").loc["Fig 4.2"]
    assert row.verdict == "partly confirmed" and row.notebook == "notebooks/x.ipynb" and row.profile == "book"
    assert row.detail == "holds: lossless. fails: CR above 50"
    assert (table.set_index("item").drop(["Fig 4.2", "Fig 4.1"]).verdict == NOT_YET).all()
    assert collect_verdicts(tmp_path, "paper").verdict.eq(NOT_YET).all()
    claims = pd.read_csv(tmp_path / "exp" / "book" / "subclaims.csv")
    assert claims[["name", "status"]].values.tolist() == [["lossless", "holds"], ["CR above 50", "fails"]]
    assert row.why == ""  # nothing inconclusive


def test_the_summary_says_why_an_item_is_inconclusive(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {"a": 1}, notebook="notebooks/x.ipynb")
    v = verdict([SubClaim("a", "inconclusive", "runs not computed: X_s2"), SubClaim("b", "holds"),
                 SubClaim("c", "inconclusive", "A: 1; B: 2 (underpowered: 1 and 3 seeds, 3 each needed)"),
                 SubClaim("d", "inconclusive", "runs disagree")])
    save_verdicts(store, [{"item": "Fig 4.3", "ours": "", "verdict": v}])
    store.finish()
    row = collect_verdicts(tmp_path, "book").set_index("item").loc["Fig 4.3"]
    assert row.verdict == "inconclusive" and row.why == "not computed 1, underpowered 1, within noise 1"


def test_duplicates_and_stale_files_are_refused(tmp_path):
    store = ResultStore(tmp_path, "exp", "book", {})
    other = ResultStore(tmp_path, "exp2", "book", {})
    save_verdicts(store, [{"item": "Fig 4.2", "ours": "", "verdict": verdict([C("holds")])}])
    save_verdicts(other, [{"item": "Fig 4.2", "ours": "", "verdict": verdict([C("holds")])}])
    with pytest.raises(ValueError, match="more than one place"):
        collect_verdicts(tmp_path)
    # a verdicts.csv of the old format (qualified words, no detail) is not counted silently
    stale = tmp_path / "old" / "exp" / "book"
    stale.mkdir(parents=True)
    pd.DataFrame({"item": ["Fig 4.7"], "ours": [""], "verdict": ["confirmed on the stand-in"]}).to_csv(
        stale / "verdicts.csv", index=False)
    with pytest.raises(ValueError, match="detail"):
        collect_verdicts(tmp_path / "old")
    pd.DataFrame({"item": ["Fig 4.7"], "ours": [""], "verdict": ["confirmed on the stand-in"], "detail": [""]}).to_csv(
        stale / "verdicts.csv", index=False)
    with pytest.raises(ValueError, match="vocabulary"):
        collect_verdicts(tmp_path / "old")


def test_committed_verdicts_are_consistent():
    from pathlib import Path
    table = collect_verdicts(Path(__file__).resolve().parents[1] / "results", "book")
    assert len(table) == len(THESIS_ITEMS)
    assert set(table.verdict) <= set(VERDICTS) | {NOT_YET}


def test_figure_note_links_both_files(tmp_path):
    store = ResultStore(tmp_path / "results", "exp", "book", {}, notebook="notebooks/n.ipynb")
    store.finish()
    note = figure_note(store, "fig", book_root=tmp_path)
    assert "`PNG </results/exp/book/fig.png>`" in note and "`PDF </results/exp/book/fig.pdf>`" in note
    assert "notebooks/n.ipynb" in note and "profile `book`" in note


def test_beyond_thesis_table_reads_each_chapters_criteria(tmp_path):
    from aprbook.verdicts import beyond_thesis_table
    d = tmp_path / "segmentation" / "chapter" / "book"
    d.mkdir(parents=True)
    pd.DataFrame([{"item": "cost", "verdict": "partly confirmed", "sub-claim": "a", "status": "holds", "evidence": ""},
                  {"item": "cost", "verdict": "partly confirmed", "sub-claim": "b", "status": "fails", "evidence": ""},
                  {"item": "accuracy", "verdict": "inconclusive", "sub-claim": "c", "status": "inconclusive",
                   "evidence": "not computed: 0 of 3 seeds stored"}]).to_csv(d / "criteria.csv", index=False)
    t = beyond_thesis_table(tmp_path, "book")
    assert t.claim.tolist() == ["cost", "accuracy"]  # the chapter's order; the 3D cost chapter is not stored
    assert t.verdict.tolist() == ["partly confirmed", "inconclusive"]
    assert t["why undecided"].tolist() == ["", "not computed 1"]
    # a verdict that is not the rule's is refused
    bad = pd.read_csv(d / "criteria.csv")
    bad.loc[bad.item == "cost", "verdict"] = "confirmed"
    bad.to_csv(d / "criteria.csv", index=False)
    with pytest.raises(ValueError, match="not the rule's"):
        beyond_thesis_table(tmp_path, "book")

"""Result storage: atomic writes, provenance, load-instead-of-recompute, profiles."""
import json

import pandas as pd
import pytest

from aprbook.profiles import PROFILES, profile_settings
from aprbook.provenance import ResultStore
from aprlib.train import atomic_write


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half-written")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left behind


def test_store_is_fresh_only_for_same_profile_and_params(tmp_path):
    params = {"n_images": 3, "e_values": [0.1, 0.2]}
    store = ResultStore(tmp_path, "exp", "smoke", params)
    assert not store.fresh
    store.start()
    store.save_table("t", pd.DataFrame({"a": [1, 2]}))
    prov = store.finish(seeds={"data": 1})
    assert store.fresh
    assert prov["profile"] == "smoke" and prov["params"] == params and prov["seeds"] == {"data": 1}
    assert {"commit", "machine", "packages", "wall_time_s"} <= set(prov)
    for load in (prov["machine"]["load_average"], prov["load_average_at_start"]):  # timings read differently
        assert load is None or (len(load) == 3 and all(v >= 0 for v in load))
    assert json.loads((tmp_path / "exp" / "smoke" / "provenance.json").read_text())["params_hash"] == store.key
    assert store.load_table("t").a.tolist() == [1, 2]
    assert not ResultStore(tmp_path, "exp", "smoke", {**params, "n_images": 4}).fresh
    assert not ResultStore(tmp_path, "exp", "book", params).fresh
    store.start()  # a new computation invalidates the old provenance until it finishes
    assert not store.fresh


def test_profiles_exist_for_every_experiment_and_reject_unknown_names():
    for experiment, table in PROFILES.items():
        # every experiment has smoke and book; paper too, but for the pilots (no thesis counterpart)
        assert {"smoke", "book"} <= set(table) and ("paper" in table or experiment == "pilots")
        assert profile_settings(experiment, "smoke") == table["smoke"]
    with pytest.raises(ValueError, match="unknown profile"):
        profile_settings("apr_synthetic", "huge")
    with pytest.raises(ValueError, match="unknown experiment"):
        profile_settings("nope", "smoke")


def _stored(tmp_path, params=None):
    store = ResultStore(tmp_path, "exp", "smoke", params or {"n": 1})
    store.start()
    store.save_table("t", pd.DataFrame({"a": list(range(50)), "b": [0.5] * 50}))
    store.finish()
    return store


def test_finish_records_checksums_of_the_files_written(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from aprbook.provenance import file_record
    store = ResultStore(tmp_path, "exp", "smoke", {"n": 1})
    store.start()
    store.save_table("t", pd.DataFrame({"a": [1, 2]}))
    fig = plt.figure()
    store.save_figure(fig, "f", show=False)
    plt.close(fig)
    (store.dir / "other.csv").write_text("x\n1\n")  # not written by the store: not recorded
    files = store.finish()["files"]
    assert sorted(files) == ["f.pdf", "f.png", "t.csv"]
    assert files["t.csv"] == file_record(store.dir / "t.csv") and files["t.csv"]["bytes"] == len("a\n1\n2\n")
    assert store.fresh and store.verify() == []
    # a table saved after finish (or into a fresh store) updates the record instead of staling the store
    store.save_table("t", pd.DataFrame({"a": [3]}))
    store.save_table("u", pd.DataFrame({"a": [4]}))
    files = store.provenance()["files"]
    assert files["t.csv"] == file_record(store.dir / "t.csv") and "u.csv" in files
    assert store.fresh and store.load_table("t").a.tolist() == [3]


def test_intact_store_is_fresh(tmp_path):
    store = _stored(tmp_path)
    assert store.fresh and store.verify() == []
    assert ResultStore(tmp_path, "exp", "smoke", {"n": 1}).fresh  # a new object (another session) agrees
    assert store.load_table("t").a.tolist() == list(range(50))


def test_truncated_table_makes_the_store_stale_and_is_refused(tmp_path):
    store = _stored(tmp_path)
    path = store.dir / "t.csv"
    path.write_bytes(path.read_bytes()[:40])  # a write cut short: still parses as a (shorter) CSV
    assert not store.fresh
    problems = store.verify()
    assert len(problems) == 1 and "t.csv" in problems[0]
    with pytest.raises(ValueError, match="t.csv"):
        store.load_table("t")


def test_garbage_table_makes_the_store_stale(tmp_path):
    store = _stored(tmp_path)
    path = store.dir / "t.csv"
    path.write_bytes(b"\x00\xff garbage" * (path.stat().st_size // 10 + 1))
    assert not store.fresh and "t.csv" in store.verify()[0]
    with pytest.raises(ValueError, match="t.csv"):
        store.load_table("t")


def test_missing_recorded_file_makes_the_store_stale(tmp_path):
    store = _stored(tmp_path)
    (store.dir / "t.csv").unlink()
    assert not store.fresh and "missing" in store.verify()[0]


def test_start_removes_old_orphan_temporaries_only(tmp_path):
    import os
    import time
    store = _stored(tmp_path)
    old, young = store.dir / ".t.csv.abc123.tmp", store.dir / ".t.csv.def456.tmp"
    keep = store.dir / "keep.tmp"  # not the pattern atomic_write uses
    for p in (old, young, keep):
        p.write_text("half")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    os.utime(keep, (two_hours_ago, two_hours_ago))
    store.start()
    assert not old.exists() and young.exists() and keep.exists()


def test_orphan_temporaries_are_ignored_by_git():
    import subprocess
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(["git", "check-ignore", "-q", "results/exp/book/.t.csv.abc123.tmp"], cwd=root)
    assert out.returncode == 0


def test_provenance_without_checksums_is_not_fresh(tmp_path):
    store = _stored(tmp_path)
    prov = store.provenance()
    del prov["files"]
    store.provenance_path.write_text(json.dumps(prov, indent=2, sort_keys=True))
    assert not store.fresh and "no file checksums" in store.verify()[0]
    store.save_table("t", pd.DataFrame({"a": [1]}))  # does not invent a partial record
    assert "files" not in store.provenance()


def test_committed_results_are_intact():
    """Every committed store records checksums and its files match them (tools/backfill_checksums.py
    recorded them for results stored before finish() did)."""
    from pathlib import Path
    root = Path(__file__).resolve().parents[1] / "results"
    provs = sorted(root.glob("**/book/provenance.json"))
    if not provs:
        pytest.skip("no committed results")
    for p in provs:
        prov = json.loads(p.read_text())
        store = ResultStore(root, prov["experiment"], prov["profile"], prov["params"])
        assert store.dir == p.parent and store.verify() == [], p
        assert store.fresh, p


def test_compute_hours_counts_each_stored_result_once(tmp_path):
    import json

    from aprbook.provenance import compute_hours

    def prov(path, **kw):
        path.mkdir(parents=True)
        (path / "provenance.json").write_text(json.dumps({"machine": {"cpu_count": 2}, **kw}))
    prov(tmp_path / "runs_exp" / "a_s1" / "book", compute_s=3600.0, wall_time_s=10.0)
    prov(tmp_path / "runs_exp" / "a_s2" / "book", wall_time_s=1800.0)  # before compute_s was recorded
    prov(tmp_path / "runs_exp" / "book", compute_s=5400.0, wall_time_s=0.1)  # its summary: not counted again
    prov(tmp_path / "figure_exp" / "book", wall_time_s=360.0)
    prov(tmp_path / "runs_exp" / "a_s1" / "smoke", compute_s=99.0)
    t = compute_hours(tmp_path, "book").set_index("experiment")
    assert t.loc["runs_exp", "runs"] == 2 and t.loc["runs_exp", "core_hours"] == pytest.approx(1.5)
    assert t.loc["figure_exp", "runs"] == 0 and t.loc["figure_exp", "core_hours"] == pytest.approx(0.1)
    assert t.loc["runs_exp", "machines"] == "2 CPUs"


def test_load_text_says_how_busy_the_machine_was_or_that_it_was_not_recorded():
    from aprbook.provenance import load_text
    assert load_text({"machine": {"cpu_count": 2}}) == "the machine's load was not recorded for this run"
    both = load_text({"load_average_at_start": [2.5, 2.0, 1.0], "machine": {"cpu_count": 2, "load_average": [1.0, 1.2, 1.9]}})
    assert both == ("load average 2.5 at the start (1-minute average) and 1.9 over the last 15 minutes at the end, "
                    "on 2 logical CPUs")
    assert load_text({"machine": {"load_average": [0.1, 0.2, 0.3]}}) == "load average 0.3 over the last 15 minutes at the end"

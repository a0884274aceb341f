"""The sweeps on Dask: one call runs a profile's missing runs on two local workers, stores each with
its provenance, and skips them the next time."""
from __future__ import annotations

import pytest

pytest.importorskip("dask.distributed")

from aprbook.sweep import main, pending, sweep  # noqa: E402


def test_sweep_runs_missing_runs_on_two_workers_then_skips_them(tmp_path, capsys):
    results, ckpts = tmp_path / "results", tmp_path / "checkpoints"
    todo = pending("streamed", "smoke", results)
    assert len(todo) >= 2
    runs = todo[:2]
    out = sweep("streamed", "smoke", runs=runs, workers=2, results_dir=results, checkpoint_dir=ckpts)
    assert sorted(r["run"] for r in out) == sorted(runs) and all(r["stored"] for r in out)
    assert not set(runs) & set(pending("streamed", "smoke", results))
    for r in out:
        assert (tmp_path / "results").resolve() in __import__("pathlib").Path(r["dir"]).resolve().parents
    assert sweep("streamed", "smoke", runs=runs, workers=2, results_dir=results, checkpoint_dir=ckpts) == []
    assert main(["streamed", "--profile", "smoke", "--dry-run", "--results-dir", str(results),
                 "--checkpoint-dir", str(ckpts), *runs]) == 0
    assert "nothing to compute" in capsys.readouterr().out


def test_sweep_options_are_checked(tmp_path):
    with pytest.raises(SystemExit):
        main(["streamed", "--profile", "smoke", "--workers", "0", "--results-dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        main(["streamed", "--profile", "smoke", "no_such_run", "--results-dir", str(tmp_path), "--dry-run"])

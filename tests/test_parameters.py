"""Parameters and the book build (issue 14): every notebook parameter and command-line option is
checked (a wrong one stops the run naming it, exit status non-zero), `make book` executes the
notebooks outside the tree, and a summary of stored runs rewrites its provenance only when those runs
changed (so rendering the book again leaves `git status` clean), crediting the runs' commits."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from aprbook.profiles import PROFILE_NAMES, check_parameters
from aprbook.provenance import ResultStore, figure_note, runs_record, summary_params

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


# --- check_parameters ------------------------------------------------------------------------------
def test_good_parameters_pass(tmp_path):
    for profile in PROFILE_NAMES:
        check_parameters(profile=profile, recompute=False, train_missing=True, results_dir="../results",
                         checkpoint_dir=tmp_path / "not-yet", data_dir=None, seed=2019)
    check_parameters(data_dir=str(tmp_path), results_dir=tmp_path)


@pytest.mark.parametrize("name, value, says", [
    ("profile", "nonsense", "smoke, book, paper"),
    ("profile", "Book", "smoke, book, paper"),
    ("profile", None, "smoke, book, paper"),
    ("recompute", "no", "True or False"),       # a string would be truthy: retrain everything
    ("recompute", "False", "True or False"),
    ("recompute", 0, "True or False"),
    ("train_missing", "yes", "True or False"),
    ("results_dir", "", "path"),
    ("results_dir", 3, "path"),
    ("checkpoint_dir", None, "path"),
    ("data_dir", "/no/such/folder", "no such directory"),
    ("data_dir", 1, "None"),
    ("seed", "2019", "int"),
    ("seed", 1.5, "int"),
    ("seed", True, "int"),
])
def test_bad_parameter_is_named(name, value, says):
    with pytest.raises(ValueError, match=re.escape(name)) as err:
        check_parameters(**{name: value})
    assert says in str(err.value)


def test_a_file_is_not_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for name in ("results_dir", "checkpoint_dir", "data_dir"):
        with pytest.raises(ValueError, match=name):
            check_parameters(**{name: str(f)})


def test_unknown_parameter_name_is_refused():
    with pytest.raises(ValueError, match="unknown parameter 'profle'"):
        check_parameters(profle="book")


def _parameters_cell(nb):
    return next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_checks_every_parameter_first(path):
    """The first code cell after the parameters calls check_parameters with each parameter the
    notebook declares, before it computes anything."""
    nb = nbformat.read(path, as_version=4)
    declared = set(re.findall(r"^(\w+)\s*=", _parameters_cell(nb).source, re.M))
    code = [c for c in nb.cells if c.cell_type == "code"
            and not {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    first = code[0].source
    call = re.search(r"check_parameters\((.*?)\)\n", first, re.S)
    assert call, f"{path.name}: its first code cell does not call check_parameters"
    checked = set(re.findall(r"(\w+)=\1\b", call.group(1)))
    assert checked == declared, f"{path.name}: parameters {declared}, checked {checked}"
    before = first[:call.start()]
    assert all(line.startswith(("import ", "from ", " ", "#", ")")) or not line.strip()
               for line in before.splitlines()), f"{path.name}: code runs before check_parameters"


def _assignments(source: str) -> dict:
    import ast
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_parameters_cell_shows_what_the_book_ran_with(path):
    """The book shows a notebook's own parameters cell and hides papermill's injected one
    (tools/hide_injected_parameters.py), so a value injected for the committed run that differs from
    the cell's default would be shown wrong (`train_missing = True` on the page of a run made with
    False). Paths (results_dir, checkpoint_dir, data_dir) are where a run reads and writes, not a
    setting of the result, and are not compared."""
    nb = nbformat.read(path, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    if not injected:
        pytest.skip(f"{path.name}: no injected parameters (not executed by papermill)")
    shown = _assignments(_parameters_cell(nb).source)
    ran = _assignments(injected[0].source)
    differ = {k: (shown[k], v) for k, v in ran.items()
              if k in shown and k not in ("results_dir", "checkpoint_dir", "data_dir") and shown[k] != v}
    assert not differ, f"{path.name}: shown default vs the value the committed run was given: {differ}"


def _papermill(nb, tmp_path, *params):
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(nb), str(out), "--cwd", str(nb.parent), "--no-progress-bar",
           "-p", "results_dir", str(tmp_path / "results")]
    for name, value in params:
        cmd += ["-p", name, value]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.parametrize("notebook, name, value", [
    ("09_reproduction_summary", "profile", "nonsense"),  # once exited 0 with every item "not yet reproduced"
    ("10_the_apr", "recompute", "no"),                   # the string 'no' is true: would recompute
])
def test_notebook_with_a_bad_parameter_fails_naming_it(tmp_path, notebook, name, value):
    r = _papermill(ROOT / "notebooks" / f"{notebook}.ipynb", tmp_path, ("profile", "smoke"), (name, value))
    assert r.returncode != 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "ValueError" in r.stderr and f"parameter {name}=" in r.stderr, r.stderr[-3000:]
    assert not (tmp_path / "results").exists()  # stopped before writing anything


# --- the command lines --------------------------------------------------------------------------------
@pytest.mark.parametrize("module, args, says", [
    ("aprbook.runs", ["streamed", "--profile", "smoke", "--results-dir", "{file}"], "--results-dir"),
    ("aprbook.runs", ["finite", "--profile", "smoke", "--checkpoint-dir", "{file}"], "--checkpoint-dir"),
    ("aprbook.runs", ["natural", "--profile", "smoke", "--data-dir", "{missing}"], "--data-dir"),
    ("aprbook.runs", ["streamed", "--profile", "smoke", "--data-dir", "{tmp}"], "--data-dir"),
    ("aprbook.runs", ["streamed", "--profile", "huge"], "--profile"),
    ("aprbook.runs", ["streamed", "--profile", "smoke", "no_such_run"], "unknown run ids"),
    ("aprbook.pilots", ["--profile", "smoke", "--results-dir", "{file}"], "--results-dir"),
    ("aprbook.pilots", ["--profile", "paper"], "--profile"),
    ("aprbook.bench", ["--kernels", "2"], "--kernels"),
    ("aprbook.bench", ["--size", "4"], "--size"),
    ("aprbook.bench", ["--objects", "99"], "--objects"),
    ("aprbook.bench", ["--threads", "1", "1", "1"], "--threads"),
    ("aprbook.bench", ["--calls", "0"], "--calls"),
    ("aprbook.bench", ["--burn-in", "-1"], "--burn-in"),
    ("aprbook.bench", ["--channels", "0"], "--channels"),
    ("aprbook.bench", ["--csv", "{missing}/x.csv"], "--csv"),
])
def test_command_line_refuses_bad_options(tmp_path, capsys, module, args, says):
    import importlib
    f = tmp_path / "a-file"
    f.write_text("x")
    args = [a.format(file=f, missing=tmp_path / "missing", tmp=tmp_path) for a in args]
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]  # nothing created


# --- summaries of stored runs -----------------------------------------------------------------------
def _run(root, rid, value):
    store = ResultStore(root, f"exp/{rid}", "smoke", {"value": value}, notebook="nb.ipynb")
    store.start()
    store.save_table("metrics", pd.DataFrame({"x": [value]}))
    return store.finish(extra={"compute_s": 90.0})


def _summary(root, provs):
    store = ResultStore(root, "exp", "smoke", summary_params(provs), notebook="notebooks/sum.ipynb")
    if not store.fresh:
        store.finish(extra=runs_record(provs))
    return store


def _figure():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2], [1, 0, 1], label="line")
    ax.set_title("a title")
    ax.legend()
    return fig


def test_summary_rewrites_nothing_while_its_runs_are_unchanged(tmp_path):
    import matplotlib.pyplot as plt
    provs = {rid: _run(tmp_path, rid, i) for i, rid in enumerate(["a", "b"])}
    store = _summary(tmp_path, provs)
    fig = _figure()
    store.save_figure(fig, "fig", show=False)
    store.save_table("table", pd.DataFrame({"y": [1.5, 2.5]}))
    before = {p.name: p.read_bytes() for p in store.dir.iterdir() if p.is_file()}
    # the book rendered again from the same runs: same summary, figure and table saved again
    again = _summary(tmp_path, {rid: ResultStore(tmp_path, f"exp/{rid}", "smoke", {"value": i}).provenance()
                                for i, rid in enumerate(["a", "b"])})
    assert again.fresh
    again.save_figure(fig, "fig", show=False)  # PNG and PDF byte-identical (no dates, no software tag)
    again.save_table("table", pd.DataFrame({"y": [1.5, 2.5]}))
    plt.close(fig)
    after = {p.name: p.read_bytes() for p in store.dir.iterdir() if p.is_file()}
    assert after == before
    # a run recomputed makes the summary stale
    provs["b"] = _run(tmp_path, "b", 1)
    assert not ResultStore(tmp_path, "exp", "smoke", summary_params(provs)).fresh


def test_summary_figure_note_credits_the_runs(tmp_path):
    provs = {"a": {"params_hash": "1", "finished_utc": "2026-01-02T10:00:00+00:00", "commit": "a" * 40,
                   "compute_s": 3600.0},
             "b": {"params_hash": "2", "finished_utc": "2026-03-04T10:00:00+00:00", "commit": "b" * 40 + "+dirty",
                   "wall_time_s": 1800.0}}
    rec = runs_record(provs)
    assert rec == {"n_runs": 2, "commits_of_runs": ["a" * 12, "b" * 12], "runs_finished_utc": provs["b"]["finished_utc"],
                   "latest_run_commit": provs["b"]["commit"], "compute_s": 5400.0}
    store = ResultStore(tmp_path / "results", "exp", "book", summary_params(provs), notebook="notebooks/n.ipynb")
    prov = store.finish(extra=rec)
    note = figure_note(store, "fig", book_root=tmp_path)
    assert f"`{'a' * 12}`, `{'b' * 12}`" in note and "2026-03-04" in note and "1.5 h" in note
    assert prov["commit"][:12] not in note.replace("a" * 12, "").replace("b" * 12, "")
    assert prov["finished_utc"][:10] not in note or prov["finished_utc"][:10] == "2026-03-04"
    assert "`PNG </results/exp/book/fig.png>`" in note
    many = {f"r{i}": {**provs["a"], "commit": str(i) * 40, "finished_utc": f"2026-01-{i + 1:02d}T00:00:00+00:00"}
            for i in range(5)}
    store = ResultStore(tmp_path / "results", "exp2", "book", summary_params(many), notebook="notebooks/n.ipynb")
    store.finish(extra=runs_record(many))
    note = figure_note(store, "fig", book_root=tmp_path)
    assert "5 stored runs at 5 commits" in note and f"`{'4' * 12}`" in note and "2026-01-05" in note


@pytest.mark.parametrize("summary", ["streamed_training", "finite_datasets", "natural_training"])
def test_committed_summaries_are_of_the_stored_runs(summary):
    """Each committed summary records the runs it summarises, as they are stored now (else the next
    `make book` would rewrite it)."""
    root = ROOT / "results"
    path = root / summary / "book" / "provenance.json"
    if not path.exists():
        pytest.skip("no committed summary")
    prov = json.loads(path.read_text())
    runs = prov["params"]["runs"]
    assert isinstance(runs, dict) and runs, f"{path}: written before summaries recorded their runs"
    for rid, rec in runs.items():
        run = json.loads((root / summary / rid / "book" / "provenance.json").read_text())
        assert rec == {"params_hash": run["params_hash"], "finished_utc": run["finished_utc"]}, rid
    assert prov["n_runs"] == len(runs) and prov["runs_finished_utc"]


# --- the Makefile -------------------------------------------------------------------------------------
def _make(*args):
    return subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("var, value", [("RECOMPUTE", "no"), ("RECOMPUTE", "false"), ("PROFILE", "nonsense")])
def test_make_refuses_a_bad_variable(var, value):
    r = _make("help", f"{var}={value}")
    assert r.returncode != 0 and var in r.stderr, r.stderr


def test_make_book_never_writes_into_notebooks():
    r = _make("book")
    assert r.returncode == 0, r.stderr
    runs = [line for line in r.stdout.splitlines() if "papermill" in line]
    assert runs, r.stdout
    for line in runs:
        assert "_build/src" in line and not re.search(r'(^|\s|")notebooks/', line.split("papermill", 1)[1]), line

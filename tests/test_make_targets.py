"""Reruns leave the repository clean unless asked to publish (issue 40): `make nb-%` and the figure
targets run a notebook into _build/run/<notebook>/ with its results there (a copy of results/ that it
reads and writes), never replacing the committed notebook or any tracked or ignored file in the tree;
`make publish-%` (or PUBLISH=1) replaces the committed notebook and writes results/; every target
says where its notebook and figures went."""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
BIN = Path(sys.executable).parent  # the venv this test runs in: its papermill and python run the notebook

pytestmark = pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None,
                                reason="needs GNU make and git")


def _env(**more):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}
    return {**env, "OMP_NUM_THREADS": "1", **more}


def _dry(*args, cwd=ROOT):
    r = subprocess.run(["make", "-n", "STAMP=", f"BIN={BIN}", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    return r.stdout


def _parameters(nb_path: Path) -> dict:
    nb = nbformat.read(nb_path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {t.id: ast.literal_eval(n.value) for n in ast.parse(cell.source).body if isinstance(n, ast.Assign)
            for t in n.targets}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_path_a_notebook_writes_is_redirected(nb):
    """nb-% can keep a notebook out of the tree only through its parameters: every notebook takes
    results_dir, and its other folders are checkpoint_dir (redirected too) or data_dir (read only)."""
    params = _parameters(nb)
    assert "results_dir" in params, f"{nb.name} has no results_dir parameter"
    dirs = {k for k in params if k.endswith("_dir")}
    assert dirs <= {"results_dir", "checkpoint_dir", "data_dir"}, dirs
    run = _dry(f"nb-{nb.stem}", "PROFILE=smoke")
    assert '-p results_dir "$res"' in run and 'res="$PWD/$out/results"' in run
    assert ("checkpoint_dir" in params) == ('grep -q \'"checkpoint_dir = \'' in run and
                                            bool(re.search(r'^\s*"checkpoint_dir = ', nb.read_text(), re.M)))


def test_rerun_targets_never_write_the_tree_and_publish_does():
    run = _dry("fig4.1", "PROFILE=smoke")
    calls = [line for line in run.splitlines() if "papermill" in line and "notebooks/" in line]
    assert calls and all('"$out/01_apr_synthetic.ipynb"' in c for c in calls), calls
    assert "mv " not in run and "_build/run/01_apr_synthetic" in run and "report_run.py" in run
    for publish in (_dry("fig4.1", "PROFILE=smoke", "PUBLISH=1"), _dry("publish-01_apr_synthetic")):
        assert "mv _build/run/01_apr_synthetic.ipynb notebooks/01_apr_synthetic.ipynb" in publish
        assert "results_dir" not in publish and "report_run.py" in publish
    r = subprocess.run(["make", "-n", "fig4.1", "PUBLISH=yes"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=_env())
    assert r.returncode != 0 and "PUBLISH" in r.stderr


def _snapshot(repo: Path) -> list[str]:
    """git status of the clone, ignored files included (results/*/smoke is ignored: a run writing it
    would leave `git status` clean), leaving out _build/ and Python's bytecode caches."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=repo,
                         capture_output=True, text=True, check=True).stdout
    return sorted(line for line in out.splitlines() if "_build/" not in line and "__pycache__" not in line)


def _clone_of_the_working_tree(dst: Path) -> Path:
    """A clone of this repository whose HEAD is the working tree as it is (modified and new files
    committed in the clone), with aprlib's compiled extension beside its sources."""
    subprocess.run(["git", "clone", "-q", str(ROOT), str(dst)], check=True, capture_output=True, timeout=300)
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\0")
    deleted = subprocess.run(["git", "ls-files", "-d", "-z"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    for rel in filter(None, changed):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    for rel in filter(None, deleted):
        (dst / rel).unlink(missing_ok=True)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(git + ["add", "-A"], cwd=dst, check=True, capture_output=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "the working tree under test"], cwd=dst, check=True,
                   capture_output=True)
    import aprlib
    for so in Path(aprlib.__file__).parent.glob("_core*"):
        if so.suffix in (".so", ".pyd"):
            shutil.copy2(so, dst / "aprlib" / so.name)  # ignored by git (*.so)
    return dst


def test_rerun_of_a_notebook_leaves_the_clone_clean(tmp_path):
    """`make nb-01_apr_synthetic PROFILE=smoke RECOMPUTE=True` (what `make fig4.1 PROFILE=smoke` runs)
    in a clone: the notebook and its results land in _build/run/01_apr_synthetic/, `git status` stays
    empty, no ignored file appears in the tree (no results/*/smoke), and the target names its
    notebook and figures. About 20 s on one core."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    repo = _clone_of_the_working_tree(tmp_path / "repo")
    args = ["nb-01_apr_synthetic", "PROFILE=smoke", "RECOMPUTE=True", f"BIN={BIN}", "STAMP="]
    env = _env(PYTHONPATH=str(repo))
    dry = subprocess.run(["make", "-n", *args], cwd=repo, capture_output=True, text=True, timeout=120, env=env)
    assert dry.returncode == 0 and "pip" not in dry.stdout, dry.stdout + dry.stderr  # nothing is installed
    before = _snapshot(repo)
    assert not [line for line in before if not line.startswith("!! aprlib/_core")], before
    r = subprocess.run(["make", *args], cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert _snapshot(repo) == before
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""
    run = repo / "_build" / "run" / "01_apr_synthetic"
    executed = nbformat.read(run / "01_apr_synthetic.ipynb", as_version=4)
    injected = next(c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "remove-cell" in injected.metadata["tags"] and str(run / "results") in injected.source
    figures = sorted((run / "results" / "apr_synthetic" / "smoke").glob("*.png"))
    assert figures and all(f.with_suffix(".pdf").exists() for f in figures)
    assert "notebook: _build/run/01_apr_synthetic/01_apr_synthetic.ipynb" in r.stdout
    for f in figures:
        assert f"_build/run/01_apr_synthetic/results/apr_synthetic/smoke/{f.name}" in r.stdout, r.stdout
    assert "nothing in the repository changed" in r.stdout

"""The README is what a reader who arrives from a search sees first: its library example runs as
shown (no warning, the printed output it quotes) and its overview figure exists."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block(after: str, lang: str) -> str:
    """the first ```lang block after the heading or text ``after``"""
    tail = README[README.index(after):]
    m = re.search(rf"```{lang}\n(.*?)```", tail, re.S)
    assert m, f"no ```{lang} block after {after!r}"
    return m.group(1)


@pytest.mark.parametrize("section", ["## The library in a few lines", "### Segmentation in 3D"])
def test_the_readme_examples_run_without_a_warning_and_print_what_the_readme_says(tmp_path, section):
    code = _block(section, "python")
    shown = _block(section, "text")
    script = tmp_path / "example.py"
    script.write_text(code)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-W", "error", str(script)], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "", run.stderr
    assert run.stdout == shown


def test_the_readme_shows_the_overview_and_names_the_two_commands():
    m = re.search(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert m and (ROOT / m.group(1)).is_file(), "the README's overview figure is missing"
    assert "make book" in README and "make test" in README
    assert README.index("## What was found") < README.index("## Two commands")

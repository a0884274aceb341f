"""Say where a notebook run's outputs went (make nb-% / publish-%): the executed notebook, and the
figures, tables and provenance records written under RESULTS since MARKER (a file touched just before
the run), each marked new / changed / unchanged against the same path under COMPARE (the committed
results/, for a rerun under _build/) when given.

Usage: python tools/report_run.py NOTEBOOK RESULTS MARKER [COMPARE]
"""
from __future__ import annotations

import filecmp
import sys
from pathlib import Path


def written(results: Path, since_ns: int) -> list[Path]:
    """Files under ``results`` modified after ``since_ns``, checkpoints left out, sorted."""
    out = []
    for p in results.rglob("*"):
        rel = p.relative_to(results)
        if rel.parts and rel.parts[0] == "checkpoints":
            continue
        if p.is_file() and not p.name.startswith(".") and p.stat().st_mtime_ns > since_ns:
            out.append(p)
    return sorted(out)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    notebook, results, marker = Path(argv[0]), Path(argv[1]), Path(argv[2])
    compare = Path(argv[3]) if len(argv) == 4 else None
    since = marker.stat().st_mtime_ns
    files = written(results, since)
    print(f"  notebook: {notebook}")
    if not files:
        print(f"  results: nothing written under {results}/ (its stored results were fresh and loaded)")
        return 0

    def state(p: Path) -> str:
        if compare is None:
            return ""
        old = compare / p.relative_to(results)
        if not old.is_file():
            return " (new)"
        return " (unchanged)" if filecmp.cmp(p, old, shallow=False) else " (differs from the committed file)"

    figures = [p for p in files if p.suffix == ".png"]
    tables = [p for p in files if p.suffix == ".csv"]
    provs = [p for p in files if p.name == "provenance.json"]
    other = [p for p in files if p not in figures and p not in tables and p not in provs and
             not (p.suffix == ".pdf" and p.with_suffix(".png") in figures)]
    print(f"  results: {len(files)} file(s) written under {results}/")
    for title, group in (("figures (PNG, with the PDF beside it)", figures), ("tables", tables),
                         ("provenance", provs), ("other files", other)):
        if group:
            print(f"  {title}:")
            for p in group:
                print(f"    {p}{state(p)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

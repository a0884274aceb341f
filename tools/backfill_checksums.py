"""One-off: add the ``files`` map (sha256 and size of every table and figure) to the committed
``results/**/provenance.json`` written before :meth:`aprbook.provenance.ResultStore.finish` recorded it.

The checksums are those of the committed files (``git show HEAD:<path>``: the versions git vouches
for), for every CSV, PNG and PDF that git tracks in the provenance file's own directory. Nothing else
in the JSON changes: it is rewritten as ``finish`` writes it (``json.dump(..., indent=2,
sort_keys=True)``), and a file that this would change in any other way is left alone and reported.
A provenance that already has ``files`` is skipped. Run from the repository root:

    python tools/backfill_checksums.py [--dry-run]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path, PurePosixPath

EXTENSIONS = (".csv", ".png", ".pdf")


def _git(*args, binary: bool = False):
    out = subprocess.run(["git", *args], capture_output=True, check=True)
    return out.stdout if binary else out.stdout.decode()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="report, write nothing")
    ap.add_argument("--root", default="results", help="results directory (default: results)")
    args = ap.parse_args(argv)
    tracked = _git("ls-files", "-z", "--", args.root).split("\0")
    tracked = [PurePosixPath(t) for t in tracked if t]
    changed_in_tree = set(_git("diff", "--name-only", "-z", "HEAD", "--", args.root).split("\0")) - {""}
    by_dir: dict[PurePosixPath, list[PurePosixPath]] = {}
    for t in tracked:
        by_dir.setdefault(t.parent, []).append(t)
    n_done, problems = 0, []
    for prov_path in sorted(t for t in tracked if t.name == "provenance.json"):
        if str(prov_path) in changed_in_tree:
            problems.append(f"{prov_path}: has uncommitted changes; commit or restore it first")
            continue
        text = Path(prov_path).read_text()
        prov = json.loads(text)
        if "files" in prov:
            continue
        if json.dumps(prov, indent=2, sort_keys=True) != text:
            problems.append(f"{prov_path}: not in the layout finish() writes; left alone")
            continue
        files = {}
        for f in sorted(by_dir[prov_path.parent]):
            if f.suffix not in EXTENSIONS:
                continue
            blob = _git("show", f"HEAD:{f}", binary=True)
            if str(f) in changed_in_tree:
                problems.append(f"{f}: the working copy differs from HEAD; recorded HEAD's version")
            files[f.name] = {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
        prov["files"] = files
        print(f"{prov_path}: {len(files)} files")
        if not args.dry_run:
            Path(prov_path).write_text(json.dumps(prov, indent=2, sort_keys=True))
        n_done += 1
    print(f"{n_done} provenance files {'would be ' if args.dry_run else ''}given checksums")
    for p in problems:
        print("problem:", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

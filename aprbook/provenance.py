"""Result storage for notebooks: atomic writes, provenance records, load-instead-of-recompute.

Layout: ``results/<experiment>/<profile>/`` holds tables (CSV), figures (PNG + PDF) and
``provenance.json`` (commit, profile, parameters, seeds, machine, wall time, package versions, and
``files``: the sha256 and size of every table and figure the store wrote). A run is reused when its
provenance records the same profile and parameters and every recorded file is intact (a truncated or
overwritten CSV makes it stale; :meth:`ResultStore.verify` names the file).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from aprlib.train.checkpoint import atomic_write

__all__ = ["ResultStore", "atomic_write", "file_record", "remove_orphan_temporaries", "git_commit", "load_average",
           "load_text", "package_versions", "figure_note", "summary_params", "runs_record", "run_time", "RENAMED_KEYS",
           "rename_provenance_keys", "compute_hours"]

_PACKAGES = ("aprlib", "numpy", "scipy", "torch", "pandas", "matplotlib", "seaborn", "scikit-image", "pyapr",
             "papermill")


def remove_orphan_temporaries(directory, older_than_s: float = 3600.0) -> list[Path]:
    """Remove the ``.<name>.<random>.tmp`` files that a killed :func:`atomic_write` left in ``directory``
    (not its subdirectories), if older than ``older_than_s`` seconds (a younger one may belong to a
    writer still at work in another process). Returns the removed paths."""
    removed = []
    now = time.time()
    for tmp in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed.append(tmp)
    return removed


def file_record(path) -> dict:
    """{"sha256": hex digest, "bytes": size} of a file (what ``provenance.json`` records per file)."""
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            n += len(chunk)
    return {"sha256": h.hexdigest(), "bytes": n}


# Paths that a notebook run itself writes; their changes do not make the code "dirty".
_RUN_OUTPUTS = (":(exclude)notebooks/*.ipynb", ":(exclude)results")


def modified_files(cwd=None) -> list[str]:
    """Tracked files with uncommitted changes, other than executed notebooks and results."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True,
                             check=True).stdout.strip()
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *_RUN_OUTPUTS],
                             cwd=top, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def git_commit(cwd=None) -> str:
    """Current commit hash, with ``+dirty`` if code (not notebooks/results) has uncommitted changes;
    'unknown' outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if modified_files(cwd) else "")


def package_versions() -> dict:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages now (None where the platform has none): on a shared
    machine a timing run beside other work reads differently from one on an idle machine."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def load_text(prov: dict) -> str:
    """How busy the machine was during a stored run, in words, from its provenance: the 1-minute load
    average when it started (``load_average_at_start``: :meth:`ResultStore.start`) and the
    15-minute one when it finished (``machine.load_average``), beside the logical CPUs. Runs stored
    before these were recorded say so."""
    start = prov.get("load_average_at_start")
    machine = prov.get("machine") or {}
    end, cpus = machine.get("load_average"), machine.get("cpu_count")
    if not start and not end:
        return "the machine's load was not recorded for this run"
    parts = ([f"{start[0]:.1f} at the start (1-minute average)"] if start else []) + \
            ([f"{end[2]:.1f} over the last 15 minutes at the end"] if end else [])
    return f"load average {' and '.join(parts)}" + (f", on {cpus} logical CPUs" if cpus else "")


def _machine() -> dict:
    """The machine, and how busy it was when the provenance was written (:func:`load_average`)."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average": load_average()}


def _params_hash(profile: str, params: dict) -> str:
    blob = json.dumps({"profile": profile, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures are displayed inline)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class ResultStore:
    """Results of one experiment at one profile with given parameters.

    ``store.fresh`` is True when ``results/<experiment>/<profile>/provenance.json`` records the same
    parameters and every file it records (``files``: sha256 and size of each table and figure this
    store wrote) is intact, i.e. the saved tables can be loaded instead of recomputed.

    Files are recorded when :meth:`finish` writes the provenance (every table and figure this object
    wrote that still exists), and a table or figure saved after :meth:`finish` (or into a store that
    is fresh, e.g. a figure redrawn from loaded tables) updates the record, so that the record always
    describes the files as the store last wrote them.
    """

    def __init__(self, root, experiment: str, profile: str, params: dict, notebook: str | None = None):
        self.dir = Path(root) / experiment / profile
        self.experiment, self.profile, self.params, self.notebook = experiment, profile, dict(params), notebook
        self.key = _params_hash(profile, self.params)
        self._t0, self._load0 = time.perf_counter(), load_average()
        self._written: dict[str, Path] = {}  # files this object wrote: name -> path

    @property
    def provenance_path(self) -> Path:
        return self.dir / "provenance.json"

    def provenance(self) -> dict | None:
        try:
            return json.loads(self.provenance_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def verify(self, prov: dict | None = None) -> list[str]:
        """What is wrong with the stored files: one message per recorded file that is missing or
        whose sha256 differs from ``provenance.json`` (naming the file), or that the provenance
        records no checksums at all. Empty when every recorded file is intact (or nothing is stored)."""
        prov = self.provenance() if prov is None else prov
        if prov is None:
            return []
        if "files" not in prov:  # written before checksums were recorded (tools/backfill_checksums.py)
            return [f"{self.provenance_path} records no file checksums: its files cannot be trusted"]
        problems = []
        for name, rec in sorted(prov["files"].items()):
            path = self.dir / name
            if not path.is_file():
                problems.append(f"{path} is recorded in provenance.json but missing")
                continue
            got = file_record(path)
            if got != {"sha256": rec.get("sha256"), "bytes": rec.get("bytes")}:
                problems.append(f"{path} does not match provenance.json ({got['bytes']} bytes, sha256 "
                                f"{got['sha256'][:12]}...; recorded {rec.get('bytes')} bytes, sha256 "
                                f"{str(rec.get('sha256'))[:12]}...): truncated or changed since it was stored")
        return problems

    @property
    def fresh(self) -> bool:
        prov = self.provenance()
        return prov is not None and prov.get("params_hash") == self.key and not self.verify(prov)

    def start(self) -> None:
        """Mark the start of a computation (for the wall time and the load average at the start), drop a
        stale provenance and remove orphan temporary files of killed writes (older than an hour) from the
        store's directory."""
        self._t0, self._load0 = time.perf_counter(), load_average()
        with contextlib.suppress(FileNotFoundError):
            self.provenance_path.unlink()
        if self.dir.is_dir():
            remove_orphan_temporaries(self.dir)

    def _wrote(self, path: Path) -> None:
        """Track a file this store wrote; if the provenance of this computation is already written
        (after :meth:`finish`, or a fresh store), update its record of the file."""
        self._written[path.name] = path
        prov = self.provenance()
        if prov is None or prov.get("params_hash") != self.key or "files" not in prov:
            return
        rec = file_record(path)
        if prov["files"].get(path.name) != rec:
            prov["files"][path.name] = rec
            self._write_provenance(prov)

    def _write_provenance(self, prov: dict) -> None:
        with atomic_write(self.provenance_path, "w") as f:
            json.dump(prov, f, indent=2, sort_keys=True)

    def save_table(self, name: str, df) -> Path:
        path = self.dir / f"{name}.csv"
        with atomic_write(path, "w") as f:
            df.to_csv(f, index=False)
        self._wrote(path)
        return path

    def load_table(self, name: str):
        """The stored table ``name``; ValueError (naming the file) if ``provenance.json`` records a
        checksum for it that the file does not match."""
        import pandas as pd
        path = self.dir / f"{name}.csv"
        prov = self.provenance()
        rec = (prov or {}).get("files", {}).get(path.name)
        if rec is not None and path.is_file():
            got = file_record(path)
            if got["sha256"] != rec.get("sha256"):
                raise ValueError(f"{path} does not match its checksum in {self.provenance_path} ({got['bytes']} "
                                 f"bytes, recorded {rec.get('bytes')}): the stored table is damaged or was changed "
                                 "since it was stored; recompute it (recompute=True)")
        return pd.read_csv(path)

    def save_figure(self, fig, name: str, dpi: int = 150, show: bool = True) -> list[Path]:
        """Save a matplotlib figure as PNG and PDF (atomically). In a notebook (``show``), also display
        it now and close it, so that the provenance note printed next (:func:`figure_note`) stands
        under the figure instead of above it (inline figures are otherwise drawn at the cell's end)."""
        paths = []
        for ext in ("png", "pdf"):
            path = self.dir / f"{name}.{ext}"
            with atomic_write(path, "wb") as f:
                fig.savefig(f, format=ext, dpi=dpi, bbox_inches="tight",
                            metadata={"CreationDate": None} if ext == "pdf" else {"Software": None})
            self._wrote(path)
            paths.append(path)
        if show and _in_notebook():
            import matplotlib.pyplot as plt
            from IPython.display import display
            display(fig)
            plt.close(fig)
        return paths

    def finish(self, seeds: dict | None = None, extra: dict | None = None) -> dict:
        """Write provenance.json; call after all tables are saved. Its ``files`` records the sha256
        and size of every table and figure this object wrote (that still exists)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        prov = {
            "experiment": self.experiment,
            "notebook": self.notebook,
            "profile": self.profile,
            "params": self.params,
            "params_hash": self.key,
            "seeds": seeds or {},
            "commit": git_commit(self.dir),
            "modified_files": modified_files(self.dir),
            # microseconds: a run recomputed within the second it first finished must still make the
            # summaries over it stale (summary_params keys on this and the parameters)
            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            "load_average_at_start": self._load0,
            "machine": _machine(),
            "packages": package_versions(),
            "files": {name: file_record(path) for name, path in sorted(self._written.items()) if path.is_file()},
        }
        if extra:
            prov.update(extra)
        self._write_provenance(prov)
        return prov


#: provenance keys renamed for what they record: the streamed runs' stopping test passes runs that go on
#: learning, so it is a plateau test, and a run that passed it is not "converged" (issue 39)
RENAMED_KEYS = {"converged": "plateaued", "convergence": "plateau_test"}


def rename_provenance_keys(results_dir, renamed: dict = RENAMED_KEYS) -> list[Path]:
    """Rewrite every ``provenance.json`` under ``results_dir`` that holds an old key of ``renamed``
    (old -> new, top level only) with the new key, values unchanged; returns the files rewritten.
    A file holding both the old and the new key is an error (naming it), never silently merged, and
    then no file is rewritten.
    Nothing a store's freshness rests on changes (its parameters, their hash, the file checksums)."""
    todo = {}
    for path in sorted(Path(results_dir).glob("**/provenance.json")):
        prov = json.loads(path.read_text())
        old = [k for k in renamed if k in prov]
        both = [k for k in old if renamed[k] in prov]
        if both:  # checked for every file before any is rewritten
            raise ValueError(f"{path} holds both {both} and their new names {[renamed[k] for k in both]}")
        if old:
            todo[path] = {renamed.get(k, k): v for k, v in prov.items()}
    for path, prov in todo.items():
        with atomic_write(path, "w") as f:
            json.dump(prov, f, indent=2, sort_keys=True)
    return list(todo)


def run_time(prov: dict) -> float:
    """Seconds a stored run computed: its ``compute_s`` (every session of a resumed run), else its
    ``wall_time_s`` (runs stored before compute_s was recorded)."""
    return float(prov.get("compute_s", prov.get("wall_time_s")) or 0.0)


def summary_params(provs: dict, **more) -> dict:
    """Parameters of a summary store, i.e. one whose tables and figures are made from stored runs
    (``provs``: run id -> the run's provenance): each run's ``params_hash`` and ``finished_utc``, and
    ``more`` (e.g. the runs still missing). The summary is then fresh exactly while the runs it
    summarises are unchanged (a run recomputed, added or removed makes it stale), so a notebook
    calls :meth:`ResultStore.finish` on it only when it is not fresh, and rendering stored runs
    again rewrites nothing."""
    return {"runs": {rid: {"params_hash": p.get("params_hash"), "finished_utc": p.get("finished_utc")}
                     for rid, p in sorted(provs.items())}, **more}


def runs_record(provs: dict) -> dict:
    """Provenance of the runs a summary store summarises (``provs``: run id -> provenance), for
    ``finish(extra=...)``: ``n_runs``, ``commits_of_runs`` (sorted, 12 characters),
    ``runs_finished_utc`` (when the last of them finished), ``latest_run_commit`` (that run's
    commit) and ``compute_s`` (their summed compute time). :func:`figure_note` credits these, not
    the commit and date at which the summary was written."""
    latest = max(provs.values(), key=lambda p: p.get("finished_utc") or "", default={})
    return {"n_runs": len(provs),
            "commits_of_runs": sorted({(p.get("commit") or "unknown")[:12] for p in provs.values()}),
            "runs_finished_utc": latest.get("finished_utc"),
            "latest_run_commit": latest.get("commit"),
            "compute_s": round(sum(run_time(p) for p in provs.values()), 1)}


def _duration(s) -> str:
    return "" if s is None else (f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else
                                 f"{s:.0f} s")


def figure_note(store: ResultStore, name: str, book_root: str = "..") -> str:
    """Markdown provenance line for figure ``name`` of ``store`` (after :meth:`ResultStore.finish`):
    notebook, commit, profile, date and wall time, with download links to the PNG and PDF (paths
    from ``book_root``, the book's source directory as seen from where the notebook runs). For a
    summary of stored runs (provenance written with :func:`runs_record`) the commits and date are the
    runs', and the time their summed compute time."""
    prov = store.provenance() or {}
    rel = "/" + Path(os.path.relpath(store.dir, book_root)).as_posix()
    notebook = prov.get("notebook") or store.notebook
    links = f"Download: {{download}}`PNG <{rel}/{name}.png>`, {{download}}`PDF <{rel}/{name}.pdf>`."
    if "runs_finished_utc" in prov:
        commits = prov.get("commits_of_runs") or []
        n = prov.get("n_runs", len(prov.get("params", {}).get("runs", {})))
        latest = (prov.get("latest_run_commit") or "unknown")[:12]
        when = (prov.get("runs_finished_utc") or "")[:10]
        if len(commits) <= 3:
            at = ("commit " if len(commits) == 1 else "commits ") + ", ".join(f"`{c}`" for c in commits)
            at += f" (the last finished {when})" if n > 1 else f" (finished {when})"
        else:
            at = f"{len(commits)} commits (the last run finished {when}, at `{latest}`)"
        took = _duration(prov.get("compute_s"))
        return (f"Made by `{notebook}` from {n} stored run{'s' if n != 1 else ''} at {at}, profile "
                f"`{store.profile}`" + (f", training time {took}" if took else "") + f". {links}")
    wall_txt = _duration(prov.get("compute_s", prov.get("wall_time_s")))
    return (f"Made by `{notebook}` at commit "
            f"`{(prov.get('commit') or 'unknown')[:12]}`, profile `{store.profile}`, "
            f"{(prov.get('finished_utc') or '')[:10]}" + (f", wall time {wall_txt}" if wall_txt else "") +
            f". {links}")


def compute_hours(results_dir, profile: str = "book") -> "pd.DataFrame":
    """What the stored results of ``profile`` cost to compute, per experiment: columns experiment,
    runs (training runs stored, each ``results/<experiment>/<run>/<profile>/``), core_hours (their
    summed :func:`run_time`, every session of a resumed run; for an experiment without runs, the wall
    time of its one result) and machines (the CPU counts its provenance records). Each stored result
    counts once, where it is stored: a result read through another experiment (a primary run's twin)
    is not counted twice."""
    import pandas as pd
    rows = []
    for top in sorted(p for p in Path(results_dir).iterdir() if p.is_dir() and p.name != "checkpoints"):
        run_provs = sorted(top.glob(f"*/{profile}/provenance.json"))
        own = top / profile / "provenance.json"
        provs = [json.loads(f.read_text()) for f in run_provs]
        if not provs and own.exists():
            provs = [json.loads(own.read_text())]
        if not provs:
            continue
        rows.append({"experiment": top.name, "runs": len(run_provs),
                     "core_hours": sum(run_time(p) for p in provs) / 3600,
                     "machines": ", ".join(sorted({f"{p['machine']['cpu_count']} CPUs" for p in provs
                                                   if p.get("machine", {}).get("cpu_count")}))})
    return pd.DataFrame(rows, columns=["experiment", "runs", "core_hours", "machines"])

"""Result storage for notebooks: atomic writes, provenance records, load-instead-of-recompute.

Layout: ``results/<experiment>/<profile>/`` holds tables (CSV), figures (PNG + PDF) and
``provenance.json`` (commit, profile, parameters, seeds, machine, wall time, package versions).
A run is reused when its provenance records the same profile and parameters.
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
import tempfile
import time
from pathlib import Path

__all__ = ["ResultStore", "atomic_write", "git_commit", "package_versions", "figure_note"]

_PACKAGES = ("aprlib", "numpy", "scipy", "torch", "pandas", "matplotlib", "seaborn", "scikit-image", "pyapr",
             "papermill")


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Open a temporary file next to ``path``; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


def _machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


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
    parameters, i.e. the saved tables can be loaded instead of recomputed.
    """

    def __init__(self, root, experiment: str, profile: str, params: dict, notebook: str | None = None):
        self.dir = Path(root) / experiment / profile
        self.experiment, self.profile, self.params, self.notebook = experiment, profile, dict(params), notebook
        self.key = _params_hash(profile, self.params)
        self._t0 = time.perf_counter()

    @property
    def provenance_path(self) -> Path:
        return self.dir / "provenance.json"

    def provenance(self) -> dict | None:
        try:
            return json.loads(self.provenance_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    @property
    def fresh(self) -> bool:
        prov = self.provenance()
        return prov is not None and prov.get("params_hash") == self.key

    def start(self) -> None:
        """Mark the start of a computation (for the wall time) and drop a stale provenance."""
        self._t0 = time.perf_counter()
        with contextlib.suppress(FileNotFoundError):
            self.provenance_path.unlink()

    def save_table(self, name: str, df) -> Path:
        path = self.dir / f"{name}.csv"
        with atomic_write(path, "w") as f:
            df.to_csv(f, index=False)
        return path

    def load_table(self, name: str):
        import pandas as pd
        return pd.read_csv(self.dir / f"{name}.csv")

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
            paths.append(path)
        if show and _in_notebook():
            import matplotlib.pyplot as plt
            from IPython.display import display
            display(fig)
            plt.close(fig)
        return paths

    def finish(self, seeds: dict | None = None, extra: dict | None = None) -> dict:
        """Write provenance.json; call after all tables are saved."""
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
            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - self._t0, 3),
            "machine": _machine(),
            "packages": package_versions(),
        }
        if extra:
            prov.update(extra)
        with atomic_write(self.provenance_path, "w") as f:
            json.dump(prov, f, indent=2, sort_keys=True)
        return prov


def figure_note(store: ResultStore, name: str, book_root: str = "..") -> str:
    """Markdown provenance line for figure ``name`` of ``store`` (after :meth:`ResultStore.finish`):
    notebook, commit, profile, date and wall time, with download links to the PNG and PDF (paths
    from ``book_root``, the book's source directory as seen from where the notebook runs)."""
    prov = store.provenance() or {}
    rel = "/" + Path(os.path.relpath(store.dir, book_root)).as_posix()
    wall = prov.get("compute_s", prov.get("wall_time_s"))
    wall_txt = "" if wall is None else (f"{wall / 3600:.1f} h" if wall >= 3600 else
                                        f"{wall / 60:.1f} min" if wall >= 60 else f"{wall:.0f} s")
    return (f"Made by `{prov.get('notebook') or store.notebook}` at commit "
            f"`{(prov.get('commit') or 'unknown')[:12]}`, profile `{store.profile}`, "
            f"{(prov.get('finished_utc') or '')[:10]}" + (f", wall time {wall_txt}" if wall_txt else "") +
            f". Download: {{download}}`PNG <{rel}/{name}.png>`, {{download}}`PDF <{rel}/{name}.pdf>`.")

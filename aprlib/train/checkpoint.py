"""Checkpoints of the training loops (:mod:`aprlib.train.loops`): which configuration a checkpoint
belongs to (:func:`checkpoint_key`, :class:`Checkpoint`), atomic saving (:func:`atomic_write`) and
the checks made before a checkpoint is resumed."""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["Checkpoint", "checkpoint_key", "CHECKPOINT_FORMAT", "atomic_write"]


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


#: The layout of a checkpoint (the header and the keys the loops save and restore); bump it when that
#: changes, so that no checkpoint of another layout is resumed (it is part of every checkpoint's key).
CHECKPOINT_FORMAT = 2


def _plain(x):
    """``x`` as plain JSON types (dicts, lists, str, int, float, bool, None): numpy scalars and
    arrays become Python numbers and lists, tuples lists, other objects their ``str``."""
    return json.loads(json.dumps(x, sort_keys=True, default=_json_default))


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _python_values(x):
    """``x`` with numpy scalars replaced by Python numbers, in nested lists, tuples and dicts (what a
    loop saves besides tensors must load with ``torch.load(weights_only=True)``)."""
    if isinstance(x, dict):
        return {k: _python_values(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_python_values(v) for v in x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def checkpoint_key(config: dict | None) -> str:
    """16 hex digits of a sha256 of a run's configuration (normalised as :class:`ResultStore
    <aprbook.provenance.ResultStore>` normalises its parameters), :data:`CHECKPOINT_FORMAT` and the
    aprlib version: checkpoints of different configurations or code versions never share a key."""
    from .. import __version__
    blob = json.dumps({"config": _plain(config), "format": CHECKPOINT_FORMAT, "aprlib": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where a training loop saves its progress, for which configuration, and what it may resume.

    ``path``: the file the loop writes (atomically). ``config``: every setting that changes the run's
    result except its budget (number of batches, iterations or epochs), stored in the file and
    compared on load, so a file written for other settings is never resumed. ``archive``: the
    checkpoint of a completed run of the same configuration (see :mod:`aprbook.runs`), resumed when
    ``path`` is absent or cannot be resumed; the loop never writes it. A loop given a plain path uses
    ``Checkpoint(path)`` (no config; the loop's own settings are still compared)."""

    path: Path
    config: dict | None = None
    archive: Path | None = None

    def __post_init__(self):  # paths may be given as strings
        object.__setattr__(self, "path", Path(self.path))
        if self.archive is not None:
            object.__setattr__(self, "archive", Path(self.archive))

    @property
    def key(self) -> str:
        return checkpoint_key(self.config)

    def saved_progress(self, name: str) -> int:
        """How far this configuration's saved run has trained: the ``name`` entry (``next_batch``,
        ``next_iteration``) of the first of ``path`` and ``archive`` that loads and was written for
        this key and configuration, else 0. Only a guide to where a run in stages should continue
        (:mod:`aprbook.runs`): nothing is moved aside here, and the training loop checks the file
        in full before resuming it."""
        for path in (self.path, self.archive):
            if path is None or not path.exists():
                continue
            state, _ = self.load_matching(path)
            try:
                if state is not None:
                    return int(state[name])
            except Exception:  # noqa: BLE001  damaged: the loop will say so
                continue
        return 0

    def load_matching(self, path) -> tuple[dict | None, str | None]:
        """(state, None) if the file at ``path`` loads with ``torch.load(weights_only=True)`` and its
        header was written for this key and configuration; else (None, why). Nothing is moved aside."""
        try:
            state = torch.load(path, weights_only=True)
            header = state["checkpoint"]
            ours = header["key"] == self.key and header["config"] == _plain(self.config)
        except Exception as e:  # noqa: BLE001  unreadable: say so, never use it
            return None, f"{Path(path).name} cannot be read ({type(e).__name__})"
        return (state, None) if ours else (None, f"{Path(path).name} was written for other settings")


def _as_checkpoint(checkpoint) -> Checkpoint | None:
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return checkpoint
    return Checkpoint(Path(checkpoint))


def _header(ck: Checkpoint, loop: dict) -> dict:
    """What a checkpoint records about the run that wrote it (compared on load)."""
    from .. import __version__
    return {"format": CHECKPOINT_FORMAT, "aprlib": __version__, "key": ck.key, "config": _plain(ck.config),
            "loop": _plain(loop)}


def _save_checkpoint(ck: Checkpoint | None, loop: dict, model, optimizer, **progress):
    """Atomically save model, optimizer, the torch RNG, the run's header (:func:`_header`) and a
    loop's ``progress`` (Python numbers, strings, lists, dicts and tensors only: the file must load
    with ``torch.load(weights_only=True)``)."""
    if ck is None:
        return
    state = {"checkpoint": _header(ck, loop), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "torch_rng": torch.get_rng_state(), **_python_values(progress)}
    with atomic_write(ck.path, "wb") as f:
        torch.save(state, f)


def _move_aside(path: Path) -> Path:
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    n = 1
    while aside.exists():
        aside, n = aside.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}"), n + 1
    os.replace(path, aside)
    return aside


def _differences(stored, expected, prefix="") -> list[str]:
    """Names of the entries in which two headers differ (e.g. ``config.params.lr``)."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        out = []
        for k in sorted(set(stored) | set(expected), key=str):
            out += _differences(stored.get(k), expected.get(k), f"{prefix}{k}.")
        return out
    return [] if stored == expected else [prefix.rstrip(".") or "header"]


def _load_checkpoint(ck: Checkpoint | None, loop: dict, model, optimizer, resumable,
                     entries: tuple = ()) -> dict | None:
    """Restore model and optimizer from the first of ``ck.path``, ``ck.archive`` that exists and can
    be resumed by this run; returns its whole saved state (the caller restores ``torch_rng`` around
    the creation of its DataLoader iterator, which draws from it), or None: the run starts from scratch.

    A file is resumed only if it loads with ``torch.load(weights_only=True)``, its header equals this
    run's (:func:`_header`: format, aprlib version, configuration, the loop's settings), it holds the
    loop's progress ``entries`` (the keys of its ``progress()``), its model fits ``model`` and
    ``resumable(state)`` (the loop's check of the progress against its budget) returns None rather
    than a reason. An unreadable file (truncated, corrupt, holding anything but tensors and plain
    data, or, under this run's header, lacking an entry the loop reads) is moved aside to
    ``<name>.corrupt-<time>`` with a warning naming it (and the missing entries); a file that cannot
    be resumed for another reason is left in place (the run overwrites ``path`` when it next saves)
    and a printed line says why."""
    if ck is None:
        return None
    expected, notes = _header(ck, loop), []
    for path in (ck.path, ck.archive):
        if path is None or not path.exists():
            continue
        try:
            state = torch.load(path, weights_only=True)
            missing = {"model", "optimizer", "torch_rng"} - set(state if isinstance(state, dict) else ())
            if missing:
                raise ValueError(f"not an aprlib checkpoint: no {sorted(missing)}")
            if not (isinstance(state["model"], dict) and all(torch.is_tensor(v) for v in state["model"].values())):
                raise ValueError("its model is not a state dict of tensors")
        except Exception as e:  # noqa: BLE001  any failure to read means: do not resume this file
            aside = _move_aside(path)
            notes.append(("warn", f"checkpoint {path} is unreadable ({_load_error(e)}): moved aside to {aside.name}"))
            continue
        if "checkpoint" not in state:
            notes.append(("print", f"checkpoint {path} was written by an older aprlib, which did not record the "
                                   "run's settings: not resumed"))
            continue
        diff = _differences(state["checkpoint"], expected)
        if diff:
            notes.append(("print", f"checkpoint {path} was written for another configuration (differs in "
                                   f"{', '.join(diff)}): not resumed"))
            continue
        lacking = [k for k in entries if k not in state]
        if lacking:  # this run's header, yet not what this run writes: damaged, as an unreadable file
            aside = _move_aside(path)
            which = f"entr{'y' if len(lacking) == 1 else 'ies'} {', '.join(map(repr, lacking))}"
            notes.append(("warn", f"checkpoint {path} is unreadable (it lacks the {which} that this run's "
                                  f"checkpoints hold): moved aside to {aside.name}"))
            continue
        reason = resumable(state)
        if reason:
            notes.append(("print", f"checkpoint {path} {reason}: not resumed"))
            continue
        have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if {k: tuple(v.shape) for k, v in state["model"].items()} != have:
            notes.append(("print", f"checkpoint {path} holds another model architecture: not resumed"))
            continue
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        _report(notes, f"; resuming from {path} instead")
        if path != ck.path:
            print(f"resuming from {path} (a completed run of the same configuration)", flush=True)
        return state
    _report(notes, "; the run restarts from scratch")
    return None


def _load_error(e: Exception) -> str:
    """A one-line account of why ``torch.load`` failed (for a refused object, the refused global)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(e).splitlines()]
    refused = [line.split("Unsupported global:", 1)[1].split(" was not ")[0].strip()
               for line in lines if "Unsupported global:" in line]
    if refused:
        return f"{type(e).__name__}: holds {refused[0]}, which torch.load(weights_only=True) refuses to unpickle"
    if any("WeightsUnpickler error" in line for line in lines):  # not a pickle torch.load(weights_only) reads
        detail = next((line for line in lines[[i for i, x in enumerate(lines) if "WeightsUnpickler error" in x][0]:]
                       if line and "WeightsUnpickler error" not in line), "")
        return f"{type(e).__name__}: torch.load(weights_only=True) cannot read it ({detail[:120]})"
    first = next((line for line in lines if line), "").split(". ")[0]
    return f"{type(e).__name__}: {first[:200]}" if first else type(e).__name__


def _report(notes, outcome: str) -> None:
    for kind, text in notes:
        if kind == "warn":
            warnings.warn(text + outcome, RuntimeWarning, stacklevel=4)
        else:
            print(text + outcome, flush=True)

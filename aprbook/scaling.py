"""Does the cost of APRNet follow particles, not pixels? (thesis 4.3; ``python -m aprbook.bench scaling``,
``step``, ``tables``).

- :func:`cost_vs_size`: the same content (a few synthetic objects of fixed pixel size in the top-left
  corner, :func:`fixed_content_image`) on ever larger canvases. Per canvas size: forming the APR,
  building APR_B's index tables on a fresh APR and APR_B's forward pass, and Pix_B's forward pass on
  the image; time (medians of interleaved repeats, in one subprocess per size) and peak memory (one
  fresh subprocess per measurement, RSS high-water mark above the memory held just before, under an
  address-space limit so that a pass that does not fit is reported as such instead of exhausting the
  machine). :func:`growth_factors` summarises the growth from the smallest to the largest canvas,
  leaving out the timing points that :func:`timing_outliers` flags (measured fewer than
  :data:`MIN_REPEATS` times, or a time per pixel more than :data:`MAX_JUMP` times the previous size's
  without the memory limit reached).
- :func:`training_step`: a streamed training step, images in, APR_B (form the APRs, build the
  tables, forward, cross entropy, backward, Adam) against Pix_B (forward, backward, Adam), at
  several thread counts, interleaved repeats; :func:`step_summary` gives medians and ratios.
- :func:`table_bytes` (the bytes the index tables of a batch keep, found by walking the batch's and
  its APRs' caches, whatever their layout) and :func:`table_memory` (that, and the RSS high-water
  mark of ``prepare``, in a fresh subprocess).

Nothing here asserts a speed or a size: the tables and printed ratios are the result.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aprlib.apr import THESIS_FORMATION
from aprlib.train import SYNTHETIC_BATCH_SIZE, SYNTHETIC_LR

__all__ = ["FORMATION", "fixed_content_image", "cost_vs_size", "growth_factors", "timing_outliers", "TIMING_POINTS",
           "MIN_REPEATS", "MAX_JUMP", "MEMORY_FRACTION", "pixel_feature_map_bytes",
           "training_step", "step_summary", "table_bytes", "table_memory", "check_settings", "cost_scaling",
           "scaling_text", "step_text", "tables_text"]

# The book's APR settings (aprlib.apr.formation.form_apr keyword arguments): the thesis's,
# aprlib.apr.THESIS_FORMATION (these three keys are recorded in the cost_scaling store's parameters).
FORMATION = {k: getattr(THESIS_FORMATION, k) for k in ("rel_error", "gradient_smoothing", "sigma_th")}
_BACKGROUND = 0.2  # aprlib.data.synthetic.object_canvas's background level


def fixed_content_image(size: int, content: int = 256, objects: int = 2, seed: int = 0) -> np.ndarray:
    """(size, size) float32 canvas of ``object_canvas``'s background with the same ``content``-pixel
    patch of ``objects`` synthetic shapes (``aprlib.data.synthetic.object_canvas(objects, seed, content,
    content // 2)``) in its top-left corner: the content does not change with ``size``."""
    from aprlib.data.synthetic import object_canvas
    if content > size:
        raise ValueError(f"content of {content} pixels does not fit on a {size}x{size} canvas")
    patch = object_canvas(objects, seed=seed, size=content, tile=max(content // 2, 8))
    img = np.full((size, size), _BACKGROUND, np.float32)
    img[:content, :content] = patch
    return img


# --- memory of this process (Linux /proc; ru_maxrss elsewhere) --------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_kb() -> int:
    rss = _status_kb("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> bool:
    """Reset the RSS high-water mark (Linux >= 4.0: write 5 to /proc/self/clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_kb() -> int:
    hwm = _status_kb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


_MEMORY_WORDS = ("memoryerror", "can't allocate memory", "cannot allocate memory", "bad_alloc", "out of memory",
                 "std::bad_alloc", "failed to allocate")
# Under an address-space limit, oneDNN (torch's CPU convolutions) reports a failed allocation of its
# kernel or scratchpad as a primitive it could not create; it says so only when the primitive is not
# already cached in the forked child, so only a measurement with a limit counts it as memory.
_LIMIT_WORDS = ("could not create a primitive",)


def _is_memory_message(text: str, limited: bool = False) -> bool:
    """Whether an error's ``text`` says an allocation failed (``limited``: under an address-space limit)."""
    words = _MEMORY_WORDS + (_LIMIT_WORDS if limited else ())
    return any(w in text.lower() for w in words)


def _is_memory_error(e: BaseException, limited: bool = False) -> bool:
    return isinstance(e, MemoryError) or _is_memory_message(str(e), limited)


# --- the subprocess ----------------------------------------------------------------------------------
def _child(spec: dict) -> dict:
    from aprlib import _core
    from aprlib.apr import APR, APRBatch, form_apr
    from aprlib.models import apr_network, pixel_network
    from aprlib.nn.prepare import prepare

    n = int(spec.get("threads", 1))
    torch.set_num_threads(n)
    _core.set_num_threads(n)
    torch.manual_seed(int(spec.get("seed", 0)))
    mode = spec["mode"]
    out = {"mode": mode, "threads": n}
    if mode == "tables":
        from aprlib.data.synthetic import generate_batch
        imgs, _ = generate_batch(spec["batch_size"], seed=spec["seed"], size=(spec["size"], spec["size"]))
        aprs = [form_apr(im, **FORMATION) for im in imgs]
        out.update(particles=int(sum(a.n_particles for a in aprs)), pixels=int(imgs.size))
    else:
        img = fixed_content_image(spec["size"], spec["content"], spec["objects"], spec["seed"])
        out.update(size=int(spec["size"]), pixels=int(img.size))
    if mode in ("apr", "time", "tables"):
        apr_net = apr_network("B", backend=spec.get("backend", "cpp")).eval()
    if mode in ("pixel", "time"):
        pix_net = pixel_network("B").eval()
        x = torch.from_numpy(img)[None, None]
    if mode in ("apr", "time"):
        apr0 = form_apr(img, **FORMATION)
        out.update(particles=int(apr0.n_particles), cr=float(apr0.computational_ratio))

    old_soft, old_hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = spec.get("mem_limit_bytes")
    if limit:  # the whole process's address space, set after the imports and the inputs are built
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), old_hard))
    out["fit"] = True
    try:
        if mode == "formation":
            base = _rss_kb()
            reset = _reset_peak()
            t0 = time.perf_counter()
            apr = form_apr(img, **FORMATION)
            out.update(time_s=time.perf_counter() - t0, peak_kb=_peak_kb() - base, particles=int(apr.n_particles),
                       cr=float(apr.computational_ratio), peak_reset=reset)
        elif mode == "apr":
            fresh = APR.from_dict(apr0.to_dict())
            base = _rss_kb()
            reset = _reset_peak()
            t0 = time.perf_counter()
            batch = APRBatch([fresh])
            prepare(batch, apr_net)
            t_tables = time.perf_counter() - t0
            hwm_tables, rss_tables = _peak_kb(), _rss_kb()
            reset = _reset_peak() and reset
            with torch.no_grad():
                t0 = time.perf_counter()
                apr_net(batch)
                t_fwd = time.perf_counter() - t0
            hwm_fwd = _peak_kb()
            out.update(tables_s=t_tables, forward_s=t_fwd, tables_peak_kb=hwm_tables - base,
                       tables_retained_kb=rss_tables - base, forward_peak_kb=hwm_fwd - rss_tables,
                       peak_kb=max(hwm_tables, hwm_fwd) - base, peak_reset=reset)
        elif mode == "pixel":
            base = _rss_kb()
            reset = _reset_peak()
            with torch.no_grad():
                t0 = time.perf_counter()
                pix_net(x)
                out.update(time_s=time.perf_counter() - t0)
            out.update(peak_kb=_peak_kb() - base, peak_reset=reset)
        elif mode == "tables":
            batch = APRBatch(aprs)
            base = _rss_kb()
            reset = _reset_peak()
            t0 = time.perf_counter()
            prepare(batch, apr_net)
            out.update(time_s=time.perf_counter() - t0, peak_kb=_peak_kb() - base, retained_kb=_rss_kb() - base,
                       peak_reset=reset, **{f"walk_{k}": v for k, v in table_bytes(batch).items()})
        elif mode == "time":
            out.update(_interleaved_times(img, x, apr_net, pix_net, spec))
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except (MemoryError, RuntimeError) as e:
        if not _is_memory_error(e, limited=bool(limit)):
            raise
        out.update(fit=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (old_soft, old_hard))
    return out


def _interleaved_times(img, x, apr_net, pix_net, spec) -> dict:
    """Rounds of (formation, tables, forward, pixel forward) in a rotating order; medians after
    ``burn_in`` rounds. The pixel pass is skipped with ``pixel=False`` and dropped (pixel_fit False)
    if it runs out of memory."""
    from aprlib.apr import APR, APRBatch, form_apr
    from aprlib.nn.prepare import prepare
    times = {"formation_s": [], "tables_s": [], "forward_s": [], "pixel_s": []}
    pixel = bool(spec.get("pixel", True))
    pixel_error = None

    def apr_side():
        t0 = time.perf_counter()
        apr = form_apr(img, **FORMATION)
        t_form = time.perf_counter() - t0
        fresh = APR.from_dict(apr.to_dict())  # not timed: a fresh object, no cached table
        t0 = time.perf_counter()
        batch = APRBatch([fresh])
        prepare(batch, apr_net)
        t_tables = time.perf_counter() - t0
        with torch.no_grad():
            t0 = time.perf_counter()
            apr_net(batch)
            t_fwd = time.perf_counter() - t0
        return {"formation_s": t_form, "tables_s": t_tables, "forward_s": t_fwd}

    def pixel_side():
        with torch.no_grad():
            t0 = time.perf_counter()
            pix_net(x)
            return {"pixel_s": time.perf_counter() - t0}

    burn_in, repeats = int(spec.get("burn_in", 1)), int(spec.get("repeats", 3))
    budget = spec.get("budget_s")
    spent = {apr_side: 0.0, pixel_side: 0.0}
    timed = {apr_side: 0, pixel_side: 0}
    for r in range(burn_in + repeats):
        sides = [apr_side, pixel_side] if r % 2 == 0 else [pixel_side, apr_side]
        for side in sides:
            if side is pixel_side and not pixel:
                continue
            if budget and spent[side] >= budget and timed[side] >= 1:
                continue  # this side has had its time (burn-in included) and one timed call at least
            t0 = time.perf_counter()
            try:
                got = side()
            except (MemoryError, RuntimeError) as e:
                limited = bool(spec.get("mem_limit_bytes"))
                if side is not pixel_side or not _is_memory_error(e, limited):
                    raise
                pixel, pixel_error = False, f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                times["pixel_s"] = []
                continue
            spent[side] += time.perf_counter() - t0
            if r >= burn_in:
                timed[side] += 1
                for k, v in got.items():
                    times[k].append(v)
    res = {k: (statistics.median(v) if v else None) for k, v in times.items()}
    res["apr_s"] = statistics.median([a + b for a, b in zip(times["tables_s"], times["forward_s"])])
    res["apr_repeats"], res["pixel_repeats"] = timed[apr_side], timed[pixel_side] if pixel else 0
    res["pixel_timed"] = pixel
    if pixel_error:
        res["pixel_error"] = pixel_error
    return res


_PRELOAD = ("aprbook.scaling", "aprlib.apr", "aprlib.ops", "aprlib.nn.prepare", "aprlib.models", "aprlib.data.synthetic",
            "aprbook.bench", "aprlib.data.nuclei", "aprbook.cost3d")


def _server() -> None:
    """A measuring server (run by :class:`_ForkServer` as its own process): imports aprlib and torch
    once, then for each JSON spec on stdin forks a child that runs :func:`_child` (or the function
    its ``call`` names, "module:function", e.g. :mod:`aprbook.cost3d`'s) and answers one
    JSON line on stdout: ``{"status": "ok", "result": ...}``, ``"error"`` with the traceback, or
    ``"died"``, with the child's ``exitcode``. It computes nothing itself (no threads to fork)."""
    import importlib
    import signal
    import traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the parent's (and the child's) to handle
    for name in _PRELOAD:
        importlib.import_module(name)
    out = sys.stdout
    for line in sys.stdin:
        if not line.strip():
            continue
        spec = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a fresh process, with the server's clean memory
            signal.signal(signal.SIGINT, signal.default_int_handler)
            os.close(r)
            os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
            try:
                fn = _child
                if spec.get("call"):  # another module's measurement ("module:function"), in the same fresh process
                    mod, _, name = spec["call"].partition(":")
                    fn = getattr(importlib.import_module(mod), name)
                msg = {"status": "ok", "result": fn(spec)}
            except BaseException:  # noqa: BLE001 - all goes back to the parent, which decides
                msg = {"status": "error", "traceback": traceback.format_exc()}
            with os.fdopen(w, "w") as f:
                f.write(json.dumps(msg))
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        try:
            reply = json.loads(data)
        except ValueError:
            reply = {"status": "died"}
        reply["exitcode"] = os.waitstatus_to_exitcode(status)
        out.write(json.dumps(reply) + "\n")
        out.flush()


class _ForkServer:
    """Parent side of :func:`_server`: every measurement runs in a process forked from a server
    that has imported aprlib and torch once, i.e. a fresh process with no memory of earlier
    measurements, without the seconds of importing torch each time."""

    def __init__(self):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])  # the aprlib this process runs, in the server too
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-c", "from aprbook.scaling import _server; _server()"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def run(self, spec: dict) -> dict:
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the measuring server stopped (exit code {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait()


_servers: dict = {}


def _run_child(spec: dict) -> dict:
    """Run one measurement in a fresh process (:class:`_ForkServer`). Running out of memory there
    (a MemoryError, an allocator error, or the process killed by SIGKILL, as the OOM killer does) is
    reported as ``fit=False`` with the error; any other failure raises RuntimeError with the
    child's traceback."""
    server = _servers.get("server")
    if server is None or server.proc.poll() is not None:
        server = _servers["server"] = _ForkServer()
        atexit.register(server.close)
    reply = server.run(spec)
    if reply["status"] == "ok":
        return reply["result"]
    if reply["status"] == "died":
        if reply["exitcode"] == -9:
            return {"mode": spec["mode"], "fit": False, "error": "killed by SIGKILL (out of memory?)"}
        raise RuntimeError(f"measurement {spec['mode']} died with exit code {reply['exitcode']}")
    last = reply["traceback"].strip().splitlines()[-1]
    if _is_memory_message(last, limited=bool(spec.get("mem_limit_bytes"))):
        return {"mode": spec["mode"], "fit": False, "error": last[:300]}
    raise RuntimeError(f"measurement {spec['mode']} failed:\n{reply['traceback'][-3000:]}")


def pixel_feature_map_bytes(size: int, network: str = "B") -> dict:
    """Bytes of Pix_<network>'s input and of every layer's output on a (1, 1, size, size) float32
    image, found by running the network on torch's ``meta`` device (no memory used): ``total`` (what
    a training step keeps for the backward pass) and ``largest`` (the largest single map; a no_grad
    forward needs at least about two of those at once)."""
    from aprlib.models import pixel_network
    net = pixel_network(network).eval().to("meta")
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size()))
             for m in net.modules() if not list(m.children())]
    try:
        x = torch.empty(1, 1, size, size, device="meta")
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    inp = x.numel() * x.element_size()
    return {"total": int(inp + sum(sizes)), "largest": int(max([inp] + sizes))}


def cost_vs_size(sizes=(256, 512, 1024, 2048, 4096, 8192), content: int = 256, objects: int = 2, seed: int = 0,
                 repeats: int = 3, burn_in: int = 1, threads: int = 1, mem_limit_gb: float = 12.0,
                 budget_s: float | None = 60.0, backend: str = "cpp", progress: bool = True,
                 pixel_max_size: int | None = None) -> pd.DataFrame:
    """One row per canvas size: formation, APR_B tables + forward and Pix_B forward, each its time
    (median of ``repeats`` interleaved rounds after ``burn_in``, one subprocess per size; a side
    whose calls at one size have taken ``budget_s`` seconds, burn-in included, is not called again
    once it has one timed call: ``apr_repeats`` and ``pixel_repeats`` say how many it had) and peak
    memory (a fresh subprocess each, under an address-space limit of ``mem_limit_gb``; a pass that
    runs out of it has ``*_fit`` False and NaN time and memory). Times in seconds, memory in MB
    (10^6 bytes), pixels per second of formation, particle and pixel counts, and Pix_B's
    feature-map memory estimate (:func:`pixel_feature_map_bytes`). Canvases larger than
    ``pixel_max_size`` (None: no limit) do not run the pixel network (``pixel_run`` False): a setting
    for machines where it would take too long, not a memory limit."""
    check_settings({"pixel_max_size": pixel_max_size, "sizes": list(sizes), "content": content, "objects": objects, "repeats": repeats,
                    "burn_in": burn_in, "threads": threads, "mem_limit_gb": mem_limit_gb, "budget_s": budget_s})
    limit = int(mem_limit_gb * 1e9) if mem_limit_gb else None
    rows = []
    for size in sorted(sizes):
        base = {"size": int(size), "content": content, "objects": objects, "seed": seed, "threads": threads,
                "backend": backend, "mem_limit_bytes": limit}
        run_pixel = pixel_max_size is None or size <= pixel_max_size
        mem = {m: _run_child({**base, "mode": m}) for m in ("formation", "apr") + (("pixel",) if run_pixel else ())}
        if not run_pixel:
            mem["pixel"] = {"fit": False, "error": f"not run: larger than pixel_max_size = {pixel_max_size}"}
        t = _run_child({**base, "mode": "time", "repeats": repeats, "burn_in": burn_in, "budget_s": budget_s,
                        "pixel": mem["pixel"]["fit"]})
        fm = pixel_feature_map_bytes(size)
        f, a, p = mem["formation"], mem["apr"], mem["pixel"]
        mb = lambda d, k: d[k] * 1024 / 1e6 if d.get("fit") and d.get(k) is not None else math.nan  # noqa: E731
        pixel_fit = bool(p["fit"] and t["fit"] and t.get("pixel_timed", False))
        tv = lambda k: t[k] if t.get("fit") and t.get(k) is not None else math.nan  # noqa: E731
        row = {
            "size": int(size), "pixels": int(size) ** 2, "particles": t.get("particles", a.get("particles")),
            "cr": t.get("cr"), "threads": threads, "repeats": repeats, "apr_repeats": t.get("apr_repeats", 0),
            "pixel_repeats": t.get("pixel_repeats", 0),
            "formation_s": tv("formation_s"), "formation_px_per_s": size ** 2 / tv("formation_s"),
            "formation_peak_mb": mb(f, "peak_kb"),
            "tables_s": tv("tables_s"), "forward_s": tv("forward_s"), "apr_s": tv("apr_s"),
            "tables_peak_mb": mb(a, "tables_peak_kb"), "tables_retained_mb": mb(a, "tables_retained_kb"),
            "forward_peak_mb": mb(a, "forward_peak_kb"), "apr_peak_mb": mb(a, "peak_kb"),
            "apr_fit": bool(a["fit"] and t["fit"]),
            "pixel_s": tv("pixel_s") if pixel_fit else math.nan, "pixel_peak_mb": mb(p, "peak_kb"),
            "pixel_fit": pixel_fit,
            "pixel_error": "" if pixel_fit else (p.get("error") or t.get("pixel_error") or t.get("error", "")),
            "pixel_featmap_mb": fm["total"] / 1e6, "pixel_largest_map_mb": fm["largest"] / 1e6,
            "mem_limit_gb": mem_limit_gb, "peak_reset": bool(f.get("peak_reset", False)), "pixel_run": run_pixel,
        }
        rows.append(row)
        if progress:
            print(_scaling_row_text(row), flush=True)
    return pd.DataFrame(rows)


def _scaling_row_text(r) -> str:
    limit = f" (address space {r['mem_limit_gb']:g} GB)" if r["mem_limit_gb"] else ""
    pix = (f"{r['pixel_s']:.3f} s (median of {r['pixel_repeats']}), peak {r['pixel_peak_mb']:.0f} MB"
           if r["pixel_fit"] else f"did not fit{limit}")
    return (f"{r['size']}^2 = {r['pixels']} px, {r['particles']} particles\n"
            f"    formation {r['formation_s']:.3f} s ({r['formation_px_per_s'] / 1e6:.1f} Mpx/s), peak "
            f"{r['formation_peak_mb']:.0f} MB\n"
            f"    APR_B tables {r['tables_s']:.3f} s + forward {r['forward_s']:.3f} s = {r['apr_s']:.3f} s (median "
            f"of {r['apr_repeats']}), peak {r['tables_peak_mb']:.0f} MB (tables) / {r['forward_peak_mb']:.0f} MB "
            f"(forward)\n"
            f"    Pix_B forward {pix}; its feature maps {r['pixel_featmap_mb']:.0f} MB")


#: The timing points of a :func:`cost_vs_size` row: (time column, column of its number of timed rounds,
#: column of the peak memory of that pass, what it times).
TIMING_POINTS = (("formation_s", "apr_repeats", "formation_peak_mb", "formation"),
                 ("tables_s", "apr_repeats", "tables_peak_mb", "APR_B tables"),
                 ("forward_s", "apr_repeats", "forward_peak_mb", "APR_B forward"),
                 ("apr_s", "apr_repeats", "apr_peak_mb", "APR_B tables + forward"),
                 ("pixel_s", "pixel_repeats", "pixel_peak_mb", "Pix_B forward"))
#: A timing point measured fewer times than this is an outlier (one slow call is no median).
MIN_REPEATS = 3
#: A timing point whose time per pixel is more than this many times the previous (smaller) canvas's,
#: without the memory limit reached, is an outlier: the canvas grows by 4x per step, so a pass that
#: follows the pixels keeps its time per pixel, and one that follows the particles lowers it.
MAX_JUMP = 4.0
#: The memory limit counts as reached when the pass's peak memory is at least this fraction of the
#: measuring process's address-space limit (a pass near it may page or fall back to slower kernels,
#: which would explain a jump).
MEMORY_FRACTION = 0.9


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def timing_outliers(df: pd.DataFrame, min_repeats: int = MIN_REPEATS, max_jump: float = MAX_JUMP,
                    memory_fraction: float = MEMORY_FRACTION) -> pd.DataFrame:
    """The outlier rule of the cost-against-size timings, applied to every measured timing point (a
    finite time of :data:`TIMING_POINTS` at a canvas size) of a :func:`cost_vs_size` table.

    A point is an **outlier** if it was timed fewer than ``min_repeats`` times (its repeats column
    says so; a table without that column is not judged on it), or if its time per pixel is more than
    ``max_jump`` times that of the previous canvas size's point of the same column that is not an
    outlier, while its pass did not reach the memory limit (peak memory below ``memory_fraction`` of
    ``mem_limit_gb``; a table without a limit or a peak never counts as reaching it). Outliers are
    left out of growth factors, ratios and fitted lines (:func:`growth_factors`) and drawn as open
    markers; they are never presented as a speed-up.

    One row per measured point, sizes ascending within each column: ``column``, ``what``, ``size``,
    ``pixels``, ``time_s``, ``repeats`` (NaN if not recorded), ``time_per_pixel``, ``jump`` (its time
    per pixel over the reference point's; NaN for the first), ``reference_size``, ``peak_mb``,
    ``memory_reached``, ``outlier``, ``reason`` (empty if not an outlier) and ``label`` (a short
    legend text, e.g. "single measurement, excluded")."""
    if min_repeats < 1 or not max_jump > 1 or not 0 < memory_fraction <= 1:
        raise ValueError(f"min_repeats={min_repeats!r}, max_jump={max_jump!r}, memory_fraction={memory_fraction!r}: "
                         "need min_repeats >= 1, max_jump > 1 and 0 < memory_fraction <= 1")
    d = df.sort_values("pixels").reset_index(drop=True)
    rows = []
    for col, rep_col, peak_col, what in TIMING_POINTS:
        if col not in d:
            continue
        ref = None  # the last point of this column that is not an outlier
        for _, r in d.iterrows():
            t = r[col]
            if not _finite(t):
                continue
            t, pixels = float(t), int(r["pixels"])
            reps = float(r[rep_col]) if rep_col in d and _finite(r[rep_col]) else math.nan
            peak = float(r[peak_col]) if peak_col in d and _finite(r[peak_col]) else math.nan
            limit = float(r["mem_limit_gb"]) if "mem_limit_gb" in d and _finite(r["mem_limit_gb"]) else math.nan
            reached = bool(math.isfinite(peak) and math.isfinite(limit) and peak >= memory_fraction * limit * 1e3)
            tpp = t / pixels
            jump = tpp / ref["time_per_pixel"] if ref is not None and ref["time_per_pixel"] > 0 else math.nan
            reasons = []
            few = math.isfinite(reps) and reps < min_repeats
            if few:
                reasons.append("measured once" if reps == 1 else
                               f"measured {int(reps)} times (fewer than {min_repeats})")
            jumped = math.isfinite(jump) and jump > max_jump and not reached
            if jumped:
                reasons.append(f"time per pixel {jump:.1f} times that at {int(ref['size'])}x{int(ref['size'])} "
                               f"(more than {max_jump:g}) with its peak memory "
                               + (f"{peak:.0f} MB, below {memory_fraction:g} of the {limit:g} GB limit"
                                  if math.isfinite(peak) and math.isfinite(limit) else "not at a memory limit"))
            outlier = few or jumped
            label = ""
            if outlier:
                label = ("single measurement, excluded" if few and reps == 1 else
                         f"{int(reps)} measurements, excluded" if few else
                         f"time per pixel x{jump:.0f}, excluded")
            row = {"column": col, "what": what, "size": int(r["size"]), "pixels": pixels, "time_s": t,
                   "repeats": reps, "time_per_pixel": tpp, "jump": jump,
                   "reference_size": int(ref["size"]) if ref is not None else None, "peak_mb": peak,
                   "memory_reached": reached, "outlier": outlier, "reason": "; ".join(reasons), "label": label}
            rows.append(row)
            if not outlier:
                ref = row
    cols = ["column", "what", "size", "pixels", "time_s", "repeats", "time_per_pixel", "jump", "reference_size",
            "peak_mb", "memory_reached", "outlier", "reason", "label"]
    return pd.DataFrame(rows, columns=cols)


def growth_factors(df: pd.DataFrame, exclude_outliers: bool = True, **rule) -> dict:
    """Growth from the smallest to the largest canvas of a :func:`cost_vs_size` table: particles and
    pixels; per time column (formation, tables, forward, tables + forward ``apr_s``) the growth from
    its first to its last kept point (``spans``: column -> (from size, to size), None with fewer than
    two kept points, the growth then NaN); the Pix_B forward time from the first to the last canvas it
    fitted on (``pixel_from_size``, ``pixel_to_size``, ``pixel_s``, ``pixel_pixels``). With
    ``exclude_outliers`` (the default) the points :func:`timing_outliers` flags (``rule``: its keyword
    arguments) are not kept; ``excluded`` lists them (rows of that table as dicts).
    ``criterion_holds``: tables + forward grew at most twice as much as the particle count over the
    same span (the issue's criterion; reported, not asserted); None when it has no span."""
    d = df.sort_values("pixels").reset_index(drop=True)
    if len(d) < 2:
        raise ValueError("growth needs at least two canvas sizes")
    flags = timing_outliers(d, **rule) if exclude_outliers else timing_outliers(d).iloc[:0]
    out = flags[flags.outlier]
    dropped = {(c, s) for c, s in zip(out.column, out["size"])}
    a, b = d.iloc[0], d.iloc[-1]
    g = {"from_size": int(a["size"]), "to_size": int(b["size"]),
         "particles": float(b["particles"]) / float(a["particles"]), "pixels": float(b["pixels"]) / float(a["pixels"])}
    spans = {}

    def kept(col, extra=None):
        ok = [i for i, r in d.iterrows() if _finite(r.get(col)) and (col, int(r["size"])) not in dropped
              and (extra is None or extra(r))]
        return d.loc[ok]

    for col in ("formation_s", "tables_s", "forward_s", "apr_s"):
        k = kept(col)
        if len(k) >= 2:
            g[col] = float(k[col].iloc[-1]) / float(k[col].iloc[0])
            spans[col] = (int(k["size"].iloc[0]), int(k["size"].iloc[-1]))
        else:
            g[col], spans[col] = math.nan, None
    g["spans"] = spans
    fit = kept("pixel_s", lambda r: bool(r["pixel_fit"])) if "pixel_fit" in d else d.iloc[:0]
    if len(fit) >= 2:
        g.update(pixel_from_size=int(fit["size"].iloc[0]), pixel_to_size=int(fit["size"].iloc[-1]),
                 pixel_s=float(fit.pixel_s.iloc[-1] / fit.pixel_s.iloc[0]),
                 pixel_pixels=float(fit.pixels.iloc[-1] / fit.pixels.iloc[0]))
    else:
        g.update(pixel_from_size=None, pixel_to_size=None, pixel_s=math.nan, pixel_pixels=math.nan)
    if spans["apr_s"] is not None:
        lo, hi = (d[d["size"] == s].iloc[0] for s in spans["apr_s"])
        g["criterion_particles"] = float(hi["particles"]) / float(lo["particles"])
        g["criterion_holds"] = bool(g["apr_s"] <= 2 * g["criterion_particles"])
    else:
        g["criterion_particles"], g["criterion_holds"] = math.nan, None
    g["excluded"] = out.to_dict("records")
    return g


def _times(v: float, digits: int = 1) -> str:
    return f"x{v:.{digits}f}" if _finite(v) else "not given (fewer than two kept points)"


def scaling_text(df: pd.DataFrame) -> str:
    g = growth_factors(df)
    lines = [f"growth from {g['from_size']}^2 to {g['to_size']}^2: particles x{g['particles']:.2f}, pixels "
             f"x{g['pixels']:.0f}, formation time {_times(g['formation_s'])}, tables {_times(g['tables_s'])}, forward "
             f"{_times(g['forward_s'], 2)}, tables + forward {_times(g['apr_s'])}"]
    moved = [f"{c} from {s[0]}^2 to {s[1]}^2" for c, s in g["spans"].items()
             if s is not None and s != (g["from_size"], g["to_size"])]
    if moved:
        lines.append("(over the kept points only: " + ", ".join(moved) + ")")
    if g["pixel_to_size"]:
        lines.append(f"Pix_B forward time x{g['pixel_s']:.1f} from {g['pixel_from_size']}^2 to {g['pixel_to_size']}^2 "
                     f"(pixels x{g['pixel_pixels']:.0f})")
    for e in g["excluded"]:
        reps = f"{int(e['repeats'])} timed" if _finite(e["repeats"]) else "timed"
        lines.append(f"excluded (outlier rule, aprbook.scaling.timing_outliers): {e['what']} at {e['size']}^2, "
                     f"{e['time_s']:.4g} s ({reps}): {e['reason']}")
    ran = df.pixel_run.astype(bool) if "pixel_run" in df else df.pixel_fit.astype(bool) | True
    skipped = df[~ran]
    if len(skipped):
        lines.append("Pix_B forward not run at " + ", ".join(f"{s}^2" for s in skipped["size"]) +
                     " (larger than the profile's pixel_max_size)")
    no = df[ran & ~df.pixel_fit.astype(bool)]
    if len(no):
        limit = no.mem_limit_gb.iloc[0] if "mem_limit_gb" in no else None
        lines.append("Pix_B forward did not fit at " + ", ".join(f"{s}^2" for s in no["size"]) +
                     (f" (address space limited to {limit:g} GB)" if limit else ""))
    if g["criterion_holds"] is None:
        lines.append("criterion (tables + forward grow at most 2x the particle count's growth): NOT JUDGED "
                     "(fewer than two kept timing points)")
    else:
        lines.append(f"criterion (tables + forward grow at most 2x the particle count's growth, x"
                     f"{2 * g['criterion_particles']:.2f}): {'HOLDS' if g['criterion_holds'] else 'DOES NOT HOLD'} "
                     f"(x{g['apr_s']:.1f})")
    return "\n".join(lines)


# --- the end-to-end streamed training step -------------------------------------------------------------
CHANNELS_LAST = "Pix_B channels-last"  # the network name of step rounds with PixelNet(channels_last=True)


def training_step(batch_size: int = SYNTHETIC_BATCH_SIZE, size: int = 256, threads=(1, 2), repeats: int = 5,
                  burn_in: int = 1, seed: int = 0, backend: str = "cpp", lr: float = SYNTHETIC_LR,
                  progress: bool = True, channels_last: bool = False) -> pd.DataFrame:
    """Streamed training steps, images in: APR_B (form the APRs, build the tables, forward, cross
    entropy, backward, Adam) and Pix_B (forward, cross entropy, backward, Adam on the image tensor),
    on ``batch_size`` synthetic ``size``x``size`` images, a new batch per round, every side on the
    same batch. With ``channels_last`` a third side, "Pix_B channels-last", is the same pixel network
    in torch's channels-last layout (:class:`aprlib.models.PixelNet`). Rounds rotate the sides' order
    and run each thread count in turn; the first ``burn_in`` rounds are dropped. One row per (round,
    threads, network), times in seconds."""
    import torch.nn.functional as F
    from aprlib.apr import APRBatch, form_apr
    from aprlib.data.synthetic import generate_batch
    from aprlib.models import apr_network, pixel_network
    from aprlib.nn.prepare import prepare
    from .bench import threads as n_threads
    check_settings({"step_batch_size": batch_size, "step_size": size, "step_threads": list(threads),
                    "step_repeats": repeats, "step_burn_in": burn_in})
    torch.manual_seed(seed)
    apr_net, pix_net = apr_network("B", backend=backend).train(), pixel_network("B").train()
    apr_opt, pix_opt = torch.optim.Adam(apr_net.parameters(), lr), torch.optim.Adam(pix_net.parameters(), lr)
    if channels_last:
        cl_net = pixel_network("B", channels_last=True).train()
        cl_net.load_state_dict(pix_net.state_dict())
        cl_opt = torch.optim.Adam(cl_net.parameters(), lr)
    batches = [generate_batch(batch_size, seed=seed + 1 + r, size=(size, size)) for r in range(burn_in + repeats)]

    def apr_step(imgs, y):
        t0 = time.perf_counter()
        aprs = [form_apr(im, **FORMATION) for im in imgs]
        t1 = time.perf_counter()
        batch = APRBatch(aprs)
        prepare(batch, apr_net)
        t2 = time.perf_counter()
        loss = F.cross_entropy(apr_net(batch), y)
        apr_opt.zero_grad()
        loss.backward()
        apr_opt.step()
        t3 = time.perf_counter()
        return {"formation_s": t1 - t0, "tables_s": t2 - t1, "network_s": t3 - t2, "step_s": t3 - t0,
                "particles": batch.n_particles}

    def pixel_step(net, opt):
        def step(imgs, y):
            t0 = time.perf_counter()
            loss = F.cross_entropy(net(torch.from_numpy(imgs)[:, None]), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t1 = time.perf_counter()
            return {"formation_s": 0.0, "tables_s": 0.0, "network_s": t1 - t0, "step_s": t1 - t0,
                    "particles": imgs[0].size * len(imgs)}
        return step

    all_sides = [("APR_B", apr_step), ("Pix_B", pixel_step(pix_net, pix_opt))]
    if channels_last:
        all_sides.append((CHANNELS_LAST, pixel_step(cl_net, cl_opt)))
    rows = []
    for r, (imgs, labels) in enumerate(batches):
        y = torch.as_tensor(labels)
        for j, nt in enumerate(threads):
            k = (r + j) % len(all_sides)  # each side leads in turn
            sides = all_sides[k:] + all_sides[:k]
            with n_threads(nt):
                for name, step in sides:
                    got = step(imgs, y)
                    if r >= burn_in:
                        rows.append({"round": r - burn_in, "threads": nt, "network": name, "batch_size": batch_size,
                                     "size": size, **got})
        if progress and r >= burn_in:
            done = [x for x in rows if x["round"] == r - burn_in]
            print(f"round {r - burn_in + 1}/{repeats}: " + ", ".join(
                f"{x['network']} {x['threads']} thr {x['step_s']:.3f} s" for x in done), flush=True)
    return pd.DataFrame(rows)


def step_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per thread count: median APR_B and Pix_B step times, the ratio pixel / APR (of the medians;
    above 1: the APR step is faster), the median breakdown of the APR step and whether this thread
    count was slower than the previous (smaller) one for either network. With rounds of the
    channels-last pixel network also its median and the ratios Pix_B / Pix_B channels-last and
    Pix_B channels-last / APR_B."""
    med = df.groupby(["threads", "network"])[["formation_s", "tables_s", "network_s", "step_s"]].median()
    rows = []
    for nt in sorted(df.threads.unique()):
        a, p = med.loc[(nt, "APR_B")], med.loc[(nt, "Pix_B")]
        row = {"threads": int(nt), "apr_step_s": a.step_s, "pixel_step_s": p.step_s,
               "ratio_pixel_over_apr": p.step_s / a.step_s, "apr_formation_s": a.formation_s,
               "apr_tables_s": a.tables_s, "apr_network_s": a.network_s,
               "repeats": int(df[(df.threads == nt) & (df.network == "APR_B")].shape[0])}
        if (nt, CHANNELS_LAST) in med.index:
            c = med.loc[(nt, CHANNELS_LAST)].step_s
            row.update({"pixel_cl_step_s": c, "ratio_pixel_over_pixel_cl": p.step_s / c,
                        "ratio_pixel_cl_over_apr": c / a.step_s})
        rows.append(row)
    out = pd.DataFrame(rows)
    out["apr_slower_than_fewer_threads"] = out.apr_step_s.diff() > 0
    out["pixel_slower_than_fewer_threads"] = out.pixel_step_s.diff() > 0
    return out


def step_text(summary: pd.DataFrame, batch_size: int, size: int) -> str:
    lines = []
    for r in summary.itertuples():
        lines.append(f"{r.threads} thread{'s' if r.threads > 1 else ''}: APR_B step {r.apr_step_s:.3f} s (formation "
                     f"{r.apr_formation_s:.3f} + tables {r.apr_tables_s:.3f} + network {r.apr_network_s:.3f}), Pix_B "
                     f"step {r.pixel_step_s:.3f} s -> pixel / APR x{r.ratio_pixel_over_apr:.2f} "
                     f"(medians of {r.repeats}, batch {batch_size} of {size}x{size})")
        if "pixel_cl_step_s" in summary:
            lines.append(f"   Pix_B channels-last step {r.pixel_cl_step_s:.3f} s -> Pix_B / Pix_B channels-last "
                         f"x{r.ratio_pixel_over_pixel_cl:.2f}, Pix_B channels-last / APR x{r.ratio_pixel_cl_over_apr:.2f}")
    for r in summary.iloc[1:].itertuples():
        prev = summary.threads[summary.index.get_loc(r.Index) - 1]
        for net, slower in (("APR_B", r.apr_slower_than_fewer_threads), ("Pix_B", r.pixel_slower_than_fewer_threads)):
            lines.append(f"{net}: {r.threads} threads {'SLOWER' if slower else 'not slower'} than {prev}")
    return "\n".join(lines)


# --- memory of the index tables ----------------------------------------------------------------------
def _buffer(obj):
    """(address, bytes) of the memory block under a numpy array or torch tensor, or None."""
    if isinstance(obj, np.ndarray):
        root = obj
        while isinstance(root.base, np.ndarray):
            root = root.base
        return root.__array_interface__["data"][0], int(root.nbytes)
    if isinstance(obj, torch.Tensor):
        if obj.device.type == "meta" or obj.is_sparse:
            return None
        st = obj.untyped_storage()
        return st.data_ptr(), int(st.nbytes())
    return None


_SCALARS = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic, torch.dtype, torch.device)
_NOT_DATA = (type, type(os), types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def _walk(obj, seen_ids: set, buffers: dict) -> None:
    """Add the memory blocks of every array and tensor reachable from ``obj`` (through dicts,
    sequences, sets and object attributes) to ``buffers`` (address -> bytes; an address already
    there with None is excluded)."""
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, _SCALARS + _NOT_DATA) or id(o) in seen_ids:
            continue
        seen_ids.add(id(o))
        buf = _buffer(o)
        if buf is not None:
            addr, size = buf
            if addr not in buffers:
                buffers[addr] = size
            elif buffers[addr] is not None:  # the same block again (e.g. a view): count its largest extent once
                buffers[addr] = max(buffers[addr], size)
            continue
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        else:
            if hasattr(o, "__dict__"):
                stack.extend(vars(o).values())
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    if hasattr(o, name):
                        stack.append(getattr(o, name))


def table_bytes(batch) -> dict:
    """Bytes retained by the index tables built on ``batch`` (after ``aprlib.nn.prepare.prepare``): every
    numpy array and torch tensor reachable from the attributes of the batch and of each of its APRs
    that a newly made batch or APR does not have (their caches), counted once per memory block
    (arrays and tensors sharing memory, views included, count once), and never the APRs' own
    structure and intensities or the batch's own offsets. Returns ``bytes`` and ``n_buffers``."""
    from aprlib.apr import APR, APRBatch
    aprs = list(batch.aprs)
    # what an APR and a batch hold before any table is built, less their (then empty) table caches
    own_apr = set(vars(APR.from_dict(aprs[0].to_dict()))) - {"_tables"}
    own_batch = set(vars(APRBatch(aprs[:1]))) - {"_tables"}
    seen_ids = {id(a) for a in aprs} | {id(batch)}
    buffers: dict = {}
    for o in [batch] + aprs:  # the own structure: its memory is never counted, even if a cache refers to it
        own = own_batch if o is batch else own_apr
        for name, v in vars(o).items():
            if name in own and name != "aprs":
                for x in ([v] if not isinstance(v, (list, tuple)) else v):
                    b = _buffer(x)
                    if b is not None:
                        buffers[b[0]] = None
                seen_ids.add(id(v))
    for o in [batch] + aprs:
        own = own_batch if o is batch else own_apr
        for name, v in vars(o).items():
            if name not in own:
                _walk(v, seen_ids, buffers)
    counted = [s for s in buffers.values() if s is not None]
    return {"bytes": int(sum(counted)), "n_buffers": len(counted)}


def table_memory(batch_size: int = SYNTHETIC_BATCH_SIZE, size: int = 256, seed: int = 0, backend: str = "cpp",
                 mem_limit_gb: float | None = None) -> dict:
    """In a fresh subprocess: APR_B's index tables of one batch of ``batch_size`` synthetic
    ``size``x``size`` images. ``retained_bytes`` (:func:`table_bytes`: the bytes the tables keep),
    ``rss_peak_bytes`` (RSS high-water mark of ``prepare`` above the memory held before it),
    ``rss_retained_bytes`` (RSS after it, above the same), ``prepare_s``, the particle and pixel
    counts and the retained bytes per particle."""
    check_settings({"tables_batch_size": batch_size, "tables_size": size})
    r = _run_child({"mode": "tables", "batch_size": batch_size, "size": size, "seed": seed, "threads": 1,
                    "backend": backend, "mem_limit_bytes": int(mem_limit_gb * 1e9) if mem_limit_gb else None})
    if not r["fit"]:
        return {"batch_size": batch_size, "size": size, "fit": False, "error": r.get("error", "")}
    return {"batch_size": batch_size, "size": size, "fit": True, "particles": r["particles"], "pixels": r["pixels"],
            "prepare_s": r["time_s"], "retained_bytes": r["walk_bytes"], "n_buffers": r["walk_n_buffers"],
            "rss_peak_bytes": r["peak_kb"] * 1024, "rss_retained_bytes": r["retained_kb"] * 1024,
            "retained_bytes_per_particle": r["walk_bytes"] / r["particles"],
            "retained_bytes_per_pixel": r["walk_bytes"] / r["pixels"], "peak_reset": r["peak_reset"]}


def tables_text(r: dict) -> str:
    if not r["fit"]:
        return f"tables of a batch of {r['batch_size']} did not fit: {r['error']}"
    return (f"APR_B tables of one batch of {r['batch_size']} {r['size']}x{r['size']} images ({r['particles']} "
            f"particles, {r['pixels']} pixels): retained {r['retained_bytes'] / 1e6:.1f} MB in {r['n_buffers']} "
            f"buffers ({r['retained_bytes_per_particle']:.0f} B per particle, {r['retained_bytes_per_pixel']:.1f} "
            f"B per pixel); prepare's RSS high-water mark +{r['rss_peak_bytes'] / 1e6:.1f} MB, RSS after it "
            f"+{r['rss_retained_bytes'] / 1e6:.1f} MB; prepare took {r['prepare_s']:.2f} s")


# --- settings (profiles and command line) ------------------------------------------------------------
_POSITIVE = ("content", "repeats", "threads", "step_batch_size", "step_size", "step_repeats",
             "tables_batch_size", "tables_size")
_MIN_SIZE = 32  # APR_B and Pix_B pool five times


def check_settings(cfg: dict) -> None:
    """ValueError naming the first setting of a cost-scaling configuration (a profile entry or the
    command line's options) that the benchmarks cannot use."""
    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)
    for k in _POSITIVE:
        if k in cfg and (not is_int(cfg[k]) or cfg[k] < 1):
            raise ValueError(f"setting {k}={cfg[k]!r}: must be a positive integer")
    for k in ("burn_in", "step_burn_in", "objects"):
        if k in cfg and (not is_int(cfg[k]) or cfg[k] < 0):
            raise ValueError(f"setting {k}={cfg[k]!r}: must be an integer >= 0")
    if "objects" in cfg and cfg["objects"] > 4:
        raise ValueError(f"setting objects={cfg['objects']!r}: at most 4 objects fit the content patch")
    if "sizes" in cfg:
        sizes = cfg["sizes"]
        if not isinstance(sizes, (list, tuple)) or len(sizes) < 2 or not all(is_int(s) for s in sizes):
            raise ValueError(f"setting sizes={sizes!r}: must be at least two integer canvas sizes")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"setting sizes={sizes!r}: repeated sizes")
        small = [s for s in sizes if s < max(_MIN_SIZE, cfg.get("content", 0))]
        if small:
            raise ValueError(f"setting sizes={sizes!r}: {small} smaller than the content patch "
                             f"({cfg.get('content')} pixels) or than {_MIN_SIZE}")
    for k in ("step_size", "tables_size"):
        if k in cfg and is_int(cfg[k]) and cfg[k] < _MIN_SIZE:
            raise ValueError(f"setting {k}={cfg[k]!r}: images must be at least {_MIN_SIZE} pixels")
    if "step_threads" in cfg:
        t = cfg["step_threads"]
        if not isinstance(t, (list, tuple)) or not t or not all(is_int(x) and x >= 1 for x in t):
            raise ValueError(f"setting step_threads={t!r}: must be a list of positive thread counts")
    if "budget_s" in cfg:
        v = cfg["budget_s"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
            raise ValueError(f"setting budget_s={v!r}: must be None (no budget) or a positive number of seconds")
    if cfg.get("pixel_max_size") is not None and (not is_int(cfg["pixel_max_size"]) or cfg["pixel_max_size"] < _MIN_SIZE):
        raise ValueError(f"setting pixel_max_size={cfg['pixel_max_size']!r}: must be None or a canvas size >= {_MIN_SIZE}")
    if "step_channels_last" in cfg and not isinstance(cfg["step_channels_last"], bool):
        raise ValueError(f"setting step_channels_last={cfg['step_channels_last']!r}: must be True or False")
    if "mem_limit_gb" in cfg:
        v = cfg["mem_limit_gb"]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0.1):
            raise ValueError(f"setting mem_limit_gb={v!r}: must be None (no limit) or a number of GB above 0.1")


def cost_scaling(cfg: dict, seed: int = 0, progress: bool = False) -> dict:
    """All three measurements of a ``cost_scaling`` profile entry (``aprbook.profiles``):
    ``scaling`` (:func:`cost_vs_size`), ``training_step`` (:func:`training_step`, one row per round;
    with ``step_channels_last`` the channels-last pixel network too) and ``table_memory`` (one row,
    :func:`table_memory`). The content patch and the step's images derive from ``seed``."""
    check_settings(cfg)
    scaling = cost_vs_size(cfg["sizes"], cfg["content"], cfg["objects"], seed, cfg["repeats"], cfg["burn_in"],
                           cfg["threads"], cfg["mem_limit_gb"], cfg["budget_s"], progress=progress,
                           pixel_max_size=cfg.get("pixel_max_size"))
    steps = training_step(cfg["step_batch_size"], cfg["step_size"], cfg["step_threads"], cfg["step_repeats"],
                          cfg["step_burn_in"], seed=seed, progress=progress,
                          channels_last=cfg.get("step_channels_last", False))
    tables = table_memory(cfg["tables_batch_size"], cfg["tables_size"], seed=seed)
    return {"scaling": scaling, "training_step": steps, "table_memory": pd.DataFrame([tables])}

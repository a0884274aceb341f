"""3D cost, measured: forming the APR of a volume, APR convolution forward + backward and its
memory, against pyapr and against ``F.conv3d`` on the voxel volume, as functions of volume size and
compression ratio (``python -m aprbook.bench cost3d``; notebook ``02a_cost_3d``).

Volumes: synthetic nuclei (:func:`aprlib.data.nuclei.sparse_volume`) imaged with little noise
(:data:`NUCLEI_3D`: ``photon_scale=2000, read_noise=0.003``), one volume per (size, setting).

**How the compression ratio is varied (the rule, fixed before any result).** A profile lists
``settings``, each a number of nuclei ``n_objects`` and the APR's ``sigma_th`` (in intensity units:
the background is 0.1, a nucleus adds 0.4 ... 1.0 before blur); every setting runs at every volume
size, with E = 0.1 and lambda = 3 (:data:`FORMATION_3D`, as ``benchmarks/bench_formation3d.py``).
The book's three settings are: 8 nuclei at ``sigma_th = 0.02`` (particles resolve much of the
background noise: low CR), 8 nuclei at ``sigma_th = 0.05`` (the generator author's setting, CR about
38 at 256^3) and 1 nucleus at ``sigma_th = 0.1`` (sparse content, noise not resolved: high CR).
The content is the same number of nuclei at every size, so CR grows with the size at each setting
(as in the 2D cost-against-size study, :mod:`aprbook.scaling`). CR is measured, never set:
CR = voxels / particles.

Per volume size, in fresh processes forked from :mod:`aprbook.scaling`'s measuring server (no
memory of earlier measurements; address space limited to ``mem_limit_gb``; one thread:
``torch.set_num_threads``, ``aprlib._core.set_num_threads`` and ``OMP_NUM_THREADS`` for pyapr):

(a) **formation**: ``aprlib.form_apr(volume, ndim=3)`` (the full APR: cells, means and tree) against
    ``pyapr.converter.get_apr`` (if importable; else NaN) with the same parameters (pyapr's
    automatic parameters off, ``sigma_th_max = grad_th = Ip_th = 0``), one warm-up call each, then
    ``formation_repeats`` rounds, the two alternating their order; medians, the ratio
    ``pyapr_s / ours_s`` (>= 1: ours at least as fast) and the fraction of voxels at the same level
    in both APRs (``same_level``); and, beside them, our particle cells and means alone
    (``ours_cells_s``: ``form_volume_cells``, without the tree that ``form_apr`` builds);
(b) **convolution**: ``APRConv3d(C, C, k, n_level_kernels=1, backend="cpp")`` forward + backward
    (gradients of input, weight and bias) on (N, C) random features, against ``F.conv3d`` forward +
    backward (padding k // 2, with bias) on a (1, C, Z, Y, X) random tensor; the index tables are
    built before timing (``aprlib.nn.prepare.prepare``) and their build time, on a fresh copy of the
    APR each round, is reported separately (``tables_s``). The dense side does not depend on the
    content, so one dense call per round serves every setting of that size: each round calls the
    dense side and each setting's APR side in an order rotated by one every round, after ``burn_in``
    untimed rounds; medians of ``repeats`` rounds. ``speedup = dense_s / apr_s`` (the medians of the
    forward + backward sums) and ``speedup_over_cr = speedup / CR``;
(c) **memory**: the RSS high-water mark of one forward + backward above the RSS held just before
    (inputs, weights and, for the APR, its tables already built), each side in its own fresh process
    (``apr_peak_mb``, ``dense_peak_mb``; MB = 10^6 bytes; where the dense tensor reaches 2^31 bytes,
    at which oneDNN computes the weight gradient with its reference kernel, hundreds of times slower,
    the dense side runs ``F.conv3d`` on slabs along Z with halos, the same outputs: ``dense_slabs``
    > 1, :func:`dense_slabs`), the tables' build peak and retained RSS, and
    the bytes the APR's tables keep (:func:`aprbook.scaling.table_bytes`) and its features hold
    (N x C float32). A pass that does not fit under the address-space limit (or is killed) is recorded
    with ``*_fit`` False and its reason, and its times are NaN: nothing crashes.

:func:`criteria` judges the issue's claims by rules stated there (before the results), and
:func:`cost3d_text` prints the ratios. Nothing here asserts a speed.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import resource
import statistics
import time

import numpy as np
import pandas as pd
import torch

__all__ = ["FORMATION_3D", "NUCLEI_3D", "check_settings", "nuclei_volume", "same_level_fraction", "cost_3d",
           "cost3d_text", "criteria", "FORMATION_SIZES", "CR_MIN", "SPEEDUP_PER_CR", "MEMORY_SPREAD",
           "MEMORY_MIN_PARTICLES", "DENSE_TENSOR_LIMIT", "dense_slabs", "EXPERIMENT", "NOTEBOOK", "device_text", "store_for",
           "compute_and_store", "load_tables"]

#: E and lambda of every 3D APR here (``sigma_th`` comes from the setting).
FORMATION_3D = {"rel_error": 0.1, "gradient_smoothing": 3.0}
#: The imaging of the nuclei volumes (aprlib.data.nuclei.NucleiParams fields).
NUCLEI_3D = {"photon_scale": 2000.0, "read_noise": 0.003}

# --- the criteria (the issue's claims), fixed before the results ------------------------------------
#: Formation is judged at these sizes (pyapr at least as fast would fail it).
FORMATION_SIZES = (128, 256)
#: Convolution is judged on the cases of at least this CR ...
CR_MIN = 20.0
#: ... where the speed-up must be at least this times CR.
SPEEDUP_PER_CR = 0.5
#: Memory follows a count when its bytes per unit (particle, voxel) vary by at most this factor (max / min)
#: over the cases judged ...
MEMORY_SPREAD = 2.0
#: ... which are those with at least this many particles (APR) or voxels (dense): below, fixed
#: overheads (allocator pages, library workspaces) dominate a pass of a few MB.
MEMORY_MIN_PARTICLES = 50_000


# --- settings -----------------------------------------------------------------------------------------
_MIN_SIZE = 8


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def check_settings(cfg: dict) -> None:
    """ValueError naming the first setting of a ``cost_3d`` configuration (a profile entry or the
    command line's options) that the benchmark cannot use."""
    for k in ("channels", "kernel", "repeats", "formation_repeats", "threads"):
        if k in cfg and (not _is_int(cfg[k]) or cfg[k] < 1):
            raise ValueError(f"setting {k}={cfg[k]!r}: must be a positive integer")
    if "kernel" in cfg and cfg["kernel"] % 2 == 0:
        raise ValueError(f"setting kernel={cfg['kernel']!r}: must be odd")
    if "burn_in" in cfg and (not _is_int(cfg["burn_in"]) or cfg["burn_in"] < 0):
        raise ValueError(f"setting burn_in={cfg['burn_in']!r}: must be an integer >= 0")
    if "sizes" in cfg:
        sizes = cfg["sizes"]
        if not isinstance(sizes, (list, tuple)) or not sizes or not all(_is_int(s) for s in sizes):
            raise ValueError(f"setting sizes={sizes!r}: must be a list of integer volume sides")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"setting sizes={sizes!r}: repeated sizes")
        small = [s for s in sizes if s < _MIN_SIZE]
        if small:
            raise ValueError(f"setting sizes={sizes!r}: {small} smaller than {_MIN_SIZE} voxels")
    if "settings" in cfg:
        st = cfg["settings"]
        if not isinstance(st, (list, tuple)) or not st:
            raise ValueError(f"setting settings={st!r}: must be a non-empty list of {{n_objects, sigma_th}}")
        for s in st:
            if not isinstance(s, dict) or set(s) != {"n_objects", "sigma_th"}:
                raise ValueError(f"setting settings: {s!r} must be a dict with exactly n_objects and sigma_th")
            if not _is_int(s["n_objects"]) or s["n_objects"] < 0:
                raise ValueError(f"setting settings: n_objects={s['n_objects']!r} must be an integer >= 0")
            if not _is_num(s["sigma_th"]) or not s["sigma_th"] > 0 or not math.isfinite(s["sigma_th"]):
                raise ValueError(f"setting settings: sigma_th={s['sigma_th']!r} must be a positive number")
        keys = [(s["n_objects"], float(s["sigma_th"])) for s in st]
        if len(set(keys)) != len(keys):
            raise ValueError(f"setting settings={st!r}: repeated settings")
    if cfg.get("radius_range") is not None:
        r = cfg["radius_range"]
        if (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(_is_num(v) for v in r)
                or not 0 < r[0] <= r[1]):
            raise ValueError(f"setting radius_range={r!r}: must be None or [low, high] with 0 < low <= high")
    if "mem_limit_gb" in cfg:
        v = cfg["mem_limit_gb"]
        if v is not None and (not _is_num(v) or not v > 0.1):
            raise ValueError(f"setting mem_limit_gb={v!r}: must be None (no limit) or a number of GB above 0.1")


# --- volumes and formation ------------------------------------------------------------------------------
def nuclei_volume(size: int, n_objects: int, seed=0, radius_range=None) -> np.ndarray:
    """(size, size, size) float32 nuclei volume of :data:`NUCLEI_3D` (``radius_range``: the nuclei's
    largest semi-axis range, None: the generator's default 6 ... 12 voxels)."""
    from dataclasses import replace

    from aprlib.data.nuclei import NucleiParams, sparse_volume
    params = NucleiParams(**NUCLEI_3D)
    if radius_range is not None:
        params = replace(params, radius_range=tuple(float(v) for v in radius_range))
    return sparse_volume((size, size, size), n_objects, seed=seed, params=params).image


def _ours(vol, sigma_th):
    from aprlib.apr import form_apr
    return form_apr(vol, ndim=3, sigma_th=float(sigma_th), **FORMATION_3D)


def _ours_cells(vol, sigma_th):
    """The particle cells and their means alone (what ``benchmarks/bench_formation3d.py`` times), without
    the APR's tree."""
    from aprlib.apr.formation import form_volume_cells
    return form_volume_cells(vol, sigma_th=float(sigma_th), **FORMATION_3D)


def _import_pyapr():
    try:
        import pyapr
    except ImportError:
        return None
    return pyapr


def _pyapr_former(pyapr, vol, sigma_th):
    par = pyapr.APRParameters()
    par.auto_parameters = False
    par.rel_error, par.gradient_smoothing = FORMATION_3D["rel_error"], FORMATION_3D["gradient_smoothing"]
    par.sigma_th = float(sigma_th)
    par.sigma_th_max = par.grad_th = par.Ip_th = 0.0

    def theirs():
        with contextlib.redirect_stdout(io.StringIO()):
            return pyapr.converter.get_apr(vol, params=par)
    return theirs


def same_level_fraction(apr, pyapr_apr) -> float:
    """Fraction of voxels whose particle cell has the same level in our APR and in pyapr's."""
    import pyapr
    ours = np.asarray(apr.level_map())
    theirs = np.asarray(pyapr.reconstruction.reconstruct_level(pyapr_apr))
    return float((ours == theirs).mean())


# --- the measuring children (run in processes forked by aprbook.scaling's server) --------------------------
def _conv_parts(apr, channels: int, kernel: int, seed: int):
    """(batch with tables, conv, features x) for the APR side."""
    from aprlib.apr import APR, APRBatch
    from aprlib.nn.layers import APRConv3d
    from aprlib.nn.prepare import prepare
    torch.manual_seed(seed)
    conv = APRConv3d(channels, channels, kernel, n_level_kernels=1, backend="cpp")
    batch = APRBatch([APR.from_dict(apr.to_dict())])
    prepare(batch, conv, in_channels=channels)
    x = torch.randn(apr.n_particles, channels, requires_grad=True)
    return batch, conv, x


def _apr_pass(batch, conv, x):
    """(forward s, backward s) of one APR forward + backward."""
    from aprlib.nn.layers import APRFeatures
    t0 = time.perf_counter()
    out = conv(APRFeatures(x, batch)).features
    t1 = time.perf_counter()
    torch.autograd.grad(out, [x] + list(conv.parameters()), torch.ones_like(out))
    return t1 - t0, time.perf_counter() - t1


def _dense_parts(size: int, channels: int, kernel: int, seed: int):
    torch.manual_seed(seed)
    x = torch.randn(1, channels, size, size, size, requires_grad=True)
    w = (torch.randn(channels, channels, kernel, kernel, kernel) * 0.05).requires_grad_()
    b = torch.zeros(channels, requires_grad=True)
    return x, w, b


#: oneDNN (torch's CPU convolutions; 3.x as bundled with torch here) computes the weight gradient of a 3D
#: convolution with its reference kernel, scalar loops hundreds of times slower, once the (1, C, Z, Y, X)
#: float32 tensor has 2**31 bytes or more (measured: 1 x 32 x 255 x 256 x 256 jit, 1 x 32 x 256^3 ref).
DENSE_TENSOR_LIMIT = 2 ** 31


def dense_slabs(size: int, channels: int, kernel: int) -> int:
    """Slabs along Z the dense side runs in: 1 (the whole volume) while the (1, C, Z, Y, X) float32
    tensor is below :data:`DENSE_TENSOR_LIMIT` bytes, else the fewest slabs (each with a halo of
    ``kernel // 2`` planes) whose tensors are below it."""
    halo, plane = kernel // 2, channels * size * size * 4
    if plane * size < DENSE_TENSOR_LIMIT:
        return 1
    n = 2
    while plane * (math.ceil(size / n) + 2 * halo) >= DENSE_TENSOR_LIMIT:
        n += 1
    return n


def _dense_pass(x, w, b, slabs: int = 1):
    """(forward s, backward s) of F.conv3d (zero padding k // 2) forward + backward on ``x`` (1, C, Z, Y, X);
    with ``slabs`` > 1, on that many slabs along Z, each with its halo planes (zeros beyond the volume):
    the same outputs and the same arithmetic (plus the halos), each tensor below DENSE_TENSOR_LIMIT bytes."""
    import torch.nn.functional as F
    h = w.shape[-1] // 2
    if slabs == 1:
        t0 = time.perf_counter()
        out = F.conv3d(x, w, b, padding=h)
        t1 = time.perf_counter()
        torch.autograd.grad(out, [x, w, b], torch.ones_like(out))
        return t1 - t0, time.perf_counter() - t1
    Z = x.shape[2]
    step = math.ceil(Z / slabs)
    t_f = t_b = 0.0
    for z0 in range(0, Z, step):
        z1 = min(Z, z0 + step)
        lo, hi = max(0, z0 - h), min(Z, z1 + h)
        t0 = time.perf_counter()
        xs = x.detach()[:, :, lo:hi].requires_grad_()
        xp = F.pad(xs, (0, 0, 0, 0, h - (z0 - lo), h - (hi - z1)))
        out = F.conv3d(xp, w, b, padding=(0, h, h))
        t1 = time.perf_counter()
        torch.autograd.grad(out, [xs, w, b], torch.ones_like(out))
        t_f, t_b = t_f + t1 - t0, t_b + time.perf_counter() - t1
        del xs, xp, out
    return t_f, t_b


def _error_text(e: BaseException) -> str:
    s = str(e).splitlines()[0][:300] if str(e) else ""
    return f"{type(e).__name__}: {s}"


def _child3d(spec: dict) -> dict:
    """One measurement of :func:`cost_3d` (modes ``time``, ``apr_mem``, ``dense_mem``), in a fresh process."""
    from aprlib import _core
    from . import scaling as sc
    n = int(spec.get("threads", 1))
    os.environ["OMP_NUM_THREADS"] = str(n)  # before pyapr (its own OpenMP runtime) is first imported
    torch.set_num_threads(n)
    _core.set_num_threads(n)
    mode, size, C, k, seed = spec["mode"], int(spec["size"]), int(spec["channels"]), int(spec["kernel"]), int(spec["seed"])
    out = {"mode": mode, "size": size, "threads": n}
    vols, aprs = [], []
    if mode in ("time", "apr_mem"):
        settings = spec["settings"]
        which = range(len(settings)) if mode == "time" else [int(spec["index"])]
        for i in which:
            s = settings[i]
            v = nuclei_volume(size, s["n_objects"], (seed, size, i), spec.get("radius_range"))
            vols.append(v)
            aprs.append(_ours(v, s["sigma_th"]))
        out["particles"] = [int(a.n_particles) for a in aprs]
    old_soft, old_hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = spec.get("mem_limit_bytes")
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (int(limit), old_hard))
    out["fit"] = True
    try:
        if mode == "apr_mem":
            i = 0  # the one setting formed above
            base0 = sc._rss_kb()
            reset = sc._reset_peak()
            t0 = time.perf_counter()
            batch, conv, x = _conv_parts(aprs[i], C, k, seed)
            t_tables = time.perf_counter() - t0
            hwm_tables, rss_tables = sc._peak_kb(), sc._rss_kb()
            tb = sc.table_bytes(batch)
            reset = sc._reset_peak() and reset
            base = sc._rss_kb()
            _apr_pass(batch, conv, x)
            out.update(particles=int(aprs[i].n_particles), peak_kb=sc._peak_kb() - base,
                       tables_peak_kb=hwm_tables - base0, tables_retained_kb=rss_tables - base0,
                       table_bytes=int(tb["bytes"]), features_bytes=int(x.numel() * x.element_size()),
                       tables_once_s=t_tables, peak_reset=reset)
        elif mode == "dense_mem":
            x, w, b = _dense_parts(size, C, k, seed)
            slabs = dense_slabs(size, C, k)
            base = sc._rss_kb()
            reset = sc._reset_peak()
            _dense_pass(x, w, b, slabs)
            out.update(peak_kb=sc._peak_kb() - base, input_bytes=int(x.numel() * x.element_size()), peak_reset=reset,
                       slabs=slabs)
        elif mode == "time":
            out.update(_formation_times(vols, aprs, spec))
            out.update(_conv_times(aprs, spec))
        else:
            raise ValueError(f"unknown mode {mode!r}")
    except (MemoryError, RuntimeError) as e:
        if not sc._is_memory_error(e, limited=bool(limit)):
            raise
        out.update(fit=False, error=_error_text(e))
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (old_soft, old_hard))
    return out


def _formation_times(vols, aprs, spec) -> dict:
    pyapr = _import_pyapr()
    settings, reps = spec["settings"], int(spec["formation_repeats"])
    sides = {}
    for i, (v, s) in enumerate(zip(vols, settings)):
        sides[("ours", i)] = (lambda v=v, s=s: _ours(v, s["sigma_th"]))
        sides[("cells", i)] = (lambda v=v, s=s: _ours_cells(v, s["sigma_th"]))
        if pyapr is not None:
            sides[("pyapr", i)] = _pyapr_former(pyapr, v, s["sigma_th"])
    warm = {key: f() for key, f in sides.items()}  # one warm-up call each (and pyapr's APRs, compared below)
    times = {key: [] for key in sides}
    cpu = {key: [] for key in sides}
    for r in range(reps):
        for i in range(len(vols)):
            pair = [("ours", i), ("cells", i), ("pyapr", i)]
            pair = pair if r % 2 == 0 else pair[::-1]
            for key in pair:
                if key not in sides:
                    continue
                t0, c0 = time.perf_counter(), time.process_time()
                sides[key]()
                times[key].append(time.perf_counter() - t0)
                cpu[key].append(time.process_time() - c0)
    res = {"pyapr_available": pyapr is not None, "pyapr_version": getattr(pyapr, "__version__", "") if pyapr else ""}
    rows = []
    for i in range(len(vols)):
        row = {"ours_s": statistics.median(times[("ours", i)]), "ours_cpu_s": statistics.median(cpu[("ours", i)]),
               "cells_s": statistics.median(times[("cells", i)]),
               "formation_repeats": len(times[("ours", i)])}
        if pyapr is not None:
            papr, _ = warm[("pyapr", i)]
            row.update(pyapr_s=statistics.median(times[("pyapr", i)]), pyapr_cpu_s=statistics.median(cpu[("pyapr", i)]),
                       pyapr_particles=int(papr.total_number_particles()),
                       same_level=same_level_fraction(aprs[i], papr))
        rows.append(row)
    res["formation"] = rows
    return res


def _conv_times(aprs, spec) -> dict:
    """Interleaved rounds of (dense, APR side of each setting), the order rotated by one each round."""
    from aprlib.apr import APR, APRBatch
    from aprlib.nn.prepare import prepare
    from . import scaling as sc
    size, C, k, seed = int(spec["size"]), int(spec["channels"]), int(spec["kernel"]), int(spec["seed"])
    burn_in, repeats = int(spec["burn_in"]), int(spec["repeats"])
    parts = [_conv_parts(a, C, k, seed) for a in aprs]
    dense = bool(spec.get("dense", True))
    dense_error = spec.get("dense_reason", "")
    dx = _dense_parts(size, C, k, seed) if dense else None
    t = {"dense": {"fwd": [], "bwd": []}}
    for i in range(len(aprs)):
        t[i] = {"fwd": [], "bwd": [], "tables": []}
    sides = ["dense"] + list(range(len(aprs)))
    for r in range(burn_in + repeats):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        for side in order:
            if side == "dense":
                if not dense:
                    continue
                try:
                    f, b = _dense_pass(*dx, dense_slabs(size, C, k))
                except (MemoryError, RuntimeError) as e:
                    if not sc._is_memory_error(e, limited=bool(spec.get("mem_limit_bytes"))):
                        raise
                    dense, dense_error, dx = False, _error_text(e), None
                    t["dense"] = {"fwd": [], "bwd": []}
                    continue
            else:
                fresh = APR.from_dict(aprs[side].to_dict())  # a fresh object: the tables are built again
                t0 = time.perf_counter()
                tb = APRBatch([fresh])
                prepare(tb, parts[side][1], in_channels=parts[side][1].in_channels)
                t_tables = time.perf_counter() - t0
                del tb, fresh
                f, b = _apr_pass(*parts[side])
            if r >= burn_in:
                t[side]["fwd"].append(f)
                t[side]["bwd"].append(b)
                if side != "dense":
                    t[side]["tables"].append(t_tables)

    def med(v):
        return statistics.median(v) if v else math.nan

    def tot(d):
        return med([a + b for a, b in zip(d["fwd"], d["bwd"])])
    rows = [{"apr_fwd_s": med(t[i]["fwd"]), "apr_bwd_s": med(t[i]["bwd"]), "apr_s": tot(t[i]),
             "tables_s": med(t[i]["tables"]), "apr_repeats": len(t[i]["fwd"])} for i in range(len(aprs))]
    return {"conv": rows, "dense_fwd_s": med(t["dense"]["fwd"]), "dense_bwd_s": med(t["dense"]["bwd"]),
            "dense_s": tot(t["dense"]), "dense_repeats": len(t["dense"]["fwd"]), "dense_timed": dense,
            "dense_error": dense_error}


def _one_thread_server(threads: int) -> None:
    """Make sure the measuring server runs with ``OMP_NUM_THREADS=threads``: pyapr has no thread setting
    of its own, and an OpenMP runtime the server has already loaded read it when it started. A server
    started with another value is closed (the next measurement starts a new one); this process's
    environment is left as it was."""
    from . import scaling as sc
    server = sc._servers.get("server")
    if server is not None and server.proc.poll() is None and getattr(server, "omp", None) == str(threads):
        return
    if server is not None:
        server.close()
        sc._servers.pop("server", None)
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        server = sc._servers["server"] = sc._ForkServer()
    finally:
        if old is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = old
    server.omp = str(threads)
    import atexit
    atexit.register(server.close)


def _run(spec: dict) -> dict:
    from .scaling import _run_child
    return _run_child({**spec, "call": "aprbook.cost3d:_child3d"})


# --- the benchmark ---------------------------------------------------------------------------------------
def cost_3d(cfg: dict, seed: int = 0, progress: bool = False) -> dict:
    """The measurements of a ``cost_3d`` profile entry (:mod:`aprbook.profiles`): ``formation`` and
    ``conv`` tables, one row per (size, setting), sizes ascending (module docstring: what each column
    is). Volume ``i`` of size ``n`` is ``nuclei_volume(n, ..., seed=(seed, n, i))``."""
    check_settings(cfg)
    need = ("sizes", "settings", "channels", "kernel", "repeats", "burn_in", "formation_repeats", "threads",
            "mem_limit_gb")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ValueError(f"cost_3d settings lack {missing}")
    limit = int(cfg["mem_limit_gb"] * 1e9) if cfg["mem_limit_gb"] else None
    _one_thread_server(int(cfg["threads"]))
    settings = [dict(s) for s in cfg["settings"]]
    base = {"channels": cfg["channels"], "kernel": cfg["kernel"], "threads": cfg["threads"], "seed": int(seed),
            "settings": settings, "radius_range": cfg.get("radius_range"), "mem_limit_bytes": limit}
    f_rows, c_rows = [], []
    mb = lambda d, key: d[key] * 1024 / 1e6 if d.get("fit") and d.get(key) is not None else math.nan  # noqa: E731
    for size in sorted(cfg["sizes"]):
        voxels = size ** 3
        dmem = _run({**base, "mode": "dense_mem", "size": size})
        amem = [_run({**base, "mode": "apr_mem", "size": size, "index": i}) for i in range(len(settings))]
        t = _run({**base, "mode": "time", "size": size, "repeats": cfg["repeats"], "burn_in": cfg["burn_in"],
                  "formation_repeats": cfg["formation_repeats"], "dense": bool(dmem["fit"]),
                  "dense_reason": "" if dmem["fit"] else f"not timed: its memory measurement did not fit "
                                                          f"({dmem.get('error', '')})"})
        if not t.get("fit"):
            raise RuntimeError(f"cost_3d at {size}^3: the timing process ran out of memory ({t.get('error')}); "
                               f"lower the sizes or raise mem_limit_gb")
        for i, s in enumerate(settings):
            particles = int(t["particles"][i])
            cr = voxels / particles
            fr = t["formation"][i]
            ratio = fr["pyapr_s"] / fr["ours_s"] if "pyapr_s" in fr else math.nan
            f_rows.append({"size": size, "voxels": voxels, "setting": i, "n_objects": s["n_objects"],
                           "sigma_th": float(s["sigma_th"]), "particles": particles, "cr": cr,
                           "ours_s": fr["ours_s"], "ours_cells_s": fr["cells_s"], "pyapr_s": fr.get("pyapr_s", math.nan), "ratio": ratio,
                           "ours_cpu_s": fr["ours_cpu_s"], "pyapr_cpu_s": fr.get("pyapr_cpu_s", math.nan),
                           "ratio_cpu": (fr["pyapr_cpu_s"] / fr["ours_cpu_s"]) if "pyapr_cpu_s" in fr else math.nan,
                           "pyapr_particles": fr.get("pyapr_particles", math.nan),
                           "same_level": fr.get("same_level", math.nan), "repeats": fr["formation_repeats"],
                           "pyapr_available": bool(t["pyapr_available"]), "pyapr_version": t["pyapr_version"],
                           "threads": cfg["threads"]})
            cv, am = t["conv"][i], amem[i]
            dense_ok = bool(t["dense_timed"]) and t["dense_repeats"] > 0
            dense_s = t["dense_s"] if dense_ok else math.nan
            speedup = dense_s / cv["apr_s"] if dense_ok else math.nan
            c_rows.append({
                "size": size, "voxels": voxels, "setting": i, "n_objects": s["n_objects"],
                "sigma_th": float(s["sigma_th"]), "particles": particles, "cr": cr, "channels": cfg["channels"],
                "kernel": cfg["kernel"], "threads": cfg["threads"],
                "apr_fwd_s": cv["apr_fwd_s"], "apr_bwd_s": cv["apr_bwd_s"], "apr_s": cv["apr_s"],
                "tables_s": cv["tables_s"], "apr_repeats": cv["apr_repeats"],
                "dense_fwd_s": t["dense_fwd_s"] if dense_ok else math.nan,
                "dense_bwd_s": t["dense_bwd_s"] if dense_ok else math.nan, "dense_s": dense_s,
                "dense_repeats": t["dense_repeats"] if dense_ok else 0, "dense_fit": dense_ok,
                "dense_slabs": dense_slabs(size, cfg["channels"], cfg["kernel"]),
                "dense_error": "" if dense_ok else (t.get("dense_error") or dmem.get("error", "")),
                "speedup": speedup, "speedup_over_cr": speedup / cr,
                "apr_peak_mb": mb(am, "peak_kb"), "apr_mem_fit": bool(am.get("fit")),
                "apr_mem_error": am.get("error", ""),
                "tables_peak_mb": mb(am, "tables_peak_kb"), "tables_retained_mb": mb(am, "tables_retained_kb"),
                "table_mb": am["table_bytes"] / 1e6 if am.get("fit") else math.nan,
                "features_mb": am["features_bytes"] / 1e6 if am.get("fit") else math.nan,
                "dense_peak_mb": mb(dmem, "peak_kb"),
                "dense_input_mb": dmem["input_bytes"] / 1e6 if dmem.get("fit") else math.nan,
                "mem_limit_gb": cfg["mem_limit_gb"],
                "peak_reset": bool(am.get("peak_reset", False)) and bool(dmem.get("peak_reset", False)),
            })
            if progress:
                print(_row_text(f_rows[-1], c_rows[-1]), flush=True)
    return {"formation": pd.DataFrame(f_rows), "conv": pd.DataFrame(c_rows)}


def _fmt(v, spec=".3g") -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _row_text(f, c) -> str:
    return (f"{c['size']}^3, {c['n_objects']} nuclei, sigma_th {c['sigma_th']:g}: {c['particles']} particles, "
            f"CR {c['cr']:.1f}; formation ours {_fmt(f['ours_s'])} s (cells and means alone {_fmt(f['ours_cells_s'])} s), pyapr {_fmt(f['pyapr_s'])} s "
            f"(x{_fmt(f['ratio'], '.2f')}, same level {_fmt(f['same_level'], '.4f')}); conv fwd+bwd APR "
            f"{_fmt(c['apr_s'])} s (tables {_fmt(c['tables_s'])} s), dense {_fmt(c['dense_s'])} s: speed-up "
            f"x{_fmt(c['speedup'], '.1f')} = {_fmt(c['speedup_over_cr'], '.2f')} CR; peak APR "
            f"{_fmt(c['apr_peak_mb'], '.0f')} MB (+ tables {_fmt(c['table_mb'], '.0f')} MB), dense "
            f"{_fmt(c['dense_peak_mb'], '.0f')} MB")


def cost3d_text(tables: dict) -> str:
    """The ratios as a printed table, and the criteria's statuses."""
    f, c = tables["formation"], tables["conv"]
    d = c[["size", "n_objects", "sigma_th", "particles", "cr", "apr_s", "tables_s", "dense_s", "speedup",
           "speedup_over_cr", "apr_peak_mb", "table_mb", "dense_peak_mb"]].copy()
    d.insert(5, "formation_ratio", f["ratio"].to_numpy())
    d.insert(6, "same_level", f["same_level"].to_numpy())
    lines = [d.to_string(index=False, float_format=lambda v: f"{v:.4g}"), ""]
    for name, claims in criteria(tables).items():
        from .verdicts import verdict
        v = verdict(claims)
        lines.append(f"{name}: {v.word}")
        lines += [f"  - {cl.status}: {cl.name}: {cl.evidence}" for cl in claims]
    return "\n".join(lines)


# --- the criteria ------------------------------------------------------------------------------------------
def _spread(values) -> float:
    v = [float(x) for x in values if math.isfinite(float(x)) and float(x) > 0]
    return max(v) / min(v) if len(v) >= 2 else math.nan


def criteria(tables: dict) -> dict:
    """The issue's three claims as sub-claims (:class:`aprbook.verdicts.SubClaim`), by rules fixed
    before the results:

    - ``formation``: one sub-claim per size of :data:`FORMATION_SIZES`: holds if the median ratio
      ``pyapr_s / ours_s`` is >= 1 at every setting of that size, fails if it is below 1 at any;
      inconclusive if the size was not run or pyapr was not available.
    - ``convolution``: one sub-claim per case (size, setting) of CR >= :data:`CR_MIN`: holds if
      ``speedup >= SPEEDUP_PER_CR * CR``, fails otherwise; inconclusive where the dense side was not
      measured. With no case of CR >= CR_MIN, one inconclusive sub-claim says so.
    - ``memory``: APR forward + backward peak per particle, and the tables' bytes per particle,
      within a factor :data:`MEMORY_SPREAD` (max / min) over the cases with at least
      :data:`MEMORY_MIN_PARTICLES` particles; the dense peak per voxel within the same factor over
      the sizes with at least that many voxels (the contrast: dense memory follows voxels); each
      inconclusive with fewer than two such cases. The dense side run in slabs (:func:`dense_slabs`; a
      rule added after oneDNN's fallback to its reference kernel was seen at 256^3, before any dense
      time there was measured) is left out of the dense memory sub-claim (its peak is one slab's), not
      out of the speed-up: it computes the same outputs and gradients, never slower than the
      reference kernel would.

    Returns ``{"formation": [...], "convolution": [...], "memory": [...]}``."""
    from .verdicts import SubClaim
    f, c = tables["formation"], tables["conv"]
    out = {"formation": [], "convolution": [], "memory": []}
    for n in FORMATION_SIZES:
        name = f"formation at {n}^3 at least as fast as pyapr's (one thread)"
        rows = f[f["size"] == n]
        if rows.empty:
            out["formation"].append(SubClaim(name, "inconclusive", f"not computed: {n}^3 was not run"))
            continue
        if not rows["ratio"].map(_finite).all():
            out["formation"].append(SubClaim(name, "inconclusive", "not computed: pyapr was not available"))
            continue
        ev = ", ".join(f"CR {r.cr:.1f}: x{r.ratio:.2f}" for r in rows.itertuples())
        out["formation"].append(SubClaim.check(name, bool((rows["ratio"] >= 1.0).all()),
                                               f"pyapr time / ours: {ev}"))
    hi = c[c["cr"] >= CR_MIN]
    if hi.empty:
        out["convolution"].append(SubClaim(f"conv speed-up >= {SPEEDUP_PER_CR:g} x CR at CR >= {CR_MIN:g}",
                                           "inconclusive", f"not computed: no case reached CR {CR_MIN:g} "
                                                           f"(highest {c['cr'].max():.1f})"))
    for r in hi.itertuples():
        name = f"conv speed-up >= {SPEEDUP_PER_CR:g} x CR at {r.size}^3, CR {r.cr:.1f}"
        if not _finite(r.speedup):
            out["convolution"].append(SubClaim(name, "inconclusive", f"not computed: dense side not measured "
                                                                    f"({r.dense_error})"))
            continue
        out["convolution"].append(SubClaim.check(
            name, bool(r.speedup >= SPEEDUP_PER_CR * r.cr),
            f"speed-up x{r.speedup:.1f} = {r.speedup_over_cr:.2f} x CR (needs {SPEEDUP_PER_CR * r.cr:.1f})"))
    big = c[(c["particles"] >= MEMORY_MIN_PARTICLES)]
    for col, what in (("apr_peak_mb", "APR forward + backward peak"), ("table_mb", "APR index tables")):
        per = (big[col] * 1e6 / big["particles"]).to_numpy(float)
        s = _spread(per)
        name = f"{what} per particle within x{MEMORY_SPREAD:g} (cases >= {MEMORY_MIN_PARTICLES} particles)"
        if not math.isfinite(s):
            out["memory"].append(SubClaim(name, "inconclusive", f"not computed: fewer than two cases with "
                                                               f"{MEMORY_MIN_PARTICLES} particles or more"))
        else:
            out["memory"].append(SubClaim.check(name, s <= MEMORY_SPREAD,
                                                f"{np.nanmin(per):.0f} ... {np.nanmax(per):.0f} B per particle "
                                                f"(x{s:.2f}) over {len(per)} cases"))
    dd = c.drop_duplicates("size")
    dd = dd[dd["voxels"] >= MEMORY_MIN_PARTICLES]
    if "dense_slabs" in dd:  # a pass in slabs holds one slab's temporaries: not the whole volume's memory
        dd = dd[dd["dense_slabs"] == 1]
    per = (dd["dense_peak_mb"] * 1e6 / dd["voxels"]).to_numpy(float)
    s = _spread(per)
    name = f"dense forward + backward peak per voxel within x{MEMORY_SPREAD:g} (sizes >= {MEMORY_MIN_PARTICLES} voxels)"
    if not math.isfinite(s):
        out["memory"].append(SubClaim(name, "inconclusive", "not computed: fewer than two sizes measured"))
    else:
        out["memory"].append(SubClaim.check(name, s <= MEMORY_SPREAD,
                                            f"{np.nanmin(per):.0f} ... {np.nanmax(per):.0f} B per voxel (x{s:.2f})"))
    return out


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# --- stored results ---------------------------------------------------------------------------------------
EXPERIMENT = "cost_3d"
NOTEBOOK = "notebooks/02a_cost_3d.ipynb"


def device_text(threads: int) -> str:
    """The machine in words: CPU model, logical CPUs, and the threads the measurements used."""
    import platform
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
        mem_text = f", {mem:.0f} GiB of memory"
    except (ValueError, OSError, AttributeError):
        mem_text = ""
    return (f"{model}, {os.cpu_count()} logical CPUs{mem_text}; measured with {threads} thread(s) "
            f"(torch, aprlib's C++ kernels, OMP_NUM_THREADS for pyapr); CPU only")


def store_for(results_dir, profile: str, seed: int = 0):
    """The :class:`~aprbook.provenance.ResultStore` of this experiment at ``profile`` (its parameters:
    the profile's settings and ``seed``)."""
    from .profiles import profile_settings
    from .provenance import ResultStore
    cfg = profile_settings(EXPERIMENT, profile)
    return ResultStore(results_dir, EXPERIMENT, profile, {**cfg, "seed": int(seed)}, notebook=NOTEBOOK)


def compute_and_store(results_dir, profile: str, seed: int = 0, progress: bool = False):
    """Run :func:`cost_3d` at ``profile`` and store its tables (``formation.csv``, ``conv.csv``) with
    provenance (the device in words: :func:`device_text`) under ``results_dir/cost_3d/<profile>/``;
    returns (store, tables). ``python -m aprbook.cost3d --profile book --results-dir ../results`` does
    this from a shell (the book's run: then the notebook reads the stored tables, ``recompute=False``)."""
    store = store_for(results_dir, profile, seed)
    cfg = dict(store.params)
    cfg.pop("seed")
    store.start()
    tables = cost_3d(cfg, seed=seed, progress=progress)
    for name, df in tables.items():
        store.save_table(name, df)
    store.finish(seeds={"volumes": int(seed)}, extra={"device": device_text(cfg["threads"])})
    return store, tables


def load_tables(store) -> dict:
    return {name: store.load_table(name) for name in ("formation", "conv")}


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(prog="python -m aprbook.cost3d", description=(
        "Compute and store the 3D cost measurements of a profile (results/cost_3d/<profile>/), as notebook "
        "02a_cost_3d does with recompute=True."))
    ap.add_argument("--profile", choices=["smoke", "book", "paper"], default="book")
    ap.add_argument("--results-dir", default="results")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    _, t = compute_and_store(a.results_dir, a.profile, a.seed, progress=True)
    print(cost3d_text(t))

"""Time 3D APR formation: aprlib's form_volume_cells and form_apr(ndim=3) vs pyapr.converter.get_apr, one thread.

Usage:
    python benchmarks/bench_formation3d.py [--sizes 64 128 256] [--repeats 7] [--threads 1] [--csv PATH]

Both libraries parallelise with OpenMP; OMP_NUM_THREADS is set to --threads (default 1) before
either is imported (pyapr 1.0.7 has no thread setting of its own: OMP_NUM_THREADS is it), and
aprlib's _core.set_num_threads is called too. For each size both libraries form the APR of the
same seeded float32 volume of sparse content (8 Gaussian blobs and solid balls on a constant
background, noise-free) with E = 0.1, lambda = 3, sigma_th = 5% of the volume's range
(grad_th = Ip_th = sigma_th_max = 0, pyapr's automatic parameters off). Each side is timed over
the full conversion (particle cells + the cell means, which pyapr calls sampling the image) after
one warm-up call; the two sides are interleaved, their order alternating, and the medians of
--repeats calls are reported with the ratio pyapr_time / aprlib_time (>= 1: aprlib at least as
fast), the same ratio of process CPU times, the particle counts and the fraction of voxels at the
same level in both.

aprlib is timed three ways, interleaved with pyapr in the same rounds: ``form_volume_cells`` (the
kernel: particle cells, their tree and parents, and the means: ``aprlib_s``), ``form_apr(v, ndim=3)``
end to end (the kernel and the APR object: ``apr_s``, ratio ``ratio_apr`` = pyapr_time / apr_s), and,
with ``--numpy-tree``, the former end-to-end path (the kernel, then the tree rebuilt in numpy by
``aprlib.apr.cells.structure_from_cells`` and ``APR._from_cell_structure``: ``numpy_tree_s``), for
comparison.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256], help="volume sides (default 64 128 256)")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per library and size (default 7)")
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads for both libraries (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None, metavar="PATH", help="also write the results table to PATH")
    ap.add_argument("--numpy-tree", action="store_true",
                    help="also time the former form_apr(ndim=3) path: the tree rebuilt in numpy (structure_from_cells)")
    args = ap.parse_args(argv)
    if min(args.sizes) < 8 or args.repeats < 1 or args.threads < 1:
        ap.error("sizes must be >= 8, --repeats and --threads >= 1")
    return args


def blob_volume(n: int, seed: int):
    """(n, n, n) float32: 8 Gaussian blobs and solid balls (radii 4-12% of n) on a 0.1 background."""
    import numpy as np
    rng = np.random.default_rng(seed)
    zz, yy, xx = (a.astype(np.float32) for a in np.ogrid[:n, :n, :n])
    v = np.full((n, n, n), 0.1, np.float32)
    for i in range(8):
        c = rng.uniform(0.15, 0.85, 3) * n
        r = rng.uniform(0.04, 0.12) * n
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        amp = np.float32(rng.uniform(0.3, 0.9))
        v += amp * np.exp(-d2 / np.float32(2 * r * r)) if i % 2 == 0 else amp * (d2 < r * r)
    return v.astype(np.float32)


def main(argv=None):
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before the OpenMP runtimes start
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import numpy as np

    from aprlib import _core
    from aprlib.apr.cells import structure_from_cells
    from aprlib.apr.formation import form_apr, form_volume_cells
    from aprlib.apr.structure import APR
    _core.set_num_threads(args.threads)
    try:
        import pyapr
    except ImportError:
        pyapr = None
        print("pyapr is not installed: timing aprlib only")

    E, lam = 0.1, 3.0
    print(f"E={E}, lambda={lam}, sigma_th=5% of the range; threads={args.threads} "
          f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, _core.num_threads()={_core.num_threads()}); "
          f"medians of {args.repeats} interleaved calls")
    header = ["size", "voxels", "aprlib_s", "apr_s"] + (["numpy_tree_s"] if args.numpy_tree else []) + [
        "pyapr_s", "ratio_wall", "ratio_apr", "ratio_cpu", "aprlib_particles", "pyapr_particles", "same_level"]
    print(" ".join(f"{h:>16}" for h in header))
    rows = []
    for n in args.sizes:
        v = blob_volume(n, args.seed + n)
        sigma_th = 0.05 * float(v.max() - v.min())

        def ours():
            return form_volume_cells(v, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)

        def ours_apr():
            return form_apr(v, ndim=3, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)

        def ours_numpy_tree():  # the former form_apr(ndim=3): the tree from the cells in numpy
            cells, means, used = form_volume_cells(v, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)
            s = structure_from_cells(v.shape, cells["level"], (cells["z"], cells["y"], cells["x"]), check=False)
            return APR._from_cell_structure(s, means, used)

        if pyapr is not None:
            par = pyapr.APRParameters()
            par.auto_parameters = False
            par.rel_error, par.gradient_smoothing, par.sigma_th = E, lam, sigma_th
            par.sigma_th_max = par.grad_th = par.Ip_th = 0.0

            def theirs():
                with contextlib.redirect_stdout(io.StringIO()):
                    return pyapr.converter.get_apr(v, params=par)

        sides = {"aprlib": ours, "apr": ours_apr}
        if args.numpy_tree:
            sides["numpy_tree"] = ours_numpy_tree
        if pyapr is not None:
            sides["pyapr"] = theirs
        wall = {k: [] for k in sides}
        cpu = {k: [] for k in sides}
        out = {k: f() for k, f in sides.items()}  # warm-up (and the results compared below)
        for r in range(args.repeats):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for k in order:
                t0, c0 = time.perf_counter(), time.process_time()
                sides[k]()
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
        cells, means, _ = out["aprlib"]
        t_o = statistics.median(wall["aprlib"])
        t_a = statistics.median(wall["apr"])
        row = dict(size=n, voxels=n ** 3, aprlib_s=t_o, apr_s=t_a, aprlib_particles=len(means))
        if args.numpy_tree:
            row["numpy_tree_s"] = statistics.median(wall["numpy_tree"])
        if pyapr is not None:
            apr, _ = out["pyapr"]
            lp = np.asarray(pyapr.reconstruction.reconstruct_level(apr))
            lm = np.zeros(v.shape, np.int8)
            L = cells["level_max"]
            for lev in np.unique(cells["level"]):
                sel = cells["level"] == lev
                s = 1 << (L - int(lev))
                g = np.zeros(tuple(-(-d // s) for d in v.shape), np.int8)
                g[cells["z"][sel], cells["y"][sel], cells["x"][sel]] = lev
                lm = np.maximum(lm, np.repeat(np.repeat(np.repeat(g, s, 0), s, 1), s, 2)[:n, :n, :n])
            t_p = statistics.median(wall["pyapr"])
            row.update(pyapr_s=t_p, ratio_wall=t_p / t_o, ratio_apr=t_p / t_a,
                       ratio_cpu=statistics.median(cpu["pyapr"]) / statistics.median(cpu["aprlib"]),
                       pyapr_particles=apr.total_number_particles(), same_level=float((lm == lp).mean()))
        rows.append(row)
        print(" ".join(f"{row.get(h, float('nan')):>16.6g}" if isinstance(row.get(h, 0.0), float)
                       else f"{row.get(h):>16}" for h in header), flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()

"""Time APR formation: aprlib.form_apr vs pyapr.converter.get_apr on the same images, same run.

Usage:
    python benchmarks/bench_formation.py [--sizes 256 1024 2048] [--repeats 5] [--threads N]
                                         [--kinds sparse dense] [--csv PATH]
    python benchmarks/bench_formation.py --size 2048      # one size (same as --sizes 2048)

Both libraries parallelise with OpenMP, so OMP_NUM_THREADS controls both; --threads N sets it
(before either library is imported) for this run. For each size and image kind both libraries
form the APR of the same seeded float32 image:

- sparse: filled discs, rectangles and triangles on a smooth gradient background (noise-free);
- dense: a fine texture (sinusoids of several periods, a few pixels to a few tens) plus uniform
  noise, so that most of the image is resolved at the finest levels;

with E = 0.1, lambda = 3, sigma_th = 5% of the image's intensity range (grad_th = Ip_th =
sigma_th_max = 0, pyapr's automatic parameters off). Each library gets one warm-up call, then
--repeats timed calls of the full conversion (particle structure + particle intensities as cell
means), aprlib and pyapr interleaved (their order alternating) so that both see the same load;
the medians are reported, with particle counts, pixels per second and the ratio
pyapr_time / aprlib_time (>= 1 means aprlib is at least as fast). The last column is the same
ratio of the medians of process CPU time (user + system, all threads), which other processes
on a shared machine disturb less than wall time.
If pyapr is not installed only aprlib is timed.
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

DEFAULT_SIZES = (256, 1024, 2048)
KINDS = ("sparse", "dense")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None,
                    help=f"image side lengths (default {' '.join(map(str, DEFAULT_SIZES))}; "
                         f"the full study: 256 512 1024 2048 4096)")
    ap.add_argument("--size", type=int, default=None, help="one image side length (same as --sizes SIZE)")
    ap.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="image kinds (default both)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per library and image (default 5)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OpenMP threads for both libraries (sets OMP_NUM_THREADS; default: environment)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv", default=None, metavar="PATH", help="also write the results table to PATH")
    args = ap.parse_args(argv)
    if args.size is not None and args.sizes is not None:
        ap.error("give --size or --sizes, not both")
    args.sizes = [args.size] if args.size is not None else list(args.sizes or DEFAULT_SIZES)
    if min(args.sizes) < 8 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        ap.error("sizes must be >= 8, --repeats and --threads >= 1")
    return args


def make_image(size: int, seed: int):
    """Filled shapes on a smooth background (gradient + slow sinusoid), values in about [0, 1]."""
    import numpy as np
    from skimage import draw

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    img = 0.15 + 0.25 * xx + 0.1 * yy + 0.05 * np.sin(2 * np.pi * 1.5 * xx) * np.cos(2 * np.pi * yy)
    img = img.astype(np.float32)
    for i in range(24):
        c = rng.uniform(0.05 * size, 0.95 * size, 2)
        r = rng.uniform(0.02 * size, 0.08 * size)
        kind = i % 3
        if kind == 0:
            rr, cc = draw.disk(tuple(c), r, shape=img.shape)
        elif kind == 1:
            h, w = r * rng.uniform(0.5, 1.5, 2)
            rr, cc = draw.rectangle((int(c[0] - h), int(c[1] - w)), (int(c[0] + h), int(c[1] + w)), shape=img.shape)
        else:
            a = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
            rr, cc = draw.polygon(c[0] + r * np.sin(a), c[1] + r * np.cos(a), shape=img.shape)
        img[rr, cc] = rng.uniform(0.4, 1.0)
    return np.ascontiguousarray(img)


def make_dense_image(size: int, seed: int):
    """Fine texture (sinusoids with periods of a few to a few tens of pixels) plus uniform noise,
    values in about [0, 1]: most of the image needs the finest levels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    img = np.zeros((size, size), np.float32)
    for period in (3.0, 7.0, 19.0, 53.0):
        theta = rng.uniform(0, np.pi)
        k = 2 * np.pi / period
        img += np.sin(k * (np.cos(theta) * xx + np.sin(theta) * yy) + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    img = 0.5 + 0.08 * img + 0.2 * rng.uniform(-1, 1, img.shape).astype(np.float32)
    return np.ascontiguousarray(np.clip(img, 0, 1), dtype=np.float32)


def make(kind: str, size: int, seed: int):
    return make_image(size, seed) if kind == "sparse" else make_dense_image(size, seed)


def time_interleaved(fns: dict, repeats: int):
    """One warm-up call of each function, then `repeats` rounds calling each once (order
    alternating between rounds). Returns {name: (median wall seconds, median CPU seconds of the
    process, last result)}."""
    names = list(fns)
    results = {name: fns[name]() for name in names}  # warm-up
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            results[name] = None  # free the previous result first, as a caller replacing it would
            c0, t0 = time.process_time(), time.perf_counter()
            results[name] = fns[name]()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name]), results[name]) for name in names}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # must precede the OpenMP runtime start

    import aprlib
    from aprbook.pyapr_compat import pyapr_parameters
    from aprlib import _core

    try:
        import pyapr
    except ImportError:
        pyapr = None

    E, lam = 0.1, 3.0
    print(f"E={E}, lambda={lam}, sigma_th=5% of each image's range; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}, aprlib OpenMP threads={_core.num_threads()}, "
          f"repeats={args.repeats} (interleaved, medians after 1 warm-up each)"
          + ("" if pyapr is not None else "; pyapr is not installed: timing aprlib only"))
    header = f"{'size':>5} {'kind':>6} | {'aprlib ms':>10} {'pyapr ms':>10} | {'aprlib N':>9} {'pyapr N':>9} | " \
             f"{'aprlib Mpx/s':>12} {'pyapr Mpx/s':>11} | {'pyapr/aprlib':>12} | {'(CPU time)':>10}"
    print(header)
    print("-" * len(header))
    rows = []
    for size in args.sizes:
        for kind in args.kinds:
            img = make(kind, size, args.seed)
            sigma_th = 0.05 * float(img.max() - img.min())
            fns = {"aprlib": lambda: aprlib.form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)}
            if pyapr is not None:
                p = pyapr_parameters(aprlib.APRParameters(rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th))

                def run_pyapr(p=p):
                    with contextlib.redirect_stdout(io.StringIO()):  # pyapr may print warnings
                        return pyapr.converter.get_apr(img, params=p)
                fns["pyapr"] = run_pyapr
            res = time_interleaved(fns, args.repeats)
            t_a, c_a, apr = res["aprlib"]
            row = {"size": size, "kind": kind, "threads": _core.num_threads(), "repeats": args.repeats,
                   "aprlib_s": t_a, "aprlib_cpu_s": c_a, "aprlib_particles": apr.n_particles,
                   "aprlib_mpx_s": img.size / t_a / 1e6, "pyapr_s": None, "pyapr_cpu_s": None,
                   "pyapr_particles": None, "pyapr_mpx_s": None, "ratio_pyapr_over_aprlib": None,
                   "cpu_ratio_pyapr_over_aprlib": None}
            if pyapr is not None:
                t_p, c_p, (apr_p, _parts) = res["pyapr"]
                row.update(pyapr_s=t_p, pyapr_cpu_s=c_p, pyapr_particles=int(apr_p.total_number_particles()),
                           pyapr_mpx_s=img.size / t_p / 1e6, ratio_pyapr_over_aprlib=t_p / t_a,
                           cpu_ratio_pyapr_over_aprlib=c_p / c_a if c_a > 0 else None)
            rows.append(row)

            def fmt(v, spec):
                return format(v, spec) if v is not None else format("-", ">" + spec.split(".")[0].rstrip("fd"))
            print(f"{size:>5} {kind:>6} | {t_a * 1e3:10.1f} {fmt(row['pyapr_s'] and row['pyapr_s'] * 1e3, '10.1f')} | "
                  f"{row['aprlib_particles']:>9d} {fmt(row['pyapr_particles'], '9d')} | "
                  f"{row['aprlib_mpx_s']:12.1f} {fmt(row['pyapr_mpx_s'], '11.1f')} | "
                  f"{fmt(row['ratio_pyapr_over_aprlib'], '12.2f')} | {fmt(row['cpu_ratio_pyapr_over_aprlib'], '10.2f')}",
                  flush=True)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

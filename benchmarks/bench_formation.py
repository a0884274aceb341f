"""Time APR formation: aprlib.form_apr vs pyapr.converter.get_apr on the same image, same run.

Usage:
    python benchmarks/bench_formation.py [--size 2048] [--repeats 5] [--threads N]

Both libraries parallelise with OpenMP, so OMP_NUM_THREADS controls both; --threads N sets it
(before either library is imported) for this run. Each library is timed on the same seeded,
noise-free test image (filled discs, rectangles and triangles on a smooth gradient background)
with E = 0.1, lambda = 3, sigma_th = 5% of the intensity range (grad_th = Ip_th = sigma_th_max = 0,
pyapr's automatic parameters off): one warm-up call, then the median of --repeats calls of the
full conversion (particle structure + particle intensities as cell means).
If pyapr is not installed only aprlib is timed.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048, help="image side length (default 2048)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per library (default 5)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OpenMP threads for both libraries (sets OMP_NUM_THREADS; default: environment)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.size < 8 or args.repeats < 1 or (args.threads is not None and args.threads < 1):
        ap.error("--size must be >= 8, --repeats and --threads >= 1")
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


def time_calls(fn, repeats: int):
    fn()  # warm-up
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


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

    img = make_image(args.size, args.seed)
    E, lam = 0.1, 3.0
    sigma_th = 0.05 * float(img.max() - img.min())
    print(f"image {args.size}x{args.size} float32, E={E}, lambda={lam}, sigma_th={sigma_th:.4f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}, aprlib OpenMP threads={_core.num_threads()}, "
          f"repeats={args.repeats} (median, after 1 warm-up)")

    t_ours, all_ours, apr = time_calls(
        lambda: aprlib.form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th), args.repeats)
    print(f"aprlib.form_apr:          {t_ours * 1e3:9.1f} ms   particles {apr.n_particles:>10d}   "
          f"CR {apr.computational_ratio:7.2f}   (all: {', '.join(f'{t * 1e3:.1f}' for t in all_ours)} ms)")

    if pyapr is None:
        print("pyapr is not installed: timed aprlib only")
        return 0

    p = pyapr_parameters(aprlib.APRParameters(rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th))
    t_py, all_py, (apr_p, _parts) = time_calls(lambda: pyapr.converter.get_apr(img, params=p), args.repeats)
    n_p = apr_p.total_number_particles()
    print(f"pyapr.converter.get_apr:  {t_py * 1e3:9.1f} ms   particles {n_p:>10d}   "
          f"CR {img.size / n_p:7.2f}   (all: {', '.join(f'{t * 1e3:.1f}' for t in all_py)} ms)")
    print(f"particle counts: aprlib / pyapr = {apr.n_particles / n_p:.4f}")
    print(f"speed-up (pyapr_time / aprlib_time): {t_py / t_ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The synthetic microscopy generator (aprlib.data.nuclei) on large sparse volumes: time and peak
memory of one ``sparse_volume`` call, and what it holds.

Usage:
    python benchmarks/bench_nuclei.py [--size 256] [--objects 8] [--rounds 3] [--no-noise]

Each round generates a ``size^3`` volume with ``--objects`` nuclei (default parameters, seeds 0, 1,
...). It prints per round the wall time, the peak of numpy's allocations during the call (tracemalloc;
the returned image, mask and labels included: 4 + 1 + 4 bytes per voxel), the foreground fraction and
the mean intensity inside and outside the objects; then the median time, and for scale the time of the
blur and noise passes alone (``scipy.ndimage.gaussian_filter`` and the shot/read noise) on the same
volume.
"""
from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--objects", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-noise", action="store_true", help="no blur, shot or read noise (objects only)")
    args = ap.parse_args(argv)
    if args.size < 32 or args.objects < 0 or args.rounds < 1:
        ap.error("need --size >= 32, --objects >= 0 and --rounds >= 1")

    import numpy as np
    from scipy import ndimage

    from aprlib.data import nuclei

    params = nuclei.NucleiParams()
    if args.no_noise:
        params = nuclei.replace(params, psf_sigma=0.0, photon_scale=None, read_noise=0.0)
    shape = (args.size,) * 3
    times = []
    for seed in range(args.rounds):
        tracemalloc.start()
        t0 = time.perf_counter()
        s = nuclei.sparse_volume(shape, args.objects, seed, params)
        dt = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        times.append(dt)
        m = s.mask
        print(f"seed {seed}: {dt:.2f} s, peak {peak / 2 ** 20:.0f} MiB, {len(s.objects)} objects, foreground "
              f"{m.mean():.4%}, mean inside {s.image[m].mean():.3f}, outside {s.image[~m].mean():.4f}")
    print(f"{args.size}^3, {args.objects} objects: median {statistics.median(times):.2f} s over {args.rounds} rounds")
    clean = np.full(shape, params.background, np.float32)
    t0 = time.perf_counter()
    blurred = ndimage.gaussian_filter(clean, params.psf_sigma)
    t1 = time.perf_counter()
    nuclei._noise(blurred, params, np.random.default_rng(0))
    t2 = time.perf_counter()
    print(f"for scale: blur {t1 - t0:.2f} s, noise {t2 - t1:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""3D neighbourhood tables: the C++ kernel (``APR.neighbourhood``, ``_core.neighbour_table3d``) against
the numpy geometry it replaced (:func:`aprlib.apr.cells.neighbour_table`, the test oracle), side by side.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_tables3d.py [--sizes 64 128 192] [--kernels 3 5] [--rounds 5]

For each size a nuclei volume (``aprbook.cost3d.nuclei_volume``, 8 objects, seed (0, size, 0)) is formed
at sigma_th 0.02 (the cost chapter's densest setting); each round times both builders on it, in
alternating order, after a check that their tables are equal. It prints the medians over the rounds and
their ratio (numpy / C++).
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 192])
    ap.add_argument("--kernels", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    if args.rounds < 1 or min(args.sizes) < 8 or any(k < 1 or k % 2 == 0 for k in args.kernels):
        ap.error("need --rounds >= 1, --sizes >= 8 and odd --kernels >= 1")

    import numpy as np

    from aprbook.cost3d import _ours, nuclei_volume
    from aprlib import _core
    from aprlib.apr import cells

    for size in args.sizes:
        apr = _ours(nuclei_volume(size, 8, seed=(0, size, 0)), 0.02)
        gen = apr._cell_structure()

        def cpp(k):
            return _core.neighbour_table3d(apr.level, apr.z, apr.y, apr.x, apr.tree_level, apr.tree_z, apr.tree_y,
                                           apr.tree_x, *apr.shape, k)

        for k in args.kernels:
            if not np.array_equal(cpp(k), cells.neighbour_table(gen, k)):
                raise SystemExit(f"{size}^3, k={k}: the C++ and numpy tables differ")
            times = {"cpp": [], "numpy": []}
            for r in range(args.rounds):
                for side in (("cpp", "numpy") if r % 2 else ("numpy", "cpp")):
                    t0 = time.perf_counter()
                    cpp(k) if side == "cpp" else cells.neighbour_table(gen, k)
                    times[side].append(time.perf_counter() - t0)
            c, n = statistics.median(times["cpp"]), statistics.median(times["numpy"])
            print(f"{size}^3, {apr.n_particles} particles (CR {size ** 3 / apr.n_particles:.1f}), k={k}: "
                  f"C++ {c:.3f} s, numpy {n:.3f} s, numpy / C++ x{n / c:.1f} (medians of {args.rounds})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

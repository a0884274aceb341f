"""The synthetic generator's polygon fill: aprlib.data.raster.fill_polygon (scanlines) against
skimage.draw.polygon (a point-in-polygon test per pixel of the bounding box), on the same shapes,
side by side in one run.

Usage:
    python benchmarks/bench_polygon_fill.py [--shapes 300] [--rounds 7] [--size 256] [--extreme]

Each round fills the polygons of ``--shapes`` shapes drawn by the generator (all six classes, seed
0) with both, in alternating order, and checks that the masks are equal. It prints the medians of
the rounds (ms per shape) and their ratio skimage / aprlib (above 1: fill_polygon is faster), and
for scale the median time of a whole image (render_shape, which uses fill_polygon).
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--extreme", action="store_true", help="the 'more extreme' generator parameters of Fig 4.6")
    args = ap.parse_args(argv)
    if args.shapes < 1 or args.rounds < 1 or args.size < 8:
        ap.error("need --shapes >= 1, --rounds >= 1 and --size >= 8")

    import numpy as np
    from skimage.draw import polygon

    from aprlib.data.raster import fill_polygon
    from aprlib.data.synthetic import NUM_CLASSES, GeneratorParams, render_shape, sample_shape, shape_polygon

    size = (args.size, args.size)
    params = GeneratorParams.extreme() if args.extreme else GeneratorParams.default()
    rng = np.random.default_rng(0)
    specs = [sample_shape(i % NUM_CLASSES, rng, size, params) for i in range(args.shapes)]
    polys = [shape_polygon(s, size)[1] for s in specs]  # the polygons render_shape fills

    def with_skimage():
        out = []
        for v in polys:
            m = np.zeros(size, bool)
            rr, cc = polygon(v[:, 0], v[:, 1], shape=size)
            m[rr, cc] = True
            out.append(m)
        return out

    def with_aprlib():
        return [fill_polygon(v[:, 0], v[:, 1], size) for v in polys]

    times = {"skimage": [], "aprlib": [], "render_shape": []}
    for k in range(args.rounds):
        results = {}
        for name in (("skimage", "aprlib") if k % 2 == 0 else ("aprlib", "skimage")):
            t0 = time.perf_counter()
            results[name] = with_skimage() if name == "skimage" else with_aprlib()
            times[name].append((time.perf_counter() - t0) / len(polys) * 1e3)
        if not all(np.array_equal(a, b) for a, b in zip(results["skimage"], results["aprlib"])):
            raise SystemExit("the masks differ: fill_polygon does not draw what skimage draws")
        t0 = time.perf_counter()
        for s in specs:
            render_shape(s, size)
        times["render_shape"].append((time.perf_counter() - t0) / len(specs) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{args.shapes} shapes of {args.size}x{args.size} ({'extreme' if args.extreme else 'default'} "
          f"parameters), {args.rounds} rounds, masks equal in every round")
    print(f"skimage.draw.polygon   {med['skimage']:8.3f} ms per shape (median)")
    print(f"fill_polygon           {med['aprlib']:8.3f} ms per shape (median)")
    print(f"ratio skimage / aprlib {med['skimage'] / med['aprlib']:8.2f}")
    print(f"render_shape (whole image, with fill_polygon) {med['render_shape']:.3f} ms per image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmarks of the APRNet operations against the dense torch operations a user would run on the
pixel image instead, measured in the same run (``python -m aprlib.bench --help``).

Timings are medians over repeats after a warm-up; index tables are built before timing and their
cost is reported separately. Nothing here asserts a speed: the printed ratios are the result.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .batch import APRBatch
from .formation import form_apr
from .functional import apr_conv2d, apr_max_pool2d
from .synthetic import GeneratorParams, render_shape, sample_shape

__all__ = ["object_canvas", "time_call", "op_benchmark", "training_step_benchmark", "main"]


def object_canvas(n_objects: int, seed: int, size: int = 512, tile: int = 128) -> np.ndarray:
    """(size, size) float32 image with ``n_objects`` synthetic shapes on tiles of ``tile`` pixels;
    more objects -> more particles (lower CR). n_objects = -1 gives uniform noise (CR near 1)."""
    rng = np.random.default_rng(seed)
    if n_objects < 0:
        return rng.random((size, size), dtype=np.float32)
    img = np.full((size, size), 0.2, np.float32)
    n_tiles = (size // tile) ** 2
    if n_objects > n_tiles:
        raise ValueError(f"at most {n_tiles} objects fit on a {size}x{size} canvas with {tile}-pixel tiles")
    for t in rng.choice(n_tiles, n_objects, replace=False):
        ty, tx = divmod(int(t), size // tile)
        spec = sample_shape(int(rng.integers(6)), rng, size=(tile, tile), params=GeneratorParams.default())
        patch = render_shape(spec, size=(tile, tile))
        img[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile] = patch - patch[0, 0] + 0.2
    return img


def time_call(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time (s) of fn() over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fwd_bwd(op, inputs):
    def run():
        for t in inputs:
            t.grad = None
        out = op()
        out.backward(torch.ones_like(out))
    return run


def op_benchmark(images, kernel_sizes=(1, 3, 11), channels=(1, 32), repeats: int = 5, backend: str = "cpp",
                 rel_error: float = 0.1, progress: bool = True) -> pd.DataFrame:
    """Forward and forward+backward times of APR conv / max pooling and of dense conv2d /
    max_pool2d on the same images. One row per (image, op, k, C)."""
    rows = []
    for im_idx, img in enumerate(images):
        apr = form_apr(img, rel_error=rel_error, gradient_smoothing=0.0, sigma_th=0.01)
        batch = APRBatch([apr])
        H, W = img.shape
        for C in channels:
            g = torch.Generator().manual_seed(C)
            x = torch.randn(apr.n_particles, C, generator=g, requires_grad=True)
            xd = torch.randn(1, C, H, W, generator=g, requires_grad=True)
            for k in kernel_sizes:
                w = (torch.randn(C, C, 1, k, k, generator=g) / (C * k * k) ** 0.5).requires_grad_(True)
                wd = w.detach()[:, :, 0].clone().requires_grad_(True)
                t0 = time.perf_counter()
                apr_conv2d(x.detach(), batch, w.detach(), backend=backend)  # builds the index tables
                t_plan = time.perf_counter() - t0
                with torch.no_grad():
                    fa = time_call(lambda: apr_conv2d(x, batch, w, backend=backend), repeats)
                    fd = time_call(lambda: F.conv2d(xd, wd, padding=k // 2), repeats)
                ba = time_call(_fwd_bwd(lambda: apr_conv2d(x, batch, w, backend=backend), [x, w]), repeats)
                bd = time_call(_fwd_bwd(lambda: F.conv2d(xd, wd, padding=k // 2), [xd, wd]), repeats)
                rows.append(dict(image=im_idx, op="conv", k=k, C=C, n_particles=apr.n_particles, pixels=H * W,
                                 cr=apr.computational_ratio, apr_fwd=fa, dense_fwd=fd, apr_fwdbwd=ba, dense_fwdbwd=bd,
                                 plan_s=t_plan))
                if progress:
                    print(_row_text(rows[-1]), flush=True)
            t0 = time.perf_counter()
            apr_max_pool2d(x.detach(), batch, backend=backend)
            t_plan = time.perf_counter() - t0
            with torch.no_grad():
                fa = time_call(lambda: apr_max_pool2d(x, batch, backend=backend)[0], repeats)
                fd = time_call(lambda: F.max_pool2d(xd, 2), repeats)
            ba = time_call(_fwd_bwd(lambda: apr_max_pool2d(x, batch, backend=backend)[0], [x]), repeats)
            bd = time_call(_fwd_bwd(lambda: F.max_pool2d(xd, 2), [xd]), repeats)
            rows.append(dict(image=im_idx, op="maxpool", k=2, C=C, n_particles=apr.n_particles, pixels=H * W,
                             cr=apr.computational_ratio, apr_fwd=fa, dense_fwd=fd, apr_fwdbwd=ba, dense_fwdbwd=bd,
                             plan_s=t_plan))
            if progress:
                print(_row_text(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    df["apr_bwd"] = df.apr_fwdbwd - df.apr_fwd
    df["dense_bwd"] = df.dense_fwdbwd - df.dense_fwd
    df["speedup_fwd"] = df.dense_fwd / df.apr_fwd
    df["speedup_fwdbwd"] = df.dense_fwdbwd / df.apr_fwdbwd
    return df


def _row_text(r) -> str:
    return (f"{r['op']:>7} k={r['k']:<2} C=D={r['C']:<3} N={r['n_particles']:>7} CR={r['cr']:7.1f}  "
            f"fwd APR {r['apr_fwd'] * 1e3:8.2f} ms dense {r['dense_fwd'] * 1e3:8.2f} ms (x{r['dense_fwd'] / r['apr_fwd']:6.1f})  "
            f"fwd+bwd APR {r['apr_fwdbwd'] * 1e3:8.2f} ms dense {r['dense_fwdbwd'] * 1e3:8.2f} ms "
            f"(x{r['dense_fwdbwd'] / r['apr_fwdbwd']:6.1f})  tables {r['plan_s'] * 1e3:.1f} ms")


def training_step_benchmark(network: str = "B", batch_size: int = 36, size: int = 256, steps: int = 5,
                            seed: int = 0, backend: str = "cpp") -> dict:
    """Seconds per training step (forward, cross entropy, backward, Adam) of APR_<network> and
    Pix_<network> on one batch of synthetic images: the APR step with its index tables already
    built (fixed data sets, after the first epoch) and including building them (streamed data),
    and the time to form the APRs."""
    from .models import apr_network, pixel_network
    from .synthetic import generate_batch
    torch.manual_seed(seed)
    imgs, labels = generate_batch(batch_size, seed=seed, size=(size, size))
    y = torch.as_tensor(labels)
    t0 = time.perf_counter()
    aprs = [form_apr(im, rel_error=0.1, gradient_smoothing=0.0, sigma_th=0.01) for im in imgs]
    t_form = time.perf_counter() - t0

    def stepper(net, make_input):
        opt = torch.optim.Adam(net.parameters(), 5e-4)

        def step():
            loss = F.cross_entropy(net(make_input()), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step

    apr_net = apr_network(network, backend=backend)
    cached = APRBatch(aprs)
    t_cached = time_call(stepper(apr_net, lambda: cached), steps)

    def fresh_batch():  # new APR objects: every index table is rebuilt, as for streamed data
        return APRBatch([type(a).from_dict(a.to_dict()) for a in aprs])
    t_fresh = time_call(stepper(apr_net, fresh_batch), steps)
    xb = torch.from_numpy(imgs)[:, None]
    t_pix = time_call(stepper(pixel_network(network), lambda: xb), steps)
    return dict(network=network, batch_size=batch_size, size=size, mean_cr=float(np.mean([a.cr for a in aprs])),
                form_s=t_form, apr_step_s=t_cached, apr_step_with_tables_s=t_fresh, pixel_step_s=t_pix,
                speedup=t_pix / t_cached, speedup_with_tables=t_pix / (t_fresh + t_form))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m aprlib.bench", description=__doc__)
    ap.add_argument("--size", type=int, default=512, help="canvas side in pixels (default 512)")
    ap.add_argument("--objects", type=int, nargs="+", default=[16, 8, 4, 2, 1],
                    help="objects per canvas, one image each (-1: a noise image)")
    ap.add_argument("--kernels", type=int, nargs="+", default=[1, 3, 11])
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", choices=["cpp", "torch"], default="cpp")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (OpenMP: set OMP_NUM_THREADS)")
    ap.add_argument("--training", action="store_true", help="also time APR_B vs Pix_B training steps")
    ap.add_argument("--csv", default=None, help="write the per-op table here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, backend {args.backend}")
    images = [object_canvas(n, seed=i, size=args.size) for i, n in enumerate(args.objects)]
    df = op_benchmark(images, args.kernels, args.channels, args.repeats, args.backend)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print("\nspeed-up (dense time / APR time) against CR, the physical limit:")
    print(df.pivot_table(index=["op", "k", "C"], columns="cr", values="speedup_fwdbwd").round(1).to_string())
    if args.training:
        for net in ("A", "B"):
            r = training_step_benchmark(net, backend=args.backend)
            print(f"\nAPR_{net} vs Pix_{net}, batch {r['batch_size']} of {r['size']}x{r['size']} (mean CR "
                  f"{r['mean_cr']:.1f}): APR step {r['apr_step_s']:.3f} s with its index tables cached, "
                  f"{r['apr_step_with_tables_s']:.3f} s building them in the step (+ {r['form_s']:.3f} s forming "
                  f"the APRs); pixel step {r['pixel_step_s']:.3f} s -> speed-up x{r['speedup']:.1f} "
                  f"(x{r['speedup_with_tables']:.1f} including APR formation and tables)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

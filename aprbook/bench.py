"""Benchmarks of the APRNet operations against the dense torch operations a user would run on the
pixel image instead, measured in the same run (``python -m aprbook.bench --help``).

Timings are medians over repeats after a warm-up; index tables are built before timing and their
cost is reported separately. Nothing here asserts a speed: the printed ratios are the result.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from aprlib import _core
from aprlib.apr import APRBatch
from aprlib.data.synthetic import object_canvas
from aprlib.ops import apr_conv2d, apr_max_pool2d
from aprlib.train import SYNTHETIC_BATCH_SIZE, SYNTHETIC_LR, InputSpec

__all__ = ["object_canvas", "time_call", "threads", "op_timings", "fit_linear", "step_time", "interleaved_step_times",
           "training_step_benchmark", "SYNTHETIC_NETWORKS", "synthetic_network_step_times",
           "main"]
# The benchmarks of cost against image size, of the end-to-end streamed training step and of the
# index tables' memory live in aprbook.scaling (python -m aprbook.bench scaling | step | tables).


def time_call(fn, calls: int = 5, burn_in: int = 1, stat: str = "median") -> float:
    """Wall time (s) of fn(): the median (or mean, the thesis's protocol) of ``calls`` calls after
    ``burn_in`` calls."""
    for _ in range(burn_in):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) if stat == "median" else statistics.fmean(times)


@contextlib.contextmanager
def threads(n: int | None):
    """Run torch and the C++ kernels with n threads (None: leave as is)."""
    if n is None:
        yield
        return
    old_torch, old_omp = torch.get_num_threads(), _core.num_threads()
    torch.set_num_threads(n)
    _core.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old_torch)
        _core.set_num_threads(old_omp)


def _forward_backward_times(op, inputs, calls, burn_in, stat):
    """(forward time, backward time): forward without autograd; backward alone, through a graph
    built once and retained."""
    with torch.no_grad():
        t_fwd = time_call(op, calls, burn_in, stat)
    out = op()
    grad = torch.ones_like(out)
    t_bwd = time_call(lambda: torch.autograd.grad(out, inputs, grad, retain_graph=True), calls, burn_in, stat)
    return t_fwd, t_bwd


def op_timings(images, kernel_sizes=(1, 3, 11), channels=(1, 32), n_threads=(None,), backends=("cpp",),
               calls: int = 5, burn_in: int = 1, pool_calls: int | None = None, pool_burn_in: int | None = None,
               dense_calls: int | None = None, stat: str = "median", rel_error: float = 0.1,
               labels=None, progress: bool = True) -> pd.DataFrame:
    """Forward and backward times of APR convolution (each k) and APR max pooling, and of dense
    conv2d / max_pool2d on the same images, C in -> C out channels.

    ``channels`` and ``n_threads`` are paired (C = channels[i] runs with n_threads[i] threads;
    None = all). One row per (image, op, k, C, backend); ``labels`` names the images (e.g. their
    number of objects). Times in seconds.
    """
    if len(n_threads) == 1:
        n_threads = tuple(n_threads) * len(channels)
    if len(n_threads) != len(channels):
        raise ValueError("give one thread count, or one per channel count")
    pool_calls = pool_calls or calls
    pool_burn_in = burn_in if pool_burn_in is None else pool_burn_in
    dense_calls = dense_calls or calls
    rows = []
    for im_idx, img in enumerate(images):
        apr = InputSpec(rel_error=rel_error).form(img)  # the training inputs' formation at rel_error
        batch = APRBatch([apr])
        H, W = img.shape
        base = dict(image=im_idx, label=None if labels is None else labels[im_idx], n_particles=apr.n_particles,
                    pixels=H * W, cr=apr.computational_ratio)
        for C, nt in zip(channels, n_threads):
            with threads(nt):
                used = torch.get_num_threads()
                g = torch.Generator().manual_seed(C)
                x = torch.randn(apr.n_particles, C, generator=g, requires_grad=True)
                xd = torch.randn(1, C, H, W, generator=g, requires_grad=True)
                ops = []
                for k in kernel_sizes:
                    w = (torch.randn(C, C, 1, k, k, generator=g) / (C * k * k) ** 0.5).requires_grad_(True)
                    wd = w.detach()[:, :, 0].clone().requires_grad_(True)
                    ops.append(("conv", k, w, wd))
                ops.append(("maxpool", 2, None, None))
                for op, k, w, wd in ops:
                    n, b = (calls, burn_in) if op == "conv" else (pool_calls, pool_burn_in)
                    if op == "conv":
                        dense = lambda: F.conv2d(xd, wd, padding=k // 2)  # noqa: E731
                        dense_in = [xd, wd]
                    else:
                        dense = lambda: F.max_pool2d(xd, 2)  # noqa: E731
                        dense_in = [xd]
                    d_fwd, d_bwd = _forward_backward_times(dense, dense_in, dense_calls, min(b, 2), stat)
                    for backend in backends:
                        if op == "conv":
                            apr_op = lambda: apr_conv2d(x, batch, w, backend=backend)  # noqa: E731
                            apr_in = [x, w]
                        else:
                            apr_op = lambda: apr_max_pool2d(x, batch, backend=backend)[0]  # noqa: E731
                            apr_in = [x]
                        t0 = time.perf_counter()
                        apr_op()  # builds (and caches) the index tables
                        t_tables = time.perf_counter() - t0
                        a_fwd, a_bwd = _forward_backward_times(apr_op, apr_in, n, b, stat)
                        rows.append(dict(base, op=op, k=k, C=C, threads=used, backend=backend, calls=n,
                                         apr_fwd=a_fwd, apr_bwd=a_bwd, dense_fwd=d_fwd, dense_bwd=d_bwd,
                                         first_call=t_tables))
                        if progress:
                            print(_row_text(rows[-1]), flush=True)
    df = pd.DataFrame(rows)
    df["speedup_fwd"] = df.dense_fwd / df.apr_fwd
    df["speedup"] = (df.dense_fwd + df.dense_bwd) / (df.apr_fwd + df.apr_bwd)
    df["bwd_over_fwd"] = df.apr_bwd / df.apr_fwd
    return df


def fit_linear(df: pd.DataFrame, keys=("op", "k", "C", "threads", "backend")) -> pd.DataFrame:
    """Least-squares fit time = a + b * N_p of the APR forward and backward times per group:
    intercept a (s), slope b (s per particle), R^2, and the backward/forward ratio of the slopes."""
    from scipy import stats
    rows = []
    for key, g in df.groupby(list(keys)):
        row = dict(zip(keys, key))
        for col in ("apr_fwd", "apr_bwd"):
            fit = stats.linregress(g.n_particles, g[col])
            row.update({f"{col}_a": fit.intercept, f"{col}_b": fit.slope, f"{col}_r2": fit.rvalue ** 2})
        row["bwd_over_fwd_slope"] = row["apr_bwd_b"] / row["apr_fwd_b"]
        row["bwd_over_fwd_median"] = float((g.apr_bwd / g.apr_fwd).median())
        row["n_points"] = len(g)
        rows.append(row)
    return pd.DataFrame(rows)


def _row_text(r) -> str:
    return (f"{r['op']:>7} k={r['k']:<2} C=D={r['C']:<3} {r['backend']:>5} {r['threads']}thr N={r['n_particles']:>7} "
            f"CR={r['cr']:7.1f}  APR fwd {r['apr_fwd'] * 1e3:8.3f} bwd {r['apr_bwd'] * 1e3:8.3f} ms  "
            f"dense fwd {r['dense_fwd'] * 1e3:8.3f} bwd {r['dense_bwd'] * 1e3:8.3f} ms  "
            f"speed-up x{(r['dense_fwd'] + r['dense_bwd']) / (r['apr_fwd'] + r['apr_bwd']):6.1f}  "
            f"first call {r['first_call'] * 1e3:.1f} ms")


def interleaved_step_times(cases: dict, labels, steps: int = 5, burn_in: int = 1, lr: float = SYNTHETIC_LR
                           ) -> dict[str, float]:
    """Median seconds per training step (forward, cross entropy, backward, Adam update) of each case
    of ``cases`` ({name: (model, make_input)}), measured side by side: ``burn_in`` + ``steps`` rounds,
    each running every case once, in an order rotated by one case per round (each leads in turn, so
    the host's drift falls on all alike); medians of the last ``steps`` rounds. Models are trained in
    place, each case with its own Adam (cases may share a model)."""
    if steps < 1 or burn_in < 0:
        raise ValueError(f"steps must be >= 1 and burn_in >= 0, got {steps}, {burn_in}")
    y = torch.as_tensor(labels)
    names = list(cases)
    opts = {n: torch.optim.Adam(cases[n][0].parameters(), lr) for n in names}
    times = {n: [] for n in names}
    for r in range(burn_in + steps):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            model, make_input = cases[n]
            t0 = time.perf_counter()
            loss = F.cross_entropy(model(make_input()), y)
            opts[n].zero_grad()
            loss.backward()
            opts[n].step()
            t = time.perf_counter() - t0
            if r >= burn_in:
                times[n].append(t)
    return {n: statistics.median(t) for n, t in times.items()}


def step_time(model, make_input, labels, steps: int = 5, burn_in: int = 1, lr: float = SYNTHETIC_LR) -> float:
    """Median seconds per training step of ``model`` on ``make_input()`` (:func:`interleaved_step_times`
    with one case); the model is trained in place."""
    return interleaved_step_times({"model": (model, make_input)}, labels, steps, burn_in, lr)["model"]


def training_step_benchmark(network: str = "B", batch_size: int = SYNTHETIC_BATCH_SIZE, size: int = 256,
                            steps: int = 5, seed: int = 0, backend: str = "cpp") -> dict:
    """Seconds per training step (forward, cross entropy, backward, Adam) of APR_<network> and
    Pix_<network> on one batch of synthetic images, interleaved (:func:`interleaved_step_times`): the
    APR step with its index tables already built (fixed data sets, after the first epoch) and
    including building them (streamed data), and the time to form the APRs."""
    from aprlib.data.synthetic import generate_batch
    from aprlib.models import apr_network, pixel_network
    torch.manual_seed(seed)
    imgs, labels = generate_batch(batch_size, seed=seed, size=(size, size))
    t0 = time.perf_counter()
    aprs = [InputSpec().form(im) for im in imgs]  # as the training loops form them
    t_form = time.perf_counter() - t0

    apr_net = apr_network(network, backend=backend)
    cached = APRBatch(aprs)

    def fresh_batch():  # new APR objects: every index table is rebuilt, as for streamed data
        return APRBatch([type(a).from_dict(a.to_dict()) for a in aprs])
    xb = torch.from_numpy(imgs)[:, None]
    t = interleaved_step_times({"cached": (apr_net, lambda: cached), "fresh": (apr_net, fresh_batch),
                                "pixel": (pixel_network(network), lambda: xb)}, labels, steps)
    return dict(network=network, batch_size=batch_size, size=size, mean_cr=float(np.mean([a.cr for a in aprs])),
                form_s=t_form, apr_step_s=t["cached"], apr_step_with_tables_s=t["fresh"], pixel_step_s=t["pixel"],
                speedup=t["pixel"] / t["cached"], speedup_with_tables=t["pixel"] / (t["fresh"] + t_form))


SYNTHETIC_NETWORKS = ["APR_A", "APR_A same", "APR_A close", "APR_B", "APR_B same", "APR_B close"]
"""The APR networks of thesis 4.1.4 (Table 4.1), as :func:`synthetic_network_step_times` names them."""


def synthetic_network_step_times(size: int = 256, batch_size: int = SYNTHETIC_BATCH_SIZE, steps: int = 10,
                                 burn_in: int = 2, seed: int = 0, rel_errors=(0.1, 0.4, 0.6, 0.8)) -> pd.DataFrame:
    """Training-step times of the synthetic-image networks (notebook 04, thesis 4.1.4), all
    interleaved in one :func:`interleaved_step_times` on one batch of ``batch_size`` synthetic
    ``size`` x ``size`` images: each APR network at E = 0.1 (APR_B also at every E of
    ``rel_errors``) with its index tables built once (``step_s``) and rebuilt every step
    (``step_with_tables_s``, as streamed data needs; formation not included), Pix_A at full size,
    Pix_B at full, half and quarter size, and both in torch's channels-last layout at full size.
    One row per (network, input); ``mean_cr`` is the mean computational ratio of the APRs (for the
    pixel rows, pixels at full size over pixels of the input); times in seconds."""
    import aprlib
    from aprlib.data.synthetic import generate_batch
    from aprlib.models import apr_network, pixel_network
    from aprlib.nn.prepare import prepare
    from .apr_stats import FORMATION_SETTINGS
    torch.manual_seed(seed)
    imgs, labels = generate_batch(batch_size, seed=seed, size=(size, size))
    xb = torch.from_numpy(imgs)[:, None]
    rows, cases = [], {}
    for name in SYNTHETIC_NETWORKS:
        fam, variant = name[4], (name.split() + ["full"])[1]
        for e in (rel_errors if name == "APR_B" else rel_errors[:1]):
            aprs = [aprlib.form_apr(im, FORMATION_SETTINGS["thesis"], rel_error=e) for im in imgs]
            net, cached = apr_network(fam, variant), aprlib.APRBatch(aprs)
            prepare(cached, net)
            row = {"network": name, "input": f"APR, E = {e}", "mean_cr": float(np.mean([a.cr for a in aprs]))}
            cases[(len(rows), "step_s")] = (net, lambda b=cached: b)
            cases[(len(rows), "step_with_tables_s")] = (
                net, lambda a=aprs: aprlib.APRBatch([aprlib.APR.from_dict(x.to_dict()) for x in a]))
            rows.append(row)
    for fam in "AB":
        for res in ([size, size // 2, size // 4] if fam == "B" else [size]):
            x = xb if res == size else F.interpolate(xb, size=(res, res), mode="bilinear", align_corners=False)
            cases[(len(rows), "step_s")] = (pixel_network(fam), lambda x=x: x)
            rows.append({"network": f"Pix_{fam}", "input": f"pixels {res}x{res}", "mean_cr": (size / res) ** 2})
        # the same pixel network in torch's channels-last layout (as the runs to convergence use it)
        cases[(len(rows), "step_s")] = (pixel_network(fam, channels_last=True), lambda: xb)
        rows.append({"network": f"Pix_{fam}", "input": f"pixels {size}x{size}, channels-last", "mean_cr": 1.0})
    times = interleaved_step_times(cases, labels, steps, burn_in)
    for (i, col), t in times.items():
        rows[i][col] = t
    return pd.DataFrame(rows).reindex(columns=["network", "input", "mean_cr", "step_s", "step_with_tables_s"])


def _check_options(ap, args) -> None:
    """``ap.error`` (exit status 2, naming the option) for values the benchmark cannot use."""
    from pathlib import Path
    if args.size < 8:
        ap.error(f"--size {args.size}: the canvas must be at least 8 pixels")
    tiles = (args.size // max(args.size // 4, 8)) ** 2
    bad = [n for n in args.objects if n < -1 or n > tiles]
    if bad:
        ap.error(f"--objects {bad}: each must be -1 (noise) or 0 ... {tiles} (objects that fit on a "
                 f"{args.size}x{args.size} canvas)")
    bad = [k for k in args.kernels if k < 1 or k % 2 == 0]
    if bad:
        ap.error(f"--kernels {bad}: kernel sizes must be positive and odd")
    bad = [c for c in args.channels if c < 1]
    if bad:
        ap.error(f"--channels {bad}: channel counts must be positive")
    bad = [t for t in args.threads if t < 0]
    if bad:
        ap.error(f"--threads {bad}: thread counts must be 0 (all cores) or positive")
    if len(args.threads) not in (1, len(args.channels)):
        ap.error(f"--threads: give one thread count, or one per channel count ({len(args.channels)})")
    if args.calls < 1:
        ap.error(f"--calls {args.calls}: at least one timed call")
    if args.burn_in < 0:
        ap.error(f"--burn-in {args.burn_in}: must be 0 or more")
    if args.csv is not None:
        csv = Path(args.csv)
        if csv.is_dir() or not csv.parent.is_dir():
            ap.error(f"--csv {args.csv}: must name a file in an existing directory")


def _csv_option(ap, csv) -> None:
    from pathlib import Path
    if csv is not None and (Path(csv).is_dir() or not Path(csv).parent.is_dir()):
        ap.error(f"--csv {csv}: must name a file in an existing directory")


# setting of aprbook.scaling.check_settings -> the option that sets it, per subcommand
_SETTING_OPTIONS = {"sizes": "--sizes", "content": "--content", "objects": "--objects", "repeats": "--repeats",
                    "burn_in": "--burn-in", "threads": "--threads", "mem_limit_gb": "--mem-limit-gb",
                    "budget_s": "--budget-s", "step_batch_size": "--batch-size", "step_size": "--size",
                    "step_threads": "--threads", "step_repeats": "--repeats", "step_burn_in": "--burn-in",
                    "tables_batch_size": "--batch-size", "tables_size": "--size"}


def _check_settings(ap, settings: dict) -> None:
    """``aprbook.scaling.check_settings`` as ``ap.error`` naming the option."""
    import re
    from .scaling import check_settings
    try:
        check_settings(settings)
    except ValueError as e:
        ap.error(re.sub(r"setting (\w+)=", lambda m: f"option {_SETTING_OPTIONS.get(m.group(1), m.group(1))} ",
                        str(e)))


def _scaling_main(argv) -> int:
    from .scaling import cost_vs_size, scaling_text
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench scaling", description=(
        "Cost against canvas size at fixed content: the same objects in the top-left corner of "
        "ever larger canvases; formation, APR_B tables + forward and Pix_B forward, time (medians of "
        "interleaved repeats) and peak memory (fresh processes, address space limited)."))
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8192],
                    help="canvas sides in pixels (default 256 ... 8192)")
    ap.add_argument("--content", type=int, default=256, help="side of the content patch in pixels (default 256)")
    ap.add_argument("--objects", type=int, default=2, help="objects in the content patch, 0 ... 4 (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per size (default 3)")
    ap.add_argument("--burn-in", type=int, default=1, help="untimed rounds first (default 1)")
    ap.add_argument("--threads", type=int, default=1, help="threads of torch and the C++ kernels (default 1)")
    ap.add_argument("--mem-limit-gb", type=float, default=12.0,
                    help="address-space limit of each measuring process in GB; a pass beyond it is reported as "
                         "'did not fit' (default 12; 0: no limit)")
    ap.add_argument("--budget-s", type=float, default=60.0,
                    help="seconds of calls per side and size (burn-in included) after which a side that has one "
                         "timed call is not repeated (default 60; 0: no budget)")
    ap.add_argument("--backend", choices=["cpp", "torch"], default="cpp")
    ap.add_argument("--csv", default=None, help="write the table here")
    args = ap.parse_args(argv)
    limit = args.mem_limit_gb or None
    if args.mem_limit_gb < 0:
        ap.error(f"--mem-limit-gb {args.mem_limit_gb}: must be 0 (no limit) or positive")
    if args.budget_s < 0:
        ap.error(f"--budget-s {args.budget_s}: must be 0 (no budget) or positive")
    _check_settings(ap, {"sizes": args.sizes, "content": args.content, "objects": args.objects,
                         "repeats": args.repeats, "burn_in": args.burn_in, "threads": args.threads,
                         "mem_limit_gb": limit})
    _csv_option(ap, args.csv)
    print(f"cost against canvas size at fixed content ({args.objects} objects on a {args.content}x{args.content} "
          f"patch), {args.threads} thread(s), medians of {args.repeats} interleaved rounds after {args.burn_in}; "
          f"peak memory above the memory held before, fresh process each, address space "
          f"{'limited to %g GB' % limit if limit else 'unlimited'}; a side stops repeating after "
          f"{args.budget_s:g} s of calls at a size once it has one timed call", flush=True)
    df = cost_vs_size(args.sizes, args.content, args.objects, args.seed, args.repeats, args.burn_in, args.threads,
                      limit, budget_s=args.budget_s or None, backend=args.backend, progress=True)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print()
    print(df[["size", "pixels", "particles", "formation_s", "formation_px_per_s", "formation_peak_mb", "tables_s",
              "forward_s", "apr_s", "tables_peak_mb", "forward_peak_mb", "pixel_s", "pixel_peak_mb", "pixel_fit",
              "pixel_featmap_mb"]].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    print(scaling_text(df))
    return 0


def _step_main(argv) -> int:
    from .scaling import step_summary, step_text, training_step
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench step", description=(
        "End-to-end streamed training step, images in: APR_B (formation, tables, forward, cross entropy, "
        "backward, Adam) against Pix_B (forward, cross entropy, backward, Adam), interleaved repeats."))
    ap.add_argument("--batch-size", type=int, default=SYNTHETIC_BATCH_SIZE)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds (default 5)")
    ap.add_argument("--burn-in", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=["cpp", "torch"], default="cpp")
    ap.add_argument("--channels-last", action="store_true",
                    help="also time Pix_B in torch's channels-last layout (PixelNet(channels_last=True))")
    ap.add_argument("--csv", default=None, help="write the per-round table here")
    args = ap.parse_args(argv)
    _check_settings(ap, {"step_batch_size": args.batch_size, "step_size": args.size, "step_threads": args.threads,
                         "step_repeats": args.repeats, "step_burn_in": args.burn_in})
    _csv_option(ap, args.csv)
    print(f"streamed training step, batch {args.batch_size} of {args.size}x{args.size} synthetic images, threads "
          f"{args.threads}, {args.repeats} rounds after {args.burn_in}", flush=True)
    df = training_step(args.batch_size, args.size, tuple(args.threads), args.repeats, args.burn_in, args.seed,
                       args.backend, progress=True, channels_last=args.channels_last)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print()
    print(step_text(step_summary(df), args.batch_size, args.size))
    return 0


def _tables_main(argv) -> int:
    from .scaling import table_memory, tables_text
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench tables", description=(
        "Memory of APR_B's index tables of one batch: bytes the tables keep (walking the caches) and the "
        "RSS high-water mark of prepare, in a fresh process."))
    ap.add_argument("--batch-size", type=int, default=SYNTHETIC_BATCH_SIZE)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=["cpp", "torch"], default="cpp")
    args = ap.parse_args(argv)
    _check_settings(ap, {"tables_batch_size": args.batch_size, "tables_size": args.size})
    print(tables_text(table_memory(args.batch_size, args.size, args.seed, args.backend)))
    return 0


def _pipeline_main(argv) -> int:
    from .pipeline import handoff_times, overlap_times, pipeline_text
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench pipeline", description=(
        "The streamed APR input pipeline: the trainer's CPU time to receive a prepared APR_B batch from a "
        "DataLoader worker (packed into shared memory vs pickled arrays), and seconds per batch of the streamed "
        "loop with 0 and 1 workers (does preparing batch i + 1 overlap the step on batch i?); alternating sides."))
    ap.add_argument("--batch-size", type=int, default=SYNTHETIC_BATCH_SIZE)
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of each measurement (default 3)")
    ap.add_argument("--batches", type=int, default=5, help="streamed batches per overlap round (default 5)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", choices=["handoff", "overlap"], default=None, help="leave one measurement out")
    args = ap.parse_args(argv)
    for option, value, least in (("--batch-size", args.batch_size, 1), ("--size", args.size, 8),
                                 ("--rounds", args.rounds, 1), ("--batches", args.batches, 2)):
        if value < least:
            ap.error(f"{option} {value}: must be at least {least}")
    handoff = overlap = None
    if args.skip != "handoff":
        handoff = handoff_times(args.batch_size, args.size, args.rounds, seed=args.seed)
    if args.skip != "overlap":
        overlap = overlap_times(args.batch_size, args.size, args.rounds, args.batches, args.seed)
    print(pipeline_text(handoff, overlap))
    return 0


def _cost3d_main(argv) -> int:
    import re
    from pathlib import Path

    from .cost3d import check_settings, cost3d_text, cost_3d
    from .profiles import profile_settings
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench cost3d", description=(
        "3D cost against volume size and CR, one thread (aprbook.cost3d): APR formation vs pyapr, APRConv3d "
        "forward + backward vs F.conv3d on the voxel volume (tables built before timing, their time apart), and "
        "the peak memory of each pass in fresh processes; the settings of a profile, some overridable."))
    ap.add_argument("--profile", choices=["smoke", "book", "paper"], default="book",
                    help="the cost_3d settings of aprbook.profiles to start from (default book: 64^3 ... 256^3, "
                         "32 channels; 11 minutes on two busy cores, 2026-12-07)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="volume sides (default: the profile's)")
    ap.add_argument("--channels", type=int, default=None, help="channels in and out (default: the profile's)")
    ap.add_argument("--repeats", type=int, default=None, help="timed convolution rounds (default: the profile's)")
    ap.add_argument("--burn-in", type=int, default=None, help="untimed rounds first (default: the profile's)")
    ap.add_argument("--mem-limit-gb", type=float, default=None,
                    help="address-space limit of each measuring process in GB (default: the profile's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv-dir", default=None, help="write formation.csv and conv.csv into this existing directory")
    args = ap.parse_args(argv)
    cfg = profile_settings("cost_3d", args.profile)
    for key in ("sizes", "channels", "repeats", "burn_in", "mem_limit_gb"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    try:
        check_settings(cfg)
    except ValueError as e:
        ap.error(re.sub(r"setting (\w+)=", lambda m: f"option --{m.group(1).replace('_', '-')} ", str(e)))
    if args.csv_dir is not None and not Path(args.csv_dir).is_dir():
        ap.error(f"--csv-dir {args.csv_dir}: no such directory")
    print(f"3D cost, profile {args.profile}: sizes {cfg['sizes']}, CR settings {cfg['settings']}, "
          f"{cfg['channels']} -> {cfg['channels']} channels, k = {cfg['kernel']}, {cfg['threads']} thread(s); "
          f"medians of {cfg['repeats']} interleaved rounds after {cfg['burn_in']} (formation: "
          f"{cfg['formation_repeats']} after a warm-up); peak memory in fresh processes", flush=True)
    tables = cost_3d(cfg, seed=args.seed, progress=True)
    if args.csv_dir:
        for name, df in tables.items():
            df.to_csv(Path(args.csv_dir) / f"{name}.csv", index=False)
    print()
    print(cost3d_text(tables))
    return 0


_SUBCOMMANDS = {"cost3d": _cost3d_main, "scaling": _scaling_main, "step": _step_main, "tables": _tables_main, "pipeline": _pipeline_main}


def main(argv=None) -> int:
    """``python -m aprbook.bench [ops] [options]``: the operation benchmark (the default); ``scaling``,
    ``step`` and ``tables``: the benchmarks of :mod:`aprbook.scaling`; ``cost3d``: :mod:`aprbook.cost3d`
    (``--help`` on each)."""
    import sys
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _SUBCOMMANDS:
        return _SUBCOMMANDS[argv[0]](argv[1:])
    if argv and argv[0] == "ops":
        argv = argv[1:]
    ap = argparse.ArgumentParser(prog="python -m aprbook.bench [ops]", description=__doc__, epilog=(
        "Other benchmarks: python -m aprbook.bench scaling | step | tables | pipeline | cost3d [--help] (cost against "
        "canvas size at fixed content; the end-to-end streamed training step; the memory of one batch's index tables; "
        "handing prepared batches from DataLoader workers to the trainer; 3D formation, convolution and memory "
        "against volume size and CR)."))
    ap.add_argument("--size", type=int, default=512, help="canvas side in pixels (default 512)")
    ap.add_argument("--objects", type=int, nargs="+", default=[16, 8, 4, 2, 1],
                    help="objects per canvas, one image each (-1: a noise image)")
    ap.add_argument("--kernels", type=int, nargs="+", default=[1, 3, 11])
    ap.add_argument("--channels", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="threads per channel count (0: all cores); one value applies to all")
    ap.add_argument("--backends", nargs="+", choices=["cpp", "torch"], default=["cpp"])
    ap.add_argument("--calls", type=int, default=5, help="timed calls per measurement")
    ap.add_argument("--burn-in", type=int, default=1)
    ap.add_argument("--mean", action="store_true", help="mean instead of median (the thesis's protocol)")
    ap.add_argument("--training", action="store_true", help="also time APR_A/B vs Pix_A/B training steps")
    ap.add_argument("--csv", default=None, help="write the per-op table here")
    args = ap.parse_args(argv)
    _check_options(ap, args)
    n_threads = tuple(t or None for t in args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {_core.num_threads()} OpenMP threads")
    tile = max(args.size // 4, 8)
    images = [object_canvas(n, seed=i, size=args.size, tile=tile) for i, n in enumerate(args.objects)]
    df = op_timings(images, args.kernels, args.channels, n_threads, args.backends, args.calls, args.burn_in,
                    stat="mean" if args.mean else "median", labels=args.objects)
    if args.csv:
        df.to_csv(args.csv, index=False)
    print("\nspeed-up (dense fwd+bwd time / APR fwd+bwd time) against CR, the physical limit:")
    print(df.pivot_table(index=["op", "k", "C", "backend"], columns="cr", values="speedup").round(1).to_string())
    print("\nlinear fits time = a + b * N_p:")
    print(fit_linear(df)[["op", "k", "C", "backend", "apr_fwd_b", "apr_fwd_r2", "apr_bwd_b", "apr_bwd_r2",
                          "bwd_over_fwd_slope"]].to_string(index=False))
    if args.training:
        for net in ("A", "B"):
            r = training_step_benchmark(net, backend=args.backends[0])
            print(f"\nAPR_{net} vs Pix_{net}, batch {r['batch_size']} of {r['size']}x{r['size']} (mean CR "
                  f"{r['mean_cr']:.1f}): APR step {r['apr_step_s']:.3f} s with its index tables cached, "
                  f"{r['apr_step_with_tables_s']:.3f} s building them in the step (+ {r['form_s']:.3f} s forming "
                  f"the APRs); pixel step {r['pixel_step_s']:.3f} s -> speed-up x{r['speedup']:.1f} "
                  f"(x{r['speedup_with_tables']:.1f} including APR formation and tables)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

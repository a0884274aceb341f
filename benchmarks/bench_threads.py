"""Where a second thread starts to pay in the APR op kernels: each kernel timed at one thread and at
two threads (forced parallel) over a range of work sizes, in one run, interleaved, medians.

Usage:
    python benchmarks/bench_threads.py [--repeats 7] [--csv PATH]

The work of a call is its table entries x channels (the quantity the kernels compare with
``aprlib._core.parallel_threshold()``). The printed break-even is the smallest measured work from
which two threads are faster than one at every larger size: the threshold to set. On a machine whose
cores are busy with other processes two threads may never pay; the script says so.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.channels < 1:
        ap.error("--repeats and --channels must be >= 1")
    import pandas as pd
    from aprlib import _core

    C, K = args.channels, 9
    rng = np.random.default_rng(0)
    rows = []
    default = _core.parallel_threshold()
    for log_work in range(12, 24, 1):
        n = max(1, (1 << log_work) // (K * C))
        n_vals = n + 1
        vals = rng.standard_normal((n_vals, C)).astype(np.float32)
        table = rng.integers(0, n_vals, (n, K)).astype(np.int32)
        grad_cols = rng.standard_normal((n, K * C)).astype(np.float32)
        pool_table = rng.permutation(4 * (n_vals // 4) or 4)[:4 * max(n_vals // 4, 1)].reshape(-1, 4).astype(np.int32) % n_vals
        kernels = {
            "gather_rows": lambda: _core.gather_rows(vals, table),
            "scatter_add_rows": lambda: _core.scatter_add_rows(grad_cols, table, np.zeros_like(vals)),
            "pool_forward": lambda: _core.pool_forward(vals, pool_table),
        }
        for name, fn in kernels.items():
            times = {1: [], 2: []}
            for _ in range(args.repeats):  # interleaved
                for nt in (1, 2):
                    _core.set_num_threads(nt)
                    _core.set_parallel_threshold(0 if nt == 2 else 1 << 62)
                    t0 = time.perf_counter()
                    fn()
                    times[nt].append(time.perf_counter() - t0)
            work = n * K * C if name != "pool_forward" else pool_table.shape[0] * C
            rows.append(dict(kernel=name, work=work, t1=statistics.median(times[1]), t2=statistics.median(times[2])))
    _core.set_parallel_threshold(default)
    df = pd.DataFrame(rows)
    df["speedup_2_threads"] = df.t1 / df.t2
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"\ncurrent threshold: {default} (entries x channels)")
    for name, g in df.groupby("kernel"):
        g = g.sort_values("work")
        pays = g.speedup_2_threads > 1.0
        ok = [w for i, w in enumerate(g.work) if pays.iloc[i:].all()]
        print(f"{name:>18}: two threads pay from work {ok[0]:,}" if ok else f"{name:>18}: two threads never paid here")
    if args.csv:
        df.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

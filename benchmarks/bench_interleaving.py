"""Does interleaving cost an APR training step its warm caches? APR_B's step timed right after
another APR_B step and right after a Pix_B step, side by side in one run.

Usage:
    python benchmarks/bench_interleaving.py [--threads 2] [--rounds 12] [--burn-in 2] [--batch 36]

Notebook 04 times every network's training step in rounds that rotate the order
(:func:`aprbook.bench.interleaved_step_times`), so most APR steps follow a step of another network,
often a pixel network whose activations (hundreds of MB at 256x256) evict the APR step's data from
the caches. A training loop of one network runs its steps back to back. This benchmark runs APR_B
(E = 0.1, index tables built beforehand, batch of 36 synthetic 256x256 images) in two conditions,
each round running both in an alternating order:

- ``after APR_B``: one untimed APR_B step, then the timed APR_B step (as in a training loop);
- ``after Pix_B``: one Pix_B step (channels-last), then the timed APR_B step (as in the rotation).

It prints the medians of the rounds after the burn-in and their ratio (after Pix_B / after APR_B:
above 1 means the interleaving slows the APR step). Both sides see the same host load, so the
ratio separates the caches' effect from drift of the host between separate measurements.
"""
from __future__ import annotations

import argparse
import statistics
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and C++ kernel threads (notebook 04: 2)")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--burn-in", type=int, default=2)
    ap.add_argument("--batch", type=int, default=36)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)
    if args.rounds <= args.burn_in or args.burn_in < 0 or args.threads < 1:
        ap.error("need --threads >= 1 and --rounds > --burn-in >= 0")

    import torch
    import torch.nn.functional as F

    import aprlib
    from aprbook.apr_stats import FORMATION_SETTINGS
    from aprbook.bench import threads
    from aprlib.data.synthetic import generate_batch
    from aprlib.models import apr_network, pixel_network
    from aprlib.nn.prepare import prepare

    torch.manual_seed(0)
    imgs, labels = generate_batch(args.batch, seed=0, size=(args.size, args.size))
    y = torch.as_tensor(labels)
    aprs = [aprlib.form_apr(im, FORMATION_SETTINGS["thesis"], rel_error=0.1) for im in imgs]
    apr_net, batch = apr_network("B", "full"), aprlib.APRBatch(aprs)
    prepare(batch, apr_net)
    pix_net, pixels = pixel_network("B", channels_last=True), torch.from_numpy(imgs)[:, None]
    opt = {"apr": torch.optim.Adam(apr_net.parameters(), 5e-4), "pix": torch.optim.Adam(pix_net.parameters(), 5e-4)}

    def step(which):
        net, x = (apr_net, batch) if which == "apr" else (pix_net, pixels)
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt[which].zero_grad()
        loss.backward()
        opt[which].step()
        return time.perf_counter() - t0

    times = {"after APR_B": [], "after Pix_B": []}
    with threads(args.threads):
        for r in range(args.rounds):
            order = list(times) if r % 2 == 0 else list(times)[::-1]
            for cond in order:
                step("apr" if cond == "after APR_B" else "pix")
                t = step("apr")
                if r >= args.burn_in:
                    times[cond].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"APR_B training step (batch {args.batch}, {args.size}x{args.size}, {args.threads} thread(s), "
          f"medians of {args.rounds - args.burn_in} rounds after {args.burn_in}):")
    for k, v in med.items():
        print(f"  {k:12s} {v:.3f} s   (rounds: {' '.join(f'{t:.3f}' for t in times[k])})")
    print(f"  ratio after Pix_B / after APR_B: {med['after Pix_B'] / med['after APR_B']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

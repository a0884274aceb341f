"""The input pipeline of streamed APR training (``python -m aprbook.bench pipeline``): what the
trainer pays to receive a batch that a DataLoader worker prepared (APRs formed, every index table
built), and whether preparing batch i + 1 in a worker overlaps the step on batch i.

- ``handoff``: the trainer process's CPU time to take one prepared APR_B batch from a worker's
  queue, with the batch packed into one shared-memory tensor (:mod:`aprlib.apr.packing`, the
  default) against plain pickling of its arrays through the queue; the two sides alternate, one
  worker, the worker far ahead (every batch ready) so that only the receiving is timed.
- ``overlap``: the streamed training loop (:func:`aprlib.train.train_streamed`) on APR_B with no
  worker (batches prepared between steps) and with one worker (prepared beside the steps):
  seconds per batch, the step itself and the time waiting for a batch; alternating.
Nothing here asserts a speed: the printed ratios are the result.
"""
from __future__ import annotations

import contextlib
import time
from multiprocessing.reduction import ForkingPickler

import pandas as pd
import torch

from .settings import BOOK_NORMALISATION, SYNTHETIC_BATCH_SIZE

__all__ = ["handoff_times", "overlap_times", "pipeline_text"]


def _prepared_batches(n: int, batch_size: int, size: int, seed: int):
    """Batch i < n: stream images i * batch_size ... prepared for APR_B (formation and every table),
    as the streamed training loop's DataLoader prepares them."""
    from aprlib.data.synthetic import SyntheticShapesStream
    from aprlib.models import apr_network
    from aprlib.train import InputSpec, StreamBatches, batch_builder
    builder = batch_builder(InputSpec("apr", normalise=BOOK_NORMALISATION), apr_network("B", "full"))
    return StreamBatches(SyntheticShapesStream(seed=seed, size=(size, size)), batch_size, builder, 0, n)


@contextlib.contextmanager
def _plain_pickling():
    """Within the block, APR batches cross process queues as plainly pickled arrays (the reduction of
    :mod:`aprlib.apr.batch` removed), as before they were packed."""
    from aprlib.apr import batch as mod
    reducer = ForkingPickler._extra_reducers.pop(mod.APRBatch, None)
    try:
        yield
    finally:
        if reducer is not None:
            ForkingPickler.register(mod.APRBatch, reducer)


def handoff_times(batch_size: int = SYNTHETIC_BATCH_SIZE, size: int = 256, rounds: int = 3, per_round: int = 2,
                  seed: int = 0, ready_s: float = 4.0) -> pd.DataFrame:
    """One row per received batch: ``mode`` ('packed' or 'pickled'), ``round``, ``receive_cpu_s`` (the
    trainer's CPU time inside ``next()``) and ``bytes`` (of all the batch's arrays). Each round starts a
    one-worker DataLoader per mode (alternating which goes first), waits ``ready_s`` seconds per batch
    so the worker has them all ready, and takes ``per_round`` batches."""
    from aprlib.apr.packing import pack
    nbytes = pack(_prepared_batches(1, batch_size, size, seed)[0][0].__dict__)[1].numel()
    rows = []
    for r in range(rounds):
        for mode in (("packed", "pickled") if r % 2 == 0 else ("pickled", "packed")):
            with (_plain_pickling() if mode == "pickled" else contextlib.nullcontext()):
                loader = torch.utils.data.DataLoader(_prepared_batches(per_round, batch_size, size, seed),
                                                     batch_size=None, num_workers=1, prefetch_factor=per_round)
                it = iter(loader)
                time.sleep(ready_s * per_round)
                for _ in range(per_round):
                    t = time.process_time()
                    batch, _labels = next(it)
                    rows.append({"mode": mode, "round": r, "receive_cpu_s": time.process_time() - t,
                                 "bytes": nbytes})
                del it
    return pd.DataFrame(rows)


def overlap_times(batch_size: int = SYNTHETIC_BATCH_SIZE, size: int = 256, rounds: int = 2, n_batches: int = 5,
                  seed: int = 0) -> pd.DataFrame:
    """One row per round and worker count (0 or 1, alternating which goes first): APR_B trained on
    ``n_batches`` streamed batches; ``per_batch_s`` (wall time per batch, the first batch left out: it
    includes starting the worker), median ``step_s`` and ``wait_s``."""
    from aprlib.data.synthetic import SyntheticShapesStream
    from aprlib.models import apr_network
    from aprlib.train import InputSpec, train_streamed
    rows = []
    for r in range(rounds):
        for workers in ((0, 1) if r % 2 == 0 else (1, 0)):
            torch.manual_seed(seed)
            m = train_streamed(apr_network("B", "full"), SyntheticShapesStream(seed=seed, size=(size, size)),
                               InputSpec("apr", normalise=BOOK_NORMALISATION), n_batches, batch_size,
                               num_workers=workers, progress=False)
            rest = m.iloc[1:]
            rows.append({"workers": workers, "round": r, "per_batch_s": float((rest.step_s + rest.wait_s).mean()),
                         "step_s": float(rest.step_s.median()), "wait_s": float(rest.wait_s.median())})
    return pd.DataFrame(rows)


def pipeline_text(handoff: pd.DataFrame | None, overlap: pd.DataFrame | None) -> str:
    lines = []
    if handoff is not None and len(handoff):
        med = handoff.groupby("mode").receive_cpu_s.median()
        mb = handoff.bytes.median() / 1e6
        lines.append(f"receiving a prepared APR_B batch ({mb:.1f} MB of arrays) from a DataLoader worker, trainer "
                     f"CPU time, median: packed into shared memory {med.get('packed', float('nan')) * 1e3:.1f} ms, "
                     f"pickled arrays {med.get('pickled', float('nan')) * 1e3:.1f} ms "
                     f"(x{med.get('pickled', float('nan')) / med.get('packed', float('nan')):.1f})")
    if overlap is not None and len(overlap):
        g = overlap.groupby("workers")[["per_batch_s", "step_s", "wait_s"]].median()
        for w, r in g.iterrows():
            lines.append(f"streamed APR_B, {w} worker{'s' if w != 1 else ''}: {r.per_batch_s:.3f} s per batch "
                         f"(step {r.step_s:.3f} s, waiting for the batch {r.wait_s:.3f} s)")
        if {0, 1} <= set(g.index):
            lines.append(f"one worker preparing the next batch beside the step: x{g.per_batch_s[0] / g.per_batch_s[1]:.2f} "
                         f"batches per second (the limit with two cores: (prepare + step) / max(prepare, step))")
    return "\n".join(lines)

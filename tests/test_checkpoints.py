"""Checkpoints: one configuration per checkpoint, extension of completed runs, budgets, unreadable and
unsafe files, archiving of completed runs (aprlib.train, aprbook.runs)."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from aprlib.data.synthetic import SyntheticShapes, SyntheticShapesStream
from aprlib.models import apr_network, pixel_network
from aprlib.train import CHECKPOINT_FORMAT, Checkpoint, InputSpec, train_epochs, train_fixed, train_streamed

SIZE = (48, 48)


def _pixel_model(seed=0):
    torch.manual_seed(seed)
    return pixel_network("A", dropout=0.5)  # dropout: the restored torch RNG must be the straight run's


def _assert_same_model(a, b):
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), k


# --- loops: extension (prefix stability) and budgets ------------------------------------------------
@pytest.mark.parametrize("kind, network, short, long, batch_size", [
    ("apr", lambda: apr_network("A", "same", dropout=0.5), 3, 6, 4),
    # channels-last: the checkpoint restores parameters and Adam's state into the same layout
    ("pixel", lambda: pixel_network("A", dropout=0.5, channels_last=True), 2, 4, 3),
])
def test_streamed_extension_equals_the_longer_run_bitwise(tmp_path, kind, network, short, long, batch_size):
    """Batch b of a stream does not depend on the budget: `short` batches extended to `long` is
    `long` straight (an APRNet, and a pixel network in the channels-last layout)."""
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec(kind)

    def model():
        torch.manual_seed(0)
        return network()

    straight = model()
    ref = train_streamed(straight, stream, spec, n_batches=long, batch_size=batch_size, progress=False)
    ck = Checkpoint(tmp_path / "run.ckpt", {"run": "x"})
    train_streamed(model(), stream, spec, n_batches=short, batch_size=batch_size, checkpoint=ck, progress=False)
    extended_model = model()
    extended = train_streamed(extended_model, stream, spec, n_batches=long, batch_size=batch_size, checkpoint=ck,
                              progress=False)
    assert extended.batch.tolist() == list(range(long))
    np.testing.assert_array_equal(extended[["loss", "accuracy"]], ref[["loss", "accuracy"]])
    _assert_same_model(straight, extended_model)
    if kind == "pixel":
        assert extended_model.features[1][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_fixed_extension_equals_the_longer_run_bitwise(tmp_path):
    """The fixed loop's order is permutations drawn one after another from the seed, so a longer
    budget has the same first batches (checked directly and through the result); a run that stopped
    on the evaluation grid extends to the longer run exactly."""
    train = SyntheticShapes(10, seed=8, size=SIZE)
    val = SyntheticShapes(6, seed=9, size=SIZE)
    kw = dict(batch_size=4, eval_every=2, lr=3e-3, weight_decay=1e-4, seed=2, progress=False)
    # the order's prefix: 3 and 11 permutations of 10 items drawn from the same seed
    rng_short, rng_long = np.random.default_rng(2), np.random.default_rng(2)
    short = np.concatenate([rng_short.permutation(10) for _ in range(3)])
    long = np.concatenate([rng_long.permutation(10) for _ in range(11)])
    np.testing.assert_array_equal(long[:len(short)], short)

    straight = _pixel_model()
    ref, ref_best = train_fixed(straight, train, val, InputSpec("pixel"), n_iterations=6, **kw)
    ck = Checkpoint(tmp_path / "fixed.ckpt", {"run": "x"})
    train_fixed(_pixel_model(), train, val, InputSpec("pixel"), n_iterations=4, checkpoint=ck, **kw)
    extended_model = _pixel_model(seed=5)  # another initialisation: the checkpoint must override it
    extended, best = train_fixed(extended_model, train, val, InputSpec("pixel"), n_iterations=6, checkpoint=ck, **kw)
    assert extended.iteration.tolist() == ref.iteration.tolist() == [2, 4, 6]
    cols = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_array_equal(extended[cols], ref[cols])
    _assert_same_model(straight, extended_model)
    for k in ref_best:
        assert torch.equal(best[k], ref_best[k]), k


def test_fixed_run_ending_off_the_evaluation_grid_is_not_extended(tmp_path, capsys):
    """3 iterations evaluating every 2 evaluate at 2 and 3; a 6-iteration run evaluates at 2, 4, 6, so
    extending the 3-iteration run would add an evaluation (and possibly a best model) the longer run
    does not have: it restarts instead, with the longer run's result."""
    train = SyntheticShapes(10, seed=8, size=SIZE)
    val = SyntheticShapes(6, seed=9, size=SIZE)
    kw = dict(batch_size=4, eval_every=2, lr=3e-3, seed=2, progress=False)
    ref, _ = train_fixed(_pixel_model(), train, val, InputSpec("pixel"), n_iterations=6, **kw)
    ck = tmp_path / "fixed.ckpt"
    short, _ = train_fixed(_pixel_model(), train, val, InputSpec("pixel"), n_iterations=3, checkpoint=ck, **kw)
    assert short.iteration.tolist() == [2, 3]
    capsys.readouterr()
    again, _ = train_fixed(_pixel_model(), train, val, InputSpec("pixel"), n_iterations=6, checkpoint=ck, **kw)
    out = capsys.readouterr().out
    assert "does not make" in out and str(ck) in out and "restarts" in out
    cols = ["iteration", "train_loss", "val_loss"]
    np.testing.assert_array_equal(again[cols], ref[cols])


def test_epochs_extension_equals_the_longer_run(tmp_path):
    train = SyntheticShapes(8, seed=8, size=SIZE)
    val = SyntheticShapes(4, seed=9, size=SIZE)
    kw = dict(batch_size=4, lr=1e-3, seed=5, progress=False)
    ref = train_epochs(_pixel_model(), train, val, InputSpec("pixel"), n_epochs=3, **kw)
    ck = Checkpoint(tmp_path / "epochs.ckpt", {"run": "x"})
    train_epochs(_pixel_model(), train, val, InputSpec("pixel"), n_epochs=1, checkpoint=ck, **kw)
    extended = train_epochs(_pixel_model(), train, val, InputSpec("pixel"), n_epochs=3, checkpoint=ck, **kw)
    cols = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    np.testing.assert_array_equal(extended[cols], ref[cols])


def test_checkpoint_beyond_the_budget_is_not_resumed(tmp_path, capsys):
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    ref = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, progress=False)
    ck = tmp_path / "run.ckpt"
    train_streamed(_pixel_model(), stream, spec, n_batches=4, batch_size=3, checkpoint=ck, progress=False)
    capsys.readouterr()
    shorter = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=ck, progress=False)
    out = capsys.readouterr().out
    assert "has trained 4 batches, more than this run's 2" in out and "restarts" in out
    np.testing.assert_array_equal(shorter[["batch", "loss", "accuracy"]], ref[["batch", "loss", "accuracy"]])


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path, capsys):
    """The configuration and the loop's settings are stored in the file and compared on load: the
    same file name is not enough."""
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    path = tmp_path / "run.ckpt"
    train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=Checkpoint(path, {"a": 1}),
                   progress=False)
    capsys.readouterr()
    ref = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, progress=False)
    other = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3,
                           checkpoint=Checkpoint(path, {"a": 2}), progress=False)
    out = capsys.readouterr().out
    assert "another configuration" in out and "config.a" in out and str(path) in out
    np.testing.assert_array_equal(other[["loss", "accuracy"]], ref[["loss", "accuracy"]])
    # a plain path and another learning rate: the loop's own settings are compared too
    train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=path, progress=False)
    capsys.readouterr()
    ref = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, lr=1e-3, progress=False)
    other = train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, lr=1e-3, checkpoint=path,
                           progress=False)
    assert "loop.lr" in capsys.readouterr().out
    np.testing.assert_array_equal(other[["loss", "accuracy"]], ref[["loss", "accuracy"]])


def test_saved_progress_reads_only_this_configurations_file(tmp_path):
    """``Checkpoint.saved_progress``: the progress of the file (else the archive) written for this
    configuration; 0 for none, another configuration's or an unreadable file, which stays in place."""
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    ck = Checkpoint(tmp_path / "run.ckpt", {"a": 1}, archive=tmp_path / "done" / "run.ckpt")
    assert ck.saved_progress("next_batch") == 0
    train_streamed(_pixel_model(), stream, spec, n_batches=3, batch_size=3, checkpoint=ck, progress=False)
    assert ck.saved_progress("next_batch") == 3
    assert Checkpoint(ck.path, {"a": 2}).saved_progress("next_batch") == 0
    ck.archive.parent.mkdir()
    ck.path.rename(ck.archive)
    assert ck.saved_progress("next_batch") == 3  # the archive of a completed run
    ck.path.write_bytes(ck.archive.read_bytes()[:100])  # a truncated file before it: skipped, not moved
    assert ck.saved_progress("next_batch") == 3 and ck.path.exists()


# --- unreadable and unsafe files ---------------------------------------------------------------------
def test_checkpoints_load_with_weights_only(tmp_path):
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=tmp_path / "s.ckpt",
                   progress=False)
    train, val = SyntheticShapes(6, seed=8, size=SIZE), SyntheticShapes(3, seed=9, size=SIZE)
    train_fixed(_pixel_model(), train, val, spec, n_iterations=2, batch_size=3, eval_every=1,
                checkpoint=tmp_path / "f.ckpt", progress=False)
    train_epochs(_pixel_model(), train, val, spec, n_epochs=1, batch_size=3, checkpoint=tmp_path / "e.ckpt",
                 progress=False)
    for name, progress in (("s", "next_batch"), ("f", "next_iteration"), ("e", "epoch")):
        state = torch.load(tmp_path / f"{name}.ckpt", weights_only=True)
        assert state["checkpoint"]["format"] == CHECKPOINT_FORMAT and isinstance(state[progress], int)
        assert state["torch_rng"].dtype == torch.uint8


def test_truncated_checkpoint_is_moved_aside_and_the_run_restarts(tmp_path):
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    ref = train_streamed(_pixel_model(), stream, spec, n_batches=4, batch_size=3, progress=False)
    ck = tmp_path / "run.ckpt"
    train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=ck, progress=False)
    ck.write_bytes(ck.read_bytes()[:ck.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match=r"run\.ckpt is unreadable .*moved aside to run\.ckpt\.corrupt-.*restarts"):
        again = train_streamed(_pixel_model(), stream, spec, n_batches=4, batch_size=3, checkpoint=ck, progress=False)
    np.testing.assert_array_equal(again[["batch", "loss", "accuracy"]], ref[["batch", "loss", "accuracy"]])
    assert len(list(tmp_path.glob("run.ckpt.corrupt-*"))) == 1
    assert torch.load(ck, weights_only=True)["next_batch"] == 4  # the restarted run's own checkpoint


class _Payload:
    """Unpickling this runs ``_payload(marker)``: what ``torch.load(weights_only=False)`` would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_payload, (self.marker,))


def _payload(marker):
    Path(marker).write_text("code from a checkpoint ran")
    return {}


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    """A crafted checkpoint (right keys, plus a pickled object whose unpickling runs code) is not
    unpickled: refused, moved aside, and the run starts from scratch."""
    stream, spec = SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel")
    ck, marker = tmp_path / "run.ckpt", tmp_path / "ran"
    train_streamed(_pixel_model(), stream, spec, n_batches=2, batch_size=3, checkpoint=ck, progress=False)
    state = torch.load(ck, weights_only=True)
    state["rows"].append({"batch": 99, "payload": _Payload(str(marker))})
    torch.save(state, ck)
    ref = train_streamed(_pixel_model(), stream, spec, n_batches=3, batch_size=3, progress=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = train_streamed(_pixel_model(), stream, spec, n_batches=3, batch_size=3, checkpoint=ck, progress=False)
    assert not marker.exists()  # torch.load(weights_only=False) would have run _payload
    refused = r"run\.ckpt is unreadable \(UnpicklingError: holds .*_payload, which torch\.load\(weights_only=True\)"
    assert any(re.search(refused, str(w.message)) for w in caught if w.category is RuntimeWarning)
    np.testing.assert_array_equal(out[["batch", "loss"]], ref[["batch", "loss"]])


# --- aprbook.runs: keyed checkpoints, archive, recompute ---------------------------------------------
def _smoke_streamed(**changes):
    from aprbook.profiles import profile_settings
    from aprbook.runs import streamed_runs
    cfg = {**profile_settings("streamed_training", "smoke"), **changes}
    run = next(r for r in streamed_runs(cfg) if r["network"] == "Pix_A")
    return run, cfg


def _metrics(tmp, run, cfg, **kw):
    from aprbook.runs import compute_streamed
    store = compute_streamed(run, cfg, "smoke", tmp / "results", tmp / "ckpt", progress=False, **kw)
    assert store.fresh
    return store.load_table("metrics")[["batch", "loss", "accuracy"]]


def test_changed_setting_restarts_instead_of_resuming(tmp_path):
    """Rerunning with another learning rate gives the new rate's result (it once resumed the old
    run's completed checkpoint and stored it under the new settings)."""
    run, cfg = _smoke_streamed()
    first = _metrics(tmp_path / "a", run, cfg)
    run2, cfg2 = _smoke_streamed(lr=5e-3)
    changed = _metrics(tmp_path / "a", run2, cfg2)
    fresh = _metrics(tmp_path / "fresh", run2, cfg2)
    np.testing.assert_array_equal(changed, fresh)
    assert not np.array_equal(changed.loss, first.loss)
    done = sorted(p.name for p in (tmp_path / "a" / "ckpt" / "streamed_training" / "smoke" / "done").iterdir())
    assert len(done) == 2 and all(n.startswith(run["id"] + "-") for n in done)  # one archive per configuration


def test_completed_run_is_archived_and_extended(tmp_path, capsys):
    """Convergence reruns: a completed run of 3 batches extended to 6 stores what 6 straight store."""
    run, cfg = _smoke_streamed(n_batches=3)
    _metrics(tmp_path / "a", run, cfg)
    where = tmp_path / "a" / "ckpt" / "streamed_training" / "smoke"
    assert [p.name for p in where.glob("*.ckpt")] == []  # nothing left to be resumed blindly
    (archived,) = (where / "done").glob(f"{run['id']}-*.ckpt")
    capsys.readouterr()
    run6, cfg6 = _smoke_streamed(n_batches=6)
    extended = _metrics(tmp_path / "a", run6, cfg6)
    assert f"resuming from {archived}" in capsys.readouterr().out
    np.testing.assert_array_equal(extended, _metrics(tmp_path / "fresh", run6, cfg6))
    assert torch.load(archived, weights_only=True)["next_batch"] == 6  # the archive is now the longer run


def test_budget_shrink_restarts(tmp_path, capsys):
    run, cfg = _smoke_streamed(n_batches=3)
    _metrics(tmp_path / "a", run, cfg)
    capsys.readouterr()
    run2, cfg2 = _smoke_streamed(n_batches=2)
    shorter = _metrics(tmp_path / "a", run2, cfg2)
    assert "more than this run's 2" in capsys.readouterr().out
    np.testing.assert_array_equal(shorter, _metrics(tmp_path / "fresh", run2, cfg2))


def test_damaged_store_and_truncated_archive_recompute_from_scratch(tmp_path):
    """A truncated stored table makes the store stale; its truncated archived checkpoint is moved
    aside (with a warning naming it) and the run restarts, storing what a fresh run stores."""
    from aprbook.runs import streamed_store
    run, cfg = _smoke_streamed()
    reference = _metrics(tmp_path / "a", run, cfg)
    store = streamed_store(run, cfg, "smoke", tmp_path / "a" / "results")
    table = store.dir / "metrics.csv"
    table.write_bytes(table.read_bytes()[:30])
    assert not store.fresh
    (archived,) = (tmp_path / "a" / "ckpt" / "streamed_training" / "smoke" / "done").glob("*.ckpt")
    archived.write_bytes(archived.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match=f"{archived.name} is unreadable"):
        again = _metrics(tmp_path / "a", run, cfg)
    np.testing.assert_array_equal(again, reference)
    assert len(list(archived.parent.glob("*.corrupt-*"))) == 1


def test_recompute_deletes_both_checkpoints(tmp_path, capsys):
    run, cfg = _smoke_streamed()
    _metrics(tmp_path, run, cfg)
    where = tmp_path / "ckpt" / "streamed_training" / "smoke"
    (archived,) = (where / "done").glob("*.ckpt")
    active = where / archived.name
    active.write_bytes(archived.read_bytes())  # as if a later session had been interrupted
    (where / f"{run['id']}.ckpt").write_bytes(b"from an older aprlib")
    capsys.readouterr()
    _metrics(tmp_path, run, cfg, recompute=True)
    assert "resuming" not in capsys.readouterr().out
    assert not (where / f"{run['id']}.ckpt").exists() and not active.exists()
    assert archived.exists()  # the recomputed run's own archive

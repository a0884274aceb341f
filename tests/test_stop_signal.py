"""A training run stopped by Ctrl-C (SIGINT) or SIGTERM saves its checkpoint at the next step where it
may, raises TrainingStopped, and resumes from it to the uninterrupted run's result exactly
(aprlib.train.loops._stop_on_signal; the `python -m aprbook.runs` exit status).

The signals are sent from a forward pre-hook of the model at a chosen training step, in a child
process of its own session (a signal must not reach pytest or its other workers)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, os, signal, sys
import numpy as np, torch
from aprlib.data.synthetic import SyntheticShapes, SyntheticShapesStream
from aprlib.models import pixel_network
from aprlib.train import Checkpoint, InputSpec, TrainingStopped, train_fixed, train_streamed

loop, sig, target, at, n_signals, workers, ck_path, eval_every = sys.argv[1:9]
sig, at, n_signals, workers, eval_every = getattr(signal, sig), int(at), int(n_signals), int(workers), int(eval_every)
SIZE = (48, 48)

def model(hook=False):
    torch.manual_seed(0)
    m = pixel_network("A", dropout=0.5)
    if hook:
        calls = [0]
        def send(mod, _inputs):  # at the at-th training forward pass (step at - 1)
            if mod.training:
                calls[0] += 1
                if calls[0] == at:
                    for _ in range(n_signals):
                        if target == "group":  # as Ctrl-C in a terminal: the process and its DataLoader workers
                            os.killpg(os.getpgid(0), sig)
                        else:
                            os.kill(os.getpid(), sig)
        m.register_forward_pre_hook(send)
    return m

def train(m, checkpoint=None):
    kw = dict(checkpoint=checkpoint, checkpoint_every_s=1e9, num_workers=workers, progress=False)
    if loop == "streamed":
        rows = train_streamed(m, SyntheticShapesStream(seed=3, size=SIZE), InputSpec("pixel"), n_batches=6,
                              batch_size=3, **kw)
        return rows[["batch", "loss", "accuracy"]].to_numpy()
    rows, _ = train_fixed(m, SyntheticShapes(10, seed=8, size=SIZE), SyntheticShapes(6, seed=9, size=SIZE),
                          InputSpec("pixel"), n_iterations=6, batch_size=4, eval_every=eval_every, lr=3e-3, seed=2, **kw)
    return rows[["iteration", "train_loss", "val_loss", "val_accuracy"]].to_numpy()

out = {}
straight = train(model())
ck = Checkpoint(ck_path, {"run": "stop-test"})
try:
    train(model(hook=True), ck)
    out["stopped"] = False
except TrainingStopped as e:
    out.update(stopped=True, signal=e.signal, steps_done=e.steps_done, path=str(e.path), message=str(e))
except KeyboardInterrupt as e:
    out.update(stopped=False, interrupted=str(e))
out["handlers_restored"] = (signal.getsignal(signal.SIGINT) is signal.default_int_handler
                            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
out["checkpoint_exists"] = os.path.exists(ck_path)
if out["checkpoint_exists"]:
    out["saved_progress"] = ck.saved_progress("next_batch" if loop == "streamed" else "next_iteration")
    resumed_model = model()
    resumed = train(resumed_model, ck)
    out["resumed_equals_straight"] = bool(np.array_equal(resumed, straight))
print(json.dumps(out))
"""


def _run(tmp_path, loop, sig, at, n_signals=1, workers=0, target="self", eval_every=2):
    ck = tmp_path / f"{loop}.ckpt"
    args = [loop, sig, target, at, n_signals, workers, ck, eval_every]
    p = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=300,
                       start_new_session=True)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1]), ck


def test_sigterm_stops_a_streamed_run_after_its_step_and_it_resumes_exactly(tmp_path):
    out, ck = _run(tmp_path, "streamed", "SIGTERM", at=3)  # during step 2 of 6
    assert out["stopped"] and out["signal"] == "SIGTERM" and out["steps_done"] == 3
    assert out["path"] == str(ck) and str(ck) in out["message"] and "resume" in out["message"]
    assert out["saved_progress"] == 3
    assert out["resumed_equals_straight"] and out["handlers_restored"]


@pytest.mark.parametrize("loop, eval_every, steps_done", [("streamed", 2, 2), ("fixed", 5, 5)])
def test_ctrl_c_with_a_dataloader_worker_stops_and_resumes_exactly(tmp_path, loop, eval_every, steps_done):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the worker ignores it and goes on
    preparing batches, and the training process saves and stops at its next checkpoint: after the
    step under way (streamed), or at the next evaluation (fixed, every 5 iterations here: it needs
    batches the worker prepares after the signal, more than it prefetches)."""
    out, _ = _run(tmp_path, loop, "SIGINT", at=2, workers=1, target="group", eval_every=eval_every)
    assert out["stopped"] and out["signal"] == "SIGINT" and out["steps_done"] == steps_done
    assert out["resumed_equals_straight"]


def test_a_fixed_run_stops_at_its_next_evaluation(tmp_path):
    """The fixed loop checkpoints only where it evaluates (every 2 iterations here): a signal during
    iteration 3 stops it after iteration 4."""
    out, _ = _run(tmp_path, "fixed", "SIGTERM", at=3)
    assert out["stopped"] and out["steps_done"] == 4 and out["saved_progress"] == 4
    assert out["resumed_equals_straight"] and out["handlers_restored"]


def test_a_second_signal_interrupts_at_once_without_saving(tmp_path):
    out, _ = _run(tmp_path, "streamed", "SIGTERM", at=2, n_signals=2)
    assert not out["stopped"] and "SIGTERM again" in out["interrupted"]
    assert not out["checkpoint_exists"] and out["handlers_restored"]


def test_runs_command_exits_128_plus_the_signal_after_a_stop(tmp_path, monkeypatch, capsys):
    """`python -m aprbook.runs` reports the stop on stderr and exits 128 + signal number, as a shell
    does for a process a signal ended, without starting the runs after it."""
    import aprbook.runs as runs
    from aprlib.train import TrainingStopped
    started = []

    def stopped(run, *a, **k):
        started.append(run["id"])
        raise TrainingStopped(signal.SIGTERM, tmp_path / "x.ckpt", 7)

    name, list_runs, _, store = runs.EXPERIMENTS["converged"]
    monkeypatch.setitem(runs.EXPERIMENTS, "converged", (name, list_runs, stopped, store))
    with pytest.raises(SystemExit) as e:
        runs.main(["converged", "--profile", "smoke", "--results-dir", str(tmp_path / "r"),
                   "--checkpoint-dir", str(tmp_path / "c")])
    assert e.value.code == 128 + signal.SIGTERM
    assert len(started) == 1
    err = capsys.readouterr().err
    assert f"{started[0]}: SIGTERM: training stopped after 7 steps" in err and "x.ckpt" in err


def test_a_signal_outside_training_stops_the_runs_command_with_its_message(tmp_path, monkeypatch, capsys):
    """A SIGTERM that arrives while a run is not training (e.g. testing its kept model between budgets)
    ends `python -m aprbook.runs` with a message and 128 + signal, not silently; the handlers are
    restored after."""
    import os
    import time
    import aprbook.runs as runs
    started, before = [], signal.getsignal(signal.SIGTERM)

    def testing(run, *a, **k):
        started.append(run["id"])
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("the signal did not stop the run")

    name, list_runs, _, store = runs.EXPERIMENTS["converged"]
    monkeypatch.setitem(runs.EXPERIMENTS, "converged", (name, list_runs, testing, store))
    t0 = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        runs.main(["converged", "--profile", "smoke", "--results-dir", str(tmp_path / "r"),
                   "--checkpoint-dir", str(tmp_path / "c")])
    assert e.value.code == 128 + signal.SIGTERM and time.perf_counter() - t0 < 4
    assert len(started) == 1
    assert f"{started[0]}: SIGTERM outside training: stopped" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before

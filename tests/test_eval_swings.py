"""aprbook.eval_swings: batch-norm recalibration and the three ways of measuring a validation loss."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from aprbook.eval_swings import evaluate_batch_stats, swing_trace
from aprlib.train import batch_norms, evaluate, recalibrate_bn


def _net(dropout=0.5):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(dropout),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def _batches(n=4, b=6, seed=1, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, 1, 8, 8, generator=g) * 2 + shift, torch.randint(0, 3, (b,), generator=g))
            for _ in range(n)]


def test_recalibrated_statistics_are_the_exact_averages_over_the_batches():
    net, batches = _net(), _batches(shift=3.0)
    bn = net[1]
    bn.running_mean.fill_(-7.0)
    bn.momentum = 0.1
    net.train()
    recalibrate_bn(net, batches)
    with torch.no_grad():
        feats = [net[0](x) for x, _ in batches]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean)
    torch.testing.assert_close(bn.running_var, var)
    assert bn.momentum == 0.1 and net.training and bn.training  # restored


def test_recalibration_changes_no_weight_and_ignores_dropout():
    net, batches = _net(dropout=0.9), _batches()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    a = recalibrate_bn(copy.deepcopy(net), batches)
    b = recalibrate_bn(copy.deepcopy(net), batches)  # dropout on would make the two differ
    torch.testing.assert_close(a[1].running_var, b[1].running_var, rtol=0, atol=0)
    for k, v in before.items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)


def test_recalibrate_rejects_a_model_without_batch_norm_and_no_batches():
    with pytest.raises(ValueError, match="no batch normalisation"):
        recalibrate_bn(nn.Linear(2, 2), _batches())
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(_net(), [])


def test_batch_statistics_evaluation_uses_each_batch_and_leaves_the_model_alone():
    net, batches = _net(), _batches(shift=2.0)
    state = copy.deepcopy(net.state_dict())
    res = evaluate_batch_stats(net, batches)
    for k, v in state.items():
        torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0)
    ref = copy.deepcopy(net).eval()
    ref[1].train()
    with torch.no_grad():
        losses = [nn.functional.cross_entropy(ref(x), y, reduction="sum").item() for x, y in batches]
    assert res["loss"] == pytest.approx(sum(losses) / sum(len(y) for _, y in batches))
    # the running statistics (never updated here) give another loss
    assert evaluate(net, batches)["loss"] != pytest.approx(res["loss"])


def test_swing_trace_rows_and_training():
    class _Set:
        def __init__(self):
            self.data = _batches(n=1, b=12)[0]

        def __len__(self):
            return 12

        def image(self, i):
            return self.data[0][i], int(self.data[1][i])

    def builder(items):
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    order = [np.arange(i % 3 * 4, i % 3 * 4 + 4) for i in range(6)]
    w0 = net[0].weight.detach().clone()
    df = swing_trace(net, opt, _Set(), order, _batches(n=2), _batches(n=2, seed=5), builder, eval_every=2,
                     start_iteration=10, n_evals=3)
    assert list(df.iteration) == [10, 12, 14, 16]
    assert np.isnan(df.train_loss.iloc[0]) and df.train_loss.iloc[1:].notna().all()
    assert not torch.equal(w0, net[0].weight)
    assert len(batch_norms(net)) == 1
    with pytest.raises(ValueError, match="batches, 8 needed"):
        swing_trace(net, opt, _Set(), order, _batches(), _batches(), builder, 2, 0, 4)


def test_command_refuses_a_missing_or_foreign_checkpoint(tmp_path, capsys):
    from aprbook.eval_swings import main
    with pytest.raises(SystemExit):
        main([str(tmp_path / "absent.ckpt")])
    assert "no checkpoint file" in capsys.readouterr().err
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"checkpoint": {"config": {"params": {"id": "Pix_B_px256_s1"}}}}, foreign)
    with pytest.raises(SystemExit):
        main([str(foreign), "--results-dir", str(tmp_path / "results")])
    assert "not the checkpoint of a finite_converged book run" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_trace_and_sensitivity_of_a_stored_smoke_run(tmp_path):
    """Both diagnoses run on the archived checkpoint of a real (smoke) Fig 4.6 run; a checkpoint of
    another run is refused."""
    from aprbook.eval_swings import calibration_sensitivity, trace_finite_run
    from aprbook.profiles import profile_settings
    from aprbook.runs import compute_finite, finite_runs
    cfg = profile_settings("finite_converged", "smoke")
    run = next(r for r in finite_runs(cfg) if r["network"] == "APR_B" and r["per_class"] == 2)
    compute_finite(run, cfg, "smoke", tmp_path / "results", tmp_path / "ckpt", progress=False)
    ckpt = next((tmp_path / "ckpt").rglob(f"{run['id']}-*.ckpt"))
    trace = trace_finite_run(run, cfg, ckpt, n_evals=2, val_per_class=1, n_calib_batches=1)
    assert len(trace) == 3 and trace.iteration.diff().dropna().nunique() == 1
    assert trace.filter(like="val_loss").notna().all(axis=None)
    sens = calibration_sensitivity(run, cfg, ckpt, sizes=(1,), val_per_class=1)
    assert sens[["first_batch", "n_batches"]].values.tolist() == [[0, 0], [0, 1], [1, 1]]
    assert sens.iteration.nunique() == 1
    other = next(r for r in finite_runs(cfg) if r["id"] != run["id"])
    with pytest.raises(ValueError, match="is not run"):
        trace_finite_run(other, cfg, ckpt, n_evals=1)

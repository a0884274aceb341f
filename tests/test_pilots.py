"""The pilots of the slow learning and the runs trained to convergence: input normalisation, pixel
padding, the pilot grid, staged budgets; the pilots of the remaining gap (issue 39): batch norm and
global average over zero-padded particle batches, the thesis-era block order, the rank rule and its
false-positive rate."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import aprlib
from aprbook.pilots import (CHANGE_KEYS, DECISION_RULE, FACTORS, RANGE_RULE_SEEDS, RANK_RULE, RANK_RULE_SEEDS,
                            compute_pilot, factor_effects, factor_table, pilot_runs, pilot_summary, range_rule,
                            rank_effects, rank_rule, rank_rule_false_positive_rate, simulated_false_positive_rate)
from aprbook.profiles import profile_settings
from aprbook.runs import compute_streamed, run_checkpoint, run_streamed, streamed_runs, streamed_store
from aprlib import APRBatch, APRFeatures
from aprlib.data.synthetic import generate_batch
from aprlib.models import BLOCK_ORDERS, apr_network, pixel_network
from aprlib.models.thesis import SYNTHETIC_SPECS
from aprlib.nn import APRBatchNorm, APRConv2d, APRGlobalAvgPool, APRMaxPool2d, APRReLU
from aprlib.nn.prepare import prepare
from aprlib.train import BatchBuilder, InputSpec
from aprlib.train.loops import train_step

GAP_FACTORS = ("bn_padded", "order_pool_relu_bn", "avg_padded", "softmax_ce")


@pytest.mark.parametrize("norm", ["dataset", "image"])
def test_normalised_apr_and_pixel_inputs_take_the_same_map(norm):
    images, _ = generate_batch(3, seed=5, size=(64, 64))
    raw_apr = BatchBuilder(InputSpec("apr"))(list(zip(images, [0, 1, 2])))[0]
    apr = BatchBuilder(InputSpec("apr", normalise=norm))(list(zip(images, [0, 1, 2])))[0]
    pix = BatchBuilder(InputSpec("pixel", normalise=norm))(list(zip(images, [0, 1, 2])))[0]
    for i, im in enumerate(images):
        shift, scale = InputSpec("pixel", normalise=norm).affine(im)
        # the structure is that of the raw image; only the intensities change, by the pixels' map
        assert np.array_equal(apr[i].level, raw_apr[i].level) and np.array_equal(apr[i].y, raw_apr[i].y)
        np.testing.assert_allclose(apr[i].intensities, (raw_apr[i].intensities - shift) / scale, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(pix[i, 0].numpy(), (im - shift) / scale, rtol=1e-5, atol=1e-5)
    if norm == "image":
        assert abs(float(pix[0].mean())) < 1e-4 and abs(float(pix[0].std(unbiased=False)) - 1) < 1e-3


def test_normalise_rejects_unknown_values_and_constant_images():
    with pytest.raises(ValueError, match="normalise must be one of"):
        InputSpec("pixel", normalise="per_pixel")
    shift, scale = InputSpec("pixel", normalise="image").affine(np.full((8, 8), 0.3, np.float32))
    assert shift == pytest.approx(0.3) and scale == 1.0  # a constant image maps to zero, not NaN


def test_pixel_padding_mode_changes_the_border_only():
    torch.manual_seed(0)
    zeros = pixel_network("A")
    torch.manual_seed(0)
    rep = pixel_network("A", padding_mode="replicate")
    x = torch.full((1, 1, 32, 32), 0.7)
    conv_z, conv_r = zeros.features[0][0], rep.features[0][0]
    assert conv_r.padding_mode == "replicate"
    out_z, out_r = conv_z(x), conv_r(x)
    assert torch.allclose(out_z[..., 5:-5, 5:-5], out_r[..., 5:-5, 5:-5])
    assert not torch.allclose(out_z[..., :5, :], out_r[..., :5, :])
    # a constant image has a constant response with replication: no artificial frame
    assert torch.allclose(out_r, out_r[..., 16:17, 16:17].expand_as(out_r), atol=1e-5)


def test_pilot_grid_changes_one_factor_at_a_time(tmp_path):
    cfg = profile_settings("pilots", "smoke")
    runs = pilot_runs(cfg)
    assert len({r["id"] for r in runs}) == len(runs)
    assert {r["factor"] for r in runs} == set(FACTORS) and len(FACTORS) >= 7
    for name, f in FACTORS.items():
        change = set(f) - {"tests", "networks", "thesis"}
        assert name == "baseline" or (len(change) == 1 and change <= set(CHANGE_KEYS)), name
    for name in GAP_FACTORS:  # each gap factor rests on a quote of the thesis, with its section
        assert FACTORS[name]["thesis"][0].isdigit() and "'" in FACTORS[name]["thesis"], name
    # the extra seed goes to the baseline and the gap factors only
    seeds = pd.DataFrame(runs).groupby("factor").seed.apply(set)
    assert all(seeds[f] == {1, 2} for f in ("baseline",) + GAP_FACTORS) and seeds["norm_image"] == {1}
    book = pd.DataFrame(pilot_runs(profile_settings("pilots", "book"))).groupby("factor").seed.apply(set)
    assert all(book[f] == set(RANK_RULE_SEEDS) for f in ("baseline",) + GAP_FACTORS)
    assert all(book[f] == set(RANGE_RULE_SEEDS) for f in FACTORS if f not in ("baseline",) + GAP_FACTORS)
    with pytest.raises(ValueError, match="unknown factors"):
        pilot_runs({**cfg, "extra_seeds_for": ["no_such_factor"]})
    stores = {r["id"]: compute_pilot(r, cfg, "smoke", tmp_path, progress=False)
              for r in runs if r["factor"] in ("baseline", "norm_image")}
    metrics = {k: s.load_table("metrics") for k, s in stores.items()}
    summary = pilot_summary(metrics, runs, window=2)
    assert len(summary) == len(metrics) and summary.batches.eq(cfg["n_batches"]).all()
    table = factor_table(summary)
    assert (table.loc[table.factor == "baseline", "change_vs_baseline"] == 0).all()


def test_staged_budgets_equal_a_straight_run(tmp_path):
    cfg = profile_settings("streamed_converged", "smoke")
    assert cfg["budgets"][-1] == cfg["n_batches"]
    run = next(r for r in streamed_runs(cfg) if r["network"] == "Pix_A")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "results", tmp_path / "ck", progress=False)
    prov = store.provenance()
    assert prov["experiment"].startswith("streamed_converged/") and prov["params"]["normalise"] == "dataset"
    assert prov["plateaued"] is False and prov["batches_trained"] == cfg["n_batches"]  # too short to judge
    straight = run_streamed(run, cfg, progress=False)
    pd.testing.assert_frame_equal(store.load_table("metrics")[["batch", "loss", "accuracy"]],
                                  straight[["batch", "loss", "accuracy"]], check_exact=True)
    with pytest.raises(ValueError, match="budgets must increase"):
        compute_streamed(run, {**cfg, "budgets": [4, 2]}, "smoke", tmp_path / "r2", tmp_path / "c2", progress=False)


def test_staged_run_resumes_a_checkpoint_past_its_first_budget(tmp_path, capsys, monkeypatch):
    """A run stopped after its first budget (here at batch 3 of budgets [2, 4]) continues at the
    budget its checkpoint lies in, and ends as a straight run; if it should have stopped at a budget
    it passed, its result is its rows up to that budget."""
    import aprbook.learning_curves as lc
    cfg = profile_settings("streamed_converged", "smoke")
    assert cfg["budgets"] == [2, 4]
    run = next(r for r in streamed_runs(cfg) if r["network"] == "Pix_A")
    straight = run_streamed(run, cfg, progress=False)

    def stopped_at_3(where):
        ck = run_checkpoint(streamed_store(run, cfg, "smoke", where / "results"), where / "ck", "budgets")
        saved = run_streamed(run, cfg, checkpoint=ck, progress=False, n_batches=3)
        assert ck.saved_progress("next_batch") == 3
        capsys.readouterr()
        return saved

    saved = stopped_at_3(tmp_path / "a")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "a" / "results", tmp_path / "a" / "ck", progress=False)
    assert "not resumed" not in capsys.readouterr().out
    metrics = store.load_table("metrics")
    pd.testing.assert_frame_equal(metrics[["batch", "loss", "accuracy"]], straight[["batch", "loss", "accuracy"]],
                                  check_exact=True)
    assert metrics.step_s[:3].tolist() == saved.step_s.tolist()  # the first 3 batches were not retrained
    assert store.provenance()["batches_trained"] == 4

    # a run that converges at 2 batches (a stand-in criterion): resumed at 4, it keeps its first 2 rows
    monkeypatch.setattr(lc, "plateaued", lambda m: (len(m) == 2, {"reason": f"stand-in at {len(m)}"}))
    saved = stopped_at_3(tmp_path / "b")
    store = compute_streamed(run, cfg, "smoke", tmp_path / "b" / "results", tmp_path / "b" / "ck", progress=False)
    assert "not resumed" not in capsys.readouterr().out
    prov = store.provenance()
    assert prov["batches_trained"] == 2 and prov["plateaued"] is True and prov["plateau_test"] == "stand-in at 2"
    pd.testing.assert_frame_equal(store.load_table("metrics")[["batch", "loss", "accuracy"]],
                                  straight[["batch", "loss", "accuracy"]].iloc[:2], check_exact=True)


def test_factor_effects_judge_changes_against_the_seed_range():
    rows = [("baseline", 1, 0.50), ("baseline", 2, 0.56),     # baseline range 0.06
            ("fast", 1, 0.70), ("fast", 2, 0.72),             # +0.21 > 0.06
            ("slow", 1, 0.30), ("slow", 2, 0.40),             # -0.18 < -0.10 (its own range)
            ("noise", 1, 0.45), ("noise", 2, 0.65),           # +0.02 within 0.20
            ("single", 1, 0.90)]                              # one seed: no noise to judge against
    summary = pd.DataFrame([{"factor": f, "network": "N", "seed": s, "acc_last": a} for f, s, a in rows])
    eff = factor_effects(factor_table(summary)).set_index("factor").effect
    assert eff.to_dict() == {"fast": "speeds up", "slow": "slows down", "noise": "no clear effect", "single": "untested"}


def test_decision_rule_is_stated():
    assert DECISION_RULE.startswith("1. A pilot") and "Per-image standardisation is not adopted" in DECISION_RULE


def test_gap_pilots_train_a_smoke_batch_each(tmp_path):
    """Every gap factor builds its networks and trains (smoke profile: 3 batches of 4), and the options
    reach the networks: the losses differ from the baseline's where the factor changes the computation
    at this size (at 128 px the last APR layer has no padding, so avg_padded equals the baseline)."""
    cfg = profile_settings("pilots", "smoke")
    runs = [r for r in pilot_runs(cfg) if r["seed"] == 1 and r["factor"] in ("baseline",) + GAP_FACTORS]
    loss = {(r["factor"], r["network"]): compute_pilot(r, cfg, "smoke", tmp_path, progress=False)
            .load_table("metrics").loss.to_numpy() for r in runs}
    assert all(np.isfinite(v).all() and len(v) == cfg["n_batches"] for v in loss.values())
    for key in [("bn_padded", "APR_B"), ("order_pool_relu_bn", "APR_B"), ("order_pool_relu_bn", "Pix_B_px64"),
                ("softmax_ce", "APR_B"), ("softmax_ce", "Pix_B_px64")]:
        assert not np.array_equal(loss[key], loss[("baseline", key[1])]), key


# ------------------------------------------------------------------------------------------
# batch norm and global average over zero-padded particle batches (the thesis-era code)
# ------------------------------------------------------------------------------------------
def _aprs(n, size=64, seed=0):
    images, _ = generate_batch(n, seed=seed, size=(size, size))
    return [aprlib.form_apr(im, rel_error=0.1, gradient_smoothing=0.0, sigma_th=0.01) for im in images]


def _padded(x: torch.Tensor, batch: APRBatch) -> torch.Tensor:
    """(N, C) particle features -> (B, C, N_max), zeros past each APR's particles (the thesis-era layout)."""
    counts = np.diff(batch.particle_offsets)
    out = x.new_zeros(len(batch), x.shape[1], int(counts.max()))
    for b, part in enumerate(batch.split(x)):
        out[b, :, :len(part)] = part.T
    return out


def test_padded_batch_norm_is_the_default_without_padding_and_the_padded_array_statistics_with():
    one = _aprs(1, seed=3)[0]
    no_pad, pad = APRBatch([one, one]), APRBatch(_aprs(3, seed=4))
    assert len(set(np.diff(pad.particle_offsets))) == 3  # three particle counts: padding
    torch.manual_seed(0)
    for batch in (no_pad, pad):
        x = torch.randn(batch.n_particles, 5, dtype=torch.float64) * 2 + 1
        default, padded = APRBatchNorm(5).double(), APRBatchNorm(5, include_padding=True).double()
        out_d = default(APRFeatures(x, batch)).features
        xp = x.clone().requires_grad_(True)
        out_p = padded(APRFeatures(xp, batch)).features
        if batch is no_pad:  # no padding: exactly the default layer, statistics included
            assert torch.equal(out_p, out_d)
            assert torch.equal(padded.running_mean, default.running_mean)
            assert torch.equal(padded.running_var, default.running_var)
            continue
        assert not torch.allclose(out_p, out_d, atol=1e-3)
        # what nn.BatchNorm1d computes on the zero-padded (B, C, N_max) array, at the particles
        ref_bn = nn.BatchNorm1d(5).double()
        xr = _padded(x, batch).requires_grad_(True)
        ref = ref_bn(xr)
        counts = np.diff(batch.particle_offsets)
        ref_rows = torch.cat([ref[b, :, :n].T for b, n in enumerate(counts)])
        torch.testing.assert_close(out_p, ref_rows, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(padded.running_mean, ref_bn.running_mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(padded.running_var, ref_bn.running_var, rtol=1e-12, atol=1e-12)
        # gradients reach the particles as in the padded array (the padding is a constant)
        w = torch.randn_like(out_p)
        (out_p * w).sum().backward()
        (ref_rows * w).sum().backward()
        torch.testing.assert_close(xp.grad, torch.cat([xr.grad[b, :, :n].T for b, n in enumerate(counts)]),
                                   rtol=1e-10, atol=1e-12)
        # evaluation uses the running statistics: the padding plays no part
        default.load_state_dict(padded.state_dict())
        default.eval(), padded.eval()
        assert torch.equal(padded(APRFeatures(x, batch)).features, default(APRFeatures(x, batch)).features)
    assert "include_padding=True" in repr(APRBatchNorm(5, include_padding=True)) and "padding" not in repr(APRBatchNorm(5))
    with pytest.raises(TypeError, match="include_padding"):
        APRBatchNorm(5, include_padding="yes")


def test_padded_global_average_is_the_padded_array_mean():
    one = _aprs(1, seed=3)[0]
    for batch in (APRBatch([one, one]), APRBatch(_aprs(3, seed=4))):
        x = torch.randn(batch.n_particles, 4, dtype=torch.float64)
        default = APRGlobalAvgPool()(APRFeatures(x, batch))
        padded = APRGlobalAvgPool(include_padding=True)(APRFeatures(x, batch))
        torch.testing.assert_close(padded, nn.AdaptiveAvgPool1d(1)(_padded(x, batch))[..., 0], rtol=1e-12, atol=1e-12)
        if len(set(np.diff(batch.particle_offsets))) == 1:
            assert torch.equal(padded, default)
        else:
            counts = torch.as_tensor(np.diff(batch.particle_offsets), dtype=x.dtype)
            torch.testing.assert_close(padded, default * (counts / counts.max())[:, None], rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="include_padding"):
        APRGlobalAvgPool(include_padding=1)


@pytest.mark.parametrize("option", ["bn_include_padding", "avg_include_padding"])
def test_padding_options_change_the_network_only_when_the_batch_is_padded(option):
    # 256 px: after APR_B's five poolings the APRs still differ in particle count (at 64 px all are 2x2)
    one = _aprs(1, size=256, seed=3)[0]
    for batch, same in ((APRBatch([one, one]), True), (APRBatch(_aprs(3, size=256, seed=4)), False)):
        outs = []
        for kw in ({}, {option: True}):
            torch.manual_seed(5)
            outs.append(apr_network("B", **kw)(batch))
        assert torch.equal(outs[0], outs[1]) == same, (option, same)


# ------------------------------------------------------------------------------------------
# the order of the layers in a block
# ------------------------------------------------------------------------------------------
def _reference_apr_net(spec):
    """APR_B as built before block orders existed: conv (no bias before BN), BN, ReLU, pool."""
    class Ref(nn.Module):
        def __init__(self):
            super().__init__()
            blocks, c = [], 1
            for d, k, nk, after in spec:
                layers = [APRConv2d(c, d, k, nk, bias=after != "bn_relu_pool")]
                if after == "bn_relu_pool":
                    layers += [APRBatchNorm(d), APRReLU(), APRMaxPool2d()]
                elif after == "relu":
                    layers += [APRReLU()]
                blocks.append(nn.Sequential(*layers))
                c = d
            self.features, self.pool = nn.Sequential(*blocks), APRGlobalAvgPool()

        def forward(self, batch):
            return self.pool(self.features(APRFeatures.from_batch(batch)))
    return Ref()


def _reference_pixel_net(spec):
    """Pix_B as built before block orders existed: conv (no bias before BN), BN, pool, ReLU."""
    blocks, c = [], 1
    for d, k, _, after in spec:
        layers = [nn.Conv2d(c, d, k, padding=k // 2, bias=after != "bn_relu_pool")]
        if after == "bn_relu_pool":
            layers += [nn.BatchNorm2d(d), nn.MaxPool2d(2), nn.ReLU()]
        elif after == "relu":
            layers += [nn.ReLU()]
        blocks.append(nn.Sequential(*layers))
        c = d
    return nn.Sequential(nn.Sequential(*blocks))


def test_default_networks_are_bitwise_the_networks_built_before_the_options():
    """The default APR_B and Pix_B equal, bit for bit, networks built layer by layer as the library
    built them before block orders and padding options existed: the same parameters from the same
    seed, the same logits and gradients."""
    batch, y = APRBatch(_aprs(3, seed=4)), torch.tensor([0, 2, 5])
    spec = SYNTHETIC_SPECS["B"]
    torch.manual_seed(11)
    net = apr_network("B")
    torch.manual_seed(11)
    ref = _reference_apr_net(spec)
    assert list(net.state_dict()) == list(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    outs = []
    for model in (net, ref):
        out = model(batch)
        F.cross_entropy(out, y).backward()
        outs.append((out, [p.grad for p in model.parameters()]))
    assert torch.equal(outs[0][0], outs[1][0]) and all(torch.equal(a, b) for a, b in zip(outs[0][1], outs[1][1]))

    x = torch.rand(3, 1, 64, 64)
    torch.manual_seed(11)
    pix = pixel_network("B")
    torch.manual_seed(11)
    ref = _reference_pixel_net([(d, k, 1, a) for d, k, _, a in spec])
    assert [v.shape for v in pix.state_dict().values()] == [v.shape for v in ref.state_dict().values()]
    assert all(torch.equal(a, b) for a, b in zip(pix.state_dict().values(), ref.state_dict().values()))
    assert torch.equal(pix(x), ref(x).mean(dim=(2, 3)))


def test_the_thesis_text_order_is_ours_exactly():
    """4.1.3.1's order (BN, max pooling, ReLU) gives the same logits and gradients as ours (BN, ReLU,
    pooling), bit for bit: the ReLU and the maximum commute."""
    batch, y = APRBatch(_aprs(3, seed=4)), torch.tensor([0, 2, 5])
    results = []
    for order in ("bn_relu_pool", "bn_pool_relu"):
        torch.manual_seed(3)
        net = apr_network("B", block_order=order)
        out = net(batch)
        F.cross_entropy(out, y).backward()
        results.append((out, [p.grad for p in net.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


def _prepared_keys(net, aprs) -> list:
    """The cache keys of a batch of ``aprs`` prepared for ``net``, and of each pooled batch below it."""
    batch, keys = APRBatch(aprs), []
    prepare(batch, net)
    while batch is not None:
        keys.append(sorted(map(str, batch._tables)))
        plan = batch._tables.get(("plan", "pool"))
        batch = plan.out if plan is not None else None
    return keys


@pytest.mark.parametrize("kind", ["apr", "pixel"])
def test_thesis_era_block_order_builds_and_trains_one_step(kind):
    torch.manual_seed(2)
    if kind == "apr":
        net, default = apr_network("B", block_order="pool_relu_bn"), apr_network("B")
        inputs = APRBatch(_aprs(4, seed=6))
        assert _prepared_keys(net, inputs.aprs) == _prepared_keys(default, inputs.aprs)  # the same index tables
        block = [type(m).__name__ for m in net.features[0]]
        assert block == ["APRConv2d", "APRMaxPool2d", "APRReLU", "APRBatchNorm"]
    else:
        net = pixel_network("B", block_order="pool_relu_bn")
        inputs = torch.rand(4, 1, 64, 64)
        assert [type(m).__name__ for m in net.features[0]] == ["Conv2d", "MaxPool2d", "ReLU", "BatchNorm2d"]
    assert all(block[0].bias is not None for block in net.features)  # no BN right after a conv: a bias
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    loss, acc, _ = train_step(net, opt, inputs, torch.tensor([0, 1, 2, 3]))
    assert np.isfinite(loss) and 0.0 <= acc <= 1.0
    assert all(not torch.equal(a, p) for a, p in zip(before, net.parameters()))
    with pytest.raises(ValueError, match="block_order"):
        (apr_network if kind == "apr" else pixel_network)("B", block_order="relu_bn_pool")
    assert set(BLOCK_ORDERS) == {"bn_relu_pool", "bn_pool_relu", "pool_relu_bn"}


# ------------------------------------------------------------------------------------------
# the rank rule and its false-positive rate
# ------------------------------------------------------------------------------------------
def _summary(values: dict) -> pd.DataFrame:
    """{factor: [acc_last of seeds 1, 2, ...]} -> a pilot_summary-like table for network N."""
    return pd.DataFrame([{"factor": f, "network": "N", "seed": i + 1, "acc_last": a}
                         for f, accs in values.items() for i, a in enumerate(accs)])


def test_rank_rule_false_positive_rate_is_one_in_twenty_per_direction():
    """With no effect the six values are exchangeable: each of the 20 splits into three and three is
    equally likely. rank_effects says 'speeds up' on exactly one split and 'slows down' on exactly one."""
    values = [0.41, 0.47, 0.52, 0.58, 0.63, 0.70]
    effects = []
    for arm in itertools.combinations(range(6), 3):
        base = [i for i in range(6) if i not in arm]
        eff = rank_effects(_summary({"baseline": [values[i] for i in base], "f": [values[i] for i in arm]}))
        assert len(eff) == 1 and eff.false_positive_rate.iloc[0] == pytest.approx(0.1)
        effects.append(eff.effect.iloc[0])
    counts = pd.Series(effects).value_counts().to_dict()
    assert counts == {"no clear effect": 18, "speeds up": 1, "slows down": 1}
    rate = rank_rule_false_positive_rate()
    assert rate["per_direction"] == pytest.approx(counts["speeds up"] / 20) and rate["either"] == pytest.approx(0.1)
    assert rank_rule_false_positive_rate(2, 2)["per_direction"] == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="n_arm"):
        rank_rule_false_positive_rate(0, 3)


def test_simulated_false_positive_rates_are_the_stated_ones():
    """The rates the module docstring states: the rank rule 0.05 per direction and 0.10 either way with
    independent seeds, less when the arms share seeds; the range rule about 0.216 (the '~22%')."""
    n = 100_000  # binomial standard errors below 0.0015
    rank = simulated_false_positive_rate("rank", 3, 0.0, n_sim=n, seed=1)
    assert abs(rank["up"] - 0.05) < 0.005 and abs(rank["down"] - 0.05) < 0.005 and abs(rank["either"] - 0.1) < 0.006
    assert simulated_false_positive_rate("rank", 3, 0.5, n_sim=n, seed=1)["either"] < 0.06
    old = simulated_false_positive_rate("range", 2, 0.0, n_sim=n, seed=1)
    assert abs(old["either"] - 0.216) < 0.008 and abs(old["up"] - old["down"]) < 0.008
    with pytest.raises(ValueError, match="rule"):
        simulated_false_positive_rate("median", 3)
    with pytest.raises(ValueError, match="shared"):
        simulated_false_positive_rate("rank", 3, 1.0)


def test_range_rule_on_arrays_is_factor_effects():
    rng = np.random.default_rng(0)
    names = {1: "speeds up", -1: "slows down", 0: "no clear effect"}
    for _ in range(30):
        base, arm = rng.normal(0.5, 0.05, 2), rng.normal(0.5 + rng.choice([-0.1, 0, 0.1]), 0.05, 2)
        eff = factor_effects(factor_table(_summary({"baseline": base, "f": arm}))).effect.iloc[0]
        assert eff == names[int(range_rule(arm, base))]


def test_rank_effects_reads_three_seeds_and_the_range_rule_keeps_two():
    summary = _summary({"baseline": [0.50, 0.56, 0.53], "fast": [0.60, 0.58, 0.62], "slow": [0.40, 0.45, 0.49],
                        "mixed": [0.70, 0.52, 0.75], "two": [0.90, 0.91]})
    eff = rank_effects(summary).set_index("factor")
    assert eff.effect.to_dict() == {"fast": "speeds up", "slow": "slows down", "mixed": "no clear effect",
                                    "two": "untested"}
    assert eff.loc["fast", "change_vs_baseline"] == pytest.approx(0.60 - 0.53)
    assert np.isnan(eff.loc["two", "false_positive_rate"])
    assert int(rank_rule([0.6, 0.7], [0.6, 0.5])) == 0  # a tie is no effect
    # the range rule reads seeds 1 and 2 only: the baseline's third seed leaves its readings as they were
    two = factor_effects(factor_table(summary[summary.seed <= 2]))
    pd.testing.assert_frame_equal(factor_effects(factor_table(summary)), two)
    rule = " ".join(RANK_RULE.split())
    assert "before any run of those four factors" in rule and "1/20 = 0.05 exactly" in rule and "0.216" in rule

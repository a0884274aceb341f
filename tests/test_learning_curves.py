import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from aprbook.learning_curves import batches_to_accuracy, final_error, information_ordering, max_dip, run_summary


def curve(acc):
    acc = np.asarray(acc, float)
    return pd.DataFrame({"batch": np.arange(len(acc)), "accuracy": acc, "loss": 1 - acc,
                         "step_s": np.full(len(acc), 0.1)})


def test_batches_to_accuracy_first_full_window():
    m = curve([0.0] * 10 + [1.0] * 10)
    # running mean of 4 reaches 0.5 when the window holds two ones: batches 8..11 -> index 11
    assert batches_to_accuracy(m, 0.5, window=4) == 11
    assert batches_to_accuracy(m, 1.0, window=4) == 13
    assert np.isnan(batches_to_accuracy(curve([0.2] * 20), 0.5, window=4))


def test_max_dip_monotone_is_zero_and_dip_is_found():
    assert max_dip(curve(np.linspace(0, 1, 60)), window=5) == pytest.approx(0.0)
    acc = [1.0] * 30 + [0.0] * 5 + [1.0] * 30
    assert max_dip(curve(acc), window=5) == pytest.approx(1.0)
    assert max_dip(curve(acc), window=10) == pytest.approx(0.5)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=3, max_size=200), st.integers(1, 50))
def test_final_error_matches_numpy(acc, last):
    mean, sd = final_error(curve(acc), last)
    tail = 1 - np.asarray(acc)[-last:]
    assert mean == pytest.approx(tail.mean())
    if len(tail) > 1:
        assert sd == pytest.approx(tail.std(ddof=1), abs=1e-12)


def test_run_summary_and_bad_input():
    row = run_summary(curve(np.linspace(0, 1, 300)), smooth=10, last=20)
    assert row["batches_to_0.5"] < row["batches_to_0.9"] < row["batches_to_0.95"]
    assert row["step_s"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="columns"):
        run_summary(pd.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="empty"):
        final_error(curve([]))
    with pytest.raises(ValueError, match="threshold"):
        batches_to_accuracy(curve([0.5]), 1.5)


def _errors(means, n=100, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(v, THESIS_SD[k], n) for k, v in means.items()}


# thesis Table 4.2: mean and sd of the error over the last 100 batches
THESIS = {"APR 0.1": 0.0013, "Pix 256": 0.0016, "APR 0.4": 0.0071, "APR 0.6": 0.0102, "Pix 128": 0.0116,
          "APR 0.8": 0.0261, "Pix 64": 0.0770}
THESIS_SD = {"APR 0.1": 0.0015, "Pix 256": 0.0028, "APR 0.4": 0.0031, "APR 0.6": 0.0048, "Pix 128": 0.0040,
             "APR 0.8": 0.0067, "Pix 64": 0.0123}


def test_information_ordering_holds_on_thesis_like_numbers():
    res = information_ordering(_errors(THESIS))
    assert len(res) == 5 and res.holds.all(), res


def test_information_ordering_fails_when_ordering_is_broken():
    broken = dict(THESIS, **{"APR 0.4": 0.05, "APR 0.6": 0.03})
    res = information_ordering(_errors(broken)).set_index("compared")
    assert not res.loc["Pix 256 < APR 0.4 < Pix 128", "holds"]
    assert not res.loc["APR 0.6 vs Pix 128", "holds"]  # 0.03 vs 0.0116: more than the sd apart
    assert not res.loc["APR 0.1 < 0.4 < 0.6 < 0.8", "holds"]
    with pytest.raises(ValueError, match="lacks"):
        information_ordering({"APR 0.1": [0.0]})


def _curve(values):
    return pd.DataFrame({"epoch": np.arange(1, len(values) + 1), "val_accuracy": values})


def test_epoch_curve_claims_accepts_the_thesis_shape_and_rejects_others():
    from aprbook.learning_curves import epoch_curve_claims
    thesis_like = {"Pixels": _curve([0.70, 0.80, 0.85, 0.80, 0.90, 0.96, 0.92, 0.97]),
                   "Pixels (expanded)": _curve([0.80, 0.90, 0.93, 0.86, 0.96, 0.97, 0.93, 0.97]),
                   "APR": _curve([0.85, 0.92, 0.94, 0.95, 0.96, 0.97, 0.97, 0.974])}
    claims = epoch_curve_claims(thesis_like, n_val=1000)
    assert claims.holds.tolist() == [True, True, True]
    # APR far worse, slow and dipping: every claim fails
    other = dict(thesis_like, APR=_curve([0.5, 0.55, 0.7, 0.5, 0.6, 0.8, 0.6, 0.8]))
    assert epoch_curve_claims(other, n_val=1000).holds.tolist() == [False, False, False]
    # the tolerance of "same accuracy" shrinks with more validation images
    close = dict(thesis_like, APR=_curve([0.85, 0.92, 0.94, 0.95, 0.955, 0.955, 0.955, 0.955]))
    assert epoch_curve_claims(close, n_val=100).holds[0] and not epoch_curve_claims(close, n_val=100000).holds[0]
    with pytest.raises(ValueError, match="lacks"):
        epoch_curve_claims({"APR": thesis_like["APR"]}, n_val=10)


# --- what the learning claims need: convergence, a noise floor for dips, seeds, the sd floor ---

def test_converged_flat_stream_and_still_learning_stream():
    from aprbook.learning_curves import plateaued
    rng = np.random.default_rng(0)
    flat = rng.binomial(36, 0.8, 1500) / 36
    ok, num = plateaued(curve(flat))
    assert ok and num["n"] == 150 and num["drop"] <= 2 * num["se"]  # one-sided: a worse end is no improvement
    rising = rng.binomial(36, np.linspace(0.3, 0.9, 1500)) / 36  # still improving at the end
    ok, num = plateaued(curve(rising))
    assert not ok and num["drop"] > 2 * num["se"] and "beyond" in num["reason"]
    # the numbers are the stated ones: two windows of frac * n batches, se of the difference of means
    err = 1 - rising
    last, before = err[-150:], err[-300:-150]
    assert num["drop"] == pytest.approx(before.mean() - last.mean())
    assert num["se"] == pytest.approx(np.sqrt(last.var(ddof=1) / 150 + before.var(ddof=1) / 150))
    ok, num = plateaued(curve([0.5, 0.6, 0.7]))
    assert not ok and "too short" in num["reason"]


def test_noise_floor_covers_the_dips_of_pure_noise():
    from aprbook.learning_curves import dip_noise_floor
    # pure Bernoulli noise at p = 0.5 over 1500 batches of 36 gives dips of 0.06-0.11 (the range
    # the stored runs show), so the floor is about 0.1 and the typical noise dip is below it
    floor = dip_noise_floor(0.5, 1500, window=20, after=50)
    assert 0.09 < floor < 0.16
    rng = np.random.default_rng(1)
    noise_dips = [max_dip(curve(rng.binomial(36, 0.5, 1500) / 36), 20, 50) for _ in range(40)]
    assert np.mean(np.array(noise_dips) > floor) < 0.2
    assert 0.05 < np.median(noise_dips) < floor
    # reproducible (fixed seed) and lower near p = 1, where a batch's accuracy varies little
    assert dip_noise_floor(0.5, 1500, 20, 50) == floor
    assert dip_noise_floor(0.97, 1500, 20, 50) < floor
    # a real dip far beyond noise exceeds it
    acc = np.r_[rng.binomial(36, 0.9, 700), rng.binomial(36, 0.5, 40), rng.binomial(36, 0.9, 760)] / 36
    assert max_dip(curve(acc), 20, 50) > dip_noise_floor(0.9, 1500, 20, 50)


@pytest.mark.parametrize("p, n, window, after", [(0.9, 400, 20, 50), (0.6, 100, 5, 3), (0.8, 20, 20, 0), (0.8, 19, 20, 0)])
def test_noise_floor_is_the_quantile_of_max_dip_over_its_simulated_streams(p, n, window, after):
    """the vectorised floor equals max_dip applied to each simulated stream (same seed, same draws)"""
    from aprbook.learning_curves import dip_noise_floor
    acc = np.random.default_rng(0).binomial(36, p, size=(50, n)) / 36
    dips = np.array([max_dip(curve(a), window, after) for a in acc])
    dips = dips[np.isfinite(dips)]
    expected = float(np.quantile(dips, 0.95)) if len(dips) else float("nan")
    got = dip_noise_floor(p, n, window, after, n_sim=50)
    assert got == expected or (np.isnan(got) and np.isnan(expected))


def test_the_dip_floor_of_a_learning_run_follows_its_accuracy_not_its_final_one():
    """A learning curve with no dip (a rising accuracy seen through per-batch noise): its largest dip
    exceeds the floor simulated from its dip-free fit in about 5% of runs at most, while a floor at the
    final accuracy (a settled run) calls it pronounced far more often; a real dip still exceeds it."""
    from aprbook.learning_curves import dip_noise_floor, expected_accuracy
    n = 3000
    b = np.arange(n)
    p = 0.95 - 0.75 * np.exp(-b / 500)
    rng = np.random.default_rng(3)
    above, above_final = [], []
    for _ in range(12):
        m = curve(rng.binomial(36, p) / 36)
        fit = expected_accuracy(m)
        assert fit.shape == (n,) and np.all(np.diff(fit) >= 0) and 0 <= fit.min() and fit.max() <= 1
        dip = max_dip(m, 20, 50)
        above.append(dip > dip_noise_floor(fit, n, 20, 50, n_sim=100))
        above_final.append(dip > dip_noise_floor(float(m.accuracy.iloc[-100:].mean()), n, 20, 50, n_sim=100))
    assert sum(above) <= 2 and sum(above_final) >= 6  # 1 and 9 of 12 with these draws
    acc = rng.binomial(36, p) / 36
    acc[1500:1560] = rng.binomial(36, 0.6, 60) / 36  # a real dip, 60 batches long
    m = curve(acc)
    assert max_dip(m, 20, 50) > dip_noise_floor(expected_accuracy(m), n, 20, 50, n_sim=100)
    with pytest.raises(ValueError, match="one per batch"):
        dip_noise_floor(np.full(10, 0.5), 11)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dip_noise_floor(np.full(10, 1.5), 10)


def test_seeds_beat_needs_every_seed_and_three_of_each():
    from aprbook.learning_curves import seeds_beat
    assert seeds_beat([800, 850, 900], [1000, np.nan, 1200])[0] == "holds"  # NaN: never reached = slowest
    assert seeds_beat([800, 1100, 900], [1000, 1050, 1200])[0] == "fails"  # one seed of A is slower
    status, text = seeds_beat([800], [1000, 1100, 1200])
    assert status == "inconclusive" and "underpowered" in text
    assert seeds_beat([800, 850], [900, 1000])[0] == "inconclusive"
    assert seeds_beat([0.9, 0.95, 0.93], [0.5, 0.6, 0.7], lower_is_better=False)[0] == "holds"
    assert seeds_beat([np.nan] * 3, [np.nan] * 3)[0] == "fails"  # neither reached: no seed beats another


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 35), st.integers(0, 36), st.integers(2, 200))
def test_min_batch_sd_is_a_lower_bound(k, spread, n):
    from aprbook.learning_curves import min_batch_sd
    # any integer-count sequence of n batches of 36 has an sd (ddof = 0 or 1) at least the bound at its mean
    rng = np.random.default_rng(k * 1000 + spread + n)
    counts = np.clip(rng.integers(k - spread // 2, k + spread // 2 + 1, n), 0, 36)
    err = counts / 36
    assert err.std(ddof=0) >= min_batch_sd(err.mean()) - 1e-12
    # and the two nearest multiples, mixed, reach it
    f = 0.25
    mix = np.r_[np.full(75, k), np.full(25, k + 1)] / 36
    assert mix.std(ddof=0) == pytest.approx(min_batch_sd(mix.mean()))
    assert min_batch_sd((k + f) / 36) == pytest.approx(np.sqrt(f * (1 - f)) / 36)


def test_thesis_table_4_2_sds_five_of_seven_below_the_floor():
    from aprbook.learning_curves import min_batch_sd, sd_below_floor
    res = sd_below_floor({k: (THESIS[k], THESIS_SD[k]) for k in THESIS}).set_index("input")
    assert res.below.sum() == 5
    assert not res.loc["APR 0.8", "below"] and not res.loc["Pix 64", "below"]
    # a mean printed to four decimals that can be a multiple of 1/36 has no floor
    assert min_batch_sd(1 / 36, rounding=5e-5) == 0.0
    assert min_batch_sd(0.0013, rounding=5e-5) <= min_batch_sd(0.0013)


def test_kept_early():
    from aprbook.learning_curves import kept_early
    assert kept_early(480, 600) and kept_early(50, 600)
    assert not kept_early(500, 600) and not kept_early(600, 600)
    with pytest.raises(ValueError):
        kept_early(10, 0)


def test_error_correlation_is_high_for_runs_on_one_stream_and_near_zero_across_streams():
    """Two 'networks' on the same images (a per-batch difficulty shared by the seed's stream) correlate;
    runs of different seeds do not; a run shorter than the window is left out; a bad window is an error."""
    from aprbook.learning_curves import error_correlation
    n, rng = 2000, np.random.default_rng(0)
    difficulty = {s: rng.uniform(0.0, 0.3, n) for s in (1, 2)}  # per-batch error rate of each stream

    def run(seed, k):
        p_err = np.clip(difficulty[seed] * (1 + 0.1 * k), 0, 1)
        acc = 1 - np.random.default_rng(10 * seed + k).binomial(36, p_err) / 36
        return pd.DataFrame({"batch": np.arange(n), "accuracy": acc})

    metrics = {"A_s1": run(1, 0), "B_s1": run(1, 1), "A_s2": run(2, 0), "short_s2": run(2, 1).iloc[:500]}
    seeds = {"A_s1": 1, "B_s1": 1, "A_s2": 2, "short_s2": 2}
    c = error_correlation(metrics, seeds, 1000, 2000)
    assert set(c.run_a) | set(c.run_b) == {"A_s1", "B_s1", "A_s2"} and len(c) == 3
    assert c[c.same_seed].r.min() > 0.5 and c[~c.same_seed].r.abs().max() < 0.1
    with pytest.raises(ValueError, match="start < stop"):
        error_correlation(metrics, seeds, 10, 10)

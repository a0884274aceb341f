"""The cost-scaling benchmarks (aprbook.scaling, python -m aprbook.bench scaling | step | tables): the
columns they promise, the growth factors, the memory walker, the 'did not fit' path and the
checks of their options. No timing is asserted."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aprbook import scaling
from aprbook.profiles import profile_settings
from aprlib.apr import APR, APRBatch, form_apr

SCALING_COLUMNS = {
    "size", "pixels", "particles", "formation_s", "formation_px_per_s", "formation_peak_mb", "tables_s", "forward_s",
    "apr_s", "tables_peak_mb", "forward_peak_mb", "apr_peak_mb", "pixel_s", "pixel_peak_mb", "pixel_fit",
    "pixel_featmap_mb"}


def test_fixed_content_is_the_same_on_every_canvas():
    small, large = scaling.fixed_content_image(64, 64, 1, seed=3), scaling.fixed_content_image(128, 64, 1, seed=3)
    assert small.shape == (64, 64) and large.shape == (128, 128) and small.dtype == np.float32
    assert np.array_equal(large[:64, :64], small)
    assert np.all(large[64:] == large[-1, -1]) and np.all(large[:, 64:] == large[-1, -1])
    with pytest.raises(ValueError, match="does not fit"):
        scaling.fixed_content_image(32, 64)


def test_cost_vs_size_at_tiny_sizes_returns_the_promised_columns():
    df = scaling.cost_vs_size([32, 64], content=32, objects=1, repeats=1, burn_in=0, progress=False)
    assert SCALING_COLUMNS <= set(df.columns)
    assert df["size"].tolist() == [32, 64] and df.pixels.tolist() == [32 ** 2, 64 ** 2]
    assert (df.particles > 0).all() and df.pixel_fit.all()
    for col in ("formation_s", "tables_s", "forward_s", "apr_s", "pixel_s"):
        assert (df[col] > 0).all() and np.isfinite(df[col]).all(), col
    assert (df.pixel_featmap_mb > 0).all()
    g = scaling.growth_factors(df, exclude_outliers=False)
    assert g["pixels"] == pytest.approx(4.0) and isinstance(g["criterion_holds"], bool)
    # one timed round per side: every point is measured once, so the outlier rule keeps none of them
    g = scaling.growth_factors(df)
    assert g["criterion_holds"] is None and math.isnan(g["apr_s"]) and g["pixel_to_size"] is None
    assert len(g["excluded"]) == 2 * len(scaling.TIMING_POINTS)


def test_pixel_max_size_skips_the_pixel_network_above_it():
    df = scaling.cost_vs_size([32, 64], content=32, objects=1, repeats=1, burn_in=0, progress=False,
                              pixel_max_size=32)
    assert df.pixel_run.tolist() == [True, False] and df.pixel_fit.tolist() == [True, False]
    assert np.isnan(df.pixel_s.iloc[1]) and "not run" in df.pixel_error.iloc[1]
    assert "not run at 64^2" in scaling.scaling_text(df) and "did not fit" not in scaling.scaling_text(df)


def test_growth_factors_from_a_constructed_table():
    df = pd.DataFrame({  # rows out of order: the growth is from the fewest to the most pixels
        "size": [1024, 256, 512], "pixels": [1024 ** 2, 256 ** 2, 512 ** 2], "particles": [1200, 1000, 1100],
        "formation_s": [1.6, 0.1, 0.4], "tables_s": [3.0, 0.5, 1.0], "forward_s": [0.2, 0.1, 0.15],
        "apr_s": [3.2, 0.6, 1.15], "pixel_s": [math.nan, 1.0, 4.0], "pixel_fit": [False, True, True]})
    g = scaling.growth_factors(df)
    assert (g["from_size"], g["to_size"]) == (256, 1024)
    assert g["particles"] == pytest.approx(1.2) and g["pixels"] == pytest.approx(16.0)
    assert g["formation_s"] == pytest.approx(16.0) and g["apr_s"] == pytest.approx(3.2 / 0.6)
    assert g["tables_s"] == pytest.approx(6.0) and g["forward_s"] == pytest.approx(2.0)
    assert g["pixel_to_size"] == 512 and g["pixel_s"] == pytest.approx(4.0) and g["pixel_pixels"] == pytest.approx(4.0)
    assert g["criterion_holds"] is False  # x5.3 > 2 * x1.2
    df2 = df.assign(apr_s=[1.4, 0.6, 1.0])
    assert scaling.growth_factors(df2)["criterion_holds"] is True  # x2.33 <= x2.4
    text = scaling.scaling_text(df.assign(mem_limit_gb=12.0))
    assert "DOES NOT HOLD" in text and "did not fit at 1024^2 (address space limited to 12 GB)" in text
    with pytest.raises(ValueError, match="two canvas sizes"):
        scaling.growth_factors(df.iloc[:1])


def _timings(pixel_s, pixel_repeats, apr_repeats=3, pixel_peak_mb=None, mem_limit_gb=12.0):
    """A cost_vs_size table with the columns the outlier rule reads: canvases 256^2 ... , APR times that
    follow the particles, the Pix_B times given."""
    n = len(pixel_s)
    sizes = [256 * 2 ** i for i in range(n)]
    return pd.DataFrame({
        "size": sizes, "pixels": [s * s for s in sizes], "particles": [2000 + 10 * i for i in range(n)],
        "formation_s": [6e-4 * 4 ** i for i in range(n)], "tables_s": [0.004] * n, "forward_s": [0.009] * n,
        "apr_s": [0.013] * n, "apr_repeats": [apr_repeats] * n, "pixel_s": pixel_s,
        "pixel_repeats": pixel_repeats, "pixel_fit": [not math.isnan(t) for t in pixel_s],
        "formation_peak_mb": [1.0] * n, "tables_peak_mb": [1.0] * n, "forward_peak_mb": [14.0] * n,
        "apr_peak_mb": [15.0] * n, "pixel_peak_mb": pixel_peak_mb or [50.0 * 4 ** i for i in range(n)],
        "mem_limit_gb": [mem_limit_gb] * n})


def test_outlier_rule_flags_a_single_measurement_and_keeps_it_out_of_the_growth():
    """The stored book run's case: Pix_B's forward at 2048^2 timed once (its budget spent), 166 s where
    1024^2 took 1.8 s: 23 times the time per pixel, far from the memory limit. It is flagged, labelled
    "single measurement, excluded", and the Pix_B growth stops at 1024^2."""
    df = _timings([0.048, 0.35, 1.8, 166.2], [3, 3, 3, 1])
    flags = scaling.timing_outliers(df)
    out = flags[flags.outlier]
    assert out[["column", "size"]].values.tolist() == [["pixel_s", 2048]]
    row = out.iloc[0]
    assert row.label == "single measurement, excluded" and row.reference_size == 1024
    assert row.jump == pytest.approx((166.2 / 2048 ** 2) / (1.8 / 1024 ** 2))
    assert "measured once" in row.reason and "time per pixel 23.1 times that at 1024x1024" in row.reason
    assert not row.memory_reached
    g = scaling.growth_factors(df)
    assert (g["pixel_from_size"], g["pixel_to_size"]) == (256, 1024)
    assert g["pixel_s"] == pytest.approx(1.8 / 0.048) and g["pixel_pixels"] == pytest.approx(16.0)
    assert [e["size"] for e in g["excluded"]] == [2048]
    # without the rule the single slow call would read as a 3462-fold growth for 64 times the pixels
    assert scaling.growth_factors(df, exclude_outliers=False)["pixel_s"] == pytest.approx(166.2 / 0.048)
    text = scaling.scaling_text(df)
    assert "Pix_B forward time x37.5 from 256^2 to 1024^2" in text
    assert "excluded (outlier rule" in text and "Pix_B forward at 2048^2" in text and "x3462" not in text


def test_outlier_rule_a_jump_alone_and_few_repeats_alone():
    # timed three times but 8 times the time per pixel of the previous size: an outlier by the jump
    df = _timings([0.05, 0.2, 6.4, 25.6], [3, 3, 3, 3])
    flags = scaling.timing_outliers(df)
    out = flags[flags.outlier]
    assert out[["column", "size"]].values.tolist() == [["pixel_s", 1024], ["pixel_s", 2048]]
    assert out.iloc[0].label == "time per pixel x8, excluded" and "measured" not in out.iloc[0].reason
    # the next size is compared with the last point kept (512^2), not with the outlier: x32 again
    nxt = flags[(flags.column == "pixel_s") & (flags["size"] == 2048)].iloc[0]
    assert nxt.reference_size == 512 and nxt.outlier
    # timed twice, no jump: an outlier for its repeats alone
    df = _timings([0.05, 0.2, 0.8], [3, 2, 3])
    out = scaling.timing_outliers(df).query("outlier")
    assert out[["column", "size"]].values.tolist() == [["pixel_s", 512]]
    assert out.iloc[0].label == "2 measurements, excluded" and "fewer than 3" in out.iloc[0].reason
    # a jump of exactly the factor is not more than it: kept
    df = _timings([0.05, 0.8], [3, 3])
    assert not scaling.timing_outliers(df).outlier.any()


def test_a_jump_at_the_memory_limit_is_explained_not_an_outlier():
    """A pass whose peak memory reaches the limit (here 11.5 GB of 12) may page or fall back to slower
    kernels: its jump is explained, and the point is kept."""
    df = _timings([0.05, 0.2, 6.4], [3, 3, 3], pixel_peak_mb=[50.0, 200.0, 11500.0])
    flags = scaling.timing_outliers(df)
    row = flags[(flags.column == "pixel_s") & (flags["size"] == 1024)].iloc[0]
    assert row.memory_reached and not row.outlier and row.jump == pytest.approx(8.0)
    assert scaling.growth_factors(df)["pixel_to_size"] == 1024
    # the same measurement, once: flagged for its repeats even at the limit
    df = _timings([0.05, 0.2, 6.4], [3, 3, 1], pixel_peak_mb=[50.0, 200.0, 11500.0])
    assert scaling.timing_outliers(df).query("outlier")["size"].tolist() == [1024]


def test_outlier_rule_on_a_table_without_repeats_and_its_settings():
    df = _timings([0.05, 0.2, 6.4], [3, 3, 3]).drop(columns=["apr_repeats", "pixel_repeats", "mem_limit_gb"])
    flags = scaling.timing_outliers(df)
    assert flags.repeats.isna().all()
    assert flags.query("outlier")[["column", "size"]].values.tolist() == [["pixel_s", 1024]]
    assert not scaling.timing_outliers(df, max_jump=10).outlier.any()
    assert scaling.timing_outliers(_timings([0.05, 0.2], [2, 2]), min_repeats=2).outlier.sum() == 0
    for bad in ({"min_repeats": 0}, {"max_jump": 1.0}, {"memory_fraction": 0.0}):
        with pytest.raises(ValueError):
            scaling.timing_outliers(df, **bad)


def test_an_excluded_apr_point_shortens_the_span_of_the_criterion():
    df = _timings([0.05, 0.2, 0.8, 3.2], [3, 3, 3, 3])
    df.loc[3, "apr_s"] = 1.0  # x77 the time of the 1024^2 point on 4x the pixels: an outlier
    g = scaling.growth_factors(df)
    assert g["spans"]["apr_s"] == (256, 1024) and g["spans"]["formation_s"] == (256, 2048)
    assert g["apr_s"] == pytest.approx(1.0) and g["criterion_particles"] == pytest.approx(2020 / 2000)
    assert g["criterion_holds"] is True
    assert "apr_s from 256^2 to 1024^2" in scaling.scaling_text(df)


def test_the_stored_book_timings_have_one_outlier():
    """The committed book table: the only outlier is Pix_B's single 166-s forward at 2048^2."""
    path = Path(__file__).resolve().parents[1] / "results" / "cost_scaling" / "book" / "scaling.csv"
    if not path.exists():
        pytest.skip("no committed book cost_scaling table")
    df = pd.read_csv(path)
    out = scaling.timing_outliers(df).query("outlier")
    assert out[["column", "size"]].values.tolist() == [["pixel_s", 2048]]
    g = scaling.growth_factors(df)
    assert g["pixel_to_size"] == 1024 and g["pixel_s"] < 100


def _tiny_batch():
    img = scaling.fixed_content_image(64, 64, 1, seed=0)
    return APRBatch([form_apr(img, **scaling.FORMATION), form_apr(img[::-1].copy(), **scaling.FORMATION)])


def test_table_bytes_counts_an_array_referenced_twice_once():
    batch = _tiny_batch()
    assert scaling.table_bytes(batch) == {"bytes": 0, "n_buffers": 0}  # nothing built yet: the structure is not counted
    arr = np.arange(1000, dtype=np.int64)
    apr = batch.aprs[0]
    apr.__dict__["_some_cache"] = {"a": arr, "b": [arr, arr[10:]], "c": torch.from_numpy(arr)}
    batch.__dict__["_other_cache"] = (arr, {"t": torch.ones(5, dtype=torch.float64)})
    r = scaling.table_bytes(batch)
    assert r == {"bytes": arr.nbytes + 5 * 8, "n_buffers": 2}
    apr.__dict__["_some_cache"]["own"] = apr.level  # a cache pointing at the APR's own structure adds nothing
    assert scaling.table_bytes(batch) == r


def test_table_bytes_finds_the_tables_prepare_builds():
    from aprlib.models import apr_network
    from aprlib.nn.prepare import prepare
    batch = _tiny_batch()
    prepare(batch, apr_network("B"))
    r = scaling.table_bytes(batch)
    assert r["bytes"] > 0 and r["n_buffers"] > 0
    fresh = APRBatch([APR.from_dict(a.to_dict()) for a in batch.aprs])
    assert scaling.table_bytes(fresh)["bytes"] == 0


def test_did_not_fit_is_reported_not_raised():
    spec = {"mode": "pixel", "size": 64, "content": 64, "objects": 1, "seed": 0, "threads": 1,
            "mem_limit_bytes": 1_000_000}  # far below what the process already maps: the forward cannot allocate
    r = scaling._run_child(spec)
    assert r["fit"] is False and r["error"]
    df = scaling.cost_vs_size([32, 64], content=32, objects=1, repeats=1, burn_in=0, mem_limit_gb=0.2, progress=False)
    assert not df.pixel_fit.any() and df.pixel_s.isna().all() and (df.pixel_error != "").all()


def test_onednn_primitive_failure_counts_as_memory_only_under_a_limit():
    """oneDNN reports an allocation that an address-space limit refused as a primitive it could not
    create (when the forked child has not cached that primitive, which depends on what ran before it
    in the fork server); without a limit the same error is a real failure."""
    e = RuntimeError("could not create a primitive")
    assert scaling._is_memory_error(e, limited=True)
    assert not scaling._is_memory_error(e)
    assert scaling._is_memory_error(RuntimeError("DefaultCPUAllocator: can't allocate memory"))


def test_a_failure_other_than_memory_raises():
    with pytest.raises(RuntimeError, match="unknown mode"):
        scaling._run_child({"mode": "nonsense", "size": 64, "content": 64, "objects": 1, "seed": 0})


def test_table_memory_and_training_step_at_tiny_sizes():
    r = scaling.table_memory(2, 64)
    assert r["fit"] and r["retained_bytes"] > 0 and r["particles"] > 0 and r["rss_peak_bytes"] >= 0
    df = scaling.training_step(2, 64, threads=(1, 2), repeats=1, burn_in=0, progress=False)
    assert len(df) == 4 and set(df.network) == {"APR_B", "Pix_B"} and set(df.threads) == {1, 2}
    apr = df[df.network == "APR_B"]
    assert np.allclose(apr.formation_s + apr.tables_s + apr.network_s, apr.step_s)
    s = scaling.step_summary(df)
    assert s.threads.tolist() == [1, 2]
    assert np.allclose(s.ratio_pixel_over_apr, s.pixel_step_s / s.apr_step_s)
    assert s.apr_slower_than_fewer_threads.iloc[0] == False  # noqa: E712 - nothing to compare the first with


def test_training_step_with_the_channels_last_pixel_network():
    df = scaling.training_step(2, 64, threads=(1,), repeats=3, burn_in=0, progress=False, channels_last=True)
    assert sorted(df.network.value_counts().items()) == [("APR_B", 3), ("Pix_B", 3), (scaling.CHANNELS_LAST, 3)]
    # each side leads one round: the rotation of the three sides
    assert [df[df["round"] == r].network.iloc[0] for r in range(3)] == ["APR_B", "Pix_B", scaling.CHANNELS_LAST]
    s = scaling.step_summary(df)
    assert np.allclose(s.ratio_pixel_over_pixel_cl, s.pixel_step_s / s.pixel_cl_step_s)
    assert np.allclose(s.ratio_pixel_cl_over_apr, s.pixel_cl_step_s / s.apr_step_s)
    assert "channels-last" in scaling.step_text(s, 2, 64)
    assert "pixel_cl_step_s" not in scaling.step_summary(df[df.network != scaling.CHANNELS_LAST])


def test_profile_settings_are_valid():
    for profile in ("smoke", "book", "paper"):
        scaling.check_settings(profile_settings("cost_scaling", profile))


@pytest.mark.parametrize("setting, value, says", [
    ("sizes", [64], "at least two"), ("sizes", [64, 16], "smaller"), ("sizes", [64, 64], "repeated"),
    ("repeats", 0, "positive"), ("burn_in", -1, ">= 0"), ("objects", 5, "at most 4"),
    ("mem_limit_gb", 0.0, "GB"), ("step_threads", [0], "thread counts"), ("step_size", 16, "at least"),
    ("pixel_max_size", 8, "canvas size"), ("step_channels_last", "yes", "True or False"),
])
def test_bad_settings_are_named(setting, value, says):
    with pytest.raises(ValueError, match=setting) as err:
        scaling.check_settings({"content": 32, setting: value})
    assert says in str(err.value)


@pytest.mark.parametrize("args, says", [
    (["scaling", "--sizes", "512"], "--sizes"),
    (["scaling", "--sizes", "128", "256", "--content", "256"], "--sizes"),
    (["scaling", "--repeats", "0"], "--repeats"),
    (["scaling", "--mem-limit-gb", "-1"], "--mem-limit-gb"),
    (["scaling", "--budget-s", "-1"], "--budget-s"),
    (["scaling", "--csv", "/no/such/dir/x.csv"], "--csv"),
    (["step", "--threads", "0"], "--threads"),
    (["step", "--size", "8"], "--size"),
    (["tables", "--batch-size", "0"], "--batch-size"),
    (["pipeline", "--batches", "1"], "--batches"),
    (["pipeline", "--size", "4"], "--size"),
    (["--kernels", "2"], "--kernels"),  # the operation benchmark, still the default
])
def test_bad_options_exit_2_naming_the_option(args, says):
    r = subprocess.run([sys.executable, "-m", "aprbook.bench", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and says in r.stderr, r.stderr[-2000:]


def test_the_scaling_command_runs_at_tiny_sizes(tmp_path):
    csv = tmp_path / "scaling.csv"
    r = subprocess.run([sys.executable, "-m", "aprbook.bench", "scaling", "--sizes", "32", "64", "--content", "32",
                        "--objects", "1", "--repeats", "1", "--burn-in", "0", "--csv", str(csv)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "growth from 32^2 to 64^2" in r.stdout and "criterion" in r.stdout
    assert SCALING_COLUMNS <= set(pd.read_csv(csv).columns)


def test_the_pipeline_command_runs_at_tiny_sizes():
    r = subprocess.run([sys.executable, "-m", "aprbook.bench", "pipeline", "--size", "32", "--batch-size", "2",
                        "--rounds", "1", "--batches", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "packed into shared memory" in r.stdout and "1 worker:" in r.stdout and "0 workers:" in r.stdout


def test_interleaved_step_times_rotate_the_order_and_take_medians(monkeypatch):
    """Each round runs every case once, the order rotated by one per round; burn-in rounds are not
    timed; the time of a case is the median of its rounds."""
    from aprbook import bench
    order = []

    class Recorder(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name, self.w = name, torch.nn.Parameter(torch.zeros(2))

        def forward(self, x):
            order.append(self.name)
            return x + self.w

    clock = iter(range(1000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(clock)) ** 2)  # later steps take longer
    cases = {n: (Recorder(n), lambda: torch.zeros(1, 2)) for n in "abc"}
    t = bench.interleaved_step_times(cases, [0], steps=3, burn_in=1)
    assert order == list("abc" "bca" "cab" "abc")
    # step k (0-based over all rounds) starts at clock 2k and ends at 2k + 1: it takes (2k+1)^2 - (2k)^2 = 4k + 1;
    # timed rounds 1-3: step 3r + (its position in round r)
    steps_of = {n: [3 * r + (order[3 * r:3 * r + 3].index(n)) for r in range(1, 4)] for n in "abc"}
    assert t == {n: float(sorted(4 * k + 1 for k in ks)[1]) for n, ks in steps_of.items()}
    with pytest.raises(ValueError, match="steps must be"):
        bench.interleaved_step_times(cases, [0], steps=0)


def test_synthetic_network_step_times_at_a_tiny_size():
    from aprbook.bench import SYNTHETIC_NETWORKS, synthetic_network_step_times
    df = synthetic_network_step_times(size=128, batch_size=2, steps=1, burn_in=0, rel_errors=(0.1, 0.4))
    assert list(df.columns) == ["network", "input", "mean_cr", "step_s", "step_with_tables_s"]
    apr = df[df.network.str.startswith("APR")]
    assert sorted(set(apr.network)) == sorted(SYNTHETIC_NETWORKS) and len(apr) == len(SYNTHETIC_NETWORKS) + 1
    assert (apr.step_s > 0).all() and (apr.step_with_tables_s > 0).all() and (apr.mean_cr >= 1).all()
    pix = df[df.network.str.startswith("Pix")]
    assert pix.input.tolist() == ["pixels 128x128", "pixels 128x128, channels-last", "pixels 128x128", "pixels 64x64",
                                  "pixels 32x32", "pixels 128x128, channels-last"]
    assert (pix.step_s > 0).all() and pix.step_with_tables_s.isna().all()

"""aprbook.cost3d on tiny volumes: the tables' shapes and columns, speed-up and CR computed from the
same medians and counts, memory fields present and positive, the criteria's rules, and bad settings
refused with a message naming them. No timing is asserted."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from aprbook.cost3d import CR_MIN, FORMATION_SIZES, SPEEDUP_PER_CR, check_settings, cost_3d, criteria, nuclei_volume
from aprbook.profiles import profile_settings
from aprbook.verdicts import verdict

TINY = {"sizes": [16, 24], "settings": [{"n_objects": 1, "sigma_th": 0.05}, {"n_objects": 1, "sigma_th": 0.2}],
        "radius_range": [3.0, 5.0], "channels": 2, "kernel": 3, "repeats": 1, "burn_in": 0, "formation_repeats": 1,
        "threads": 1, "mem_limit_gb": 8.0}


@pytest.fixture(scope="module")
def tables():
    return cost_3d(TINY, seed=3)


def test_one_row_per_size_and_setting(tables):
    for name in ("formation", "conv"):
        df = tables[name]
        assert len(df) == len(TINY["sizes"]) * len(TINY["settings"]), name
        assert df["size"].tolist() == [16, 16, 24, 24] and df["setting"].tolist() == [0, 1, 0, 1]
        assert (df["voxels"] == df["size"] ** 3).all()
    assert (tables["formation"].particles == tables["conv"].particles).all()


def test_cr_is_voxels_over_particles_and_speedup_dense_over_apr(tables):
    c, f = tables["conv"], tables["formation"]
    np.testing.assert_allclose(c.cr, c.voxels / c.particles)
    np.testing.assert_allclose(f.cr, f.voxels / f.particles)
    assert (c.particles > 0).all() and (c.particles <= c.voxels).all()
    np.testing.assert_allclose(c.speedup, c.dense_s / c.apr_s)
    np.testing.assert_allclose(c.speedup_over_cr, c.speedup / c.cr)
    # the dense side does not depend on the content: one dense time per size
    assert c.groupby("size").dense_s.nunique().eq(1).all()
    for col in ("apr_fwd_s", "apr_bwd_s", "apr_s", "tables_s", "dense_fwd_s", "dense_bwd_s", "dense_s"):
        assert (c[col] > 0).all(), col
    assert c.dense_fit.all() and (c.apr_repeats == 1).all() and (c.dense_repeats == 1).all()
    if f.pyapr_available.all():
        np.testing.assert_allclose(f.ratio, f.pyapr_s / f.ours_s)
        assert f.same_level.between(0, 1).all()
    else:
        assert f.ratio.isna().all()
    assert (f.ours_s > 0).all() and (f.ours_cells_s > 0).all()


def test_memory_fields_present_and_positive(tables):
    c = tables["conv"]
    for col in ("apr_peak_mb", "table_mb", "features_mb", "dense_peak_mb", "dense_input_mb"):
        assert col in c and (c[col] > 0).all(), col
    np.testing.assert_allclose(c.features_mb, c.particles * TINY["channels"] * 4 / 1e6)
    np.testing.assert_allclose(c.dense_input_mb, c.voxels * TINY["channels"] * 4 / 1e6)
    assert c.apr_mem_fit.all()


def test_volume_is_the_seeded_nuclei_volume():
    a, b = nuclei_volume(16, 1, (0, 16, 0), [3.0, 5.0]), nuclei_volume(16, 1, (0, 16, 0), [3.0, 5.0])
    assert a.shape == (16, 16, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("key, value, says", [
    ("sizes", [4, 16], "smaller than 8"),
    ("sizes", [16, 16], "repeated sizes"),
    ("sizes", [], "list of integer"),
    ("channels", 0, "positive integer"),
    ("kernel", 4, "odd"),
    ("repeats", 1.5, "positive integer"),
    ("burn_in", -1, ">= 0"),
    ("settings", [{"n_objects": 1}], "exactly n_objects and sigma_th"),
    ("settings", [{"n_objects": 1, "sigma_th": 0.0}], "positive number"),
    ("settings", [{"n_objects": -1, "sigma_th": 0.1}], ">= 0"),
    ("settings", [{"n_objects": 1, "sigma_th": 0.1}] * 2, "repeated settings"),
    ("radius_range", [5.0, 3.0], "0 < low <= high"),
    ("mem_limit_gb", 0.0, "above 0.1"),
])
def test_bad_settings_are_refused_naming_them(key, value, says):
    with pytest.raises(ValueError, match=f"setting {key}") as err:
        check_settings({**TINY, key: value})
    assert says in str(err.value)
    with pytest.raises(ValueError):
        cost_3d({**TINY, key: value})


def test_missing_settings_are_named():
    cfg = dict(TINY)
    del cfg["channels"]
    with pytest.raises(ValueError, match="channels"):
        cost_3d(cfg)


def test_every_profile_is_valid():
    for profile in ("smoke", "book", "paper"):
        check_settings(profile_settings("cost_3d", profile))
    book = profile_settings("cost_3d", "book")
    assert min(book["sizes"]) == 64 and max(book["sizes"]) >= 256 and book["channels"] == 32 and book["kernel"] == 3
    assert set(FORMATION_SIZES) <= set(book["sizes"])


def _tables(ratios, speedups, crs, apr_mb, particles, dense_mb, sizes):
    f = pd.DataFrame({"size": sizes, "cr": crs, "ratio": ratios})
    c = pd.DataFrame({"size": sizes, "voxels": [s ** 3 for s in sizes], "cr": crs, "speedup": speedups,
                      "speedup_over_cr": [s / r for s, r in zip(speedups, crs)], "particles": particles,
                      "apr_peak_mb": apr_mb, "table_mb": [m / 4 for m in apr_mb], "dense_peak_mb": dense_mb,
                      "dense_error": ""})
    return {"formation": f, "conv": c}


def test_criteria_rules():
    n1, n2 = FORMATION_SIZES
    good = _tables([1.2, 1.5], [0.6 * 40, 0.6 * 80], [40.0, 80.0], [60.0, 120.0], [100_000, 200_000],
                   [n1 ** 3 * 40e-6, n2 ** 3 * 40e-6], [n1, n2])
    judged = criteria(good)
    assert [verdict(judged[k]).word for k in ("formation", "convolution", "memory")] == ["confirmed"] * 3
    bad = _tables([0.9, 1.5], [0.4 * 40, 0.6 * 80], [40.0, 80.0], [60.0, 600.0], [100_000, 200_000],
                  [n1 ** 3 * 40e-6, n2 ** 3 * 40e-6], [n1, n2])
    judged = criteria(bad)
    assert verdict(judged["formation"]).word == "partly confirmed"
    assert verdict(judged["convolution"]).word == "partly confirmed"
    assert [c.status for c in judged["memory"]] == ["fails", "fails", "holds"]
    # below CR_MIN nothing is judged; no pyapr: inconclusive, never confirmed
    low = _tables([math.nan, math.nan], [1.0, 1.0], [CR_MIN / 2, CR_MIN / 4], [1.0, 1.0], [10, 10], [1.0, 8.0], [n1, n2])
    judged = criteria(low)
    assert verdict(judged["formation"]).word == "inconclusive"
    assert verdict(judged["convolution"]).word == "inconclusive"
    assert "no case reached" in judged["convolution"][0].evidence
    assert SPEEDUP_PER_CR == 0.5 and CR_MIN == 20


def test_bench_subcommand_refuses_bad_options(capsys):
    from aprbook.bench import main
    with pytest.raises(SystemExit) as e:
        main(["cost3d", "--profile", "smoke", "--sizes", "4"])
    assert e.value.code == 2 and "--sizes" in capsys.readouterr().err


def test_dense_slabs_keep_tensors_below_the_onednn_limit():
    from aprbook.cost3d import DENSE_TENSOR_LIMIT, dense_slabs
    assert dense_slabs(192, 32, 3) == 1 and dense_slabs(255, 32, 3) == 1
    n = dense_slabs(256, 32, 3)
    assert n == 2 and 32 * 256 * 256 * 4 * (128 + 2) < DENSE_TENSOR_LIMIT


def test_dense_pass_in_slabs_times_both_passes():
    import torch

    from aprbook.cost3d import _dense_pass
    x = torch.randn(1, 2, 9, 6, 7, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, 3, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    for slabs in (1, 3):
        f, bw = _dense_pass(x, w, b, slabs)
        assert f > 0 and bw > 0

"""Smoke-scale runs of aprbook.segmentation (the segmentation chapter's experiment code): tiny images,
a handful of steps."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from aprbook import segmentation as seg
from aprbook.profiles import PROFILE_NAMES, profile_settings
from aprbook.settings import SEGMENTATION_PERCENTILES


def _cfg(ndim, **kw):
    return seg.config_from_profile("smoke", ndim, **kw)


@pytest.mark.parametrize("profile", PROFILE_NAMES)
@pytest.mark.parametrize("ndim", [2, 3])
def test_profiles_make_configs(profile, ndim):
    cfg = seg.config_from_profile(profile, ndim)
    assert cfg.ndim == ndim
    cost = profile_settings("segmentation", profile)[f"cost_{ndim}d"]
    assert cost["ndim"] == ndim


@pytest.mark.parametrize("ndim", [2, 3])
def test_sets_apr_and_pixel_batches_hold_the_same_images(ndim):
    from aprlib.data.nuclei import generate, normalize_percentile
    cfg = _cfg(ndim)
    data = seg.stream_set(cfg, 0)
    assert len(data) == cfg.batch_size and data.shape == cfg.shape
    batch, masks = data.apr_batch()
    x, y = data.pixel_batch()
    assert x.shape == (cfg.batch_size, 1) + cfg.shape and x.dtype == torch.float32
    assert y.shape == (cfg.batch_size,) + cfg.shape and y.dtype == torch.int64
    params = seg.nuclei_params(cfg.n_objects, cfg.radius_range)
    for j in range(cfg.batch_size):
        s = generate(cfg.shape, params, (cfg.data_seed, 0, 0, j))
        np.testing.assert_array_equal(x[j, 0].numpy(), normalize_percentile(s.image, *SEGMENTATION_PERCENTILES))
        np.testing.assert_array_equal(y[j].numpy(), s.mask.astype(np.int64))
        np.testing.assert_array_equal(masks[j], s.mask)
        apr = batch.aprs[j]
        assert apr.shape == cfg.shape and apr.params.rel_error == cfg.rel_error
        # the APR's intensities are cell means of the same (normalised) image
        owner = apr.pixel_owner()
        recon = np.asarray(apr.intensities, dtype=np.float64)[owner]
        cell_sum = np.bincount(owner.ravel(), weights=x[j, 0].numpy().ravel().astype(np.float64),
                               minlength=apr.n_particles)
        cell_n = np.bincount(owner.ravel(), minlength=apr.n_particles)
        np.testing.assert_allclose(recon, (cell_sum / cell_n)[owner], rtol=1e-4, atol=1e-5)
    # low-noise imaging: the same objects, other noise
    low = seg.stream_set(seg.SegmentationConfig(**{**cfg.params(), "low_noise": True}), 0)
    np.testing.assert_array_equal(low.masks[0], data.masks[0])
    assert not np.array_equal(low.images[0], data.images[0])
    # held-out images are not training images
    held = seg.heldout_set(cfg)
    assert len(held) == cfg.n_heldout
    assert not any(np.array_equal(h, t) for h in held.images for t in data.images)


@pytest.mark.parametrize("ndim", [2, 3])
def test_networks_start_from_the_same_weights(ndim):
    cfg = _cfg(ndim)
    apr, pixel = seg.make_networks(cfg)
    apr2, pixel2 = seg.make_networks(cfg)
    for (n, a), (_, p) in zip(apr.state_dict().items(), pixel.state_dict().items()):
        if a.shape == p.shape:
            assert torch.equal(a, p), n
        else:  # every level kernel is the pixel kernel
            assert torch.equal(a, p.unsqueeze(2).expand_as(a)), n
    for a, b in zip(pixel.parameters(), pixel2.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("ndim", [2, 3])
def test_train_pair_smoke_and_determinism(ndim):
    cfg = _cfg(ndim)
    threads = torch.get_num_threads()
    run = seg.train_pair(cfg)
    assert torch.get_num_threads() == threads  # restored after the run's one thread
    c = run.curve
    assert isinstance(c, pd.DataFrame) and len(c) == 2 * cfg.n_steps
    assert set(c.network) == {"apr", "pixel"}
    assert list(c[c.network == "apr"].step) == list(range(1, cfg.n_steps + 1))
    assert np.isfinite(c.loss).all() and (c.loss > 0).all() and (c.step_s > 0).all()
    ev = c.dropna(subset=["heldout_dice"])
    expected = sorted({s for s in range(1, cfg.n_steps + 1) if s % cfg.eval_every == 0} | {cfg.n_steps})
    assert sorted(set(ev.step)) == expected
    assert ((ev.heldout_dice >= 0) & (ev.heldout_dice <= 1)).all()
    for side in ("apr", "pixel"):
        assert 0 <= run.summary[f"{side}_final_dice"] <= 1
    assert run.summary["settings"] == cfg.params()
    again = seg.train_pair(cfg)
    cols = ["step", "network", "loss", "heldout_dice", "n_particles", "n_pixels"]
    pd.testing.assert_frame_equal(c[cols], again.curve[cols])
    for a, b in zip(run.apr_net.parameters(), again.apr_net.parameters()):
        assert torch.equal(a, b)
    other = seg.train_pair(cfg.__class__(**{**cfg.params(), "radius_range": cfg.radius_range, "data_seed": 1}))
    assert not np.array_equal(other.curve.loss.to_numpy(), c.loss.to_numpy())


def test_apr_of_all_pixels_matches_the_pixel_net_at_the_first_step():
    # E so small that every particle is a pixel: the same weights give the same first loss
    cfg = _cfg(2, rel_error=1e-6, sigma_th=1e-6, gradient_smoothing=0.0, n_steps=1)
    run = seg.train_pair(cfg)
    c = run.curve
    assert (c.n_particles == c.n_pixels).all()
    a, p = c[c.network == "apr"].loss.iloc[0], c[c.network == "pixel"].loss.iloc[0]
    assert a == pytest.approx(p, rel=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_step_cost_vs_size_smoke(ndim):
    kw = {**profile_settings("segmentation", "smoke")[f"cost_{ndim}d"]}
    df = seg.step_cost_vs_size(**kw)
    assert list(df["size"]) == sorted(kw["sizes"])
    assert (df.apr_step_s > 0).all() and (df.pixel_step_s > 0).all()
    assert (df.particles <= df.pixels).all() and (df.pixels == df["size"] ** ndim).all()


def test_step_cost_memory_in_a_fresh_process():
    df = seg.step_cost_vs_size(2, [32], n_objects=1, radius_range=(3.0, 5.0), repeats=1, burn_in=0, depth=1,
                               base_channels=2, memory=True)
    assert bool(df.apr_fit.iloc[0]) and bool(df.pixel_fit.iloc[0])
    assert df.apr_peak_mb.iloc[0] >= 0 and df.pixel_peak_mb.iloc[0] >= 0


@pytest.mark.parametrize("ndim", [2, 3])
def test_evaluate_stardist(ndim):
    cfg = _cfg(ndim, n_steps=1)
    apr, pixel = seg.make_networks(cfg)
    r = seg.evaluate_stardist(apr, pixel, ndim)
    if not r["available"]:
        assert "stardist" in r["reason"]
        pytest.skip(r["reason"])
    assert 0 <= r["apr_dice"] <= 1 and 0 <= r["pixel_dice"] <= 1
    assert r["pixels"] == int(np.prod(r["shape"])) and 0 < r["particles"] <= r["pixels"]


def test_evaluate_stardist_without_stardist(monkeypatch):
    import aprlib.data.stardist_samples as sd

    def missing(ndim=2):
        raise ModuleNotFoundError("the StarDist sample images need the stardist package")
    monkeypatch.setattr(sd, "stardist_sample", missing)
    apr, pixel = seg.make_networks(_cfg(2))
    r = seg.evaluate_stardist(apr, pixel, 2)
    assert r == {"available": False, "reason": "the StarDist sample images need the stardist package"}


@pytest.mark.parametrize("bad", [
    {"ndim": 4}, {"ndim": True}, {"size": 4}, {"size": 32.0}, {"batch_size": 0}, {"n_steps": 0}, {"eval_every": 0},
    {"lr": 0}, {"lr": float("nan")}, {"rel_error": -0.1}, {"sigma_th": 0}, {"norm": "layer"}, {"kernel_size": 2},
    {"gradient_smoothing": -1.0}, {"low_noise": 1}, {"radius_range": (5.0, 3.0)}, {"radius_range": (3.0,)}, {"n_objects": -1}, {"threads": 0}, {"seed": -1},
])
def test_bad_settings_rejected(bad):
    with pytest.raises(ValueError):
        seg.SegmentationConfig(**bad)


def test_bad_arguments_rejected():
    with pytest.raises(ValueError, match="unknown segmentation settings"):
        seg.config_from_profile("smoke", 2, learning_rate=1e-3)
    with pytest.raises(ValueError, match="unknown profile"):
        seg.config_from_profile("huge", 2)
    with pytest.raises(ValueError):
        seg.config_from_profile("smoke", 4)
    with pytest.raises(TypeError):
        seg.train_pair({"ndim": 2})
    with pytest.raises(ValueError):
        seg.step_cost_vs_size(2, [])
    with pytest.raises(ValueError):
        seg.step_cost_vs_size(2, [4])
    with pytest.raises(ValueError):
        seg.step_cost_vs_size(2, [32], repeats=0)
    with pytest.raises(ValueError):
        seg.stream_set(_cfg(2), -1)
    apr, pixel = seg.make_networks(_cfg(2))
    with pytest.raises(ValueError, match="3D U-Net"):
        seg.evaluate_stardist(apr, pixel, 3)
    with pytest.raises(ValueError, match="same shape|shape"):
        seg.SegSet([np.zeros((8, 8)), np.zeros((9, 9))], [np.zeros((8, 8)), np.zeros((9, 9))], rel_error=0.1,
                   sigma_th=0.1)

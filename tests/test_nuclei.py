"""Tests of the synthetic fluorescence-microscopy generator (aprlib.data.nuclei): nuclei and shells in 2D
and 3D with their ground-truth masks."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy import ndimage

from aprlib.data.nuclei import (DATASET_TAG, DEFAULT_DENSITY, NucleiDataset, NucleiParams, NucleiSample, Nucleus, generate,
                                normalize_percentile, object_patch, sparse_volume)

CLEAN = dict(psf_sigma=0.0, photon_scale=None, read_noise=0.0)  # no blur, no noise
FEW = NucleiParams(n_objects=3)


def check_sample(s, shape, n):
    """Invariants of every generated sample."""
    assert isinstance(s, NucleiSample)
    assert s.image.shape == shape and s.image.dtype == np.float32
    assert s.mask.shape == shape and s.mask.dtype == bool
    assert s.labels.shape == shape and s.labels.dtype == np.int32
    np.testing.assert_array_equal(s.mask, s.labels > 0)
    assert len(s.objects) == n
    assert np.unique(s.labels).tolist() == list(range(n + 1)) if n else not s.labels.any()
    assert np.all(np.isfinite(s.image))
    # objects one pixel inside the border
    for axis in range(len(shape)):
        assert not s.labels.take([0, shape[axis] - 1], axis=axis).any()
    # every object's pixels lie within its bounding sphere
    grids = np.indices(shape, sparse=True)
    for k, obj in enumerate(s.objects, start=1):
        d2 = sum((g - c) ** 2 for g, c in zip(grids, obj.center))
        assert np.all(d2[s.labels == k] <= obj.bound ** 2 + 1e-9)


@pytest.mark.parametrize("shape", [(256, 256), (64, 64, 64), (200, 120), (48, 80, 72)])
def test_shapes_dtypes_counts(shape):
    s = generate(shape, seed=3)
    n = round(DEFAULT_DENSITY[len(shape)] * math.prod(shape) / 1e6)
    assert NucleiParams().count(shape) == n == {(256, 256): 23, (64, 64, 64): 8}.get(shape, n)
    check_sample(s, shape, n)
    assert all(o.ndim == len(shape) for o in s.objects)


@pytest.mark.parametrize("shape", [(96, 96), (64, 64, 64)])
def test_deterministic_and_seed_dependent(shape):
    a, b, c = generate(shape, seed=5), generate(shape, seed=5), generate(shape, seed=6)
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_array_equal(x, y)
    assert a.objects == b.objects
    assert not np.array_equal(a.image, c.image) and not np.array_equal(a.labels, c.labels)
    # a sequence seed is another stream (numpy's SeedSequence: trailing zeros are dropped, (5, 0) is 5)
    assert not np.array_equal(generate(shape, seed=(5, 1)).labels, a.labels)
    np.testing.assert_array_equal(generate(shape, seed=(5, 0)).labels, a.labels)


@pytest.mark.parametrize("shape", [(128, 128), (64, 64, 64)])
def test_count_by_n_objects_and_density(shape):
    for n in (0, 1, 5):
        check_sample(generate(shape, NucleiParams(n_objects=n), seed=n), shape, n)
    density = 4.0 / math.prod(shape) * 1e6  # 4 objects
    p = NucleiParams(density=density)
    assert p.count(shape) == 4
    check_sample(generate(shape, p, seed=1), shape, 4)
    assert NucleiParams().count(shape) == round(DEFAULT_DENSITY[len(shape)] * math.prod(shape) / 1e6)
    assert NucleiParams(density=1.0).count((1000, 1000)) == 1


def test_objects_do_not_overlap_and_keep_the_gap():
    p = NucleiParams(n_objects=40, min_gap=2.0)
    s = generate((200, 200), p, seed=0)
    centres = np.array([o.center for o in s.objects])
    bounds = np.array([o.bound for o in s.objects])
    dist = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    need = bounds[:, None] + bounds[None] + 2.0
    off = ~np.eye(len(bounds), dtype=bool)
    assert np.all(dist[off] >= need[off])
    assert list(bounds) == sorted(bounds, reverse=True)  # largest first


@pytest.mark.parametrize("shape", [(256, 256), (64, 64, 64)])
def test_brighter_inside_than_outside(shape):
    s = generate(shape, seed=1)
    inside, outside = s.image[s.mask].mean(), s.image[~s.mask].mean()
    p = NucleiParams()
    assert inside > outside + 0.2
    assert abs(np.median(s.image[~s.mask]) - p.background) < 0.01  # background in intensity units


@pytest.mark.parametrize("shape", [(128, 96), (40, 48, 56)])
def test_clean_image_is_background_plus_brightness_times_texture(shape):
    p = NucleiParams(n_objects=6, shell_fraction=0.5, **CLEAN)
    s = generate(shape, p, seed=2)
    expected = np.full(shape, np.float32(p.background), dtype=np.float32)
    for k, obj in enumerate(s.objects, start=1):
        box, inside, texture = object_patch(obj, p.texture_strength, p.texture_sigma)
        np.testing.assert_array_equal(s.labels[box] == k, inside)
        assert texture.dtype == np.float32 and texture.shape == inside.shape and texture.min() >= 0
        expected[box][inside] = np.float32(p.background) + np.float32(obj.brightness) * texture[inside]
    np.testing.assert_array_equal(s.image, expected)  # exactly
    assert np.all(s.image[~s.mask] == np.float32(p.background))
    assert {o.kind for o in s.objects} <= {"nucleus", "shell"}


def test_untextured_objects_are_flat():
    p = NucleiParams(n_objects=5, texture_strength=0.0, **CLEAN)
    s = generate((100, 100), p, seed=4)
    for k, obj in enumerate(s.objects, start=1):
        np.testing.assert_array_equal(s.image[s.labels == k], np.float32(p.background) + np.float32(obj.brightness))


@pytest.mark.parametrize("ndim", [2, 3])
def test_unperturbed_round_objects_are_balls_and_shells(ndim):
    """Independent geometry: with no perturbation and axis ratio 1, a nucleus is the ball of radius r
    (pixel centres within r of the centre) and a shell the pixels with r - t <= d <= r."""
    shape = (60,) * ndim
    for shell in (0.0, 1.0):
        p = NucleiParams(n_objects=3, perturbation=0.0, axis_ratio_range=(1.0, 1.0), shell_fraction=shell, **CLEAN)
        s = generate(shape, p, seed=7)
        grids = np.indices(shape, sparse=True)
        for k, obj in enumerate(s.objects, start=1):
            r = obj.semi_axes[0]
            assert obj.bound == pytest.approx(r)
            d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, obj.center)))
            expected = d <= r * (1 + 1e-12)
            if shell:
                assert obj.kind == "shell" and 1.5 <= obj.thickness <= 3.0
                expected &= d >= r - obj.thickness - 1e-9
            else:
                assert obj.kind == "nucleus" and obj.thickness == 0
            near_edge = (np.abs(d - r) < 1e-6) | (np.abs(d - (r - obj.thickness)) < 1e-6)
            assert np.array_equal((s.labels == k)[~near_edge], expected[~near_edge])


def test_ellipse_semi_axes_and_orientation():
    """An unperturbed 2D ellipse covers about pi a b pixels, elongated along its first axis."""
    p = NucleiParams(n_objects=1, radius_range=(20.0, 20.0), axis_ratio_range=(0.5, 0.5), perturbation=0.0,
                     shell_fraction=0.0, **CLEAN)
    s = generate((64, 64), p, seed=11)
    obj = s.objects[0]
    assert obj.semi_axes == (20.0, 10.0)
    area = np.count_nonzero(s.labels == 1)
    assert abs(area - math.pi * 200) < 2 * math.pi * 20 * 0.75
    pts = np.argwhere(s.labels == 1) - np.array(obj.center)
    main = np.linalg.eigh(np.cov(pts.T))[1][:, -1]  # direction of largest spread
    assert abs(abs(main @ np.array(obj.rotation)[:, 0]) - 1) < 1e-3
    rot = np.array(obj.rotation)
    np.testing.assert_allclose(rot.T @ rot, np.eye(2), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)


def test_perturbation_changes_the_boundary_within_its_amplitude():
    base = dict(n_objects=4, shell_fraction=0.0, axis_ratio_range=(1.0, 1.0), **CLEAN)
    smooth = generate((96, 96), NucleiParams(perturbation=0.0, **base), seed=3)
    bumpy = generate((96, 96), NucleiParams(perturbation=0.3, **base), seed=3)
    grids = np.indices((96, 96), sparse=True)
    assert not np.array_equal(smooth.mask, bumpy.mask)
    for k, obj in enumerate(bumpy.objects, start=1):
        d = np.sqrt(sum((g - c) ** 2 for g, c in zip(grids, obj.center)))
        r = obj.semi_axes[0]
        assert np.all(d[bumpy.labels == k] <= r * 1.3 + 1e-9)
        assert np.all(bumpy.labels[d <= r * 0.7 - 1e-9] == k)


def test_psf_blur_isotropic_and_anisotropic():
    p = NucleiParams(n_objects=3, **CLEAN)
    shape = (32, 40, 48)
    clean = generate(shape, p, seed=9).image
    iso = generate(shape, dataclasses.replace(p, psf_sigma=1.5), seed=9).image
    np.testing.assert_allclose(iso, ndimage.gaussian_filter(clean, 1.5), rtol=1e-6, atol=1e-7)
    z_only = generate(shape, dataclasses.replace(p, psf_sigma_z=2.0), seed=9).image
    np.testing.assert_allclose(z_only, ndimage.gaussian_filter1d(clean, 2.0, axis=0), rtol=1e-6, atol=1e-7)
    flat2d = generate((64, 64), dataclasses.replace(p, psf_sigma_z=5.0), seed=9)  # not used in 2D
    np.testing.assert_array_equal(flat2d.image, generate((64, 64), p, seed=9).image)
    assert iso.dtype == np.float32 and abs(iso.mean() - clean.mean()) < 1e-3


def test_noise_units_shot_and_read():
    """Empty image: mean = background; variance = background / photon_scale + read_noise**2."""
    for photons, read in ((50.0, 0.0), (200.0, 0.02), (None, 0.05)):
        p = NucleiParams(n_objects=0, background=0.2, photon_scale=photons, read_noise=read)
        img = generate((300, 300), p, seed=1).image
        var = (0.2 / photons if photons else 0.0) + read ** 2
        assert abs(img.mean() - 0.2) < 5 * math.sqrt(var / img.size)
        assert img.var() == pytest.approx(var, rel=0.03)
        if read == 0:  # pure shot noise: multiples of 1 / photon_scale
            np.testing.assert_allclose(img * photons, np.round(img * photons), atol=1e-3)


def test_texture_has_unit_mean_and_requested_contrast():
    obj = generate((96, 96, 96), NucleiParams(n_objects=1, radius_range=(40.0, 40.0)), seed=0).objects[0]
    box, inside, tex = object_patch(obj, texture_strength=0.2, texture_sigma=2.0)
    core = tex[(slice(10, -10),) * 3]
    assert core.mean() == pytest.approx(1.0, abs=0.03)  # about 900 independent blobs: sd of the mean 0.007
    assert core.std() == pytest.approx(0.2, rel=0.1)
    assert np.array_equal(object_patch(obj, 0.2, 2.0).texture, tex)  # deterministic from texture_seed


def test_sparse_volume_has_a_small_foreground_fraction():
    s = sparse_volume((256, 256, 256), n_objects=6, seed=0)
    check_sample(s, (256,) * 3, 6)
    fraction = s.mask.mean()
    bound = sum(4 / 3 * math.pi * o.bound ** 3 for o in s.objects) / 256 ** 3
    assert 0 < fraction <= bound < 0.005
    assert s.image[s.mask].mean() > s.image[~s.mask].mean() + 0.2


def test_density_scales_with_the_volume():
    p = NucleiParams(density=20.0)  # objects per 10**6 voxels
    assert p.count((64, 64, 64)) == 5 and p.count((128, 128, 128)) == 42
    check_sample(generate((100, 100, 100), p, seed=0), (100,) * 3, 20)


def test_dataset_items_by_seed_and_index():
    ds = NucleiDataset(10, seed=4, shape=(96, 80), params=FEW)
    assert len(ds) == 10
    x, y = ds[7]
    assert x.dtype == torch.float32 and x.shape == (1, 96, 80)
    assert y.dtype == torch.int64 and y.shape == (96, 80) and set(y.unique().tolist()) == {0, 1}
    ref = generate((96, 80), FEW, (4, DATASET_TAG, 7))
    np.testing.assert_array_equal(x[0].numpy(), ref.image)
    np.testing.assert_array_equal(y.numpy(), ref.mask)
    fresh = NucleiDataset(1000, seed=4, shape=(96, 80), params=FEW)  # any order, any length: same items
    assert torch.equal(fresh[7][0], x) and torch.equal(fresh[3][1], ds[3][1])
    assert not torch.equal(NucleiDataset(10, seed=5, shape=(96, 80), params=FEW)[7][0], x)
    assert not np.array_equal(ds.sample(0).labels, generate((96, 80), FEW, 4).labels)  # not a plain seed's image
    labels = NucleiDataset(10, seed=4, shape=(96, 80), params=FEW, target="labels")[7][1]
    np.testing.assert_array_equal(labels.numpy(), ref.labels)
    normed = NucleiDataset(10, seed=4, shape=(96, 80), params=FEW, normalize=(1, 99.8))[7][0]
    np.testing.assert_array_equal(normed[0].numpy(), normalize_percentile(ref.image, 1, 99.8))
    assert NucleiDataset(3, seed=0, shape=(128, 128), transform=lambda s: len(s.objects))[0] == 6


@pytest.mark.parametrize("i", [-1, -10, 10, 11, 10 ** 9])
def test_dataset_bad_index(i):
    ds = NucleiDataset(10, seed=0, shape=(40, 40))
    with pytest.raises(IndexError, match=f"index {i} out of range.*10 items"):
        ds[i]


def test_dataset_3d_in_a_dataloader_with_workers():
    ds = NucleiDataset(6, seed=1, shape=(32, 32, 32), params=NucleiParams(n_objects=3, radius_range=(4.0, 6.0)))
    batches = list(torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.shape == (6, 1, 32, 32, 32) and y.shape == (6, 32, 32, 32)
    for i in range(6):
        assert torch.equal(x[i], ds[i][0]) and torch.equal(y[i], ds[i][1])


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_property_valid_samples(data):
    ndim = data.draw(st.sampled_from([2, 3]))
    r0 = data.draw(st.floats(2.0, 8.0))
    r1 = data.draw(st.floats(r0, 10.0))
    q0 = data.draw(st.floats(1.0 / (r0 * 0.7) + 1e-6, 1.0))
    p = NucleiParams(
        n_objects=data.draw(st.integers(0, 6)), radius_range=(r0, r1), axis_ratio_range=(q0, 1.0),
        perturbation=data.draw(st.floats(0.0, 0.3)), shell_fraction=data.draw(st.floats(0.0, 1.0)),
        shell_thickness_range=(1.0, data.draw(st.floats(1.0, 3.0))), min_gap=data.draw(st.floats(0.0, 3.0)),
        psf_sigma=data.draw(st.floats(0.0, 2.0)))
    side = int(math.ceil(2 * p.max_bound + 2))
    shape = tuple(data.draw(st.integers(side, side + 30)) for _ in range(ndim))
    seed = data.draw(st.integers(0, 2 ** 32 - 1))
    try:
        s = generate(shape, p, seed)
    except ValueError as e:  # a crowded draw: the only allowed failure, and it says so
        assert "density too high" in str(e)
        return
    check_sample(s, shape, p.n_objects)
    again = generate(shape, p, seed)
    np.testing.assert_array_equal(s.image, again.image)
    np.testing.assert_array_equal(s.labels, again.labels)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), pmin=st.floats(0.0, 40.0), pmax=st.floats(60.0, 100.0),
       size=st.integers(2, 400), scale=st.floats(1e-3, 1e4))
def test_normalize_percentile_maps_percentiles_to_0_and_1(seed, pmin, pmax, size, scale):
    rng = np.random.default_rng(seed)
    img = (rng.gamma(2.0, scale, size) + 5).astype(np.float32)
    if np.ptp(img) == 0:
        return
    out = normalize_percentile(img, pmin, pmax)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert np.percentile(out, pmin) == pytest.approx(0.0, abs=1e-4)
    assert np.percentile(out, pmax) == pytest.approx(1.0, abs=1e-4)
    clipped = normalize_percentile(img, pmin, pmax, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_normalize_percentile_default_and_image():
    s = generate((128, 128), seed=0)
    out = normalize_percentile(s.image)
    assert np.percentile(out, 1) == pytest.approx(0.0, abs=1e-5)
    assert np.percentile(out, 99.8) == pytest.approx(1.0, abs=1e-5)
    assert np.all(normalize_percentile(np.full((4, 4), 3.0)) == 0)
    assert normalize_percentile(np.arange(101, dtype=np.int64), 0, 100)[50] == pytest.approx(0.5)


def test_params_frozen_and_defaults():
    p = NucleiParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.background = 0.5
    assert p.psf_sigma_z is None and p.n_objects is None and p.density is None
    assert p.max_bound == pytest.approx(12 * 1.1)
    assert isinstance(generate((64, 64), NucleiParams(n_objects=1), 0).objects[0], Nucleus)


@pytest.mark.parametrize("call,name", [
    (lambda: NucleiParams(radius_range=(0.0, 5.0)), "radius_range"),
    (lambda: NucleiParams(radius_range=(-3.0, 5.0)), "radius_range"),
    (lambda: NucleiParams(radius_range=(8.0, 5.0)), "radius_range"),
    (lambda: NucleiParams(radius_range=(1.0, 5.0)), "too small"),
    (lambda: NucleiParams(radius_range=5.0), "radius_range"),
    (lambda: NucleiParams(axis_ratio_range=(0.0, 1.0)), "axis_ratio_range"),
    (lambda: NucleiParams(axis_ratio_range=(0.5, 1.5)), "axis_ratio_range"),
    (lambda: NucleiParams(perturbation=0.5), "perturbation"),
    (lambda: NucleiParams(perturbation=-0.1), "perturbation"),
    (lambda: NucleiParams(perturbation_frequency=0), "perturbation_frequency"),
    (lambda: NucleiParams(shell_fraction=1.5), "shell_fraction"),
    (lambda: NucleiParams(shell_thickness_range=(0.5, 2.0)), "shell_thickness_range"),
    (lambda: NucleiParams(brightness_range=(0.0, 1.0)), "brightness_range"),
    (lambda: NucleiParams(background=-0.1), "background"),
    (lambda: NucleiParams(background=float("nan")), "background"),
    (lambda: NucleiParams(read_noise=-0.01), "read_noise"),
    (lambda: NucleiParams(photon_scale=0.0), "photon_scale"),
    (lambda: NucleiParams(photon_scale=-5.0), "photon_scale"),
    (lambda: NucleiParams(psf_sigma=-1.0), "psf_sigma"),
    (lambda: NucleiParams(psf_sigma_z=-1.0), "psf_sigma_z"),
    (lambda: NucleiParams(texture_strength=-0.2), "texture_strength"),
    (lambda: NucleiParams(texture_sigma=-1.0), "texture_sigma"),
    (lambda: NucleiParams(min_gap=-1.0), "min_gap"),
    (lambda: NucleiParams(n_objects=-1), "n_objects"),
    (lambda: NucleiParams(n_objects=2.5), "n_objects"),
    (lambda: NucleiParams(density=-1.0), "density"),
    (lambda: NucleiParams(n_objects=3, density=10.0), "at most one of n_objects and density"),
    (lambda: generate((64, 0)), "shape must be positive"),
    (lambda: generate((64, -8, 64)), "shape must be positive"),
    (lambda: generate((64,)), "shape must have length 2"),
    (lambda: generate((2, 64, 64, 64)), "shape must have length 2"),
    (lambda: generate((64, 64.0)), "shape must hold integers"),
    (lambda: generate((20, 64), NucleiParams(n_objects=1)), "too small for the objects"),
    (lambda: generate((64, 64, 16), NucleiParams(n_objects=1)), "too small for the objects"),
    (lambda: generate((64, 64), NucleiParams(n_objects=200)), "density too high"),
    (lambda: generate((64, 64, 64), NucleiParams(density=2000.0)), "density too high"),
    (lambda: generate((64, 64), NucleiParams(n_objects=20), seed=0), "density too high"),
    (lambda: generate((64, 64), seed=-1), "seed"),
    (lambda: generate((64, 64), params={"n_objects": 3}), "params"),
    (lambda: sparse_volume((64, 64, 64), n_objects=-2), "n_objects"),
    (lambda: normalize_percentile(np.ones(5), 50, 10), "pmin"),
    (lambda: normalize_percentile(np.ones(5), -1, 99), "pmin"),
    (lambda: normalize_percentile(np.ones(5), 1, 101), "pmax"),
    (lambda: normalize_percentile(np.array([]), 1, 99), "empty"),
    (lambda: normalize_percentile(np.array([1.0, np.nan]), 1, 99), "finite"),
    (lambda: NucleiDataset(-1, seed=0), "n must"),
    (lambda: NucleiDataset(3, seed=0, target="edges"), "target"),
    (lambda: NucleiDataset(3, seed=0, normalize=(99, 1)), "normalize"),
    (lambda: NucleiDataset(3, seed=0, shape=(0, 10)), "shape"),
])
def test_bad_arguments_name_the_parameter(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_import_aprlib_data_stays_light():
    code = "import sys, aprlib.data; print('scipy' in sys.modules, 'skimage' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "False"]

"""Tests of APR formation, the APR structure and its kernels (reproduction-spec.md section 1).

Every property is checked against an independent numpy computation from (level, y, x) and
level_max: cell means, partition, sorting, tree = strict ancestors, parent links, grading,
and the required-level / minimal-grading semantics of the pulling scheme.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from scipy import ndimage
from skimage import draw
from skimage.color import rgb2gray

import aprlib
from aprlib import APR, APRBatch, APRParameters, _core, collate_aprs, form_apr
from aprlib.apr.formation import bspline_recursion
from libapr_reference import expected_level_max, libapr_level_map, minimal_graded_level_map, required_half_levels

C_2D = 28.7069  # local intensity scale constant in 2D


# ------------------------------------------------------------------------------------------
# independent numpy helpers
# ------------------------------------------------------------------------------------------
def cell_keys(level, y, x):
    """Lexicographic (level, y, x) key as one int64 (y, x < 2^24)."""
    return (np.asarray(level, np.int64) << 48) | (np.asarray(y, np.int64) << 24) | np.asarray(x, np.int64)


def pixel_maps(apr):
    """(index, count): particle index covering each pixel (-1 if none) and number of covering cells."""
    H, W, L = apr.height, apr.width, apr.level_max
    index = np.full((H, W), -1, np.int64)
    count = np.zeros((H, W), np.int64)
    lev = apr.level.astype(np.int64)
    assert lev.min() >= 0 and lev.max() <= L
    for lv in np.unique(lev):
        sel = np.flatnonzero(lev == lv)
        s = 1 << (L - int(lv))
        R, C = -(-H // s), -(-W // s)
        ys, xs = apr.y[sel].astype(np.int64), apr.x[sel].astype(np.int64)
        assert ys.min() >= 0 and xs.min() >= 0, "negative cell coordinates"
        assert ys.max() < R and xs.max() < C, f"cell outside the image at level {lv}"
        gc = np.zeros((R, C), np.int64)
        np.add.at(gc, (ys, xs), 1)
        gi = np.full((R, C), -1, np.int64)
        gi[ys, xs] = sel
        up = lambda g: np.repeat(np.repeat(g, s, axis=0), s, axis=1)[:H, :W]  # noqa: E731
        count += up(gc)
        gi = up(gi)
        index = np.where(gi >= 0, gi, index)
    return index, count


def numpy_cell_means(index, image):
    """Mean of image (H, W) or (H, W, C) over each particle's pixels, via bincount."""
    n = index.max() + 1
    idx = index.ravel()
    counts = np.bincount(idx, minlength=n).astype(np.float64)
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        return np.bincount(idx, weights=img.ravel(), minlength=n) / counts
    return np.stack([np.bincount(idx, weights=img[..., c].ravel(), minlength=n) / counts
                     for c in range(img.shape[2])], axis=1)


def check_grading(lm):
    """8-neighbour pixels of the level map differ by at most one level."""
    lm = lm.astype(np.int64)
    pairs = [(lm[:, 1:], lm[:, :-1]), (lm[1:, :], lm[:-1, :]),
             (lm[1:, 1:], lm[:-1, :-1]), (lm[1:, :-1], lm[:-1, 1:])]
    for a, b in pairs:
        if a.size:
            assert np.abs(a - b).max() <= 1, "neighbouring cells differ by more than one level"


def check_structure(apr, image=None):
    """All structural invariants, computed independently; with image: also values."""
    H, W = apr.height, apr.width
    L, lmin = apr.level_max, apr.level_min
    assert L == expected_level_max(H, W) and lmin == 1
    N, T = apr.n_particles, apr.n_tree
    assert N == len(apr.level) == len(apr.y) == len(apr.x) == len(apr.parent) > 0
    assert T == len(apr.tree_level) == len(apr.tree_y) == len(apr.tree_x) == len(apr.tree_parent)
    assert apr.computational_ratio == pytest.approx(H * W / N)

    # partition: every pixel covered exactly once
    index, count = pixel_maps(apr)
    assert (count == 1).all(), f"coverage counts {np.unique(count)}"
    assert len(np.unique(index)) == N  # every particle covers at least one pixel

    # sorted by (level, y, x), strictly (no duplicates)
    keys = cell_keys(apr.level, apr.y, apr.x)
    assert (np.diff(keys) > 0).all(), "particles not strictly sorted by (level, y, x)"
    lev = apr.level.astype(np.int64)
    assert apr.level_offsets.shape == (L + 2,)
    for lv in range(L + 2):
        assert apr.level_offsets[lv] == np.count_nonzero(lev < lv)
    for lv in range(L + 1):
        sl = apr.particles_at(lv)
        assert (lev[sl] == lv).all() and sl.stop - sl.start == np.count_nonzero(lev == lv)
        tl = apr.tree_at(lv)
        assert (apr.tree_level[tl] == lv).all()
        assert tl.stop - tl.start == np.count_nonzero(apr.tree_level == lv)

    # level map
    lm = apr.level_map()
    assert lm.shape == (H, W)
    np.testing.assert_array_equal(lm, apr.level[index])
    check_grading(lm)

    # tree = exactly the strict ancestors (levels lmin..level-1) of the particles
    anc = []
    for lv in np.unique(lev):
        sel = lev == lv
        for k in range(lmin, int(lv)):
            sh = int(lv) - k
            anc.append(cell_keys(np.full(sel.sum(), k), apr.y[sel] >> sh, apr.x[sel] >> sh))
    anc = np.unique(np.concatenate(anc)) if anc else np.zeros(0, np.int64)
    tkeys = cell_keys(apr.tree_level, apr.tree_y, apr.tree_x)
    assert (np.diff(tkeys) > 0).all(), "tree nodes not strictly sorted by (level, y, x)"
    np.testing.assert_array_equal(tkeys, anc)
    if T:
        assert apr.tree_level.min() >= lmin and apr.tree_level.max() <= L - 1

    # parent links: cell at level-1 with (y // 2, x // 2); -1 at level_min
    top = lev == lmin
    assert (apr.parent[top] == -1).all()
    sub = ~top
    if sub.any():
        p = apr.parent[sub]
        assert (p >= 0).all() and (p < T).all()
        np.testing.assert_array_equal(tkeys[p], cell_keys(lev[sub] - 1, apr.y[sub] >> 1, apr.x[sub] >> 1))
    tlev = apr.tree_level.astype(np.int64)
    ttop = tlev == lmin
    assert (apr.tree_parent[ttop] == -1).all()
    if (~ttop).any():
        p = apr.tree_parent[~ttop]
        assert (p >= 0).all() and (p < T).all()
        np.testing.assert_array_equal(
            tkeys[p], cell_keys(tlev[~ttop] - 1, apr.tree_y[~ttop] >> 1, apr.tree_x[~ttop] >> 1))

    if image is not None:
        check_values(apr, image, index)
    return index


def check_values(apr, image, index=None):
    """Intensities are cell means; reconstruct() paints each pixel with its cell's value."""
    if index is None:
        index, _ = pixel_maps(apr)
    image = np.asarray(image)
    ref = numpy_cell_means(index, image.astype(np.float32))
    scale = max(1.0, float(np.abs(image.astype(np.float64)).max()))
    assert apr.intensities.shape == ref.shape
    np.testing.assert_allclose(apr.intensities, ref, rtol=1e-5, atol=1e-6 * scale)
    rec = apr.reconstruct()
    np.testing.assert_array_equal(rec, apr.intensities[index])
    return ref


def numpy_tree_means(apr, values):
    """Tree node values = mean of children (particles and tree nodes), bottom-up, via keys."""
    vals = np.asarray(values, np.float64)
    T = apr.n_tree
    tkeys = cell_keys(apr.tree_level, apr.tree_y, apr.tree_x)
    out = np.zeros((T,) + vals.shape[1:])
    lev, tlev = apr.level.astype(np.int64), apr.tree_level.astype(np.int64)
    for k in range(apr.level_max - 1, apr.level_min - 1, -1):
        sums = np.zeros_like(out)
        cnt = np.zeros(T)
        ps = lev == k + 1
        ts = tlev == k + 1
        for sel, src, ys, xs in ((ps, vals, apr.y, apr.x), (ts, out, apr.tree_y, apr.tree_x)):
            if not sel.any():
                continue
            pk = cell_keys(np.full(sel.sum(), k), ys[sel] >> 1, xs[sel] >> 1)
            pi = np.searchsorted(tkeys, pk)
            assert (tkeys[pi] == pk).all()
            np.add.at(sums, pi, src[sel])
            np.add.at(cnt, pi, 1)
        here = tlev == k
        assert (cnt[here] > 0).all(), "tree node without children"
        out[here] = sums[here] / cnt[here].reshape((-1,) + (1,) * (vals.ndim - 1))
    return out


def shapes_image(rng, H, W, n_shapes=2, noise=0.0):
    """Filled discs / rectangles / triangles on a background, intensities in [0, 1]."""
    img = np.full((H, W), rng.uniform(0, 1), np.float32)
    for _ in range(n_shapes):
        kind = rng.integers(3)
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        r = rng.uniform(1, max(2.0, 0.3 * max(H, W)))
        if kind == 0:
            rr, cc = draw.disk((cy, cx), r, shape=(H, W))
        elif kind == 1:
            rr, cc = draw.rectangle((int(cy - r), int(cx - r)), (int(cy + r), int(cx + r)), shape=(H, W))
        else:
            a = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
            rr, cc = draw.polygon(cy + r * np.sin(a), cx + r * np.cos(a), shape=(H, W))
        img[rr, cc] = rng.uniform(0, 1)
    if noise:
        img += noise * rng.standard_normal((H, W)).astype(np.float32)
    return img


def make_image(seed, H, W, kind):
    """Test image of a given kind, values >= 1 (so that the default Ip_th = 0 never zeroes a
    gradient, even after B-spline overshoot)."""
    return 1.0 + _make_image(seed, H, W, kind)


def _make_image(seed, H, W, kind):
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return rng.random((H, W)).astype(np.float32)
    if kind == "shapes":
        return shapes_image(rng, H, W)
    if kind == "noisy_shapes":
        return shapes_image(rng, H, W, noise=0.02)
    if kind == "smooth":
        yy, xx = np.mgrid[:H, :W]
        return (np.sin(yy / (3 + 5 * rng.random())) * np.cos(xx / (3 + 5 * rng.random()))).astype(np.float32)
    if kind == "constant":
        return np.full((H, W), rng.uniform(0, 10), np.float32)
    if kind == "integers":
        return rng.integers(0, 4, (H, W)).astype(np.float32)
    if kind == "signed":  # zero-mean noise: about half the gradients are zeroed by Ip_th = 0
        return rng.standard_normal((H, W)).astype(np.float32) - 1.0
    raise ValueError(kind)


# ------------------------------------------------------------------------------------------
# example-based structure and value tests
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (100, 37), (128, 96)])
@pytest.mark.parametrize("kind", ["noise", "shapes", "noisy_shapes", "smooth"])
def test_structure_and_cell_means(shape, kind):
    img = make_image(zlib.crc32(repr((shape, kind)).encode()), *shape, kind)
    apr = form_apr(img, rel_error=0.2, sigma_th=0.02)
    assert apr.intensities.shape == (apr.n_particles,) and apr.intensities.dtype == np.float32
    check_structure(apr, img)
    # explicit sample() equals the stored intensities
    np.testing.assert_array_equal(apr.sample(img), apr.intensities)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 2), (2, 3), (5, 5), (100, 37), (300, 200)])
@pytest.mark.parametrize("kind", ["noise", "shapes", "constant"])
def test_odd_sizes(shape, kind):
    img = make_image(7, *shape, kind)
    for lam in (0.0, 3.0):
        apr = form_apr(img, rel_error=0.1, gradient_smoothing=lam)
        assert apr.shape == shape
        assert apr.level_max == expected_level_max(*shape)
        check_structure(apr, img)


def test_level_max_and_geometry():
    for (H, W), L in {(1, 1): 2, (2, 2): 2, (4, 4): 2, (5, 4): 3, (64, 64): 6, (65, 3): 7,
                      (37, 50): 6, (300, 200): 9}.items():
        apr = form_apr(np.zeros((H, W), np.float32))
        assert apr.level_max == L and apr.level_min == 1


def test_tree_means_independent():
    rng = np.random.default_rng(3)
    img = shapes_image(rng, 90, 70, n_shapes=3, noise=0.01)
    apr = form_apr(np.abs(img), rel_error=0.1, sigma_th=0.01)
    assert apr.n_tree > 0
    np.testing.assert_allclose(apr.tree_means(), numpy_tree_means(apr, apr.intensities), rtol=1e-5, atol=1e-6)
    vals = rng.standard_normal((apr.n_particles, 4))
    tm = apr.tree_means(vals)
    assert tm.shape == (apr.n_tree, 4)
    np.testing.assert_allclose(tm, numpy_tree_means(apr, vals), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError):
        apr.tree_means(vals[:-1])


def test_reconstruct_multichannel_values():
    img = make_image(11, 50, 60, "shapes")
    apr = form_apr(img, rel_error=0.1, sigma_th=0.02)
    index, _ = pixel_maps(apr)
    vals = np.random.default_rng(0).standard_normal((apr.n_particles, 5)).astype(np.float32)
    rec = apr.reconstruct(vals)
    assert rec.shape == (50, 60, 5) and rec.dtype == np.float32
    np.testing.assert_array_equal(rec, vals[index])
    np.testing.assert_array_equal(apr.reconstruct(torch.from_numpy(vals[:, 2])), vals[index, 2])


@pytest.mark.parametrize("shape", [(64, 64), (37, 50), (16, 16), (1, 9)])
@pytest.mark.parametrize("lam", [0.0, 3.0])
def test_all_different_pixels_tiny_error_is_lossless(shape, lam):
    H, W = shape
    img = np.random.default_rng(H * W).permutation(H * W).reshape(H, W).astype(np.float64)
    apr = form_apr(img, rel_error=1e-4, gradient_smoothing=lam)
    assert (apr.level == apr.level_max).all()
    assert apr.n_particles == H * W and apr.computational_ratio == 1.0
    np.testing.assert_array_equal(apr.reconstruct(), img.astype(np.float32))
    check_structure(apr, img)


@pytest.mark.parametrize("shape,max_particles", [((64, 64), 16), ((100, 37), 16), ((1, 1), 1), ((256, 256), 16)])
def test_constant_image_is_sparse(shape, max_particles):
    img = np.full(shape, 0.7, np.float32)
    for kw in ({}, {"sigma_th": 0.05}, {"gradient_smoothing": 0.0}):
        apr = form_apr(img, **kw)
        assert apr.n_particles <= max_particles
        check_structure(apr, img)
        np.testing.assert_allclose(apr.reconstruct(), img, rtol=1e-6)
    if shape == (256, 256):
        assert apr.computational_ratio >= 200


def test_huge_error_gives_coarsest_levels():
    yy, xx = np.mgrid[:128, :128]
    img = np.exp(-((yy - 60.0) ** 2 + (xx - 70.0) ** 2) / (2 * 20.0**2)).astype(np.float32)
    fine = form_apr(img, rel_error=0.01, sigma_th=0.0)
    coarse = form_apr(img, rel_error=1e6, sigma_th=0.0)
    check_structure(coarse, img)
    assert fine.n_particles > 10 * coarse.n_particles
    assert coarse.n_particles <= 16
    assert coarse.level.max() <= coarse.level_min + 1


def test_negative_images_follow_ip_th_zero_default():
    """LibAPR (and pyapr 1.0.7) zero |grad I| where the half-grid intensity is <= Ip_th, and Ip_th
    defaults to 0, so an all-negative image gives the coarsest APR; aprlib reproduces that."""
    img = make_image(5, 64, 64, "noise")
    libapr = APRParameters.libapr()
    pos = form_apr(img + 5, libapr)
    neg = form_apr(img - 5, libapr)
    assert pos.n_particles > 1000 and neg.n_particles == 16
    with_th = form_apr(img - 5, libapr, Ip_th=-10.0)
    np.testing.assert_array_equal(with_th.level, pos.level)


# ------------------------------------------------------------------------------------------
# formation semantics: required levels and minimal grading
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [0.0, 3.0])
@pytest.mark.parametrize("E", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(64, 64), (45, 70)])
def test_level_map_is_minimal_graded_refinement(lam, E, shape):
    img = make_image(13, *shape, "noisy_shapes")
    apr = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=0.02, pulling_scheme="minimal")
    check_structure(apr, img)
    req = required_half_levels(img, E, lam, sigma_th=0.02)
    lm = apr.level_map().astype(np.int64)
    req_px = np.repeat(np.repeat(req, 2, 0), 2, 1)[: shape[0], : shape[1]]
    assert (lm >= req_px).all(), "a particle cell is coarser than the local resolution demands"
    np.testing.assert_array_equal(lm, minimal_graded_level_map(req, *shape))


@pytest.mark.parametrize("lam", [0.0, 3.0])
@pytest.mark.parametrize("E", [0.05, 0.3, 1.0])
@pytest.mark.parametrize("shape", [(64, 64), (45, 70), (33, 9)])
def test_default_level_map_is_libapr_pulling_scheme(lam, E, shape):
    img = make_image(17, *shape, "noisy_shapes")
    apr = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=0.02)
    assert apr.params.pulling_scheme == "libapr"
    req = required_half_levels(img, E, lam, sigma_th=0.02)
    lm_ref, cnt, _ = libapr_level_map(req, *shape)
    assert (cnt == 1).all()
    lm = apr.level_map().astype(np.int64)
    req_px = np.repeat(np.repeat(req, 2, 0), 2, 1)[: shape[0], : shape[1]]
    assert (lm >= req_px).all(), "a particle cell is coarser than the local resolution demands"
    np.testing.assert_array_equal(lm, lm_ref)
    # the LibAPR cell set refines the minimal one: never coarser, at most one level finer
    lm_min = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=0.02, pulling_scheme="minimal").level_map()
    d = lm - lm_min.astype(np.int64)
    assert d.min() >= 0 and d.max() <= 1


def test_thresholds_change_levels():
    img = make_image(21, 64, 64, "noisy_shapes")
    base = form_apr(img, rel_error=0.1)
    g = form_apr(img, rel_error=0.1, grad_th=1e9)  # all gradients zeroed
    assert g.n_particles == 16
    s = form_apr(img, rel_error=0.1, sigma_th=1e9)  # scale floored very high
    assert s.n_particles == 16
    assert base.n_particles > 100


# ------------------------------------------------------------------------------------------
# dtypes and colour
# ------------------------------------------------------------------------------------------
def _same_structure(a, b):
    for name in ("level", "y", "x", "parent", "tree_level", "tree_y", "tree_x", "tree_parent"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


@pytest.mark.parametrize("dtype,hi", [(np.uint8, 255), (np.uint16, 60000), (np.int32, 10**6)])
def test_integer_dtypes(dtype, hi):
    rng = np.random.default_rng(4)
    img = (shapes_image(rng, 70, 90) * hi).astype(dtype)
    img[rng.random(img.shape) < 0.05] = hi // 2
    a = form_apr(img, rel_error=0.1, sigma_th=0.05 * hi)
    b = form_apr(img.astype(np.float32), rel_error=0.1, sigma_th=0.05 * hi)
    _same_structure(a, b)
    np.testing.assert_array_equal(a.intensities, b.intensities)
    check_structure(a, img)


def test_rgb_uses_grayscale_structure_and_channel_means():
    rng = np.random.default_rng(8)
    rgb = np.stack([shapes_image(rng, 80, 60, n_shapes=3) for _ in range(3)], axis=-1)
    gray = rgb2gray(rgb).astype(np.float32)
    np.testing.assert_allclose(gray, rgb @ np.array([0.2125, 0.7154, 0.0721]), atol=1e-6)
    a = form_apr(rgb, rel_error=0.1, sigma_th=0.02)
    b = form_apr(gray, rel_error=0.1, sigma_th=0.02)
    _same_structure(a, b)
    assert a.intensities.shape == (a.n_particles, 3)
    index = check_structure(a)
    ref = numpy_cell_means(index, rgb)
    np.testing.assert_allclose(a.intensities, ref, rtol=1e-5, atol=1e-6)
    rec = a.reconstruct()
    assert rec.shape == (80, 60, 3)
    np.testing.assert_array_equal(rec, a.intensities[index])
    # uint8 RGB
    rgb8 = (rgb * 255).astype(np.uint8)
    c = form_apr(rgb8, rel_error=0.1, sigma_th=5.0)
    _same_structure(c, form_apr(rgb2gray(rgb8.astype(np.float32)).astype(np.float32), rel_error=0.1, sigma_th=5.0))
    np.testing.assert_allclose(c.intensities, numpy_cell_means(pixel_maps(c)[0], rgb8), rtol=1e-5)


def test_torch_tensor_input():
    img = make_image(2, 40, 40, "shapes")
    _same_structure(form_apr(torch.from_numpy(img)), form_apr(img))


def test_memory_layouts_and_float_dtypes():
    img = make_image(9, 48, 40, "noisy_shapes").astype(np.float64)
    ref = form_apr(np.ascontiguousarray(img.T).astype(np.float32), rel_error=0.1)
    for variant in (img.T, np.asfortranarray(img.T), img.T.astype(">f8"), img.T.astype(np.float32)[:, ::1]):
        a = form_apr(variant, rel_error=0.1)
        _same_structure(a, ref)
        np.testing.assert_array_equal(a.intensities, ref.intensities)
    # strided view
    big = make_image(10, 96, 80, "shapes")
    view = big[::2, 1::2]
    a = form_apr(view, rel_error=0.1)
    _same_structure(a, form_apr(np.ascontiguousarray(view), rel_error=0.1))
    check_structure(a, view)
    # float16 works like its float32 value
    h = img.astype(np.float16)
    _same_structure(form_apr(h), form_apr(h.astype(np.float32)))
    # RGBA is refused (dropping alpha silently would change transparent images): composite it first
    rgb = np.stack([img, img[::-1], 1 - img], axis=-1).astype(np.float32)
    rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], axis=-1)
    with pytest.raises(ValueError, match="4 channels .RGBA.*composite the alpha channel"):
        form_apr(rgba)


# ------------------------------------------------------------------------------------------
# hypothesis property tests
# ------------------------------------------------------------------------------------------
KINDS = ["noise", "shapes", "noisy_shapes", "smooth", "constant", "integers"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 80), W=st.integers(1, 80), seed=st.integers(0, 2**31 - 1),
       kind=st.sampled_from(KINDS + ["signed"]), E=st.floats(0.01, 2.0), lam=st.sampled_from([0.0, 0.5, 3.0]),
       sigma_th=st.sampled_from([0.0, 0.01, 0.1]))
def test_property_random_images(H, W, seed, kind, E, lam, sigma_th):
    img = make_image(seed, H, W, kind)
    apr = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)
    check_structure(apr, img)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(H=st.integers(1, 60), W=st.integers(1, 60), seed=st.integers(0, 2**31 - 1),
       kind=st.sampled_from(KINDS), E=st.floats(0.01, 2.0), lam=st.sampled_from([0.0, 0.5, 3.0]))
def test_property_pulling_schemes(H, W, seed, kind, E, lam):
    img = make_image(seed, H, W, kind)
    req = required_half_levels(img, E, lam, sigma_th=0.01)
    minimal = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=0.01, pulling_scheme="minimal")
    check_structure(minimal, img)
    np.testing.assert_array_equal(minimal.level_map().astype(np.int64), minimal_graded_level_map(req, H, W))
    default = form_apr(img, rel_error=E, gradient_smoothing=lam, sigma_th=0.01)
    np.testing.assert_array_equal(default.level_map().astype(np.int64), libapr_level_map(req, H, W)[0])


# ------------------------------------------------------------------------------------------
# low-level kernels against numpy / scipy
# ------------------------------------------------------------------------------------------
def _spline_transfer(n, lam):
    w = 2 * np.pi * np.fft.fftfreq(n)
    return 1.0 / ((4 + 2 * np.cos(w)) / 6 + lam * (2 - 2 * np.cos(w)) ** 2)


# lambda < 1/144 has two real poles inside the unit circle, above a complex-conjugate pair
@pytest.mark.parametrize("lam", [1e-3, 5e-3, 0.01, 0.1, 0.5, 3.0, 10.0, 100.0])
def test_bspline_matches_exact_transfer_function(lam):
    n = 512
    x = np.random.default_rng(1).standard_normal((3, n)).astype(np.float32)
    b1, b2, norm, k = bspline_recursion(lam)
    # one (1, n) image per row: a (3, n) image would also be smoothed along its columns
    out = np.concatenate([_core.bspline_smooth(x[i:i + 1], b1, b2, norm, k) for i in range(3)])
    ref = np.real(np.fft.ifft(np.fft.fft(x.astype(np.float64), axis=1) * _spline_transfer(n, lam), axis=1))
    np.testing.assert_allclose(out[:, 64:448], ref[:, 64:448], atol=1e-4)
    # whole signal: the recursion with mirrored initialisation equals the filter applied to the
    # half-sample symmetric ('d c b a | a b c d') periodic extension
    xm = np.concatenate([x, x[:, ::-1]], axis=1).astype(np.float64)
    refm = np.real(np.fft.ifft(np.fft.fft(xm, axis=1) * _spline_transfer(2 * n, lam), axis=1))[:, :n]
    np.testing.assert_allclose(out, refm, atol=1e-4)
    # a column (n, 1) is smoothed the same way as a row (1, n)
    for i in range(3):
        out_t = _core.bspline_smooth(np.ascontiguousarray(x[i][:, None]), b1, b2, norm, k)
        np.testing.assert_allclose(out_t[:, 0], out[i], atol=1e-5)


@pytest.mark.parametrize("lam", [0.5, 3.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (7, 3), (40, 33)])
def test_bspline_preserves_constants_and_is_separable_2d(lam, shape):
    b1, b2, norm, k = bspline_recursion(lam)
    c = np.full(shape, 3.25, np.float32)
    np.testing.assert_allclose(_core.bspline_smooth(c, b1, b2, norm, k), c, rtol=1e-5)
    img = np.random.default_rng(0).random(shape).astype(np.float32)
    out = _core.bspline_smooth(img, b1, b2, norm, k)
    rows = _core.bspline_smooth(img, b1, b2, norm, k)  # deterministic
    np.testing.assert_array_equal(out, rows)
    # 2D = rows then columns of the 1D filter (mirror-extended FFT reference)
    def filt(a, axis):
        n = a.shape[axis]
        am = np.concatenate([a, np.flip(a, axis)], axis=axis)
        tf = _spline_transfer(2 * n, lam).reshape([-1 if i == axis else 1 for i in range(2)])
        return np.take(np.real(np.fft.ifft(np.fft.fft(am, axis=axis) * tf, axis=axis)), np.arange(n), axis=axis)
    ref = filt(filt(img.astype(np.float64), 1), 0)
    np.testing.assert_allclose(out, ref, atol=2e-4)


def test_bspline_recursion_coefficients():
    for lam in (0.01, 0.5, 3.0, 30.0):
        b1, b2, norm, k = bspline_recursion(lam)
        assert norm == pytest.approx((1 - b1 - b2) ** 2)
        rho = math.sqrt(-b2)
        assert 0 < rho < 1 and rho**k < 1e-6
    with pytest.raises(ValueError):
        bspline_recursion(0.0)


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (2, 9), (5, 5), (30, 41), (64, 64)])
@pytest.mark.parametrize("width", [1, 3, 7, 11])
def test_box_mean_matches_scipy(shape, width):
    img = np.random.default_rng(width).standard_normal(shape).astype(np.float32)
    ref = ndimage.uniform_filter(img.astype(np.float64), width, mode="mirror")
    np.testing.assert_allclose(_core.box_mean(img, width), ref, rtol=1e-5, atol=1e-5)


def test_box_mean_rejects_even_width():
    img = np.zeros((4, 4), np.float32)
    for w in (0, 2, -1):
        with pytest.raises(ValueError):
            _core.box_mean(img, w)


def _mean_downsample(img):
    H, W = img.shape
    Hh, Wh = -(-H // 2), -(-W // 2)
    s = np.zeros((2 * Hh, 2 * Wh))
    c = np.zeros((2 * Hh, 2 * Wh))
    s[:H, :W] = img
    c[:H, :W] = 1
    return s.reshape(Hh, 2, Wh, 2).sum((1, 3)) / c.reshape(Hh, 2, Wh, 2).sum((1, 3))


def _scale_reference(i2):
    return C_2D * ndimage.uniform_filter(np.abs(i2 - ndimage.uniform_filter(i2, 3, mode="mirror")), 7,
                                         mode="mirror")


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (8, 8), (33, 20), (64, 50)])
def test_local_intensity_scale_matches_numpy(shape):
    img = np.random.default_rng(shape[0]).random(shape).astype(np.float32) * 10
    ref = _scale_reference(_mean_downsample(img.astype(np.float64)))
    out = _core.local_intensity_scale(img, 0.0, 0.0)
    assert out.shape == (-(-shape[0] // 2), -(-shape[1] // 2))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    # floored at sigma_th
    th = float(np.median(ref))
    np.testing.assert_allclose(_core.local_intensity_scale(img, th, 0.0), np.maximum(ref, th), rtol=1e-4, atol=1e-4)
    # from_bspline: the half-grid mean of the coefficients is evaluated as a cubic B-spline
    # ([1, 4, 1] / 6 per axis, whole-sample mirror borders) before the scale is computed
    i2 = _mean_downsample(img.astype(np.float64))
    k = np.array([1.0, 4.0, 1.0]) / 6
    ev = ndimage.correlate1d(ndimage.correlate1d(i2, k, axis=1, mode="mirror"), k, axis=0, mode="mirror")
    np.testing.assert_allclose(_core.local_intensity_scale(img, 0.0, 0.0, from_bspline=True),
                               _scale_reference(ev), rtol=1e-4, atol=1e-4)


def test_local_intensity_scale_sigma_th_max_marks_infinite():
    img = np.zeros((16, 16), np.float32)
    out = _core.local_intensity_scale(img, 0.5, 1.0)
    assert np.isinf(out).all()  # below sigma_th and below sigma_th_max: "infinite" (coarsest level)


def _grad_reference(a, img=None, grad_th=0.0, Ip_th=0.0):
    a = a.astype(np.float32)
    p = np.pad(a, 1, mode="edge")
    gx = np.float32(0.5) * (p[1:-1, 2:] - p[1:-1, :-2])
    gy = np.float32(0.5) * (p[2:, 1:-1] - p[:-2, 1:-1])
    g = np.sqrt(gx * gx + gy * gy)
    H, W = a.shape
    Hh, Wh = -(-H // 2), -(-W // 2)
    pad = np.zeros((2 * Hh, 2 * Wh), np.float32)
    pad[:H, :W] = g
    g = pad.reshape(Hh, 2, Wh, 2).max((1, 3))
    # LibAPR's thresholds, on the half grid: |grad| < grad_th, or 2x2 mean intensity <= Ip_th
    half = _mean_downsample((a if img is None else img).astype(np.float64))
    return np.where((g < grad_th) | (half <= Ip_th), np.float32(0), g)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (5, 8), (31, 30), (64, 64)])
def test_gradient_magnitude_matches_numpy(shape):
    rng = np.random.default_rng(sum(shape))
    img = rng.random(shape).astype(np.float32)
    out = _core.gradient_magnitude_ds(img, img, 0.0, 0.0)
    np.testing.assert_allclose(out, _grad_reference(img), rtol=1e-6, atol=1e-7)
    # same as np.gradient's central differences in the interior
    if min(shape) >= 3:
        gy, gx = np.gradient(img.astype(np.float64))
        g = np.hypot(gx, gy)[1:-1, 1:-1]
        np.testing.assert_allclose(np.sqrt(((np.pad(img, 1, mode="edge")[1:-1, 2:] - np.pad(img, 1, mode="edge")[1:-1, :-2]) / 2) ** 2
                                           + ((np.pad(img, 1, mode="edge")[2:, 1:-1] - np.pad(img, 1, mode="edge")[:-2, 1:-1]) / 2) ** 2)[1:-1, 1:-1],
                                   g, rtol=1e-5)
    # thresholds: grad_th zeroes small gradients, Ip_th zeroes dark pixels
    coef = rng.random(shape).astype(np.float32)
    out = _core.gradient_magnitude_ds(coef, img, 0.2, 0.5)
    ref = _grad_reference(coef, img, 0.2, 0.5)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)
    # Ip_th compares with "<=": an image equal to Ip_th on a 2x2 block zeroes that block
    flat = np.full(shape, 0.25, np.float32)
    assert not _core.gradient_magnitude_ds(coef, flat, 0.0, 0.25).any()


# ------------------------------------------------------------------------------------------
# bad inputs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arr", [np.zeros(5), np.zeros((4, 5, 6)), np.zeros((2, 3, 4, 5)), np.zeros((4, 5, 1)),
                                 np.zeros((0, 5)), np.zeros((5, 0)), np.zeros((0, 0, 3)), np.float32(1.0)])
def test_bad_shapes_raise_value_error(arr):
    with pytest.raises(ValueError):
        form_apr(arr)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_raise_value_error(bad):
    img = np.ones((8, 8))
    img[3, 4] = bad
    with pytest.raises(ValueError):
        form_apr(img)
    with pytest.raises(ValueError):
        form_apr(np.stack([img] * 3, axis=-1))
    with pytest.raises(ValueError):
        form_apr(np.ones((8, 8), np.float32)).sample(img)


def test_float64_overflowing_float32_rejected():
    img = np.ones((8, 8))
    img[0, 0] = 1e300
    with np.errstate(over="ignore"), pytest.raises(ValueError):
        form_apr(img)


@pytest.mark.parametrize("kw", [{"rel_error": 0}, {"rel_error": -0.1}, {"rel_error": np.nan}, {"rel_error": np.inf},
                                {"gradient_smoothing": -1}, {"sigma_th": -0.1}, {"sigma_th_max": -1},
                                {"grad_th": np.nan}])
def test_bad_parameters_raise_value_error(kw):
    with pytest.raises(ValueError):
        form_apr(np.ones((8, 8)), **kw)
    with pytest.raises(ValueError):
        APRParameters(**kw)


def test_bad_pulling_scheme():
    with pytest.raises(ValueError):
        form_apr(np.ones((8, 8)), pulling_scheme="optimal")


def test_bad_parameter_types():
    with pytest.raises(TypeError):
        form_apr(np.ones((8, 8)), rel_error="0.1")
    with pytest.raises(TypeError):
        form_apr(np.ones((8, 8)), rel_error=True)
    with pytest.raises(TypeError):
        form_apr(np.ones((8, 8)), params={"rel_error": 0.1})
    with pytest.raises(TypeError):
        form_apr(np.ones((8, 8)), not_a_parameter=1.0)


@pytest.mark.parametrize("arr", [np.ones((8, 8), bool), np.ones((8, 8), complex), np.ones((8, 8), object),
                                 np.full((8, 8), "a"), np.ones((8, 8, 3), bool)])
def test_bad_dtypes_raise_type_error(arr):
    with pytest.raises(TypeError):
        form_apr(arr)


def test_core_rejects_bad_cells():
    apr = form_apr(make_image(1, 20, 30, "shapes"), rel_error=0.1)
    lv, y, x = apr.level.copy(), apr.y.copy(), apr.x.copy()
    vals = np.ones((apr.n_particles, 1), np.float32)
    img = np.ones((20, 30, 1), np.float32)
    bad_cases = []
    for field, value in (("y", 10**6), ("x", 10**6), ("y", -1), ("x", -3), ("level", 100), ("level", -1)):
        arrs = {"level": lv.copy(), "y": y.copy(), "x": x.copy()}
        arrs[field][len(lv) // 2] = value
        bad_cases.append(arrs)
    # a cell that exists in the padded grid but lies outside the image
    arrs = {"level": lv.copy(), "y": y.copy(), "x": x.copy()}
    i = int(np.argmax(apr.level))
    arrs["y"][i] = 2 ** int(apr.level[i]) - 1
    bad_cases.append(arrs)
    for a in bad_cases:
        with pytest.raises(ValueError):
            _core.reconstruct(a["level"], a["y"], a["x"], vals, 20, 30)
        with pytest.raises(ValueError):
            _core.cell_means(a["level"], a["y"], a["x"], img)
    # mismatched lengths
    with pytest.raises(ValueError):
        _core.reconstruct(lv, y[:-1], x, vals, 20, 30)
    with pytest.raises(ValueError):
        _core.reconstruct(lv, y, x, vals[:-1], 20, 30)
    with pytest.raises(ValueError):
        _core.cell_means(lv[:-1], y, x, img)
    with pytest.raises(ValueError):
        _core.reconstruct(lv, y, x, vals, 0, 30)
    with pytest.raises(ValueError):
        _core.reconstruct(lv, y, x, vals, -20, 30)
    with pytest.raises(ValueError):
        _core.cell_means(lv, y, x, img[..., 0])
    # wrong dtypes
    with pytest.raises(TypeError):
        _core.reconstruct(lv.astype(np.int64), y, x, vals, 20, 30)
    with pytest.raises(TypeError):
        _core.cell_means(lv, y, x, img.astype(np.float64))


def test_core_form_structure_rejects_bad_input():
    kw = dict(rel_error=0.1, grad_th=0.0, Ip_th=0.0, sigma_th=0.0, sigma_th_max=0.0, smooth=False,
              b1=0.0, b2=0.0, norm=1.0, bspline_k=0)
    with pytest.raises(TypeError):
        _core.form_structure(np.ones((8, 8), np.float64), **kw)
    with pytest.raises(ValueError):
        _core.form_structure(np.ones((8,), np.float32), **kw)
    with pytest.raises(ValueError):
        _core.form_structure(np.ones((0, 8), np.float32), **kw)
    with pytest.raises(ValueError):
        _core.form_structure(np.ones((8, 8), np.float32), **{**kw, "rel_error": 0.0})
    with pytest.raises(ValueError):
        _core.form_structure(np.ones((8, 8), np.float32), **{**kw, "bspline_k": -1})
    s = _core.form_structure(np.ones((8, 8), np.float32), **kw)
    assert s["height"] == 8 and s["level_max"] == 3


def test_apr_method_errors():
    img = make_image(3, 30, 30, "shapes")
    apr = form_apr(img)
    with pytest.raises(ValueError):
        apr.reconstruct(np.zeros(apr.n_particles + 1))
    with pytest.raises(ValueError):
        apr.reconstruct(np.zeros(apr.n_particles - 1))
    with pytest.raises(ValueError):
        apr.reconstruct(np.zeros((apr.n_particles, 2, 2)))
    with pytest.raises(ValueError):
        apr.sample(np.zeros((30, 31)))
    with pytest.raises(ValueError):
        apr.particles_at(apr.level_max + 1)
    with pytest.raises(ValueError):
        apr.tree_at(-1)
    with pytest.raises(ValueError):
        apr.intensities = np.zeros(apr.n_particles + 2)
    bare = APR(apr.height, apr.width, apr.level, apr.y, apr.x, apr.parent, apr.tree_level, apr.tree_y,
               apr.tree_x, apr.tree_parent)
    with pytest.raises(ValueError):
        bare.reconstruct()


# ------------------------------------------------------------------------------------------
# batches, collation, persistence
# ------------------------------------------------------------------------------------------
def _some_aprs(rgb=False):
    out = []
    for i, shape in enumerate([(32, 32), (40, 25), (17, 64)]):
        img = make_image(i, *shape, "shapes")
        if rgb:
            img = np.stack([img, img[::-1], 1 - img], axis=-1)
        out.append(form_apr(img, rel_error=0.1, sigma_th=0.02))
    return out


def test_apr_batch_offsets_and_features():
    aprs = _some_aprs()
    batch = APRBatch(aprs)
    counts = [a.n_particles for a in aprs]
    assert len(batch) == 3 and batch.n_particles == sum(counts)
    np.testing.assert_array_equal(batch.particle_offsets, np.concatenate([[0], np.cumsum(counts)]))
    np.testing.assert_array_equal(batch.tree_offsets, np.concatenate([[0], np.cumsum([a.n_tree for a in aprs])]))
    np.testing.assert_array_equal(batch.batch_index, np.repeat(np.arange(3), counts))
    np.testing.assert_array_equal(batch.level, np.concatenate([a.level for a in aprs]))
    assert batch.shapes == [a.shape for a in aprs]
    f = batch.features()
    assert isinstance(f, torch.Tensor) and f.shape == (sum(counts), 1) and f.dtype == torch.float32
    np.testing.assert_array_equal(f[:, 0].numpy(), np.concatenate([a.intensities for a in aprs]))
    parts = batch.split(f)
    for a, p in zip(aprs, parts):
        np.testing.assert_array_equal(p[:, 0].numpy(), a.intensities)
    recs = batch.reconstruct(f * 2)
    for a, r in zip(aprs, recs):
        np.testing.assert_allclose(r, 2 * a.reconstruct()[..., None])
    for a, r in zip(aprs, batch.reconstruct()):
        np.testing.assert_array_equal(r, a.reconstruct())
    with pytest.raises(ValueError):
        batch.split(f[:-1])
    assert batch[1] is aprs[1] and list(batch) == aprs


def test_apr_batch_rgb_features():
    aprs = _some_aprs(rgb=True)
    f = APRBatch(aprs).features()
    assert f.shape == (sum(a.n_particles for a in aprs), 3)


def test_apr_batch_errors():
    with pytest.raises(ValueError):
        APRBatch([])
    gray, rgb = _some_aprs()[0], _some_aprs(rgb=True)[1]
    with pytest.raises(ValueError):
        APRBatch([gray, rgb])
    with pytest.raises(TypeError):
        APRBatch([gray, "not an apr"])


def test_collate_with_dataloader():
    aprs = _some_aprs()
    items = [(a, i % 2) for i, a in enumerate(aprs + aprs)]
    loader = torch.utils.data.DataLoader(items, batch_size=4, shuffle=False, collate_fn=collate_aprs)
    batches = list(loader)
    assert len(batches) == 2
    b, labels = batches[0]
    assert isinstance(b, APRBatch) and len(b) == 4
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 1, 0, 1]
    assert b.n_particles == sum(a.n_particles for a, _ in items[:4])
    b2, l2 = batches[1]
    assert len(b2) == 2 and l2.tolist() == [0, 1]


def test_save_load_round_trip(tmp_path):
    for i, a in enumerate(_some_aprs() + _some_aprs(rgb=True)[:1]):
        path = tmp_path / f"apr{i}.npz"
        a.save(path)
        b = APR.load(path)
        _same_structure(a, b)
        assert b.shape == a.shape and b.level_max == a.level_max
        np.testing.assert_array_equal(b.intensities, a.intensities)
        np.testing.assert_array_equal(b.level_offsets, a.level_offsets)
        np.testing.assert_array_equal(b.reconstruct(), a.reconstruct())
        check_structure(b)


def test_repr_and_exports():
    apr = form_apr(np.ones((8, 8)))
    assert "APR(" in repr(apr) and len(apr) == apr.n_particles
    assert aprlib.__version__
    assert APRParameters().gradient_smoothing == 3.0 and APRParameters().sigma_th is None


# ------------------------------------------------------------------------------------------
# the defaults (issue 41, item 8): aprlib's recommended setting, LibAPR's one named choice away
# ------------------------------------------------------------------------------------------
#: APRParameters() before issue 41 (44ad7ec): LibAPR's (pyapr 1.0.7) defaults
OLD_DEFAULTS = dict(rel_error=0.1, gradient_smoothing=3.0, sigma_th=0.0, sigma_th_max=0.0, grad_th=0.0, Ip_th=0.0,
                    pulling_scheme="libapr")
FIXTURE = Path(__file__).parent / "data" / "formation_libapr_defaults.npz"


def test_libapr_parameters_are_the_old_defaults_field_by_field():
    p = APRParameters.libapr()
    assert {f.name for f in dataclasses.fields(p)} == set(OLD_DEFAULTS)
    for name, value in OLD_DEFAULTS.items():
        got = getattr(p, name)
        assert got == value and type(got) is type(value), name
    assert p == APRParameters(**OLD_DEFAULTS)
    assert APRParameters.libapr(rel_error=0.4) == APRParameters(**{**OLD_DEFAULTS, "rel_error": 0.4})
    # the new default differs in sigma_th only
    assert APRParameters() == APRParameters(**{**OLD_DEFAULTS, "sigma_th": None})
    with pytest.raises(TypeError, match="unknown APR parameter"):
        APRParameters.libapr(sigma=0.1)


def test_formation_with_libapr_defaults_is_unchanged():
    """Every APR of tests/data/formation_libapr_defaults.npz (formed with APRParameters() at 44ad7ec,
    before the defaults changed, OMP_NUM_THREADS=1) again, bit for bit, with APRParameters.libapr()."""
    ref = np.load(FIXTURE)
    cases = sorted({k.split("/")[0] for k in ref.files})
    assert len(cases) == 10
    overrides = {"noise_minimal": {"pulling_scheme": "minimal"}, "synthetic0_E0.4": {"rel_error": 0.4}}
    for name in cases:
        with pytest.warns(RuntimeWarning, match="sigma_th = 0 with gradient smoothing"):
            apr = form_apr(ref[f"{name}/image"], APRParameters.libapr(), **overrides.get(name, {}))
        for field in ("level", "y", "x", "intensities"):
            np.testing.assert_array_equal(getattr(apr, field), ref[f"{name}/{field}"], err_msg=f"{name}: {field}")
            assert getattr(apr, field).dtype == ref[f"{name}/{field}"].dtype


def test_default_sigma_th_is_a_fraction_of_each_images_range():
    from aprlib.apr.formation import SIGMA_TH_FRACTION
    assert SIGMA_TH_FRACTION == 0.01
    img = make_image(3, 48, 40, "shapes") * 0.5 + 0.2
    apr = form_apr(img)
    sigma = apr.params.sigma_th
    assert sigma == pytest.approx(0.01 * (img.max() - img.min()), rel=1e-6)
    assert APRParameters().for_image(img) == apr.params == APRParameters(sigma_th=sigma)
    _same_structure(form_apr(img, apr.params), apr)  # the recorded parameters form it again
    rgb = np.stack([img, img[::-1], 1 - img], axis=-1)  # the range of the grayscale image
    gray = rgb2gray(rgb).astype(np.float32)
    assert form_apr(rgb).params.sigma_th == pytest.approx(0.01 * (gray.max() - gray.min()), rel=1e-5)
    # an image of one value: 1% of its magnitude (0.01 if 0); every one is the coarsest APR
    for value, expected in ((0.7, 0.007), (-3.0, 0.03), (0.0, 0.01)):
        const = form_apr(np.full((64, 64), value, np.float32))
        assert const.params.sigma_th == pytest.approx(expected) and const.n_particles == 16
    # an explicit sigma_th is kept as given
    assert form_apr(img, sigma_th=0.05).params.sigma_th == 0.05
    assert APRParameters(sigma_th=0.05).for_image(img).sigma_th == 0.05


def test_default_structure_follows_the_image_scale():
    """sigma_th relative to the range: c * image has the structure of image with no threshold to
    rescale (exactly for powers of two, and for these c with these images)."""
    for seed in range(4):
        img = make_image(seed, 64, 48, "noisy_shapes")
        ref = form_apr(img)
        for c in (2.0 ** -30, 0.25, 4.0, 2.0 ** 40, 3.7, 1e-3, 255.0):
            scaled = (img.astype(np.float64) * c).astype(np.float32)
            _same_structure(form_apr(scaled), ref)

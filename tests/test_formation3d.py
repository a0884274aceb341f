"""APR formation of 3D volumes: aprlib.apr.formation.form_volume_cells and _core.form_apr3d.

Cross-check against pyapr 1.0.7's 3D formation (test_agreement_with_pyapr; measured when written:
seeded volumes of 4 to 8 Gaussian blobs and solid balls on a 0.1 background with Gaussian noise of
sd 0.01, 64^3 (seeds 0, 1) and 128^3 (seed 2), sigma_th = 5% of the range, lambda in {0, 3}, E in
{0.1, 0.4}): the fraction of voxels at the same level as pyapr's is 1.00000 in 9 of the 12 cases
and 0.99997, 0.99951 and 0.99990 in the lambda = 3, E = 0.1 ones (particle counts equal, or 7
apart of 96,573); the piecewise constant reconstructions agree to float rounding where the levels
agree. The remaining differences come from the smoothing B-spline's borders: aprlib runs the
recursions over lines extended by whole-sample mirroring (tolerance 1e-7), LibAPR initialises them
from truncated impulse-response sums (tolerance 1e-4). Lines shorter than LibAPR's initialisation
window (18 samples at lambda = 3), which LibAPR extends by their end sample rather than by
mirroring, go through LibAPR's own initialisation (test_agreement_with_pyapr_thin_and_odd; measured:
4 x 64 x 64, 10 x 64 x 64, 5 x 100 x 3, 3 x 5 x 7, 20 x 17 x 64, 1 x 64 x 80, 64 x 1 x 64: 1.0 same
level in every setting; at lambda 3, E 0.1, 6 x 64 x 64: 0.99967 and 37 x 50 x 61: 0.99979; before
that, 4 x 64 x 64 gave 0.967 and 0.913 at lambda 3).
"""
from __future__ import annotations

import contextlib
import io
import itertools

import numpy as np
import pytest

from aprlib import _core
from aprlib.apr import APRParameters
from aprlib.apr.formation import form_volume_cells, level_range3d


# --- helpers ---------------------------------------------------------------------------------

def paint(cells, values=None):
    """(count, painted) dense (Z, Y, X) arrays: how many cells cover each voxel, and the value of
    the (last) cell covering it (its level when values is None)."""
    Z, Y, X = cells["depth"], cells["height"], cells["width"]
    L = cells["level_max"]
    count = np.zeros((Z, Y, X), np.int64)
    painted = np.zeros((Z, Y, X), np.float64)
    vals = cells["level"].astype(np.float64) if values is None else np.asarray(values, np.float64)
    for lev in np.unique(cells["level"]):
        sel = cells["level"] == lev
        s = 1 << (L - int(lev))
        shape = (-(-Z // s), -(-Y // s), -(-X // s))
        c = np.zeros(shape, np.int64)
        v = np.zeros(shape, np.float64)
        np.add.at(c, (cells["z"][sel], cells["y"][sel], cells["x"][sel]), 1)
        v[cells["z"][sel], cells["y"][sel], cells["x"][sel]] = vals[sel]
        up = lambda a: np.repeat(np.repeat(np.repeat(a, s, 0), s, 1), s, 2)[:Z, :Y, :X]
        count += up(c)
        painted = np.where(up(c) > 0, up(v), painted)
    return count, painted


def check_cells(cells, means, volume):
    """Sorted, in range, partitioning the volume, level offsets consistent, means exact."""
    Z, Y, X = volume.shape
    assert (cells["depth"], cells["height"], cells["width"]) == (Z, Y, X)
    assert (cells["level_min"], cells["level_max"]) == level_range3d(Z, Y, X)
    lev, z, y, x = cells["level"], cells["z"], cells["y"], cells["x"]
    assert lev.dtype == np.int8 and z.dtype == y.dtype == x.dtype == np.int32
    assert means.dtype == np.float32 and means.shape == lev.shape
    L, lmin = cells["level_max"], cells["level_min"]
    assert lev.min() >= lmin and lev.max() <= L
    key = np.lexsort((x, y, z, lev))
    assert np.array_equal(key, np.arange(len(lev))), "cells must be sorted by (level, z, y, x)"
    off = cells["level_offsets"]
    assert len(off) == L + 2 and off[-1] == len(lev)
    for lv in range(L + 1):
        assert (lev[off[lv]:off[lv + 1]] == lv).all()
    sh = (L - lev.astype(np.int64))
    assert ((z.astype(np.int64) << sh) < Z).all() and ((y.astype(np.int64) << sh) < Y).all()
    assert ((x.astype(np.int64) << sh) < X).all() and (z >= 0).all() and (y >= 0).all() and (x >= 0).all()
    count, _ = paint(cells)
    assert (count == 1).all(), "every voxel must be covered by exactly one cell"
    # means: float64 block means over the clipped cells
    vol = volume.astype(np.float64)
    for i in np.random.default_rng(0).choice(len(lev), min(len(lev), 300), replace=False):
        s = 1 << int(sh[i])
        block = vol[z[i] * s:(z[i] + 1) * s, y[i] * s:(y[i] + 1) * s, x[i] * s:(x[i] + 1) * s]
        np.testing.assert_allclose(means[i], block.mean(), rtol=2e-6, atol=1e-6 * np.abs(vol).max())


def level_map(cells):
    return paint(cells)[1].astype(np.int64)


def blobs(n, seed, noise=0.01, shape=None):
    """Seeded sparse volume: 4-8 Gaussian blobs and solid balls on a 0.1 background, plus noise."""
    rng = np.random.default_rng(seed)
    shape = (n, n, n) if shape is None else shape
    zz, yy, xx = (a.astype(np.float32) for a in np.ogrid[:shape[0], :shape[1], :shape[2]])
    v = np.full(shape, 0.1, np.float32)
    for _ in range(rng.integers(4, 9)):
        c = rng.uniform(0.15, 0.85, 3) * np.array(shape)
        r = rng.uniform(0.04, 0.12) * min(shape)
        d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
        if rng.random() < 0.5:
            v += np.float32(rng.uniform(0.3, 0.9)) * np.exp(-d2 / np.float32(2 * r * r))
        else:
            v += np.float32(rng.uniform(0.3, 0.9)) * (d2 < r * r)
    v += np.float32(noise) * rng.standard_normal(shape, dtype=np.float32)
    return np.clip(v, 0, None).astype(np.float32)


# --- geometry ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,expected", [((1, 1, 1), (1, 2)), ((4, 4, 4), (1, 2)), ((5, 3, 2), (1, 3)),
                                            ((64, 64, 64), (1, 6)), ((65, 10, 3), (1, 7)), ((3, 200, 7), (1, 8)),
                                            ((10, 10, 129), (1, 8))])
def test_level_range3d(shape, expected):
    assert level_range3d(*shape) == expected
    # the 2D rule with the third axis: a volume of one slice has the 2D image's levels
    assert _core.level_range3d(1, shape[1], shape[2]) == _core.level_range(shape[1], shape[2])


def test_level_range3d_rejects_empty():
    with pytest.raises(ValueError):
        _core.level_range3d(0, 4, 4)


# --- structure -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 8, 8), (13, 17, 20), (5, 1, 9), (1, 1, 1)])
@pytest.mark.parametrize("lam", [0.0, 3.0])
def test_fine_content_gives_finest_level_everywhere(shape, lam):
    """All-different voxel values and a tiny E: every cell is a voxel at level_max, one particle
    per voxel (in (z, y, x) order), the means are the voxels."""
    v = np.random.default_rng(sum(shape)).permutation(int(np.prod(shape))).reshape(shape).astype(np.float32)
    cells, means, _ = form_volume_cells(v, rel_error=1e-4, gradient_smoothing=lam)
    assert (cells["level"] == cells["level_max"]).all()
    assert len(means) == v.size
    np.testing.assert_array_equal(means, v.ravel())
    check_cells(cells, means, v)


@pytest.mark.parametrize("shape", [(64, 64, 64), (37, 20, 50), (1, 1, 1), (2, 3, 1)])
def test_constant_volume_gives_coarsest_cells(shape):
    """A constant volume: every cell at level_min + 1 (the coarsest particle level: LibAPR's
    equivalence optimisation refines the level_min seeds once, as in 2D), 4 x 4 x 4 cells at most."""
    v = np.full(shape, 0.7, np.float32)
    for kw in ({}, {"sigma_th": 0.05}, {"gradient_smoothing": 0.0}):
        cells, means, _ = form_volume_cells(v, **kw)
        assert (cells["level"] == cells["level_min"] + 1).all()
        assert len(means) <= 64
        np.testing.assert_allclose(means, 0.7, rtol=1e-6)
        check_cells(cells, means, v)


@pytest.mark.parametrize("shape", [(64, 64, 64), (37, 20, 50)])
def test_constant_volume_matches_pyapr(shape):
    """pyapr 1.0.7 puts a constant volume at level 2 = level_min + 1 too (64 and 24 cells here)."""
    pyapr = pytest.importorskip("pyapr")
    v = np.full(shape, 0.7, np.float32)
    cells, means, _ = form_volume_cells(v, sigma_th=0.007)
    apr, lp, _ = _pyapr_levels(pyapr, v, 0.1, 3.0, 0.007)
    assert len(means) == apr.total_number_particles()
    np.testing.assert_array_equal(level_map(cells), lp)


@pytest.mark.parametrize("seed,shape", [(0, (32, 32, 32)), (1, (21, 40, 33)), (2, (9, 64, 17))])
@pytest.mark.parametrize("scheme", ["libapr", "minimal"])
def test_cells_partition_and_grading(seed, shape, scheme):
    """Cells partition the volume; face, edge and corner neighbours (any two voxel-adjacent cells,
    26-connectivity) differ by at most one level."""
    v = blobs(0, seed, shape=shape)
    for E in (0.1, 0.4):
        cells, means, _ = form_volume_cells(v, rel_error=E, pulling_scheme=scheme)
        check_cells(cells, means, v)
        lm = level_map(cells)
        assert lm.max() > lm.min()  # not trivial
        Z, Y, X = lm.shape
        for dz, dy, dx in itertools.product((0, 1), (-1, 0, 1), (-1, 0, 1)):
            if (dz, dy, dx) <= (0, 0, 0):
                continue  # each pair once
            sa = tuple(slice(max(0, -d), n - max(0, d)) for d, n in zip((dz, dy, dx), (Z, Y, X)))
            sb = tuple(slice(max(0, d), n - max(0, -d)) for d, n in zip((dz, dy, dx), (Z, Y, X)))
            a, b = lm[sa], lm[sb]  # the levels at voxels p and p + (dz, dy, dx)
            assert np.abs(a - b).max() <= 1, (dz, dy, dx)


def test_minimal_scheme_is_never_finer_than_libapr():
    v = blobs(0, 3, shape=(40, 40, 40))
    a, _, _ = form_volume_cells(v)
    b, _, _ = form_volume_cells(v, pulling_scheme="minimal")
    la, lb = level_map(a), level_map(b)
    assert (lb <= la).all() and len(b["level"]) <= len(a["level"])


@pytest.mark.parametrize("j", [-30, -3, 1, 7, 40])
def test_scale_invariance_by_powers_of_two(j):
    v = blobs(0, 4, shape=(24, 30, 28))
    ref, ref_means, ref_params = form_volume_cells(v)
    cells, means, params = form_volume_cells(v * np.float32(2.0**j))
    for k in ("level", "z", "y", "x"):
        np.testing.assert_array_equal(cells[k], ref[k])
    np.testing.assert_array_equal(means, ref_means * np.float32(2.0**j))
    assert params.sigma_th == ref_params.sigma_th * 2.0**j
    # explicit thresholds scaled with the volume: the same cells again
    c2, _, _ = form_volume_cells(v * np.float32(2.0**j), sigma_th=0.03 * 2.0**j, rel_error=0.2)
    r2, _, _ = form_volume_cells(v, sigma_th=0.03, rel_error=0.2)
    for k in ("level", "z", "y", "x"):
        np.testing.assert_array_equal(c2[k], r2[k])


def test_params_used_reform_the_same_cells():
    v = blobs(0, 5, shape=(20, 20, 20)) * 37.0
    cells, means, params = form_volume_cells(v, APRParameters(rel_error=0.2))
    assert params.sigma_th == pytest.approx(0.01 * float(v.max() - v.min()), rel=1e-6)
    again, means2, _ = form_volume_cells(v, params)
    for k in ("level", "z", "y", "x"):
        np.testing.assert_array_equal(again[k], cells[k])
    np.testing.assert_array_equal(means2, means)


def test_integer_and_float64_volumes():
    v = (blobs(0, 6, shape=(16, 16, 16)) * 200).astype(np.uint8)
    cells, means, _ = form_volume_cells(v)
    check_cells(cells, means, v.astype(np.float32))
    c64, m64, _ = form_volume_cells(v.astype(np.float64))
    np.testing.assert_array_equal(m64, means)


# --- bad inputs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,err", [
    (np.zeros((8, 8), np.float32), ValueError),           # 2D
    (np.zeros((2, 8, 8, 3), np.float32), ValueError),     # 4D
    (np.zeros((0, 8, 8), np.float32), ValueError),        # empty
    (np.zeros((8, 8, 8), np.complex64), TypeError),       # dtype
    (np.zeros((8, 8, 8), bool), TypeError),
    (np.array([["a"]]), TypeError),
    (None, TypeError),
    ("volume", TypeError),
])
def test_bad_volumes(bad, err):
    with pytest.raises(err):
        form_volume_cells(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_volumes(value):
    v = np.zeros((6, 7, 8), np.float32)
    v[3, 2, 5] = value
    with pytest.raises(ValueError, match="NaN or infinite"):
        form_volume_cells(v)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _core.form_apr3d(v, 0.1, 0, 0, 0.01, 0, False, 0, 0, 1, 0)


def test_float64_beyond_float32_range():
    v = np.zeros((4, 4, 4))
    v[1, 1, 1] = 1e300
    with pytest.raises(ValueError, match="float32 range"):
        form_volume_cells(v)


def test_bad_parameters():
    v = np.zeros((4, 4, 4), np.float32)
    with pytest.raises(ValueError):
        form_volume_cells(v, rel_error=0)
    with pytest.raises(TypeError):
        form_volume_cells(v, params="fast")
    with pytest.raises(TypeError):
        form_volume_cells(v, not_a_parameter=1)


def test_binding_checks_shapes_and_arguments():
    ok = np.zeros((4, 5, 6), np.float32)
    args = dict(rel_error=0.1, grad_th=0.0, Ip_th=0.0, sigma_th=0.01, sigma_th_max=0.0, smooth=False, b1=0.0,
                b2=0.0, norm=1.0, bspline_k=0)
    cells, means = _core.form_apr3d(ok, **args)
    assert len(means) == len(cells["level"])
    with pytest.raises(ValueError, match="3D"):
        _core.form_apr3d(np.zeros((4, 5), np.float32), **args)
    with pytest.raises(ValueError, match="empty"):
        _core.form_apr3d(np.zeros((4, 0, 6), np.float32), **args)
    with pytest.raises(TypeError):
        _core.form_apr3d(np.zeros((4, 5, 6), np.float64), **args)
    with pytest.raises(ValueError):
        _core.form_apr3d(ok, **{**args, "rel_error": -1.0})
    with pytest.raises(ValueError):
        _core.form_apr3d(ok, **{**args, "sigma_th": float("nan")})
    with pytest.raises(ValueError):
        _core.form_apr3d(ok, **{**args, "bspline_k": -1})
    with pytest.raises(ValueError, match="means_of"):
        _core.form_apr3d(ok, **args, means_of=np.zeros((4, 5, 7), np.float32))
    bad = ok.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="means_of"):
        _core.form_apr3d(ok, **args, means_of=bad)


# --- cross-check against pyapr 1.0.7 ---------------------------------------------------------------

def _pyapr_levels(pyapr, v, E, lam, sigma_th):
    p = pyapr.APRParameters()
    p.auto_parameters = False
    p.rel_error, p.gradient_smoothing, p.sigma_th = E, lam, sigma_th
    p.sigma_th_max = p.grad_th = p.Ip_th = 0.0
    with contextlib.redirect_stdout(io.StringIO()):
        apr, parts = pyapr.converter.get_apr(v, params=p)
    levels = np.asarray(pyapr.reconstruction.reconstruct_level(apr)).astype(np.int64)
    recon = np.asarray(pyapr.reconstruction.reconstruct_constant(apr, parts))
    return apr, levels, recon


@pytest.mark.parametrize("n,seed", [(64, 0), (64, 1), (128, 2)])
def test_agreement_with_pyapr(n, seed):
    pyapr = pytest.importorskip("pyapr")
    v = blobs(n, seed)
    sigma_th = 0.05 * float(v.max() - v.min())
    for lam in (3.0, 0.0):
        for E in (0.1, 0.4):
            cells, means, _ = form_volume_cells(v, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)
            apr, lp, recon_p = _pyapr_levels(pyapr, v, E, lam, sigma_th)
            lm = level_map(cells)
            assert lp.shape == lm.shape
            same = float((lm == lp).mean())
            print(f"n={n} seed={seed} lambda={lam} E={E}: particles ours {len(means)} pyapr "
                  f"{apr.total_number_particles()}, voxels at the same level {same:.5f}")
            assert same >= 0.99
            assert abs(len(means) - apr.total_number_particles()) <= 0.01 * apr.total_number_particles()
            assert np.abs(lm - lp).max() <= 1
            # where the levels agree, the cells are the same, and so are the cell means
            _, recon = paint(cells, means)
            agree = lm == lp
            np.testing.assert_allclose(recon[agree], recon_p[agree], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(4, 64, 64), (6, 64, 64), (10, 64, 64), (5, 100, 3), (3, 5, 7), (37, 50, 61),
                                   (20, 17, 64), (1, 64, 80), (64, 1, 64)])
def test_agreement_with_pyapr_thin_and_odd(shape):
    """Thin axes (shorter than LibAPR's B-spline initialisation window), odd sides, single slices."""
    pyapr = pytest.importorskip("pyapr")
    v = blobs(0, sum(shape), shape=shape)
    sigma_th = 0.05 * float(v.max() - v.min())
    for lam in (3.0, 0.0):
        for E in (0.1, 0.4):
            cells, means, _ = form_volume_cells(v, rel_error=E, gradient_smoothing=lam, sigma_th=sigma_th)
            apr, lp, _ = _pyapr_levels(pyapr, v, E, lam, sigma_th)
            lm = level_map(cells)
            assert lp.shape == lm.shape
            same = float((lm == lp).mean())
            print(f"{shape} lambda={lam} E={E}: particles ours {len(means)} pyapr {apr.total_number_particles()}, "
                  f"voxels at the same level {same:.5f}")
            assert same >= 0.99
            assert np.abs(lm - lp).max() <= 1


@pytest.mark.parametrize("thresholds", [dict(Ip_th=0.3), dict(grad_th=0.01), dict(sigma_th_max=0.02),
                                        dict(Ip_th=0.2, grad_th=0.005)])
def test_agreement_with_pyapr_thresholds(thresholds):
    """grad_th, Ip_th and sigma_th_max as LibAPR applies them (measured: identical level maps and
    particle counts in all 8 cases)."""
    pyapr = pytest.importorskip("pyapr")
    v = blobs(64, 7)
    for lam in (3.0, 0.0):
        p = pyapr.APRParameters()
        p.auto_parameters = False
        p.rel_error, p.gradient_smoothing, p.sigma_th = 0.1, lam, 0.04
        p.sigma_th_max = thresholds.get("sigma_th_max", 0.0)
        p.grad_th = thresholds.get("grad_th", 0.0)
        p.Ip_th = thresholds.get("Ip_th", 0.0)
        with contextlib.redirect_stdout(io.StringIO()):
            apr, _ = pyapr.converter.get_apr(v, params=p)
        lp = np.asarray(pyapr.reconstruction.reconstruct_level(apr))
        cells, means, _ = form_volume_cells(v, rel_error=0.1, gradient_smoothing=lam, sigma_th=0.04, **thresholds)
        assert float((level_map(cells) == lp).mean()) >= 0.999
        assert abs(len(means) - apr.total_number_particles()) <= 0.001 * apr.total_number_particles()


# --- the tree and parents from the kernel ----------------------------------------------------------

_TREE_FIELDS = ("level", "z", "y", "x", "parent", "tree_level", "tree_z", "tree_y", "tree_x", "tree_parent")


@pytest.mark.parametrize("shape", [(40, 40, 40), (37, 50, 29), (1, 1, 1), (2, 2, 2), (5, 3, 2), (1, 40, 33),
                                   (3, 200, 7), (65, 10, 3), (33, 1, 17), (96, 80, 72)])
@pytest.mark.parametrize("changes", [{}, {"pulling_scheme": "minimal"}, {"gradient_smoothing": 0.0, "rel_error": 0.05},
                                     {"sigma_th": 1e3, "sigma_th_max": 1e3}])
def test_kernel_tree_is_that_of_structure_from_cells(shape, changes):
    """The tree, parents and offsets that form_apr3d returns are exactly structure_from_cells' for its
    cells (dtypes included), and form_apr(ndim=3) is the APR they make (_validate passes). Scale floors
    above every scale give the coarsest APR: the particles at level_min + 1, the tree level_min's grid."""
    from aprlib.apr.cells import structure_from_cells
    from aprlib.apr.structure import APR
    import aprlib
    v = blobs(0, sum(shape), shape=shape)
    cells, means, used = form_volume_cells(v, **changes)
    s = structure_from_cells(v.shape, cells["level"], (cells["z"], cells["y"], cells["x"]))  # checked
    expected = dict(zip(_TREE_FIELDS, (s.level, *s.coords, s.parent, s.tree_level, *s.tree_coords, s.tree_parent)))
    for name, a in expected.items():
        assert cells[name].dtype == a.dtype and np.array_equal(cells[name], a), name
    lmax = cells["level_max"]
    assert cells["tree_offsets"].dtype == np.int64
    np.testing.assert_array_equal(cells["tree_offsets"], np.searchsorted(s.tree_level, np.arange(lmax + 2)))
    apr = aprlib.form_apr(v, ndim=3, **changes)
    ref = APR._from_cell_structure(s, means, used)
    for name in _TREE_FIELDS + ("level_offsets", "tree_offsets"):
        a, b = getattr(apr, name), getattr(ref, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name
    assert (apr.ndim, apr.shape, apr.level_min, apr.level_max, apr.params) == (3, ref.shape, ref.level_min,
                                                                               ref.level_max, used)
    np.testing.assert_array_equal(apr.intensities, means)
    apr._validate()
    if "sigma_th_max" in changes:
        assert set(apr.level.tolist()) == {apr.level_min + 1} and set(apr.tree_level.tolist()) == {apr.level_min}

"""Bad inputs (issue 14, "no silent wrong answer"): every public entry point (formation, APR,
APRBatch, the operations, layers and models, the data loaders of aprlib.data.natural and
aprlib.data.synthetic) refuses invalid values with an error that names the problem, or returns the
documented result. Add a case here for every new bad input found."""
from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import aprlib
from aprlib import APR, APRBatch, APRFeatures, APRParameters, collate_aprs, form_apr
from aprlib.data.natural import (ImageFiles, ImageReadError, StandInPatches, augment, dogs_vs_cats_files, load_rgb,
                                 split_files, stand_in_photographs)
from aprlib.data.synthetic import (GeneratorParams, ShapeSpec, SyntheticShapes, SyntheticShapesStream, error_kinds,
                                   generate_batch, generate_image, render_shape, sample_shape)
from aprlib.models import APRNet, PixelNet, apr_network, pixel_network, vgg16_features
from aprlib.nn import APRBatchNorm, APRConv2d, APRGlobalAvgPool, APRMaxPool2d, APRReLU, APRSpatialDropout, level_channel
from aprlib.ops import apr_conv2d, apr_max_pool2d, tree_values

F32_MAX = float(np.finfo(np.float32).max)
BACKENDS = ("cpp", "torch")
THESIS = dict(gradient_smoothing=0.0, sigma_th=0.01)


def small_image(seed=0, shape=(24, 20)):
    return generate_image(seed % 6, np.random.default_rng(seed), size=shape)


def small_apr(seed=0, shape=(24, 20), **kw):
    return form_apr(small_image(seed, shape), **{**THESIS, **kw})


def same_structure(a, b) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in APR._FIELDS) and a.shape == b.shape


# ------------------------------------------------------------------------------------------
# formation: form_apr and APRParameters
# ------------------------------------------------------------------------------------------
GOOD = np.ones((6, 5), np.float32)


@pytest.mark.parametrize("image, error, match", [
    (None, TypeError, "must be an array"),
    ("an image", TypeError, "must be an array"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "float or integer dtype"),
    (np.ones((4, 4), complex), TypeError, "float or integer dtype"),
    (np.ones((4, 4), bool), TypeError, "float or integer dtype"),
    (np.empty((4, 4), object), TypeError, "float or integer dtype"),
    ([[1.0, 2.0], [3.0]], ValueError, "not a rectangular array"),
    (np.ones(16, np.float32), ValueError, r"must be 2D \(H, W\) or \(H, W, 3\)"),
    (np.ones((2, 4, 4, 3), np.float32), ValueError, "must be 2D"),
    (np.ones((4, 4, 2), np.float32), ValueError, "must be 2D"),
    (np.ones((4, 4, 4), np.float32), ValueError, "4 channels .RGBA"),
    (np.ones((0, 5), np.float32), ValueError, "empty"),
    (np.ones((5, 0), np.float32), ValueError, "empty"),
    (np.ones((0, 0, 3), np.float32), ValueError, "empty"),
    (np.where(np.eye(5) > 0, np.nan, 1.0), ValueError, "NaN or infinite"),
    (np.where(np.eye(5) > 0, np.inf, 1.0).astype(np.float32), ValueError, "NaN or infinite"),
    (np.full((4, 4, 3), -np.inf), ValueError, "NaN or infinite"),
    (np.full((4, 4), 1e39), ValueError, "beyond the float32 range"),
])
def test_form_apr_refuses_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        form_apr(image, **THESIS)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(rel_error=0), ValueError, r"rel_error \(E\) must be > 0"),
    (dict(rel_error=-0.1), ValueError, "must be > 0"),
    (dict(rel_error=float("nan")), ValueError, "rel_error must be finite"),
    (dict(rel_error=float("inf")), ValueError, "rel_error must be finite"),
    (dict(rel_error="0.1"), TypeError, "rel_error must be a real number"),
    (dict(rel_error=True), TypeError, "rel_error must be a real number"),
    (dict(rel_error=None), TypeError, "rel_error must be a real number"),
    (dict(gradient_smoothing=-1.0), ValueError, "gradient_smoothing"),
    (dict(sigma_th=-0.1), ValueError, "sigma_th"),
    (dict(sigma_th="1%"), TypeError, r"sigma_th must be a real number or None \(a fraction of the image's range\)"),
    (dict(sigma_th_max=-0.1), ValueError, "sigma_th"),
    (dict(grad_th=float("nan")), ValueError, "grad_th must be finite"),
    (dict(Ip_th=float("-inf")), ValueError, "Ip_th must be finite"),
    (dict(pulling_scheme="LibAPR"), ValueError, "pulling_scheme"),
    (dict(pulling_scheme=1), TypeError, "pulling_scheme must be a str"),
    (dict(relerror=0.1), TypeError, "unknown APR parameter.*relerror"),
])
def test_form_apr_refuses_bad_parameters(overrides, error, match):
    with pytest.raises(error, match=match):
        form_apr(GOOD, **overrides)
    with pytest.raises(error, match=match):
        APRParameters().replace(**overrides)


def test_form_apr_refuses_bad_params_object():
    with pytest.raises(TypeError, match="params must be an APRParameters"):
        form_apr(GOOD, {"rel_error": 0.1})


def test_form_apr_documented_inputs():
    """Integer, float16/64, torch, 1x1 and one-row images give the documented APR."""
    for img in (np.arange(30, dtype=np.uint16).reshape(5, 6), np.arange(30, dtype=np.int64).reshape(5, 6) - 15,
                np.linspace(0, 1, 30, dtype=np.float16).reshape(5, 6), torch.rand(5, 6, dtype=torch.float64),
                np.array([[3.0]]), np.arange(7.0)[None]):
        apr = form_apr(img, **THESIS)
        ref = np.asarray(img.numpy() if isinstance(img, torch.Tensor) else img, np.float64)
        np.testing.assert_allclose(apr.reconstruct(), apr.reconstruct(apr.sample(ref)))
        assert apr.intensities.dtype == np.float32 and np.isfinite(apr.intensities).all()


def test_sigma_th_zero_with_smoothing_warns():
    """LibAPR's defaults (sigma_th = 0, lambda = 3) warn, as before issue 41; an explicit sigma_th = 0
    with smoothing too."""
    with pytest.warns(RuntimeWarning, match="sigma_th = 0 with gradient smoothing"):
        form_apr(small_image(), APRParameters.libapr())
    with pytest.warns(RuntimeWarning, match="sigma_th = 0 with gradient smoothing"):
        form_apr(small_image(), rel_error=0.1, sigma_th=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        form_apr(small_image(), APRParameters.libapr(), gradient_smoothing=0.0)
        form_apr(small_image(), rel_error=0.1, sigma_th=0.01)


def test_the_default_parameters_do_not_warn(recwarn):
    """issue 41, item 8: form_apr(image) and APRParameters() are a setting to take as it is: no
    warning on any image (synthetic, RGB, noise, one value, zeros, far from [0, 1], integers)."""
    images, _ = generate_batch(6, seed=1, size=(64, 48))
    rng = np.random.default_rng(0)
    others = [np.stack(list(images[:3]), -1), rng.random((33, 17)), np.full((16, 16), 0.3), np.zeros((9, 9)),
              images[0] * 1e30, images[1] * 1e-30 - 7.0, (images[2] * 255).astype(np.uint8), np.array([[2.0]])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for img in list(images) + others:
            apr = form_apr(img)
            assert apr.params.sigma_th > 0 and np.isfinite(apr.intensities).all()
            form_apr(img, APRParameters(), rel_error=0.4)
            form_apr(img, APRParameters(pulling_scheme="minimal"))
    assert len(recwarn) == 0


# --- formation near the float32 limits and scale invariance -------------------------------
def test_intensities_near_float32_max_are_finite():
    rng = np.random.default_rng(0)
    for img in (np.full((16, 16), F32_MAX, np.float32), np.full((9, 13, 3), -F32_MAX, np.float32),
                (rng.uniform(-1, 1, (32, 32)) * F32_MAX).astype(np.float32),
                np.where(rng.random((20, 20)) < 0.5, F32_MAX, 0.9 * F32_MAX).astype(np.float32)):
        apr = form_apr(img, rel_error=0.5, gradient_smoothing=0.0)
        assert np.isfinite(apr.intensities).all()
        # the cell means, computed in float64
        ref = apr.sample(img.astype(np.float64) / F32_MAX) * F32_MAX
        np.testing.assert_allclose(apr.intensities / F32_MAX, ref / F32_MAX, rtol=1e-6, atol=1e-6)


SCALES = [2.0 ** 100, 2.0 ** -100, 2.0 ** -140, 1e25, 1e-20, 3.7, 0.013, 1e30, 1e-30]


@pytest.mark.parametrize("params", [dict(gradient_smoothing=3.0, sigma_th=0.01),
                                    dict(gradient_smoothing=0.0, sigma_th=0.0),
                                    dict(gradient_smoothing=0.0, sigma_th=0.02, grad_th=0.001, Ip_th=0.05),
                                    dict(gradient_smoothing=3.0, sigma_th=0.01, pulling_scheme="minimal"),
                                    dict()])  # the default: sigma_th a fraction of the range, no rescaling
def test_structure_does_not_depend_on_the_image_scale(params):
    """c * image (with the absolute thresholds times c) has the structure of image, as in LibAPR.
    Exact for powers of two; for other c up to the float32 rounding of c * image, which changes no
    structure of these images."""
    images, _ = generate_batch(12, seed=3, size=(64, 48))
    for img in images:
        ref = form_apr(img, rel_error=0.1, **params)
        for c in SCALES:
            kw = {k: v * c if k in ("sigma_th", "grad_th", "Ip_th") else v for k, v in params.items()}
            scaled = (img.astype(np.float64) * c).astype(np.float32)
            if c == 2.0 ** -140:  # input values below float32's normal range: they lose bits in the input
                continue
            apr = form_apr(scaled, rel_error=0.1, **kw)
            assert same_structure(apr, ref), f"structure changed at scale {c:g}"
            assert np.isfinite(apr.intensities).all()


def test_structure_at_sigma_th_zero_is_exact_for_powers_of_two():
    """With sigma_th = 0 and smoothing, flat regions' scale is rounding noise (see APRParameters):
    only power-of-two scales keep every bit of it."""
    img = small_image(4, (64, 64))
    libapr = APRParameters.libapr()
    with pytest.warns(RuntimeWarning):
        ref = form_apr(img, libapr)
        for e in (-120, -60, -1, 1, 60, 120):
            assert same_structure(form_apr(np.ldexp(img, e), libapr), ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(img=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
                      elements=st.floats(-F32_MAX, F32_MAX, width=32)),
       e=st.integers(-60, 60), lam=st.sampled_from([0.0, 3.0]), sigma_th=st.sampled_from([0.0, None]))
def test_any_finite_float32_image_forms_with_finite_intensities(img, e, lam, sigma_th):
    """Any finite float32 image (values up to +-FLT_MAX): finite intensities, the float64 cell means,
    and the same structure after a power-of-two rescaling that stays in the normal range (with
    LibAPR's sigma_th = 0 and with the default, a fraction of the image's range)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        apr = form_apr(img, rel_error=0.2, gradient_smoothing=lam, sigma_th=sigma_th)
        assert np.isfinite(apr.intensities).all()
        ref = apr.sample(np.ldexp(img.astype(np.float64), -128))  # exact float64 means, scaled down
        np.testing.assert_allclose(np.ldexp(apr.intensities.astype(np.float64), -128), ref, rtol=1e-5,
                                   atol=np.ldexp(F32_MAX, -128) * 1e-6)
        # 2**e * img is exact unless it overflows or a value falls below the normal range
        nonzero = np.abs(img[img != 0]).astype(np.float64)
        if nonzero.size == 0 or (nonzero.max() * 2.0 ** e <= F32_MAX and (e >= 0 or nonzero.min() * 2.0 ** e >=
                                                                            np.finfo(np.float32).tiny)):
            assert same_structure(form_apr(np.ldexp(img, e), rel_error=0.2, gradient_smoothing=lam, sigma_th=sigma_th),
                                  apr)


@settings(max_examples=30, deadline=None)
@given(img=hnp.arrays(np.float32, (6, 7), elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_any_float32_image_forms_or_names_its_non_finite_values(img):
    if np.isfinite(img).all():
        assert np.isfinite(form_apr(img, **THESIS).intensities).all()
    else:
        with pytest.raises(ValueError, match="NaN or infinite"):
            form_apr(img, **THESIS)


def test_cpp_kernels_refuse_non_finite_images():
    from aprlib import _core
    bad = np.ones((4, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values .first at flat index 6"):
        _core.form_structure(bad, 0.1, 0, 0, 0, 0, False, 0, 0, 1, 0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _core.box_mean(bad, 3)
    apr = form_apr(np.ones((4, 4)), **THESIS)
    with pytest.raises(ValueError, match="NaN or infinite"):
        _core.cell_means(apr.level, apr.y, apr.x, bad[..., None])


# ------------------------------------------------------------------------------------------
# the APR object
# ------------------------------------------------------------------------------------------
def _arrays(apr):
    return dict(height=apr.height, width=apr.width, **{f: getattr(apr, f).copy() for f in APR._FIELDS})


def _make(**d):
    return APR(d.pop("height"), d.pop("width"), *(d.pop(f) for f in APR._FIELDS), **d)


@pytest.mark.parametrize("change, error, match", [
    (dict(height=0), ValueError, "size must be positive"),
    (dict(width=-3), ValueError, "size must be positive"),
    (dict(height=24.0), TypeError, "height must be an integer"),
    (dict(width="20"), TypeError, "width must be an integer"),
    (dict(height=True), TypeError, "height must be an integer"),
    (dict(level="levels"), ValueError, "level must be 1D"),
    (dict(level=np.zeros((2, 2), np.int8)), ValueError, "level must be 1D"),
    (dict(y=np.zeros(3)), TypeError, "y must hold integers"),
    (dict(x=np.full(3, 2 ** 40)), ValueError, "outside the range of int32"),
    (dict(level=np.full(3, 300)), ValueError, "outside the range of int8"),
    (dict(level=np.zeros(0, np.int8), y=np.zeros(0, np.int32), x=np.zeros(0, np.int32),
          parent=np.zeros(0, np.int64)), ValueError, "at least one particle"),
])
def test_apr_constructor_refuses_bad_arrays(change, error, match):
    d = _arrays(small_apr())
    d.update(change)
    with pytest.raises(error, match=match):
        _make(**d)


def test_apr_constructor_refuses_arrays_that_are_no_apr():
    apr = small_apr(seed=2, shape=(32, 32), rel_error=0.3)
    assert len(apr.levels_present()) > 1
    d = _arrays(apr)
    d["x"] = d["x"][:-1]
    with pytest.raises(ValueError, match="same length"):
        _make(**d)
    d = _arrays(apr)
    d["level"] = d["level"][::-1].copy()
    with pytest.raises(ValueError, match="sorted by level"):
        _make(**d)
    d = _arrays(apr)  # a particle moved onto another: overlap and gap
    d["y"][-1], d["x"][-1] = d["y"][-2], d["x"][-2]
    with pytest.raises(ValueError, match="not a valid APR: cell .* appears twice"):
        _make(**d)
    d = _arrays(apr)  # same level set, rows swapped: not sorted by (y, x)
    i = int(apr.level_offsets[apr.level_max])
    d["y"][[i, i + 1]], d["x"][[i, i + 1]] = d["y"][[i + 1, i]], d["x"][[i + 1, i]]
    with pytest.raises(ValueError, match=r"sorted by \(level, y, x\)"):
        _make(**d)
    d = _arrays(apr)
    d["parent"][-1] = d["parent"][0] if d["parent"][0] != d["parent"][-1] else d["parent"][-1] - 1
    with pytest.raises(ValueError, match="parent does not match the particle cells"):
        _make(**d)
    d = _arrays(apr)
    d["height"] = apr.height + 40
    with pytest.raises(ValueError, match="not a valid APR"):  # the cells leave part of the image uncovered
        _make(**d)
    d = _arrays(apr)  # particles outside a smaller image
    d["height"], d["width"] = 5, 5
    with pytest.raises(ValueError, match="not a valid APR.*outside the image"):
        _make(**d)
    assert same_structure(_make(**_arrays(apr)), apr)  # the valid arrays pass


def test_apr_dict_round_trip_and_bad_dicts(tmp_path):
    apr = small_apr()
    assert same_structure(APR.from_dict(apr.to_dict()), apr)
    d = apr.to_dict()
    del d["tree_parent"]
    with pytest.raises(ValueError, match="tree_parent"):
        APR.from_dict(d)
    with pytest.raises(TypeError, match="must be a dict"):
        APR.from_structure([1, 2])
    with pytest.raises(ValueError, match="lacks"):
        APR.from_structure({"height": 3})
    np.savez(tmp_path / "bad.npz", **{**apr.to_dict(), "y": apr.y[::-1]})
    with pytest.raises(ValueError, match="not a valid APR"):
        APR.load(tmp_path / "bad.npz")


def test_apr_intensities_and_methods_refuse_bad_values():
    apr = small_apr()
    n = apr.n_particles
    with pytest.raises(TypeError, match="intensities must be real numbers"):
        apr.intensities = np.ones(n, complex)
    with pytest.raises(ValueError, match="intensities must have shape"):
        apr.intensities = np.ones(n + 1)
    with pytest.raises(ValueError, match="at least one channel"):
        apr.intensities = np.ones((n, 0))
    with pytest.raises(ValueError, match="beyond the float32 range"):
        apr.intensities = np.full(n, 1e40)
    apr.intensities = np.arange(n)  # integers: converted to float32
    assert apr.intensities.dtype == np.float32
    with pytest.raises(ValueError, match="NaN or infinite"):
        apr.sample(np.full(apr.shape, np.nan))
    with pytest.raises(ValueError, match="beyond the float32 range"):
        apr.sample(np.full(apr.shape, -1e300))
    with pytest.raises(TypeError, match="image must be real numbers"):
        apr.sample(np.ones(apr.shape, complex))
    with pytest.raises(ValueError, match="image must have shape"):
        apr.sample(np.ones(apr.shape[::-1]))
    with pytest.raises(ValueError, match="at least one channel"):
        apr.sample(np.ones(apr.shape + (0,)))
    with pytest.raises(TypeError, match="values must be real numbers"):
        apr.reconstruct(np.ones(n, complex))
    with pytest.raises(ValueError, match="rows but the APR has"):
        apr.reconstruct(np.ones(n - 1))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, C\)"):
        apr.reconstruct(np.ones((n, 1, 1)))
    with pytest.raises(ValueError, match=f"must have {n} rows"):
        apr.tree_means(np.ones(n + 2))
    with pytest.raises(TypeError, match="level must be an integer"):
        apr.particles_at(1.5)
    with pytest.raises(ValueError, match="level must be in"):
        apr.tree_at(apr.level_max + 1)
    bare = APR.from_dict({k: v for k, v in apr.to_dict().items() if k != "intensities"})
    for method in (bare.reconstruct, bare.tree_means):
        with pytest.raises(ValueError, match="no intensities"):
            method()
    # NaN values are reconstructed as given (documented: each value is copied to its cell's pixels)
    vals = np.ones(n)
    vals[0] = np.nan
    size = int(apr.cell_size()[0])
    y0, x0 = int(apr.y[0]) * size, int(apr.x[0]) * size
    area = (min(y0 + size, apr.height) - y0) * (min(x0 + size, apr.width) - x0)
    assert np.isnan(apr.reconstruct(vals)).sum() == area


# ------------------------------------------------------------------------------------------
# APRBatch and collation
# ------------------------------------------------------------------------------------------
def test_apr_batch_refuses_bad_input():
    apr, rgb = small_apr(), form_apr(np.stack([small_image()] * 3, -1), **THESIS)
    with pytest.raises(TypeError, match="sequence of APRs"):
        APRBatch(apr)
    with pytest.raises(TypeError, match="sequence of APRs"):
        APRBatch(None)
    with pytest.raises(TypeError, match="item 1 is a str"):
        APRBatch([apr, "apr"])
    with pytest.raises(ValueError, match="at least one APR"):
        APRBatch(iter([]))
    with pytest.raises(ValueError, match="same number of channels"):
        APRBatch([apr, rgb])
    batch = APRBatch([apr, apr])
    with pytest.raises(TypeError, match="floating-point torch dtype"):
        batch.features(torch.int64)
    with pytest.raises(TypeError, match="floating-point torch dtype"):
        batch.features(np.float32)
    with pytest.raises(ValueError, match="rows"):
        batch.split(np.ones(3))
    with pytest.raises(TypeError, match="array or tensor"):
        batch.split([1, 2, 3])
    bare = APRBatch([APR.from_dict({k: v for k, v in apr.to_dict().items() if k != "intensities"})])
    with pytest.raises(ValueError, match="no intensities"):
        bare.features()


def test_collate_refuses_bad_items():
    apr = small_apr()
    with pytest.raises(ValueError, match="at least one"):
        collate_aprs([])
    with pytest.raises(ValueError, match=r"item 0 must be an \(APR, label\) pair"):
        collate_aprs([apr])
    with pytest.raises(ValueError, match="label of item 1 must be an integer"):
        collate_aprs([(apr, 0), (apr, 1.7)])
    with pytest.raises(ValueError, match="must be an integer"):
        collate_aprs([(apr, True)])
    batch, labels = collate_aprs([(apr, np.int64(2)), (apr, torch.tensor(3))])
    assert labels.tolist() == [2, 3] and labels.dtype == torch.int64 and len(batch) == 2


# ------------------------------------------------------------------------------------------
# operations
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def batch():
    return APRBatch([small_apr(s, shape, rel_error=0.3) for s, shape in ((0, (24, 20)), (1, (17, 30)))])


def test_conv_refuses_bad_arguments(batch):
    x = torch.randn(batch.n_particles, 2)
    w = torch.randn(3, 2, 2, 3, 3)
    cases = [
        (lambda: apr_conv2d(x, batch.aprs[0], w), TypeError, "batch must be an APRBatch"),
        (lambda: apr_conv2d(x.numpy(), batch, w), TypeError, "features must be a torch.Tensor"),
        (lambda: apr_conv2d(x[:, 0], batch, w), ValueError, "2D"),
        (lambda: apr_conv2d(x[1:], batch, w), ValueError, "particles"),
        (lambda: apr_conv2d(x.long(), batch, w.long()), TypeError, "floating-point"),
        (lambda: apr_conv2d(x, batch, w.numpy()), TypeError, "weight must be a torch.Tensor"),
        (lambda: apr_conv2d(x, batch, w[:, :, 0]), ValueError, r"weight must be \(D, C, n_kernels, k, k\)"),
        (lambda: apr_conv2d(x, batch, torch.randn(3, 2, 1, 3, 5)), ValueError, "weight must be"),
        (lambda: apr_conv2d(x, batch, torch.randn(3, 2, 1, 4, 4)), ValueError, "odd"),
        (lambda: apr_conv2d(x, batch, torch.randn(3, 2, 0, 3, 3)), ValueError, "at least one .* level kernel"),
        (lambda: apr_conv2d(x, batch, torch.randn(0, 2, 1, 3, 3)), ValueError, "at least one output channel"),
        (lambda: apr_conv2d(x, batch, torch.randn(3, 5, 1, 3, 3)), ValueError, "2 channels but the weight expects 5"),
        (lambda: apr_conv2d(x, batch, w.double()), TypeError, "features are torch.float32 but the weight"),
        (lambda: apr_conv2d(x, batch, w, torch.zeros(4)), ValueError, r"bias must have shape \(3,\)"),
        (lambda: apr_conv2d(x, batch, w, torch.zeros(3, dtype=torch.float64)), TypeError, "bias is torch.float64"),
        (lambda: apr_conv2d(x, batch, w, np.zeros(3)), TypeError, "bias must be a torch.Tensor"),
        (lambda: apr_conv2d(x, batch, w, backend="gpu"), ValueError, "backend must be one of"),
        (lambda: apr_conv2d(x.half(), batch, w.half(), backend="cpp"), ValueError, "cpp backend needs"),
        (lambda: tree_values(x, [batch]), TypeError, "batch must be an APRBatch"),
        (lambda: tree_values(x[:-1], batch), ValueError, "particles"),
        (lambda: apr_max_pool2d(x, batch.aprs), TypeError, "batch must be an APRBatch"),
        (lambda: apr_max_pool2d(x.t(), batch), ValueError, "particles"),
        (lambda: apr_max_pool2d(x, batch, backend="CPP"), ValueError, "backend must be one of"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def _full_resolution(H, W, seed):
    rng = np.random.default_rng(seed)
    img = rng.permutation(H * W).reshape(H, W).astype(np.float32) / (H * W)
    apr = form_apr(img, rel_error=1e-5, gradient_smoothing=0.0)
    assert apr.n_particles == H * W
    return apr


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_max_pool_propagates_nan_like_max_pool2d(backend, dtype):
    """On a full-resolution APR, APR max pooling equals F.max_pool2d, NaN included: the window
    {0, 1, 4, NaN} pools to NaN, and the gradient goes to the NaN (its first NaN if several; F.max_pool2d
    takes the last one, so gradients are compared where windows hold at most one NaN)."""
    H, W, C = 8, 6, 3
    apr = _full_resolution(H, W, seed=1)
    batch = APRBatch([apr])
    img = torch.arange(H * W * C, dtype=dtype).reshape(C, H, W) % 7
    img[0, :2, :2] = torch.tensor([[0.0, 1.0], [4.0, float("nan")]], dtype=dtype)  # the window
    img[1, 2, 3] = float("nan")
    img[2, 4:6, 0:2] = float("nan")  # a window of NaNs only
    img[2, 6, 5] = float("-inf")
    x = img.permute(1, 2, 0).reshape(-1, C)[torch.from_numpy(apr.y.astype(np.int64) * W + apr.x)].clone()
    x.requires_grad_(True)
    out, pooled = apr_max_pool2d(x, batch, backend=backend)
    ref_img = img[None].clone().requires_grad_(True)
    ref = F.max_pool2d(ref_img, 2)[0]
    ours = torch.full_like(ref, 7.0)
    ours[:, torch.from_numpy(pooled.aprs[0].y.astype(np.int64)), torch.from_numpy(pooled.aprs[0].x.astype(np.int64))] \
        = out.detach().t()
    assert torch.isnan(ours[0, 0, 0]) and torch.isnan(ref[0, 0, 0])
    torch.testing.assert_close(ours, ref.detach(), equal_nan=True, rtol=0, atol=0)
    # gradients: route to the same pixel as F.max_pool2d where a window has at most one NaN
    g = torch.randn_like(out)
    out.backward(g)
    g_img = torch.zeros_like(ref)
    g_img[:, torch.from_numpy(pooled.aprs[0].y.astype(np.int64)), torch.from_numpy(pooled.aprs[0].x.astype(np.int64))] \
        = g.t()
    F.max_pool2d(ref_img, 2)[0].backward(g_img)
    grad_ours = torch.zeros(C, H * W, dtype=dtype)
    grad_ours[:, torch.from_numpy(apr.y.astype(np.int64) * W + apr.x)] = x.grad.t()
    grad_ours = grad_ours.reshape(C, H, W)
    one_nan = torch.ones(C, H, W, dtype=torch.bool)
    one_nan[2, 4:6, 0:2] = False
    torch.testing.assert_close(grad_ours[one_nan], ref_img.grad[0][one_nan], rtol=0, atol=0)
    assert grad_ours[2, 4, 0] == g_img[2, 2, 0]  # several NaNs: the first one takes the gradient


def test_max_pool_nan_backends_agree_on_multilevel_batches(batch):
    x = torch.randn(batch.n_particles, 4, dtype=torch.float64)
    x[::5, 1] = float("nan")
    x[::3, 2] = float("nan")
    outs, grads = [], []
    for backend in BACKENDS:
        xb = x.clone().requires_grad_(True)
        out, _ = apr_max_pool2d(xb, batch, backend=backend)
        out.backward(torch.arange(out.numel(), dtype=out.dtype).reshape(out.shape))
        outs.append(out.detach())
        grads.append(xb.grad)
    assert torch.isnan(outs[0]).any()
    torch.testing.assert_close(outs[0], outs[1], equal_nan=True)
    torch.testing.assert_close(grads[0], grads[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_and_tree_propagate_nan(batch, backend):
    """A NaN feature makes every output that reads it NaN (tree means and GEMMs propagate it)."""
    x = torch.rand(batch.n_particles, 1)
    x[0] = float("nan")
    out = apr_conv2d(x, batch, torch.ones(1, 1, 1, 3, 3), backend=backend)
    assert torch.isnan(out[0]) and torch.isfinite(out[batch.particle_offsets[1]:]).all()
    vals = tree_values(x, batch, backend=backend)
    assert torch.isnan(vals).any() and not torch.isnan(vals[-1]).any()


# ------------------------------------------------------------------------------------------
# layers and models
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 3, 3), {}, "in_channels must be a positive integer"),
    ((True, 3, 3), {}, "in_channels must be a positive integer"),
    ((2.5, 3, 3), {}, "in_channels must be a positive integer"),
    ((2, -1, 3), {}, "out_channels"),
    ((2, 3, 2), {}, "kernel_size must be a positive odd integer"),
    ((2, 3, -3), {}, "kernel_size"),
    ((2, 3, 3.0), {}, "kernel_size"),
    ((2, 3, 3, 0), {}, "n_level_kernels"),
    ((2, 3, 3), {"backend": "cuda"}, "backend must be one of"),
])
def test_conv_layer_refuses_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        APRConv2d(*args, **kwargs)


def test_layers_refuse_bad_input(batch):
    conv = APRConv2d(np.int64(1), np.int64(2), np.int64(3))  # numpy integers are integers
    assert conv.weight.shape == (2, 1, 1, 3, 3)
    x = batch.features()
    with pytest.raises(TypeError, match="APR layers take APRFeatures"):
        conv(x)
    with pytest.raises(TypeError, match="features must be a torch.Tensor"):
        APRFeatures(x.numpy(), batch)
    with pytest.raises(ValueError, match="features must be"):
        APRFeatures(x[:, 0], batch)
    with pytest.raises(TypeError, match="batch must be an APRBatch"):
        APRFeatures(x, batch.aprs)
    with pytest.raises(ValueError, match="backend"):
        APRMaxPool2d(backend="fast")
    for p in (1.0, -0.1, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="dropout probability"):
            APRSpatialDropout(p)
    with pytest.raises(TypeError, match="batch must be an APRBatch"):
        level_channel(batch.aprs)
    for layer in (APRReLU(), APRBatchNorm(1), APRGlobalAvgPool(), APRSpatialDropout(0.2)):
        with pytest.raises(TypeError, match="APRFeatures"):
            layer(x)


@pytest.mark.parametrize("call, error, match", [
    (lambda: apr_network("C"), ValueError, "unknown network 'C'"),
    (lambda: apr_network("A", variant="tiny"), ValueError, "variant must be"),
    (lambda: apr_network("A", n_classes=1), ValueError, "n_classes must be an integer >= 2"),
    (lambda: apr_network("A", n_classes=2.5), ValueError, "n_classes"),
    (lambda: pixel_network("B", n_classes=True), ValueError, "n_classes"),
    (lambda: pixel_network("D"), ValueError, "unknown network"),
    (lambda: APRNet([]), ValueError, "at least one layer"),
    (lambda: APRNet("abc"), TypeError, "spec must be a list"),
    (lambda: APRNet([(8, 3, 1)]), ValueError, r"spec\[0\] must be \(out_channels"),
    (lambda: APRNet([(8, 3, 1, "bn")]), ValueError, "what follows the convolution"),
    (lambda: APRNet([(8, 4, 1, None)]), ValueError, "kernel_size must be odd"),
    (lambda: APRNet([(8, 3, 0, None)]), ValueError, "n_level_kernels must be a positive integer"),
    (lambda: APRNet([(8, 3, 1, None)], in_channels=0), ValueError, "in_channels"),
    (lambda: PixelNet([(8, 3, 1, "bn")]), ValueError, "what follows the convolution"),
    (lambda: PixelNet([(8, 2, 1, None)]), ValueError, "kernel_size must be odd"),
    (lambda: APRNet([(8, 3, 1, "bn_relu_pool")], spatial_dropout=1.5), ValueError, "dropout probability"),
    (lambda: apr_network("A", dropout=-0.5), ValueError, "dropout probability"),
    (lambda: vgg16_features(apr=True, in_channels=0), ValueError, "in_channels"),
])
def test_models_refuse_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_models_refuse_bad_forward_input(batch):
    net = apr_network("A", n_classes=3)
    with pytest.raises(TypeError, match="an APRNet takes an APRBatch or APRFeatures"):
        net(batch.features())
    rgb = APRBatch([form_apr(np.stack([small_image()] * 3, -1), **THESIS)])
    with pytest.raises(ValueError, match="3 channels but the weight expects 1"):
        net(rgb)
    assert net(batch).shape == (len(batch), 3)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        pixel_network("A")(torch.zeros(1, 16, 16))


# ------------------------------------------------------------------------------------------
# natural images
# ------------------------------------------------------------------------------------------
@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    rgb = (rng.random((40, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (tmp_path / "empty.png").write_bytes(b"")
    grey16 = np.linspace(0, 65535, 40 * 30).reshape(40, 30).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "grey16.png")
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 3] = 200, 100, 128
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    opaque = rgba.copy()
    opaque[..., 3] = 255
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    Image.fromarray(rng.random((10, 10)).astype(np.float32) * 5).save(tmp_path / "float.tif")
    return tmp_path


def test_load_rgb_16_bit_png_uses_its_full_range(image_dir):
    img = load_rgb(image_dir / "grey16.png", size=30)
    assert img.dtype == np.float32 and img.shape == (30, 30, 3)
    assert 0.0 <= img.min() < 0.05 and 0.95 < img.max() <= 1.0 and abs(img.mean() - 0.5) < 0.02
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_load_rgb_composites_alpha_onto_black(image_dir):
    img = load_rgb(image_dir / "rgba.png", size=20)
    np.testing.assert_allclose(img[5, 5], np.array([200, 100, 0]) * 128 / 255 / 255, atol=1 / 255)
    np.testing.assert_allclose(load_rgb(image_dir / "opaque.png", size=20)[5, 5], np.array([200, 100, 0]) / 255)


@pytest.mark.parametrize("name, match", [("truncated.jpg", "truncated"), ("corrupt.jpg", "cannot identify"),
                                         ("empty.png", "cannot identify"), ("missing.jpg", "No such file"),
                                         ("float.tif", "outside .0, 1.")])
def test_load_rgb_errors_name_the_file(image_dir, name, match):
    path = image_dir / name
    with pytest.raises(ImageReadError, match=match) as info:
        load_rgb(path)
    assert str(path) in str(info.value) and info.value.path == path and isinstance(info.value, OSError)


def test_image_files_raise_or_skip_unreadable_files(image_dir):
    files = [(image_dir / "ok.jpg", 0), (image_dir / "truncated.jpg", 1), (image_dir / "rgba.png", 1)]
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        ImageFiles(files, size=16).image(1)
    skip = ImageFiles(files, size=16, on_error="skip")
    with pytest.warns(RuntimeWarning, match="skipping unreadable file .*truncated.jpg"):
        img, label = skip.image(1)
    np.testing.assert_array_equal(img, load_rgb(image_dir / "rgba.png", 16))
    assert label == 1 and skip.augmented(2).on_error == "skip"
    with pytest.warns(RuntimeWarning):
        skip.augmented(3).image(1)
    bad_only = ImageFiles([(image_dir / "corrupt.jpg", 0), (image_dir / "empty.png", 1)], size=8, on_error="skip")
    with pytest.warns(RuntimeWarning), pytest.raises(ImageReadError, match="none of the 2 files"):
        bad_only.image(0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(files="folder"), TypeError, "files must be a list"),
    (dict(files=[("a.jpg",)]), ValueError, r"files\[0\] must be a \(path, label\) pair"),
    (dict(files=[("a.jpg", -1)]), ValueError, "labels must be non-negative integers"),
    (dict(files=[("a.jpg", 0.5)]), ValueError, "labels must be non-negative integers"),
    (dict(size=0), ValueError, "size must be >= 1"),
    (dict(size=32.0), TypeError, "size must be an integer"),
    (dict(seed=-1), ValueError, "seed must be >= 0"),
    (dict(epoch=-2), ValueError, "epoch"),
    (dict(on_error="ignore"), ValueError, "on_error must be 'raise' or 'skip'"),
])
def test_image_files_refuse_bad_arguments(kwargs, error, match):
    kw = dict(files=[("a.jpg", 0)], size=16)
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        ImageFiles(**kw)


def test_image_files_index_errors(image_dir):
    ds = ImageFiles([(image_dir / "ok.jpg", 0)], size=8)
    with pytest.raises(IndexError, match="out of range"):
        ds.image(1)
    with pytest.raises(TypeError, match="index must be an integer"):
        ds.image(0.0)
    np.testing.assert_array_equal(ds.image(-1)[0], ds.image(0)[0])


def test_natural_helpers_refuse_bad_arguments(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        dogs_vs_cats_files(tmp_path / "file.txt")
    with pytest.raises(TypeError, match="n_val must be an integer"):
        split_files([1, 2, 3], n_val=1.5)
    with pytest.raises(ValueError, match="n_val must be in"):
        split_files([1, 2, 3], n_val=0)
    with pytest.raises(ValueError, match="size must be >= 1"):
        load_rgb(tmp_path / "file.txt", size=0)
    with pytest.raises(ValueError, match="short_side must be >= 1"):
        stand_in_photographs(short_side=0)
    rng = np.random.default_rng(0)
    good = np.full((8, 8, 3), 0.5, np.float32)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        augment(good, 0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        augment(np.where(np.eye(8)[..., None] > 0, np.nan, good), rng)
    with pytest.raises(ValueError, match=r"values in \[0, 1\], got \[0, 255\]"):
        augment(np.linspace(0, 255, 8 * 8 * 3).reshape(8, 8, 3), rng)
    with pytest.raises(ValueError, match="RGB image"):
        augment(good[..., 0], rng)
    with pytest.raises(ValueError, match="non-empty"):
        augment(np.zeros((0, 8, 3)), rng)
    with pytest.raises(TypeError, match="real-valued"):
        augment(good.astype(complex), rng)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(n=-1), ValueError, "n must be >= 0"),
    (dict(n=2.5), TypeError, "n must be an integer"),
    (dict(split="test"), ValueError, "split must be 'train' or 'val'"),
    (dict(size=0), ValueError, "size must be >= 1"),
    (dict(crop=0), ValueError, "crop must be >= 1"),
    (dict(crop=10_000), ValueError, "too small"),
    (dict(train_fraction=1.0), ValueError, r"train_fraction must be a number in \(0, 1\)"),
    (dict(train_fraction=float("nan")), ValueError, "train_fraction"),
    (dict(seed=-3), ValueError, "seed must be >= 0"),
])
def test_stand_in_refuses_bad_arguments(kwargs, error, match):
    photos = {"a": np.zeros((64, 128, 3), np.float32), "b": np.ones((64, 128, 3), np.float32)}
    kw = dict(n=4, size=16, crop=32, _photos=photos)
    kw.update(kwargs)
    with pytest.raises(error, match=match):
        StandInPatches(**kw)
    ds = StandInPatches(4, size=16, crop=32, _photos=photos)
    with pytest.raises(IndexError):
        ds.image(4)
    with pytest.raises(TypeError, match="index must be an integer"):
        ds.image(1.0)


# ------------------------------------------------------------------------------------------
# synthetic images (validation only: what is generated never changes)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda: generate_batch(-1, 0), ValueError, "n must be a non-negative integer"),
    (lambda: generate_batch(2.5, 0), ValueError, "n must be a non-negative integer"),
    (lambda: generate_batch(True, 0), ValueError, "n must be"),
    (lambda: generate_batch(2, -1), ValueError, "seed must be a non-negative integer"),
    (lambda: generate_batch(2, 0, size=2), ValueError, "must be >= 3"),
    (lambda: generate_batch(2, 0, size=(16.0, 16)), ValueError, "size must hold integers"),
    (lambda: generate_batch(2, 0, size="big"), ValueError, "size must be an int or a"),
    (lambda: generate_batch(2, 0, labels=[0]), ValueError, r"labels must have shape \(2,\)"),
    (lambda: generate_batch(2, 0, labels=[0, 6]), ValueError, r"label must be an integer in \[0, 6\)"),
    (lambda: generate_batch(2, 0, params={}), ValueError, "params must be a GeneratorParams"),
    (lambda: GeneratorParams(radius_range=(0.3, 0.1)), ValueError, "radius_range"),
    (lambda: GeneratorParams(radius_range=(float("nan"), 0.1)), ValueError, "finite"),
    (lambda: GeneratorParams(amplitude_range=(0.0, 1.0)), ValueError, "amplitude_range"),
    (lambda: GeneratorParams(frequency_range=(2.5, 3)), ValueError, "integers"),
    (lambda: GeneratorParams(min_contrast=1.0), ValueError, "min_contrast"),
    (lambda: sample_shape(0, None), TypeError, "rng must be a numpy.random.Generator"),
    (lambda: sample_shape(-1, np.random.default_rng(0)), ValueError, "label"),
    (lambda: render_shape("circle"), TypeError, "spec must be a ShapeSpec"),
    (lambda: render_shape(ShapeSpec(0, (8.0, 8.0), float("nan"), 0.0, 0.0, 1, 0.0, 1.0, 0.0), 16),
     ValueError, "spec.radius must be finite"),
    (lambda: SyntheticShapes(-1, 0), ValueError, "n must be a non-negative integer"),
    (lambda: SyntheticShapes(4, 0, transform=3), ValueError, "transform must be callable"),
    (lambda: SyntheticShapes(4, 0, size=8).image(4), IndexError, "out of range"),
    (lambda: SyntheticShapes(4, 0, size=8).image(1.0), TypeError, "index must be an integer"),
    (lambda: SyntheticShapesStream(0, start=-1), ValueError, "start must be a non-negative integer"),
    (lambda: error_kinds({"true": ["circle"]}), ValueError, "missing"),
])
def test_synthetic_refuses_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_synthetic_unknown_class_names():
    import pandas as pd
    with pytest.raises(ValueError, match="unknown class names"):
        error_kinds(pd.DataFrame({"true": ["circle"], "predicted": ["hexagon"], "count": [1]}))


# ------------------------------------------------------------------------------------------
# issue 41, item 8: bad-input messages tried as a new user would. Each was first reproduced here
# (commit 3b4f185: the misleading message, or the late failure); now a clear error, raised before
# the work starts, names the problem and what to do.
# ------------------------------------------------------------------------------------------
def test_apr_load_of_a_file_that_is_no_apr_says_so(tmp_path):
    """(a) was: ValueError 'This file contains pickled (object) data ... allow_pickle='."""
    garbage = tmp_path / "apr.npz"
    garbage.write_bytes(b"not an npz file" * 20)
    with pytest.raises(ValueError, match=r"apr\.npz is not an APR file \(not a zip archive\): APR\.load reads "
                                         r"the \.npz archives that APR\.save writes") as info:
        APR.load(garbage)
    assert "pickle" not in str(info.value)
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.npz is not an APR file"):
        APR.load(empty)
    apr = small_apr()
    apr.save(tmp_path / "good.npz")
    assert same_structure(APR.load(tmp_path / "good.npz"), apr)
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz is not an APR file \(a damaged zip archive\)"):
        APR.load(tmp_path / "truncated.npz")
    np.save(tmp_path / "array.npy", np.arange(3))
    with pytest.raises(ValueError, match=r"array\.npy holds a single array \(\.npy\), not an APR"):
        APR.load(tmp_path / "array.npy")
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(ValueError, match=r"other\.npz is an \.npz archive but not an APR: it lacks the entries "
                                         r"\['height', 'width', 'level'"):
        APR.load(tmp_path / "other.npz")
    np.savez(tmp_path / "objects.npz", **{**apr.to_dict(), "intensities": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(ValueError, match=r"objects\.npz: entry 'intensities' holds Python objects \(pickled\)"):
        APR.load(tmp_path / "objects.npz")
    with pytest.raises(FileNotFoundError):
        APR.load(tmp_path / "missing.npz")


@pytest.mark.parametrize("name, block_order, shape, match", [
    # (b) was: 'Expected more than 1 value per channel when training' from batch norm (Pix_B, 16x16, one image)
    ("B", "bn_pool_relu", (1, 1, 16, 16), r"max-pools 5 times by 2, so its images must be at least 32x32 pixels, "
                                          r"got 16x16 \(input shape \(1, 1, 16, 16\)\): resize or pad"),
    # ... and 'Output size is too small' from max pooling (two images of 8x8)
    ("B", "bn_pool_relu", (2, 1, 8, 8), "must be at least 32x32 pixels, got 8x8"),
    ("A", "bn_pool_relu", (4, 1, 16, 7), "max-pools 3 times by 2, so its images must be at least 8x8 pixels, got 16x7"),
    ("pixels", "bn_pool_relu", (2, 3, 15, 15), "at least 16x16 pixels, got 15x15"),
    # big enough to pool, but the thesis-era order normalises the 1x1 output of the last pooling of one image
    ("B", "pool_relu_bn", (1, 1, 32, 32), r"batch norm needs more than one value per channel, but this network's "
                                          r"last batch norm sees 1x1 values of a batch of 1 .*batches of at least 2"),
])
def test_pixel_network_refuses_images_too_small_for_its_poolings(name, block_order, shape, match):
    net = pixel_network(name, block_order=block_order)
    with pytest.raises(ValueError, match=match):
        net(torch.rand(shape))
    net.eval()
    if "batch norm" in match:  # evaluation needs no batch statistics
        assert net(torch.rand(shape)).shape == (shape[0], 6)


def test_pixel_network_smallest_images_run():
    for name, c, n_pool in (("A", 1, 3), ("B", 1, 5), ("pixels", 3, 4)):
        for order in ("bn_pool_relu", "pool_relu_bn"):
            net = pixel_network(name, block_order=order)
            assert net(torch.rand(2, c, 2 ** n_pool, 2 ** n_pool + 3)).shape[0] == 2
            net.eval()
            assert net(torch.rand(1, c, 2 ** n_pool, 2 ** n_pool)).shape[0] == 1


def test_negative_or_fractional_stream_index_is_refused():
    """(c) was: numpy's 'expected non-negative integer'."""
    stream = SyntheticShapesStream(0, size=16)
    with pytest.raises(IndexError, match=r"stream element index must be >= 0, got -1: the stream's elements are "
                                         r"numbered 0, 1, 2, \.\.\. without end"):
        stream.image(-1)
    with pytest.raises(TypeError, match="stream element index must be an integer, got float 1.5"):
        stream.image(1.5)
    np.testing.assert_array_equal(stream.image(np.int64(3))[0], stream.image(3)[0])


def test_a_file_given_as_the_natural_image_folder_is_named_as_a_file(tmp_path):
    """(d) was: FileNotFoundError '... does not exist (see README: natural images)' for a file that exists."""
    (tmp_path / "train.zip").write_bytes(b"PK")
    with pytest.raises(NotADirectoryError, match=r"train\.zip is a file, not a folder: pass the folder that holds "
                                                 r"cat\.N\.jpg and dog\.N\.jpg \(unzip Kaggle's train\.zip first"):
        dogs_vs_cats_files(tmp_path / "train.zip")
    with pytest.raises(FileNotFoundError, match=r"does not exist \(book/guide\.md, 'Natural images'\)"):
        dogs_vs_cats_files(tmp_path / "train")


class _Started(Exception):
    pass


def _no_generation(monkeypatch):
    import aprlib.data.synthetic as synthetic

    def first_image(*args, **kwargs):
        raise _Started("generate_batch started generating images")

    monkeypatch.setattr(synthetic, "generate_image", first_image)
    return synthetic


def test_synthetic_batch_beyond_the_available_memory_is_refused_at_once(monkeypatch):
    """(e) was: a batch larger than the available memory (but not than RAM + swap, which the kernel
    refuses at once) allocated lazily and generated image by image until the machine ran out."""
    synthetic = _no_generation(monkeypatch)
    available = synthetic._available_memory()
    assert available is not None and available > 0
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "psutil", None)  # without psutil: the kernel's MemAvailable or os.sysconf
        assert synthetic._available_memory() > 0
    n = 2 * available // (256 * 256 * 4) + 1  # twice the available memory
    with pytest.raises(MemoryError, match=rf"generate_batch\({n}, size=\(256, 256\)\): {n} float32 images of "
                                          r"256x256 need [0-9.]+ GiB, but only [0-9.]+ GiB of memory is available: "
                                          r"generate fewer or smaller images at a time, or use SyntheticShapes"):
        generate_batch(n, 0)
    monkeypatch.setattr(synthetic, "_available_memory", lambda: 3 * 2 ** 20)  # 3 MiB: 11 images of 256x256 fit
    with pytest.raises(MemoryError, match=r"12 float32 images of 256x256 need 0.00293 GiB, but only 0.00293 GiB"):
        generate_batch(12, 0)
    with pytest.raises(_Started):  # within the memory: the work starts
        generate_batch(11, 0)
    monkeypatch.setattr(synthetic, "_available_memory", lambda: None)  # unknown: not checked
    with pytest.raises(_Started):
        generate_batch(12, 0)


def test_checkpoint_missing_an_entry_is_moved_aside_and_the_run_restarts(tmp_path):
    """(f) was: a checkpoint with this run's header but no 'rows' failed with KeyError: 'rows' on
    every rerun. Now it is treated as unreadable: moved aside with a warning naming the entry."""
    from aprlib.train import InputSpec, train_fixed, train_streamed
    stream, spec, ck = SyntheticShapesStream(seed=3, size=(16, 16)), InputSpec("pixel"), tmp_path / "run.ckpt"
    torch.manual_seed(0)
    ref = train_streamed(pixel_network("A"), stream, spec, n_batches=2, batch_size=2, progress=False)
    torch.manual_seed(0)
    train_streamed(pixel_network("A"), stream, spec, n_batches=1, batch_size=2, checkpoint=ck, progress=False)
    state = torch.load(ck, weights_only=True)
    del state["rows"]
    torch.save(state, ck)
    torch.manual_seed(0)
    with pytest.warns(RuntimeWarning, match=r"run\.ckpt is unreadable \(it lacks the entry 'rows' that this run's "
                                            r"checkpoints hold\): moved aside to run\.ckpt\.corrupt-.*restarts"):
        again = train_streamed(pixel_network("A"), stream, spec, n_batches=2, batch_size=2, checkpoint=ck,
                               progress=False)
    np.testing.assert_array_equal(again[["batch", "loss"]], ref[["batch", "loss"]])
    assert len(list(tmp_path.glob("run.ckpt.corrupt-*"))) == 1
    assert torch.load(ck, weights_only=True)["next_batch"] == 2  # the restarted run's own checkpoint
    # a fixed-dataset run's checkpoint without two of its entries
    train, val = SyntheticShapes(4, seed=8, size=(16, 16)), SyntheticShapes(2, seed=9, size=(16, 16))
    fixed = tmp_path / "fixed.ckpt"
    train_fixed(pixel_network("A"), train, val, spec, n_iterations=1, batch_size=2, eval_every=1, checkpoint=fixed,
                progress=False)
    state = torch.load(fixed, weights_only=True)
    del state["best"], state["best_state"]
    torch.save(state, fixed)
    with pytest.warns(RuntimeWarning, match=r"fixed\.ckpt is unreadable \(it lacks the entries 'best', 'best_state'"):
        train_fixed(pixel_network("A"), train, val, spec, n_iterations=2, batch_size=2, eval_every=1, checkpoint=fixed,
                    progress=False)

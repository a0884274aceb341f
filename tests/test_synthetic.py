"""Tests of the synthetic shape generator (thesis 4.1.1, Fig 4.1)."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from skimage.measure import points_in_poly
from hypothesis import given, settings, strategies as st

from aprlib.data.synthetic import (CLASS_NAMES, GeneratorParams, SyntheticShapes, SyntheticShapesStream, generate_batch,
                                   generate_image, render_shape, sample_shape)

SMALL = (64, 64)
DEFAULT = GeneratorParams.default()
EXTREME = GeneratorParams.extreme()


def check_image(img, size, params=DEFAULT):
    """Common invariants of one generated image."""
    h, w = size
    assert img.shape == (h, w) and img.dtype == np.float32
    assert np.all((img >= 0.0) & (img <= 1.0))
    levels = np.unique(img)
    assert len(levels) == 2, "exactly background + foreground"
    bg = img[0, 0]
    assert abs(float(levels[1] - levels[0])) >= params.min_contrast - 1e-6
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    assert np.all(border == bg), "object must lie strictly inside the image"


def test_class_names():
    assert CLASS_NAMES == ("circle", "square", "triangle", "fuzzy_circle", "fuzzy_square", "fuzzy_triangle")


def test_batch_deterministic_and_seed_dependent():
    a, la = generate_batch(12, seed=3, size=SMALL)
    b, lb = generate_batch(12, seed=3, size=SMALL)
    c, lc = generate_batch(12, seed=4, size=SMALL)
    assert a.dtype == np.float32 and a.shape == (12, 64, 64)
    assert la.dtype == np.int64 and la.shape == (12,)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert all(not np.array_equal(a[i], c[i]) for i in range(12))
    assert np.bincount(la, minlength=6).tolist() == [2] * 6  # balanced


def test_batch_given_labels_and_empty():
    labels = [5, 5, 0, 3]
    imgs, lab = generate_batch(4, seed=0, size=SMALL, labels=labels)
    assert lab.tolist() == labels and imgs.shape == (4, 64, 64)
    imgs, lab = generate_batch(0, seed=0, size=SMALL)
    assert imgs.shape == (0, 64, 64) and lab.shape == (0,)


@pytest.mark.parametrize("params", [DEFAULT, EXTREME], ids=["default", "extreme"])
def test_image_invariants_default_size(params):
    rng = np.random.default_rng(11)
    for i in range(60):
        check_image(generate_image(i % 6, rng, params=params), (256, 256), params)


def test_object_size_range_default():
    """Largest extent <= about half the side, at least about 1/8 of it (256 px)."""
    rng = np.random.default_rng(5)
    for i in range(60):
        label = i % 6
        img = generate_image(label, rng)
        rows, cols = np.nonzero(img != img[0, 0])
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        assert extent <= 2 * 64 * 1.2 + 2
        assert extent >= 16 + 1  # a triangle of circumradius 16 spans >= 1.5 * 16


@pytest.mark.parametrize("label,area_factor", [(0, math.pi), (1, 2.0), (2, 3 * math.sqrt(3) / 4)])
def test_regular_shape_area_matches_geometry(label, area_factor):
    rng = np.random.default_rng(label)
    for _ in range(10):
        spec = sample_shape(label, rng, (256, 256))
        img = render_shape(spec, (256, 256))
        area = np.count_nonzero(img == np.float32(spec.foreground))
        expected = area_factor * spec.radius ** 2
        # rounding adds about half the perimeter in pixels at most
        assert abs(area - expected) <= 0.6 * 2 * math.pi * spec.radius + 4


def _exact_outline(spec, n=40000):
    """Independent dense outline (rows, cols) and point-in-shape test of ``spec``."""
    sides = (0, 4, 3)[spec.label % 3]
    cy, cx = spec.center
    if sides == 0:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        rad = spec.radius * (1 + spec.amplitude * np.sin(spec.frequency * t + spec.phase))
        outline = np.stack([cy + rad * np.sin(t + spec.rotation), cx + rad * np.cos(t + spec.rotation)], 1)

        def inside(r, c):
            theta = np.arctan2(r - cy, c - cx) - spec.rotation
            bound = spec.radius * (1 + spec.amplitude * np.sin(spec.frequency * theta + spec.phase))
            return np.hypot(r - cy, c - cx) <= bound
    else:
        assert spec.amplitude == 0.0
        ang = spec.rotation + 2 * np.pi * np.arange(sides + 1) / sides
        corners = np.stack([cy + spec.radius * np.sin(ang), cx + spec.radius * np.cos(ang)], 1)
        f = np.linspace(0, 1, n // sides, endpoint=False)[:, None]
        outline = np.concatenate([(1 - f) * corners[k] + f * corners[k + 1] for k in range(sides)])

        def inside(r, c):
            return points_in_poly(np.stack([r.ravel(), c.ravel()], 1), corners).reshape(r.shape)
    return outline, inside


@pytest.mark.parametrize("label", [0, 1, 2, 3])
def test_rendering_is_rounded_exact_shape(label):
    """Pixels where the image and the exact continuous shape disagree lie on the outline."""
    size = (160, 128)
    for seed in range(10):
        spec = sample_shape(label, np.random.default_rng(seed), size)
        img = render_shape(spec, size)
        outline, inside = _exact_outline(spec)
        rr, cc = np.mgrid[: size[0], : size[1]].astype(float)
        exact = inside(rr, cc)
        assert exact.sum() > 0.8 * np.pi * spec.radius ** 2 / 2
        drawn = img == np.float32(spec.foreground)
        bad = np.argwhere(drawn != exact)
        if len(bad):
            dist = cKDTree(outline).query(bad)[0]
            assert dist.max() <= 0.8, (seed, dist.max())  # rounding moves <= 0.71 px


def test_regular_classes_have_no_perturbation():
    rng = np.random.default_rng(0)
    for label in range(6):
        spec = sample_shape(label, rng, SMALL)
        assert (spec.amplitude == 0.0) == (label < 3)


def test_fuzzy_equals_regular_with_zero_amplitude_and_differs_otherwise():
    flat = dataclasses.replace(DEFAULT, amplitude_range=(0.0, 0.0))
    for base in range(3):
        for seed in range(5):
            regular = generate_image(base, np.random.default_rng(seed))
            fuzzy0 = generate_image(base + 3, np.random.default_rng(seed), params=flat)
            np.testing.assert_array_equal(regular, fuzzy0)  # same geometry draws
            spec = sample_shape(base + 3, np.random.default_rng(seed))
            assert spec.amplitude >= DEFAULT.amplitude_range[0] > 0
            unperturbed = render_shape(dataclasses.replace(spec, amplitude=0.0))
            assert not np.array_equal(render_shape(spec), unperturbed)


@pytest.mark.parametrize("size", [(100, 37), (300, 200), (37, 100), (3, 5)])
def test_non_square_sizes(size):
    imgs, labels = generate_batch(12, seed=1, size=size)
    assert imgs.shape == (12,) + size
    for img in imgs:
        check_image(img, size)
    ds = SyntheticShapes(6, seed=0, size=size)
    assert ds[5][0].shape == (1,) + size


def test_dataset_items_balance_and_order_independence():
    ds = SyntheticShapes(60, seed=7, size=SMALL)
    assert len(ds) == 60
    x, y = ds[13]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.shape == (1, 64, 64)
    assert isinstance(y, int) and y == 13 % 6
    assert np.bincount([ds[i][1] for i in range(60)], minlength=6).tolist() == [10] * 6
    np.testing.assert_array_equal(ds.labels, [ds[i][1] for i in range(60)])
    later = ds[59][0]
    fresh = SyntheticShapes(60, seed=7, size=SMALL)
    assert torch.equal(fresh[59][0], later)
    assert torch.equal(ds[-1][0], later)
    assert not torch.equal(ds[0][0], SyntheticShapes(60, seed=8, size=SMALL)[0][0])
    with pytest.raises(IndexError):
        ds[60]


def test_dataset_nested_prefix():
    small = SyntheticShapes(12, seed=2, size=SMALL)
    large = SyntheticShapes(1000, seed=2, size=SMALL)
    for i in range(12):
        a, la = small[i]
        b, lb = large[i]
        assert la == lb and torch.equal(a, b)


def test_dataset_distinct_images():
    ds = SyntheticShapes(30, seed=0, size=SMALL)
    hashes = {ds[i][0].numpy().tobytes() for i in range(30)}
    assert len(hashes) == 30


def test_transform_applied_to_numpy_image():
    seen = []

    def transform(img):
        seen.append((type(img), img.dtype, img.shape))
        return float(img.sum())

    ds = SyntheticShapes(3, seed=0, size=(20, 30), transform=transform)
    value, label = ds[2]
    assert isinstance(value, float) and label == 2
    assert seen == [(np.ndarray, np.float32, (20, 30))]
    stream = SyntheticShapesStream(seed=0, size=(20, 30), transform=transform)
    value, label = next(iter(stream))
    assert isinstance(value, float) and 0 <= label < 6


def _take(loader, n_batches):
    out = []
    for k, (x, y) in enumerate(loader):
        out.append((x, y))
        if k + 1 == n_batches:
            break
    return torch.cat([x for x, _ in out]), torch.cat([y for _, y in out])


def test_stream_single_process_deterministic():
    s = SyntheticShapesStream(seed=9, size=(32, 40))
    it1, it2 = iter(s), iter(s)
    first = [next(it1) for _ in range(30)]
    second = [next(it2) for _ in range(30)]
    for (a, la), (b, lb) in zip(first, second):
        assert la == lb and torch.equal(a, b) and a.shape == (1, 32, 40)
    assert len({a.numpy().tobytes() for a, _ in first}) == 30
    other = next(iter(SyntheticShapesStream(seed=10, size=(32, 40))))[0]
    assert not torch.equal(first[0][0], other)
    # labels are uniform-random: all classes appear in a modest sample
    labels = [next(it1)[1] for _ in range(120)]
    assert set(labels) == set(range(6))


def test_stream_multiworker_no_duplicates_and_deterministic():
    stream = SyntheticShapesStream(seed=1, size=(32, 32))
    make = lambda: torch.utils.data.DataLoader(stream, batch_size=4, num_workers=2)  # noqa: E731
    x1, y1 = _take(make(), 10)
    x2, y2 = _take(make(), 10)
    assert x1.shape == (40, 1, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert len({img.numpy().tobytes() for img in x1}) == 40
    # the workers' elements are disjoint parts of the single-process stream
    single = iter(stream)
    reference = {next(single)[0].numpy().tobytes() for _ in range(40)}
    assert {img.numpy().tobytes() for img in x1} == reference


def test_extreme_params_superset():
    assert EXTREME.covers(DEFAULT) and not DEFAULT.covers(EXTREME)
    assert EXTREME.radius_range[0] < DEFAULT.radius_range[0]
    assert EXTREME.radius_range[1] > DEFAULT.radius_range[1]
    assert EXTREME.amplitude_range[0] < DEFAULT.amplitude_range[0]
    assert EXTREME.amplitude_range[1] > DEFAULT.amplitude_range[1]
    assert EXTREME.frequency_range[0] < DEFAULT.frequency_range[0]
    assert EXTREME.frequency_range[1] > DEFAULT.frequency_range[1]
    assert EXTREME.min_contrast < DEFAULT.min_contrast
    assert DEFAULT == GeneratorParams()
    assert DEFAULT.min_contrast == 0.05 and DEFAULT.radius_range[1] == 0.25
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.min_contrast = 0.1


def test_extreme_generates_more_extreme_objects():
    """Some extreme images are smaller / larger than any default image can be."""
    rng = np.random.default_rng(0)
    extents = []
    for i in range(120):
        img = generate_image(i % 3, rng, size=(128, 128), params=EXTREME)
        rows, cols = np.nonzero(img != img[0, 0])
        extents.append(max(np.ptp(rows), np.ptp(cols)) + 1)
    assert min(extents) < 1.5 * 128 / 16  # below the default minimum
    assert max(extents) > 2 * 128 / 4 + 2  # above the default maximum (regular shapes)


@pytest.mark.parametrize(
    "call",
    [
        lambda: generate_image(6, np.random.default_rng(0)),
        lambda: generate_image(-1, np.random.default_rng(0)),
        lambda: generate_image(0, np.random.default_rng(0), size=(0, 10)),
        lambda: generate_image(0, np.random.default_rng(0), size=(10, -5)),
        lambda: generate_image(0, np.random.default_rng(0), size=(2, 10)),
        lambda: generate_image(0, np.random.default_rng(0), size=(10, 10.5)),
        lambda: generate_batch(-1, seed=0),
        lambda: generate_batch(2, seed=-3),
        lambda: generate_batch(2, seed=0, labels=[0]),
        lambda: generate_batch(2, seed=0, labels=[0, 9]),
        lambda: SyntheticShapes(-1, seed=0),
        lambda: SyntheticShapes(5, seed=0, size=0),
        lambda: SyntheticShapesStream(seed=0, size=(64, 0)),
        lambda: GeneratorParams(radius_range=(0.2, 0.1)),
        lambda: GeneratorParams(radius_range=(0.0, 0.1)),
        lambda: GeneratorParams(radius_range=(0.1, 0.45)),
        lambda: GeneratorParams(amplitude_range=(0.3, 0.1)),
        lambda: GeneratorParams(amplitude_range=(-0.1, 0.1)),
        lambda: GeneratorParams(frequency_range=(5, 2)),
        lambda: GeneratorParams(frequency_range=(0, 2)),
        lambda: GeneratorParams(frequency_range=(2.5, 4)),
        lambda: GeneratorParams(min_contrast=-0.1),
        lambda: GeneratorParams(min_contrast=1.5),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(3, 90),
    w=st.integers(3, 90),
    label=st.integers(0, 5),
    extreme=st.booleans(),
)
def test_property_valid_image(seed, h, w, label, extreme):
    params = EXTREME if extreme else DEFAULT
    img = generate_image(label, np.random.default_rng(seed), size=(h, w), params=params)
    check_image(img, (h, w), params)
    again = generate_image(label, np.random.default_rng(seed), size=(h, w), params=params)
    np.testing.assert_array_equal(img, again)


def test_error_kinds_splits_regular_fuzzy_from_shape_errors():
    import pandas as pd
    from aprlib.data.synthetic import error_kinds
    conf = pd.DataFrame([("circle", "circle", 5), ("circle", "fuzzy_circle", 3), ("fuzzy_square", "square", 2),
                         ("triangle", "square", 1), ("fuzzy_triangle", "circle", 4)],
                        columns=["true", "predicted", "count"])
    assert error_kinds(conf) == {"images": 15, "errors": 10, "regular/fuzzy": 5, "shape": 5}
    with pytest.raises(ValueError, match="hexagon"):
        error_kinds(conf.assign(true=["hexagon"] * 5))

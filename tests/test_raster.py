"""aprlib.data.raster.fill_polygon draws the pixels skimage.draw.polygon draws (the synthetic
generator's images must not change: every stored run was trained on them): random integer polygons
(self-intersecting, degenerate, partly outside the image) and the generator's own shapes."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from aprlib.data.raster import fill_polygon
from aprlib.data.synthetic import (NUM_CLASSES, GeneratorParams, SyntheticShapesStream, render_shape, sample_shape,
                                   shape_polygon)

skimage_draw = pytest.importorskip("skimage.draw")


def reference(rows, cols, shape):
    mask = np.zeros(shape, dtype=bool)
    rr, cc = skimage_draw.polygon(rows, cols, shape=shape)
    mask[rr, cc] = True
    return mask


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), st.data())
def test_random_polygons_equal_skimage(h, w, data):
    n = data.draw(st.integers(1, 25))
    rows = np.array(data.draw(st.lists(st.integers(-4, h + 4), min_size=n, max_size=n)))
    cols = np.array(data.draw(st.lists(st.integers(-4, w + 4), min_size=n, max_size=n)))
    np.testing.assert_array_equal(fill_polygon(rows, cols, (h, w)), reference(rows, cols, (h, w)))


def test_the_docstring_example_and_bad_input():
    r, c = np.array([1, 2, 8]), np.array([1, 7, 4])
    got = fill_polygon(r, c, (10, 10))
    np.testing.assert_array_equal(got, reference(r, c, (10, 10)))
    assert got[1, 1] and got[2, 7] and got[8, 4]  # vertices and edges are drawn, as skimage draws them
    assert not fill_polygon(np.array([], int), np.array([], int), (4, 4)).any()
    with pytest.raises(TypeError, match="integers"):
        fill_polygon(np.array([0.5, 2, 3]), np.array([1, 2, 3]), (5, 5))
    with pytest.raises(ValueError, match="one length"):
        fill_polygon(np.array([0, 2, 3]), np.array([1, 2]), (5, 5))


def _skimage_render(spec, size):
    """render_shape as it was, with skimage.draw.polygon (the images every stored run saw)."""
    pix, verts = shape_polygon(spec, size)
    img = np.full(size, spec.background, dtype=np.float32)
    if len(verts) >= 3:
        img[reference(verts[:, 0], verts[:, 1], size)] = spec.foreground
    img[pix[:, 0], pix[:, 1]] = spec.foreground
    return img


@pytest.mark.parametrize("params,size", [(GeneratorParams.default(), (256, 256)),
                                         (GeneratorParams.extreme(), (256, 256)),
                                         (GeneratorParams.default(), (64, 96))])
def test_the_generators_shapes_are_unchanged(params, size):
    rng = np.random.default_rng(7)
    for i in range(120):
        spec = sample_shape(i % NUM_CLASSES, rng, size, params)
        np.testing.assert_array_equal(render_shape(spec, size), _skimage_render(spec, size))


def test_a_training_streams_first_images_are_unchanged():
    """The first batch of seed 1's stream (stream seed 1001) equals the skimage rendering of its draws."""
    from aprlib.data import synthetic as syn
    stream = SyntheticShapesStream(seed=1001, size=(256, 256))
    for j in range(36):
        rng = np.random.default_rng([1001, syn._TAG_STREAM, j])  # as SyntheticShapesStream.image draws
        spec = sample_shape(int(rng.integers(NUM_CLASSES)), rng, (256, 256), GeneratorParams.default())
        np.testing.assert_array_equal(stream.image(j)[0], _skimage_render(spec, (256, 256)))

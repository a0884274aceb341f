"""StarDist's sample image and volume with their labels (aprlib.data.stardist_samples)."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from aprlib.data import stardist_samples

needs_stardist = pytest.mark.skipif(importlib.util.find_spec("stardist") is None,
                                    reason="stardist is not installed (pip install --no-deps stardist==0.9.2)")


@needs_stardist
@pytest.mark.parametrize("ndim,shape,n_labels", [(2, (512, 512), 125), (3, (31, 61, 57), 51)])
def test_the_samples_are_the_documented_images(ndim, shape, n_labels):
    image, labels = stardist_samples.stardist_sample(ndim)
    assert image.shape == labels.shape == shape
    assert image.dtype == np.float32 and labels.dtype == np.int32
    ids = np.unique(labels)
    assert ids[0] == 0 and len(ids) - 1 == n_labels
    fg = labels > 0
    assert image[fg].mean() > image[~fg].mean()  # nuclei are bright


def test_missing_stardist_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps stardist"):
        stardist_samples.stardist_sample(2)


def test_ndim_must_be_2_or_3():
    with pytest.raises(ValueError, match="ndim must be 2 or 3"):
        stardist_samples.stardist_sample(4)

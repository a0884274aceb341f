"""Real microscopy with ground truth: the two sample images that the StarDist package ships with
their instance masks, read from the installed package's data folder with tifffile (StarDist itself
is not imported, so none of its deep-learning dependencies is needed: ``pip install --no-deps
stardist==0.9.2``, which ``make install`` does).

- 2D (``ndim=2``): ``img2d.tif`` (512 x 512, uint16 counts) and ``mask2d.tif`` (125 labelled nuclei), a
  fluorescence image of nuclei from the 2018 Data Science Bowl (BBBC038v1, Caicedo et al. 2019,
  Nature Methods 16:1247), as shipped by StarDist (Schmidt et al. 2018, MICCAI).
- 3D (``ndim=3``): ``img3d.tif`` (31 x 61 x 57 (Z, Y, X), uint16) and ``mask3d.tif`` (51 labels), a
  small synthetic volume of nuclei from StarDist (Weigert et al. 2020, WACV).

StarDist's code and data are under its BSD 3-Clause licence (Copyright (c) 2018-2025, Uwe Schmidt, Martin
Weigert). The images compress little under the APR (CR about 3 in 2D): they test accuracy, not the
APR's savings.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

__all__ = ["STARDIST_FILES", "stardist_data_dir", "stardist_sample"]

#: The files of each sample: (image, instance labels), in ``stardist/data/images``.
STARDIST_FILES = {2: ("img2d.tif", "mask2d.tif"), 3: ("img3d.tif", "mask3d.tif")}

_INSTALL = "pip install --no-deps stardist==0.9.2 (make install does it)"


def stardist_data_dir() -> Path:
    """The installed StarDist package's ``data/images`` folder (found without importing StarDist).
    ModuleNotFoundError, saying how to install it, where StarDist is not installed; FileNotFoundError
    where the folder lacks the sample files."""
    spec = importlib.util.find_spec("stardist")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the StarDist sample images need the stardist package: {_INSTALL}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
    missing = [f for files in STARDIST_FILES.values() for f in files if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks StarDist's sample files {missing}: reinstall with {_INSTALL}")
    return folder


def stardist_sample(ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """StarDist's sample image (``ndim=2``: (512, 512)) or volume (``ndim=3``: (31, 61, 57)) and its
    instance labels: (image float32 in the file's counts, labels int32 with 0 the background and 1..n
    the nuclei). The binary ground truth is ``labels > 0``."""
    if ndim not in STARDIST_FILES or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 or 3, got {ndim!r}")
    import tifffile

    folder = stardist_data_dir()
    image_file, labels_file = STARDIST_FILES[ndim]
    image = tifffile.imread(folder / image_file).astype(np.float32)
    labels = tifffile.imread(folder / labels_file).astype(np.int32)
    if image.ndim != ndim or labels.shape != image.shape:
        raise ValueError(f"{folder}: {image_file} {image.shape} and {labels_file} {labels.shape} are not a "
                         f"{ndim}D image and its labels")
    return image, labels

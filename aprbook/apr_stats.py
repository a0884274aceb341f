"""APR quality statistics over image sets (thesis 4.1.2 / Fig 4.2, 4.2.2 / Fig 4.7).

For each image, formation setting and error threshold E: particle count, computational ratio
(CR = pixels / particles) and the reconstruction error of the piecewise-constant APR.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from aprlib.apr import THESIS_FORMATION, APRParameters, form_apr

from .pyapr_compat import available as pyapr_available, pyapr_form

__all__ = ["FORMATION_SETTINGS", "apr_statistics", "summarize", "pyapr_comparison", "pyapr_available"]

# Named formation settings compared in the book (see notebooks/01_apr_synthetic.ipynb):
# "thesis": aprlib.apr.THESIS_FORMATION, no gradient smoothing (lambda = 0), LibAPR's pulling scheme:
# the closest match to the thesis's Fig 4.2; "thesis_minimal": the same with the minimal one-level
# grading; "libapr_default": LibAPR's smoothing B-spline (lambda = 3). All three have the thesis
# setting's sigma_th = 0.01 (1% of the [0, 1] intensity range), which keeps the scale finite in flat
# regions.
FORMATION_SETTINGS = {
    "thesis": THESIS_FORMATION,
    "thesis_minimal": THESIS_FORMATION.replace(pulling_scheme="minimal"),
    "libapr_default": APRParameters.libapr(sigma_th=THESIS_FORMATION.sigma_th),  # LibAPR's defaults otherwise
}


def apr_statistics(images: Sequence[np.ndarray], e_values: Iterable[float],
                   settings: Mapping[str, APRParameters] | None = None, labels: Sequence[int] | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """One row per (image, setting, E): n_particles, cr, mean_abs_error, max_abs_error, lossless.

    images: sequence of (H, W) arrays (intensity units); errors are in the same units.
    """
    settings = FORMATION_SETTINGS if settings is None else settings
    rows = []
    for i, img, name, params, e in _grid(images, settings, e_values, "APR statistics", progress):
        apr = form_apr(img, params, rel_error=e)
        err = np.abs(apr.reconstruct() - img)
        rows.append({"image": i, "label": None if labels is None else int(labels[i]), "setting": name,
                     "E": e, "n_particles": apr.n_particles, "cr": apr.computational_ratio,
                     "mean_abs_error": float(err.mean()), "max_abs_error": float(err.max()),
                     "lossless": bool(err.max() <= 1e-6)})
    return pd.DataFrame(rows)


def _grid(images, settings: Mapping[str, APRParameters], e_values, desc: str, progress: bool):
    """(image index, float32 image, setting name, parameters, E) for every image, setting and E, in
    that nesting order, with a progress bar."""
    e_values = [float(e) for e in e_values]
    with tqdm(total=len(images) * len(settings) * len(e_values), desc=desc, disable=not progress,
              mininterval=1.0) as bar:
        for i, img in enumerate(images):
            img = np.asarray(img, dtype=np.float32)
            for name, params in settings.items():
                for e in e_values:
                    yield i, img, name, params, e
                    bar.update()


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, E): mean / median CR, mean error, fraction of lossless APRs, number of images."""
    g = df.groupby(["setting", "E"])
    return g.agg(mean_cr=("cr", "mean"), median_cr=("cr", "median"), mean_abs_error=("mean_abs_error", "mean"),
                 lossless_fraction=("lossless", "mean"), n_images=("image", "nunique")).reset_index()


def pyapr_comparison(images: Sequence[np.ndarray], e_values: Iterable[float],
                     settings: Mapping[str, APRParameters] | None = None, progress: bool = True) -> pd.DataFrame:
    """Particle counts of aprlib and pyapr (LibAPR) on the same images and parameters.

    Settings must use pulling_scheme="libapr" (the default excludes the others).
    Columns: image, setting, E, n_aprlib, n_pyapr, rel_diff = (n_aprlib - n_pyapr) / n_pyapr,
    level_mismatch = fraction of pixels whose particle level differs.
    """
    if not pyapr_available():
        raise ImportError("pyapr is not installed; `pip install pyapr==1.0.7` for the cross-check")
    if settings is None:  # pyapr implements only LibAPR's pulling scheme
        settings = {k: v for k, v in FORMATION_SETTINGS.items() if v.pulling_scheme == "libapr"}
    rows = []
    for i, img, name, params, e in _grid(images, settings, e_values, "pyapr cross-check", progress):
        ours = form_apr(img, params, rel_error=e)
        ref, _, lv_ref = pyapr_form(img, params.replace(rel_error=e))
        n_ref = ref.total_number_particles()
        rows.append({"image": i, "setting": name, "E": e, "n_aprlib": ours.n_particles,
                     "n_pyapr": int(n_ref), "rel_diff": (ours.n_particles - n_ref) / n_ref,
                     "level_mismatch": float(np.mean(ours.level_map() != lv_ref))})
    return pd.DataFrame(rows)

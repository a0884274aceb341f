"""APR formation of 3D volumes (z, y, x): particle cells and cell means (kernels in C++,
``aprlib._core.form_apr3d``).

The pipeline is LibAPR's in 3D (``reproduction-spec.md`` section 1, with LibAPR's 3D choices):
smoothing B-spline along x, y, z with LibAPR's boundary conditions (whole-sample mirroring; lines
shorter than LibAPR's initialisation window take its own initialisation; axes of <= 2 voxels are not
smoothed) -> |grad| by central differences (replicated borders), max over 2x2x2 blocks (half
resolution) -> the half-resolution volume (2x2x2 means; with smoothing, the spline evaluated there)
-> local intensity scale (LibAPR's mirror padding and truncated box means of widths 3 and 7 along
each axis of more than 3 half-resolution samples, c = 26.1256 with three such axes) -> grad_th,
Ip_th, sigma_th, sigma_th_max -> required levels from E -> LibAPR's pulling scheme with one-level
grading between the 26 face, edge and corner neighbours (or the minimal graded set) -> cell means.
pyapr 1.0.7 forms the same levels on all but a few voxels (tests/test_formation3d.py).

Scale handling is that of :func:`aprlib.apr.formation.form_apr`: the volume is multiplied by the
power of two that brings its largest magnitude into (0.5, 1] (exact; the absolute thresholds
follow), and ``sigma_th = None`` means 1% (``SIGMA_TH_FRACTION``) of the volume's range.
This module forms the cells only; the 3D APR class takes its output.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .. import _core
from .formation import (
    APRParameters,
    _power_of_two_exponent,
    _relative_sigma_th,
    _scaled_threshold,
    _SUPPORTED_KINDS,
    bspline_recursion,
)

__all__ = ["form_volume_cells", "as_float_volume", "level_range3d"]


def as_float_volume(volume, name: str = "volume") -> tuple[np.ndarray, float]:
    """Validate a volume; return it as C-contiguous float32 (Z, Y, X) and its largest magnitude.

    Raises TypeError for anything but a real float or integer array (or torch tensor), and
    ValueError for a shape other than 3D, an empty volume, NaN or infinite values, or finite
    values beyond the float32 range.
    """
    if hasattr(volume, "detach"):  # torch tensor
        volume = volume.detach().cpu().numpy()
    if volume is None or isinstance(volume, (str, bytes)):
        raise TypeError(f"{name} must be an array, got {type(volume).__name__}")
    try:
        arr = np.asarray(volume)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name} is not a rectangular array: {e}") from None
    if arr.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"{name} must have a float or integer dtype, got {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3D (Z, Y, X), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    with np.errstate(over="ignore"):  # an overflow is reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    max_abs, first_bad = _core.max_abs_finite(out)
    if first_bad >= 0:
        if arr.dtype.itemsize <= 4 or not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(f"{name} has finite values beyond the float32 range: aprlib computes in float32; "
                         f"rescale the volume")
    return out, max_abs


def level_range3d(depth: int, height: int, width: int) -> tuple[int, int]:
    """(level_min, level_max) of a (depth, height, width) volume: 1 and
    max(ceil(log2(max(depth, height, width))), 2), :func:`aprlib._core.level_range`'s rule in 3D."""
    return tuple(_core.level_range3d(int(depth), int(height), int(width)))


def form_volume_cells(volume, params: APRParameters | None = None,
                      **overrides) -> tuple[dict, np.ndarray, APRParameters]:
    """Form the APR particle cells of a 3D volume and the mean of the volume over each.

    - ``volume``: (Z, Y, X) real array (float or integer dtype, or a torch tensor), any Z, Y, X >= 1,
      finite values in the float32 range (ValueError otherwise: 2D or 4D arrays, empty volumes, NaN,
      inf; TypeError for other dtypes). The structure does not depend on the volume's scale
      (module docstring).
    - ``params``: :class:`APRParameters` (default ``APRParameters()``: sigma_th 1% of the volume's
      range); keyword overrides replace its fields, as in :func:`form_apr`.
      ``APRParameters.libapr()`` gives LibAPR's defaults (sigma_th = 0, which warns).

    Returns ``(cells, means, params_used)``:

    - ``cells``: dict with ``depth``, ``height``, ``width`` (Z, Y, X, ints), ``level_min``,
      ``level_max`` (ints; :func:`level_range3d`), ``level_offsets`` ((level_max + 2,) int64: the
      cells of level l are ``[level_offsets[l], level_offsets[l + 1])``), ``level`` ((N,) int8) and
      ``z``, ``y``, ``x`` ((N,) int32 cell indices at their level), sorted by (level, z, y, x). A
      cell of level l with indices (z, y, x) covers the voxels ``[z * s, (z + 1) * s)`` x
      ``[y * s, (y + 1) * s)`` x ``[x * s, (x + 1) * s)`` with ``s = 2 ** (level_max - l)``,
      clipped to the volume; the cells partition the volume.
    - ``means``: (N,) float32, the mean of the volume as given (in its own units) over each cell.
    - ``params_used``: the parameters with ``sigma_th`` in the volume's intensity units, so that
      ``form_volume_cells(volume, params_used)`` forms the same cells.
    """
    params = APRParameters() if params is None else params
    if not isinstance(params, APRParameters):
        raise TypeError(f"params must be an APRParameters, got {type(params).__name__}")
    if overrides:
        params = params.replace(**overrides)
    vol, max_abs = as_float_volume(volume)
    if params.sigma_th == 0 and params.gradient_smoothing > 0:
        warnings.warn("sigma_th = 0 with gradient smoothing: in flat regions the local intensity scale is the "
                      "smoothing's float rounding noise, so the structure there depends on rounding (LibAPR "
                      "warns about sigma_th = 0 too); set sigma_th > 0, or leave it at its default (None: 1% of "
                      "the volume's range, APRParameters())",
                      RuntimeWarning, stacklevel=2)
    e = _power_of_two_exponent(max_abs)
    work = np.ldexp(vol, -e) if e else vol
    if params.sigma_th is None:  # SIGMA_TH_FRACTION of the range, in the scaled units; recorded unscaled
        sigma_th = _relative_sigma_th(work)
        params = params.replace(sigma_th=math.ldexp(sigma_th, e))
    else:
        sigma_th = _scaled_threshold(params.sigma_th, e)
    lam = float(params.gradient_smoothing)
    b1, b2, norm, k = bspline_recursion(lam) if lam > 0 else (0.0, 0.0, 1.0, 0)
    # The cells of the scaled volume (the structure does not change: module docstring), the means
    # of the volume as given (means_of), in one call.
    cells, means = _core.form_apr3d(
        work,
        rel_error=float(params.rel_error),
        grad_th=_scaled_threshold(params.grad_th, e),
        Ip_th=_scaled_threshold(params.Ip_th, e),
        sigma_th=sigma_th,
        sigma_th_max=_scaled_threshold(params.sigma_th_max, e),
        smooth=lam > 0,
        b1=b1,
        b2=b2,
        norm=norm,
        bspline_k=k,
        minimal_grading=params.pulling_scheme == "minimal",
        means_of=vol if e else None,
        check_finite=False,  # as_float_volume checked vol (and so work = vol * 2**-e)
    )
    return cells, means, params

"""APR formation from 2D images and 3D volumes (LibAPR's pipeline; the kernels are in C++, ``aprlib._core``).

Pipeline (Cheeseman et al. 2018; ``reproduction-spec.md`` section 1):
smoothing B-spline gradient -> local intensity scale -> local resolution from E ->
pulling scheme with one-level grading -> particle intensities as cell means.

Scale: like LibAPR's, the structure depends on the image only through ratios |grad I| / sigma, so
it does not change when the image is multiplied by a positive constant c (with the absolute
thresholds ``sigma_th``, ``sigma_th_max``, ``grad_th``, ``Ip_th`` multiplied by c too, or zero as by
default; the default ``sigma_th = None``, a fraction of each image's range, follows the image). The
kernels work in float32, where |grad I|^2 of an image near 1e25 overflows and that of an image near
1e-20 underflows, so :func:`form_apr` first multiplies the image (and the
thresholds) by the power of two that brings its largest magnitude into (0.5, 1]: exact in binary
floating point, so nothing changes for images whose maximum is already there (images in [0, 1]
with a maximum above 0.5) and the structure of ``2**j * image`` is exactly that of ``image``; for
any other c it is that of ``image`` up to the rounding of ``c * image`` to float32, which moves a
cell's level only when its resolution ratio lies within that rounding of a power of two, or where
the structure rests on rounding noise anyway (``sigma_th = 0`` with smoothing: APRParameters).

3D volumes (z, y, x): ``form_apr(volume, ndim=3)``, whose cells, tree and cell means come from
:func:`form_volume_cells` (kernels in C++, ``aprlib._core.form_apr3d``). The pipeline is LibAPR's in 3D (``reproduction-spec.md`` section 1, with LibAPR's 3D choices):
smoothing B-spline along x, y, z with LibAPR's boundary conditions (whole-sample mirroring; lines
shorter than LibAPR's initialisation window take its own initialisation; axes of <= 2 voxels are not
smoothed) -> |grad| by central differences (replicated borders), max over 2x2x2 blocks (half
resolution) -> the half-resolution volume (2x2x2 means; with smoothing, the spline evaluated there)
-> local intensity scale (LibAPR's mirror padding and truncated box means of widths 3 and 7 along
each axis of more than 3 half-resolution samples, c = 26.1256 with three such axes) -> grad_th,
Ip_th, sigma_th, sigma_th_max -> required levels from E -> LibAPR's pulling scheme with one-level
grading between the 26 face, edge and corner neighbours (or the minimal graded set) -> cell means.
pyapr 1.0.7 forms the same levels on all but a few voxels (tests/test_formation3d.py).

Scale handling in 3D is that of 2D: the volume is multiplied by the power of two that brings its largest magnitude into (0.5, 1] (exact; the absolute thresholds
follow), and ``sigma_th = None`` means 1% (``SIGMA_TH_FRACTION``) of the volume's range.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import numpy as np

from .. import _core
from .structure import APR

__all__ = ["APRParameters", "THESIS_FORMATION", "SIGMA_TH_FRACTION", "form_apr", "as_float_image", "to_grayscale",
           "form_volume_cells", "as_float_volume", "level_range3d"]

_SUPPORTED_KINDS = ("f", "u", "i")  # float, unsigned and signed integer dtypes
_GRAY_WEIGHTS = np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709 luma, as skimage.color.rgb2gray


#: The default intensity-scale floor as a fraction of the image's range: ``APRParameters()`` (whose
#: ``sigma_th`` is None) floors the local intensity scale at 1% of (max - min) of each image.
SIGMA_TH_FRACTION = 0.01


@dataclasses.dataclass(frozen=True)
class APRParameters:
    """APR formation parameters: LibAPR's, with defaults that aprlib recommends.

    - ``rel_error``: relative error threshold E (> 0, unitless). Default 0.1.
    - ``gradient_smoothing``: smoothing B-spline parameter lambda (>= 0, unitless; 0 disables
      smoothing). Default 3.0 (LibAPR's).
    - ``sigma_th``: floor of the local intensity scale, in image intensity units (>= 0), or None
      (the default): ``SIGMA_TH_FRACTION`` (1%) of the image's intensity range, max - min of the
      (grayscale) image, computed per image by :func:`form_apr` (for an image of one value, 1% of
      its magnitude, or 0.01 if it is 0). :meth:`for_image` gives the value an image gets, and
      ``form_apr(image).params`` records it.
    - ``sigma_th_max``: scales below this are treated as infinite (coarsest level), in intensity
      units; 0 (default) disables.
    - ``grad_th``: gradient magnitudes below this are set to zero (intensity units per pixel);
      default 0.
    - ``Ip_th``: gradients are set to zero where the (half-resolution) intensity is <= this
      (intensity units); default 0.
    - ``pulling_scheme``: "libapr" (the default; LibAPR / pyapr 1.0.7: the 3x3 neighbours of every
      cell that holds particles two or more levels finer are refined too) or "minimal" (an aprlib
      extension: the smallest cell set with one-level grading). Both satisfy the same resolution
      bound.

    The defaults are LibAPR's (pyapr 1.0.7) except ``sigma_th``: LibAPR's 0 leaves, with smoothing
    on, the local intensity scale of flat regions at float rounding noise, so the structure there
    is arbitrary and changes when the image is multiplied by anything but a power of two (pyapr
    1.0.7's does too), and form_apr warns. A floor relative to the image's range keeps flat
    regions coarse, does not warn, and follows the image's scale. :meth:`libapr` gives LibAPR's
    defaults exactly (``sigma_th = 0``, with the warning). The other thresholds are absolute
    intensities, as in LibAPR: scale them with the image if its range may vary.
    """

    rel_error: float = 0.1
    gradient_smoothing: float = 3.0
    sigma_th: float | None = None
    sigma_th_max: float = 0.0
    grad_th: float = 0.0
    Ip_th: float = 0.0
    pulling_scheme: str = "libapr"

    @classmethod
    def libapr(cls, **changes) -> "APRParameters":
        """LibAPR's (pyapr 1.0.7) defaults: E = 0.1, lambda = 3, sigma_th = sigma_th_max = grad_th =
        Ip_th = 0, LibAPR's pulling scheme (aprlib's defaults until issue 41), with ``changes``
        (field=value) applied. form_apr warns about ``sigma_th = 0`` with smoothing, as LibAPR does."""
        return cls(rel_error=0.1, gradient_smoothing=3.0, sigma_th=0.0, sigma_th_max=0.0, grad_th=0.0, Ip_th=0.0,
                   pulling_scheme="libapr").replace(**changes)

    def __post_init__(self):
        for name in ("rel_error", "gradient_smoothing", "sigma_th", "sigma_th_max", "grad_th", "Ip_th"):
            value = getattr(self, name)
            if name == "sigma_th" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                none = " or None (a fraction of the image's range)" if name == "sigma_th" else ""
                raise TypeError(f"{name} must be a real number{none}, got {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value}")
        if not isinstance(self.pulling_scheme, str):
            raise TypeError(f"pulling_scheme must be a str, got {type(self.pulling_scheme).__name__}")
        if self.rel_error <= 0:
            raise ValueError(f"rel_error (E) must be > 0, got {self.rel_error}")
        if self.gradient_smoothing < 0:
            raise ValueError(f"gradient_smoothing (lambda) must be >= 0, got {self.gradient_smoothing}")
        if (self.sigma_th is not None and self.sigma_th < 0) or self.sigma_th_max < 0:
            raise ValueError("sigma_th and sigma_th_max must be >= 0")
        if self.pulling_scheme not in ("libapr", "minimal"):
            raise ValueError(f"pulling_scheme must be 'libapr' or 'minimal', got {self.pulling_scheme!r}")

    def for_image(self, image) -> "APRParameters":
        """These parameters with ``sigma_th`` in the image's intensity units: the value
        :func:`form_apr` uses for ``image`` ((H, W) or (H, W, 3)) when ``sigma_th`` is None
        (``SIGMA_TH_FRACTION`` of its range); unchanged when ``sigma_th`` is a number."""
        if self.sigma_th is not None:
            return self
        img, max_abs = _as_float_image(image, "image", True)
        e = _power_of_two_exponent(max_abs)
        work = np.ldexp(img, -e) if e else img
        return self.replace(sigma_th=math.ldexp(_relative_sigma_th(to_grayscale(work) if work.ndim == 3 else work), e))

    def replace(self, **changes) -> "APRParameters":
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise TypeError(f"unknown APR parameter(s) {unknown}; the parameters are "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


#: The thesis's formation setting, the one home of the values the book and the training loops use
#: (:class:`aprlib.train.InputSpec`'s defaults, ``aprbook.apr_stats``' "thesis" setting,
#: ``aprbook.scaling.FORMATION``): E = 0.1 (the networks' input in 4.1.3), no gradient smoothing
#: (lambda = 0, the closest match to the thesis's Fig 4.2) and an intensity-scale floor sigma_th = 0.01
#: (1% of the [0, 1] intensity range, which keeps the scale finite in flat regions); LibAPR's
#: defaults for the rest.
THESIS_FORMATION = APRParameters(rel_error=0.1, gradient_smoothing=0.0, sigma_th=0.01)


@functools.lru_cache(maxsize=64)
def bspline_recursion(lam: float, tol: float = 1e-7) -> tuple[float, float, float, int]:
    """Coefficients (b1, b2, norm, k) of the recursive cubic smoothing B-spline with parameter lam.

    The filter is 1 / (B3(z) + lam (z - 2 + 1/z)^2) (Unser, Aldroubi & Eden 1993), factored into a
    causal and an anti-causal 2nd-order recursion y[n] = x[n] + b1 y[n-1] + b2 y[n-2] whose poles
    p1, p2 are the two roots inside the unit circle (a complex-conjugate pair for lam > 1/144, two
    real roots below): b1 = p1 + p2, b2 = -p1 p2. norm makes the DC gain 1, and k mirrored
    boundary samples (|p|^k < tol) initialise each recursion.
    """
    if lam <= 0:
        raise ValueError("the smoothing B-spline needs lambda > 0")
    poly = lam * np.poly1d([1, -4, 6, -4, 1]) + np.poly1d([1, 4, 1, 0]) / 6.0
    roots = np.roots(poly.coeffs)
    inside = roots[np.abs(roots) < 1]
    if len(inside) != 2:
        raise ValueError(f"unexpected smoothing B-spline poles for lambda={lam}: {roots}")
    p1, p2 = inside
    b1, b2 = (p1 + p2).real, -(p1 * p2).real
    norm = (1 - b1 - b2) ** 2
    k = int(math.ceil(math.log(tol) / math.log(np.abs(inside).max())))
    return float(b1), float(b2), float(norm), k


def as_float_image(image, name: str = "image", allow_rgb: bool = True) -> np.ndarray:
    """Validate an image and return it as C-contiguous float32, shape (H, W) or (H, W, 3).

    Raises TypeError for unsupported types and dtypes (anything but real float or integer
    arrays) and ValueError for wrong shapes (RGBA included: composite the alpha channel first),
    empty images, NaN or infinite values, and finite values beyond the float32 range.
    """
    return _as_float_image(image, name, allow_rgb)[0]


def _real_array(obj, name: str) -> np.ndarray:
    """``obj`` (an array, nested lists or a torch tensor) as a numpy array of a float or integer dtype;
    TypeError naming ``name`` for anything else, ValueError for ragged nested lists."""
    if hasattr(obj, "detach"):  # torch tensor
        obj = obj.detach().cpu().numpy()
    if obj is None or isinstance(obj, (str, bytes)):
        raise TypeError(f"{name} must be an array, got {type(obj).__name__}")
    try:
        arr = np.asarray(obj)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{name} is not a rectangular array: {e}") from None
    if arr.dtype.kind not in _SUPPORTED_KINDS:
        raise TypeError(f"{name} must have a float or integer dtype, got {arr.dtype}")
    return arr


def _as_float_image(image, name: str, allow_rgb: bool) -> tuple[np.ndarray, float]:
    """:func:`as_float_image` and the largest magnitude of the result, from one pass over it
    (``_core.max_abs_finite``: finiteness and max |value| together, without the GIL)."""
    arr = _real_array(image, name)
    rgb = allow_rgb and arr.ndim == 3 and arr.shape[-1] == 3
    if allow_rgb and arr.ndim == 3 and arr.shape[-1] == 4:
        raise ValueError(f"{name} has 4 channels (RGBA?), got shape {arr.shape}: aprlib takes grayscale "
                         f"(H, W) or RGB (H, W, 3) images; composite the alpha channel onto a background "
                         f"first (aprlib.data.natural.load_rgb composites onto black)")
    if arr.ndim != 2 and not rgb:
        expected = "(H, W) or (H, W, 3)" if allow_rgb else "(H, W)"
        hint = "; for a (Z, Y, X) volume pass ndim=3" if arr.ndim == 3 else ""
        raise ValueError(f"{name} must be 2D {expected}, got shape {arr.shape}{hint}")
    if arr.size == 0 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return _finite_float32(arr, name, "image")


def _finite_float32(arr: np.ndarray, name: str, what: str) -> tuple[np.ndarray, float]:
    """``arr`` as a C-contiguous float32 array and its largest finite magnitude; ValueError naming
    ``name`` for NaN or infinite values, or finite values beyond the float32 range (``what``: 'image'
    or 'volume', for the message)."""
    with np.errstate(over="ignore"):  # an overflow is reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    # Integers convert to finite floats (|int64| < 2**64 < float32 max), and floats of at most 32
    # bits exactly; so a non-finite value of `out` is a NaN or infinity of the input, or a finite
    # float64 (or longer) value beyond the float32 range.
    max_abs, first_bad = _core.max_abs_finite(out)
    if first_bad >= 0:
        if arr.dtype.itemsize <= 4 or not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        raise ValueError(f"{name} has finite values beyond the float32 range (largest magnitude "
                         f"{float(np.abs(arr).max()):.3g} > {float(np.finfo(np.float32).max):.3g}): aprlib "
                         f"computes in float32; rescale the {what}")
    return out, max_abs


def _power_of_two_exponent(max_abs: float) -> int:
    """k such that max_abs / 2**k lies in (0.5, 1] (0 for an all-zero image)."""
    if max_abs == 0.0:
        return 0
    mantissa, exponent = math.frexp(max_abs)  # m = mantissa * 2**exponent, mantissa in [0.5, 1)
    return exponent - 1 if mantissa == 0.5 else exponent


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _scaled_threshold(value: float, e: int) -> float:
    """An absolute threshold divided by 2**e (exact), clipped to the float32 range the kernels use
    (a threshold beyond every image value acts the same clipped)."""
    return min(max(math.ldexp(float(value), -e), -_FLOAT32_MAX), _FLOAT32_MAX)


def _relative_sigma_th(gray: np.ndarray) -> float:
    """The default sigma_th of a (power-of-two scaled) grayscale image, in its units:
    SIGMA_TH_FRACTION of max - min, or of max |value| for an image of one value (0.01 if all 0)."""
    hi, lo = float(gray.max()), float(gray.min())  # float64: no overflow
    spread = hi - lo if hi > lo else max(abs(hi), abs(lo))
    return SIGMA_TH_FRACTION * (spread if spread > 0 else 1.0)


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (H, W) luma with skimage.color.rgb2gray's weights, float32."""
    return np.ascontiguousarray(rgb @ _GRAY_WEIGHTS.astype(np.float32), dtype=np.float32)


def form_apr(image, params: APRParameters | None = None, *, ndim: int = 2, **overrides) -> APR:
    """Form the APR of a 2D image, or (``ndim=3``) of a 3D volume.

    - ``image``: (H, W) float or integer array (any H, W >= 1), or (H, W, 3) RGB, in which case
      the particle cells are those of the grayscale image and each channel is sampled as the
      mean over each cell (thesis 4.2.2). Finite values only (NaN or inf raise ValueError), in
      the float32 range; the structure does not depend on the image's scale (module docstring).
    - ``params``: APRParameters (default ``APRParameters()``: aprlib's recommended setting, sigma_th
      1% of the image's range); keyword overrides (e.g. ``rel_error=0.4``) replace its fields.
      ``APRParameters.libapr()`` gives LibAPR's defaults.

    - ``ndim``: 2 (the default: ``image`` is an image as above) or 3: ``image`` is a (Z, Y, X) volume
      (grayscale; the 3D pipeline is LibAPR's, :func:`~aprlib.apr.formation.form_volume_cells`) and the APR is 3D.

    Returns an APR whose intensities have shape (N,) (grayscale) or (N, 3) (RGB): the cell means
    of the image as given, always finite (means are summed in double where float32 sums would
    overflow). Its ``params`` are those used, with ``sigma_th`` in intensity units
    (:meth:`APRParameters.for_image`), so ``form_apr(image, apr.params)`` forms it again.
    """
    if ndim == 3 and not isinstance(ndim, bool):
        cells, means, used = form_volume_cells(image, params, **overrides)
        # the kernel's cells, tree and parents (those of aprlib.apr.cells.structure_from_cells): not
        # checked again
        return APR._from_kernel(cells, means, used)
    if ndim != 2 or isinstance(ndim, bool):
        raise ValueError(f"ndim must be 2 (an image) or 3 (a volume), got {ndim!r}")
    params = _resolve_params(params, overrides)
    img, max_abs = _as_float_image(image, "image", True)  # one pass: finiteness and max |img|
    _warn_sigma_th_zero(params, "image", stacklevel=2)
    # Exact rescaling by a power of two into the range where float32 neither overflows nor
    # underflows; the absolute thresholds follow. A no-op when the maximum is already in (0.5, 1].
    e = _power_of_two_exponent(max_abs)
    work = np.ldexp(img, -e) if e else img
    gray = to_grayscale(work) if work.ndim == 3 else work
    params, settings = _kernel_settings(params, gray, e)
    # The structure and the cell means of the image as given, in one call (no Python round trip,
    # and the kernels' own cells are not re-checked); img was checked finite above.
    s, means = _core.form_apr(gray, img if img.ndim == 3 else img[..., None], **settings)
    return APR._from_kernel(s, means if img.ndim == 3 else means[:, 0], params)


def _resolve_params(params, overrides: dict) -> APRParameters:
    """``params`` (default ``APRParameters()``) with the keyword ``overrides`` applied."""
    params = APRParameters() if params is None else params
    if not isinstance(params, APRParameters):
        raise TypeError(f"params must be an APRParameters, got {type(params).__name__}")
    return params.replace(**overrides) if overrides else params


def _warn_sigma_th_zero(params: APRParameters, what: str, stacklevel: int) -> None:
    """LibAPR's warning about sigma_th = 0 with smoothing (``what``: "image" or "volume")."""
    if params.sigma_th == 0 and params.gradient_smoothing > 0:
        warnings.warn("sigma_th = 0 with gradient smoothing: in flat regions the local intensity scale is the "
                      "smoothing's float rounding noise, so the structure there depends on rounding (LibAPR "
                      "warns about sigma_th = 0 too); set sigma_th > 0, or leave it at its default (None: 1% of "
                      f"the {what}'s range, APRParameters())",
                      RuntimeWarning, stacklevel=stacklevel + 1)


def _kernel_settings(params: APRParameters, scaled: np.ndarray, e: int) -> tuple[APRParameters, dict]:
    """The formation kernels' parameters (``_core.form_apr`` / ``form_apr3d`` keywords) for an image or
    volume already multiplied by 2**-e (``scaled``, grayscale): the absolute thresholds scaled alike,
    sigma_th = None resolved to SIGMA_TH_FRACTION of ``scaled``'s range (and recorded, unscaled, in the
    returned parameters), the smoothing B-spline's recursion coefficients."""
    if params.sigma_th is None:  # SIGMA_TH_FRACTION of the range, here in the scaled units; recorded unscaled
        sigma_th = _relative_sigma_th(scaled)
        params = params.replace(sigma_th=math.ldexp(sigma_th, e))
    else:
        sigma_th = _scaled_threshold(params.sigma_th, e)
    lam = float(params.gradient_smoothing)
    b1, b2, norm, k = bspline_recursion(lam) if lam > 0 else (0.0, 0.0, 1.0, 0)
    return params, dict(rel_error=float(params.rel_error), grad_th=_scaled_threshold(params.grad_th, e),
                        Ip_th=_scaled_threshold(params.Ip_th, e), sigma_th=sigma_th,
                        sigma_th_max=_scaled_threshold(params.sigma_th_max, e), smooth=lam > 0, b1=b1, b2=b2,
                        norm=norm, bspline_k=k, minimal_grading=params.pulling_scheme == "minimal")


# --- 3D volumes -----------------------------------------------------------------------------------


def as_float_volume(volume, name: str = "volume") -> tuple[np.ndarray, float]:
    """Validate a volume; return it as C-contiguous float32 (Z, Y, X) and its largest magnitude.

    Raises TypeError for anything but a real float or integer array (or torch tensor), and
    ValueError for a shape other than 3D, an empty volume, NaN or infinite values, or finite
    values beyond the float32 range.
    """
    arr = _real_array(volume, name)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be 3D (Z, Y, X), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return _finite_float32(arr, name, "volume")


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
      range); keyword overrides replace its fields, as in :func:`~aprlib.form_apr`.
      ``APRParameters.libapr()`` gives LibAPR's defaults (sigma_th = 0, which warns).

    Returns ``(cells, means, params_used)``:

    - ``cells``: dict with ``depth``, ``height``, ``width`` (Z, Y, X, ints), ``level_min``,
      ``level_max`` (ints; ``level_range3d``), ``level_offsets`` ((level_max + 2,) int64: the
      cells of level l are ``[level_offsets[l], level_offsets[l + 1])``), ``level`` ((N,) int8) and
      ``z``, ``y``, ``x`` ((N,) int32 cell indices at their level), sorted by (level, z, y, x). A
      cell of level l with indices (z, y, x) covers the voxels ``[z * s, (z + 1) * s)`` x
      ``[y * s, (y + 1) * s)`` x ``[x * s, (x + 1) * s)`` with ``s = 2 ** (level_max - l)``,
      clipped to the volume; the cells partition the volume. With them the tree of their ancestors
      and the parent indices, as :func:`aprlib.apr.cells.structure_from_cells` defines them:
      ``parent`` ((N,) int64, the tree index of each cell's parent, -1 at level_min),
      ``tree_offsets`` (as ``level_offsets``), ``tree_level`` ((T,) int8), ``tree_z``, ``tree_y``,
      ``tree_x`` ((T,) int32), sorted by (level, z, y, x), and ``tree_parent`` ((T,) int64).
    - ``means``: (N,) float32, the mean of the volume as given (in its own units) over each cell.
    - ``params_used``: the parameters with ``sigma_th`` in the volume's intensity units, so that
      ``form_volume_cells(volume, params_used)`` forms the same cells.
    """
    params = _resolve_params(params, overrides)
    vol, max_abs = as_float_volume(volume)
    _warn_sigma_th_zero(params, "volume", stacklevel=2)
    e = _power_of_two_exponent(max_abs)
    work = np.ldexp(vol, -e) if e else vol
    params, settings = _kernel_settings(params, work, e)
    # The cells of the scaled volume (the structure does not change: module docstring), the means
    # of the volume as given (means_of), in one call.
    cells, means = _core.form_apr3d(work, **settings, means_of=vol if e else None,
                                    check_finite=False)  # as_float_volume checked vol (and so work = vol * 2**-e)
    return cells, means, params

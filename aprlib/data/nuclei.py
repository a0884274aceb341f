"""Synthetic fluorescence microscopy of nuclei, in 2D and 3D, with ground-truth masks.

Images ``(H, W)`` and volumes ``(Z, Y, X)`` of bright, textured objects on a dark background, as a
widefield or confocal microscope records stained nuclei: for training segmentation networks (APR
and pixel U-Nets) against exact ground truth, and for benchmarks of the APR's cost against volume
size and compression ratio (:func:`sparse_volume`: few objects in a large volume).

The dimension is the length of ``shape``: one code path draws the objects for any ``ndim``.

Objects (:class:`Nucleus`), two kinds:

* nuclei: filled ellipses / ellipsoids with random semi-axes (the largest drawn uniformly from
  ``radius_range``, the others that times a ratio from ``axis_ratio_range``), random orientation
  (uniform on the rotation group) and a mild low-frequency radial perturbation: the boundary along
  the unit direction ``u`` from the centre is the ellipsoid's scaled by ``1 + a f(u)``, with
  ``f(u) = sum_k w_k cos(nu (omega_k . u) + phi_k) / sum_k |w_k|`` (4 terms, random unit vectors
  ``omega_k``, so ``|f| <= 1``), ``a = perturbation`` and ``nu = perturbation_frequency``;
* shells (a fraction ``shell_fraction`` of the objects): the same shapes hollowed out, keeping a
  wall of radial thickness ``t`` pixels (from ``shell_thickness_range``, measured along rays from
  the centre) inside the boundary: membrane-like rings / hollow spheres.

Each object is multiplied by its own smooth texture ``T = max(0, 1 + s g)``, ``g`` Gaussian white
noise filtered by a Gaussian of ``texture_sigma`` pixels and scaled to unit variance (away from the
edges of the object's box), ``s = texture_strength``; and has its own brightness ``b`` drawn
uniformly from ``brightness_range``.

Overlap: none. Objects are placed one after another (largest first) at uniformly random sub-pixel
centres, rejecting a centre whose bounding sphere (radius ``R = r_max (1 + a)``) comes closer than
``min_gap`` pixels to an earlier one's, so objects never overlap and are at least ``min_gap`` apart;
each lies at least one pixel inside the image border (no object pixel on the outermost rows). When
no free place is found (density too high; the placement is restarted up to 8 times first)
:func:`generate` raises ValueError. Random sequential placement of spheres jams well below the
densest packing, and sooner in small volumes (the border margin): 12 default nuclei in 64^3 (their
bounding spheres fill about 19% of it) fail for about 5% of the seeds, 8 (12%) for none of 200.

Number of objects: ``n_objects``, or ``round(density * pixels / 1e6)`` (``density`` in objects per
10**6 pixels / voxels), by default ``DEFAULT_DENSITY[ndim]`` (23 objects in 256^2, 8 in 64^3).

Imaging, in this order:

1. the clean image: ``background`` everywhere, ``background + b T`` on the pixels of each object
   (pixel ``(i, j[, k])`` has its centre at those integer coordinates; a pixel belongs to the object
   whose region holds its centre);
2. blur by the point spread function, a Gaussian of standard deviation ``psf_sigma`` pixels
   laterally and ``psf_sigma_z`` along axis 0 of a volume (``None``: isotropic);
3. shot noise: a pixel of expected intensity ``I`` receives ``N ~ Poisson(photon_scale I)``
   photons and reads ``N / photon_scale`` (``photon_scale=None``: no shot noise);
4. read noise: plus Gaussian noise of standard deviation ``read_noise``.

Units: lengths in pixels (voxels), angles implicit in rotation matrices; intensities in *intensity
units* in which the background is ``background`` and an object pixel of texture 1 is
``background + b`` before blur; the expected value of the output is the blurred clean image
(:func:`generate` ``image``: float32, unclipped, so read noise may make a few values negative).
``photon_scale`` is in photons per intensity unit: the signal-to-noise ratio of a pixel of
intensity ``I`` is ``sqrt(photon_scale I)`` without read noise.

Ground truth: ``labels`` (int32, 0 background, objects numbered ``1..n`` in placement order,
i.e. largest bounding radius first) and ``mask = labels > 0`` (bool), both of the clean objects
(before blur and noise).

Cost: each object is drawn inside its bounding box only (time and memory proportional to the
boxes' volume); the whole image sees one blur (``scipy.ndimage.gaussian_filter`` in float32) and
one noise pass in slabs of about 2**20 pixels (no full-size float64 temporary). A 256^3 volume
with 8 nuclei takes about 2 s (on two busy cores; 0.3 s of it without blur and noise) and a peak of
about 210 MiB, the 144 MiB of the returned arrays included (``benchmarks/bench_nuclei.py``).

Seeding: ``generate(shape, params, seed)`` is deterministic given its arguments; ``seed`` is a
non-negative int or a sequence of them (``numpy.random.default_rng`` entropy; as there, trailing
zeros do not change the stream: ``(5, 0)`` draws what ``5`` draws). Item ``i`` of
:class:`NucleiDataset` with seed ``s`` is ``generate(shape, params, (s, DATASET_TAG, i))``, the tag
keeping items apart from plain ``generate(shape, params, s)`` calls.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "DEFAULT_DENSITY",
    "DATASET_TAG",
    "NucleiParams",
    "Nucleus",
    "NucleiSample",
    "ObjectPatch",
    "generate",
    "object_patch",
    "sparse_volume",
    "normalize_percentile",
    "NucleiDataset",
]

#: objects per 10**6 pixels (voxels) when neither ``n_objects`` nor ``density`` is given, by ndim:
#: 23 objects in 256^2, 8 in 64^3, 63 in 128^3 (about 6.5% foreground in 2D and 3D with the default radii)
DEFAULT_DENSITY = {2: 350.0, 3: 30.0}
#: middle word of the seeds of :class:`NucleiDataset` items: ``(seed, DATASET_TAG, i)``
DATASET_TAG = 0x4E0C1
_N_HARMONICS = 4  # terms of the radial perturbation f(u)
_SLAB = 1 << 20  # pixels per slab of the noise pass
_CANDIDATES = 64  # candidate centres drawn at once
_MAX_TRIES = 32 * _CANDIDATES  # candidate centres per object before a placement gives up
_RESTARTS = 8  # placements before generate gives up

SeedLike = Union[int, Sequence[int]]


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _pair(value: Any, name: str) -> Tuple[float, float]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}") from None
    lo, hi = _real(lo, name), _real(hi, name)
    if lo > hi:
        raise ValueError(f"{name} must satisfy min <= max, got {value!r}")
    return lo, hi


@dataclass(frozen=True)
class NucleiParams:
    """Parameters of the objects and of the imaging (lengths in pixels, intensities in intensity
    units; see the module docstring for the model).

    Attributes:

    - ``n_objects``: number of objects per image (int >= 0), or None.
    - ``density``: objects per 10**6 pixels (voxels) of the image, or None: an image of ``P`` pixels
      holds ``round(density * P / 1e6)`` objects. At most one of ``n_objects`` and
      ``density`` may be given; with neither, the density is ``DEFAULT_DENSITY[ndim]`` (350
      in 2D, 30 in 3D: 23 objects in 256^2, 8 in 64^3).
    - ``radius_range``: ``(min, max)`` largest semi-axis ``r`` of an object before perturbation,
      uniform, px (> 0).
    - ``axis_ratio_range``: ``(min, max)`` ratio of each other semi-axis to ``r``, uniform and drawn
      per axis, in ``(0, 1]``.
    - ``perturbation``: relative amplitude ``a`` of the low-frequency radial perturbation, ``[0, 0.5)``.
    - ``perturbation_frequency``: angular frequency ``nu`` of its terms (> 0; about the number of
      bumps per half turn).
    - ``shell_fraction``: probability that an object is a shell (hollow), ``[0, 1]``.
    - ``shell_thickness_range``: ``(min, max)`` radial wall thickness of shells, px, ``min >= 1``.
    - ``min_gap``: least distance between the bounding spheres of two objects, px (>= 0).
    - ``brightness_range``: ``(min, max)`` object brightness ``b`` above background, intensity
      units (> 0).
    - ``texture_strength``: ``s`` of the texture ``max(0, 1 + s g)`` (>= 0; 0: uniform objects).
    - ``texture_sigma``: smoothing scale of the texture noise, px (>= 0; 0: white noise).
    - ``background``: background intensity (>= 0).
    - ``psf_sigma``: standard deviation of the Gaussian PSF along every axis (the lateral ones of a
      volume), px (>= 0; 0: no blur).
    - ``psf_sigma_z``: the PSF's along axis 0 of a volume, px (>= 0), or None for ``psf_sigma``
      (isotropic); not used in 2D.
    - ``photon_scale``: photons per intensity unit for the shot noise (> 0), or None (no shot
      noise).
    - ``read_noise``: standard deviation of the additive Gaussian read noise, intensity units (>= 0).

    With the defaults a background pixel reads 0.1 +- 0.024 (shot and read noise) and a pixel of a
    nucleus of the mean brightness 0.7 where its texture is 1 about 0.8 +- 0.064 (before blur).
    """

    n_objects: Optional[int] = None
    density: Optional[float] = None
    radius_range: Tuple[float, float] = (6.0, 12.0)
    axis_ratio_range: Tuple[float, float] = (0.6, 1.0)
    perturbation: float = 0.1
    perturbation_frequency: float = 3.0
    shell_fraction: float = 0.2
    shell_thickness_range: Tuple[float, float] = (1.5, 3.0)
    min_gap: float = 1.0
    brightness_range: Tuple[float, float] = (0.4, 1.0)
    texture_strength: float = 0.3
    texture_sigma: float = 2.0
    background: float = 0.1
    psf_sigma: float = 1.0
    psf_sigma_z: Optional[float] = None
    photon_scale: Optional[float] = 200.0
    read_noise: float = 0.01

    def __post_init__(self) -> None:
        n, d = self.n_objects, self.density
        if n is not None and d is not None:
            raise ValueError(f"give at most one of n_objects and density, got n_objects={n!r} and density={d!r}")
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
                raise ValueError(f"n_objects must be a non-negative integer or None, got {n!r}")
            object.__setattr__(self, "n_objects", int(n))
        if d is not None:
            d = _real(d, "density")
            if d < 0:
                raise ValueError(f"density must be >= 0 (objects per 10**6 pixels) or None, got {self.density!r}")
            object.__setattr__(self, "density", d)
        r0, r1 = _pair(self.radius_range, "radius_range")
        if r0 <= 0:
            raise ValueError(f"radius_range must be positive (px), got {self.radius_range!r}")
        q0, q1 = _pair(self.axis_ratio_range, "axis_ratio_range")
        if not (0 < q0 and q1 <= 1):
            raise ValueError(f"axis_ratio_range must lie in (0, 1], got {self.axis_ratio_range!r}")
        a = _real(self.perturbation, "perturbation")
        if not 0 <= a < 0.5:
            raise ValueError(f"perturbation must be in [0, 0.5), got {self.perturbation!r}")
        nu = _real(self.perturbation_frequency, "perturbation_frequency")
        if nu <= 0:
            raise ValueError(f"perturbation_frequency must be > 0, got {self.perturbation_frequency!r}")
        if r0 * q0 * (1 - a) < 1.0:
            raise ValueError(
                "objects too small: the smallest semi-axis radius_range[0] * axis_ratio_range[0] * (1 - perturbation) "
                f"must be >= 1 px so that every object covers pixels, got {r0 * q0 * (1 - a):.3g}")
        f = _real(self.shell_fraction, "shell_fraction")
        if not 0 <= f <= 1:
            raise ValueError(f"shell_fraction must be in [0, 1], got {self.shell_fraction!r}")
        t0, t1 = _pair(self.shell_thickness_range, "shell_thickness_range")
        if t0 < 1:
            raise ValueError(f"shell_thickness_range must be >= 1 px, got {self.shell_thickness_range!r}")
        b0, b1 = _pair(self.brightness_range, "brightness_range")
        if b0 <= 0:
            raise ValueError(f"brightness_range must be positive (intensity units), got {self.brightness_range!r}")
        values = {}
        for name in ("min_gap", "texture_strength", "texture_sigma", "background", "psf_sigma", "read_noise"):
            v = _real(getattr(self, name), name)
            if v < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
            values[name] = v
        if self.psf_sigma_z is not None:
            v = _real(self.psf_sigma_z, "psf_sigma_z")
            if v < 0:
                raise ValueError(f"psf_sigma_z must be >= 0 or None, got {self.psf_sigma_z!r}")
            values["psf_sigma_z"] = v
        if self.photon_scale is not None:
            v = _real(self.photon_scale, "photon_scale")
            if v <= 0:
                raise ValueError(f"photon_scale must be > 0 (photons per intensity unit) or None, got "
                                 f"{self.photon_scale!r}")
            values["photon_scale"] = v
        values.update(radius_range=(r0, r1), axis_ratio_range=(q0, q1), perturbation=a, perturbation_frequency=nu,
                      shell_fraction=f, shell_thickness_range=(t0, t1), brightness_range=(b0, b1))
        for name, v in values.items():
            object.__setattr__(self, name, v)

    @property
    def max_bound(self) -> float:
        """Largest bounding radius an object can have, px: ``radius_range[1] * (1 + perturbation)``."""
        return self.radius_range[1] * (1.0 + self.perturbation)

    def count(self, shape: Sequence[int]) -> int:
        """Number of objects in an image of ``shape`` ((H, W) or (Z, Y, X))."""
        shape = _check_shape(shape)
        if self.n_objects is not None:
            return self.n_objects
        density = DEFAULT_DENSITY[len(shape)] if self.density is None else self.density
        return int(round(density * math.prod(shape) / 1e6))


@dataclass(frozen=True)
class Nucleus:
    """One object, fully specified (lengths in px, coordinates ``(axis 0, axis 1[, axis 2])``).

    ``rotation`` is an orthonormal ``ndim x ndim`` matrix (rows of tuples) whose column ``j`` is
    the direction of semi-axis ``semi_axes[j]`` in image coordinates; ``harmonics`` the
    perturbation's unit vectors ``omega_k`` and ``weights``/``phases`` its ``w_k``, ``phi_k``;
    ``bound`` the bounding radius ``max(semi_axes) * (1 + perturbation)``; ``thickness`` the wall
    of a shell (0 for a filled nucleus); ``texture_seed`` seeds the object's texture noise.
    """

    kind: str  # "nucleus" or "shell"
    center: Tuple[float, ...]
    semi_axes: Tuple[float, ...]
    rotation: Tuple[Tuple[float, ...], ...]
    perturbation: float
    frequency: float
    harmonics: Tuple[Tuple[float, ...], ...]
    weights: Tuple[float, ...]
    phases: Tuple[float, ...]
    thickness: float
    brightness: float
    bound: float
    texture_seed: int

    @property
    def ndim(self) -> int:
        return len(self.center)


class ObjectPatch(NamedTuple):
    """An object drawn in its bounding box: ``box`` a tuple of slices into the image, ``inside``
    bool of the box's shape (pixels of the object), ``texture`` float32 of the box's shape (the
    multiplicative texture ``T >= 0``, defined on the whole box)."""

    box: Tuple[slice, ...]
    inside: np.ndarray
    texture: np.ndarray


class NucleiSample(NamedTuple):
    """What :func:`generate` returns.

    ``image`` float32 ``shape`` in intensity units (blurred and noisy); ``mask`` bool ``shape``,
    True on object pixels; ``labels`` int32 ``shape``, 0 background and ``k`` on the pixels of
    ``objects[k - 1]``; ``objects`` the :class:`Nucleus` specs.
    """

    image: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    objects: Tuple[Nucleus, ...]


def _check_shape(shape: Any) -> Tuple[int, ...]:
    if isinstance(shape, (str, bytes)):
        raise ValueError(f"shape must be a sequence of 2 or 3 integers, got {shape!r}")
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a sequence of 2 or 3 integers ((H, W) or (Z, Y, X)), got {shape!r}") from None
    if len(dims) not in (2, 3):
        raise ValueError(f"shape must have length 2 (H, W) or 3 (Z, Y, X), got {shape!r}")
    for v in dims:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"shape must hold integers, got {shape!r}")
        if v <= 0:
            raise ValueError(f"shape must be positive, got {shape!r}")
    return tuple(int(v) for v in dims)


def _check_seed(seed: Any) -> Union[int, Tuple[int, ...]]:
    def ok(v):
        return not isinstance(v, bool) and isinstance(v, numbers.Integral) and v >= 0

    if ok(seed):
        return int(seed)
    try:
        parts = tuple(seed)
    except TypeError:
        parts = None
    if parts and all(ok(v) for v in parts):
        return tuple(int(v) for v in parts)
    raise ValueError(f"seed must be a non-negative integer or a non-empty sequence of them, got {seed!r}")


def _check_params(params: Any) -> NucleiParams:
    if not isinstance(params, NucleiParams):
        raise ValueError(f"params must be a NucleiParams, got {type(params).__name__}")
    return params


def _random_rotation(rng: np.random.Generator, ndim: int) -> np.ndarray:
    """Uniformly random rotation (Haar measure on SO(ndim)): QR of a Gaussian matrix."""
    q, r = np.linalg.qr(rng.standard_normal((ndim, ndim)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _sample_objects(n: int, ndim: int, params: NucleiParams, rng: np.random.Generator) -> list:
    """Draw the shapes (no centres yet) of ``n`` objects: a list of dicts, largest bound first."""
    objs = []
    for _ in range(n):
        r = rng.uniform(*params.radius_range)
        ratios = rng.uniform(*params.axis_ratio_range, size=ndim - 1)
        semi = np.concatenate([[r], r * ratios])
        rot = _random_rotation(rng, ndim)
        omega = rng.standard_normal((_N_HARMONICS, ndim))
        omega /= np.linalg.norm(omega, axis=1, keepdims=True)
        weights = rng.standard_normal(_N_HARMONICS)
        phases = rng.uniform(0.0, 2.0 * math.pi, _N_HARMONICS)
        shell = rng.random() < params.shell_fraction
        thickness = rng.uniform(*params.shell_thickness_range)  # drawn for every object: same stream
        brightness = rng.uniform(*params.brightness_range)
        texture_seed = int(rng.integers(2 ** 63 - 1))
        objs.append(dict(kind="shell" if shell else "nucleus", semi_axes=tuple(float(v) for v in semi),
                         rotation=tuple(tuple(float(v) for v in row) for row in rot),
                         perturbation=params.perturbation, frequency=params.perturbation_frequency,
                         harmonics=tuple(tuple(float(v) for v in row) for row in omega),
                         weights=tuple(float(v) for v in weights), phases=tuple(float(v) for v in phases),
                         thickness=float(thickness) if shell else 0.0, brightness=float(brightness),
                         bound=float(r * (1.0 + params.perturbation)), texture_seed=texture_seed))
    objs.sort(key=lambda o: -o["bound"])  # stable: ties keep the draw order
    return objs


def _place(objs: list, shape: Tuple[int, ...], gap: float, rng: np.random.Generator) -> None:
    """Give each object a centre: uniform where its bounding sphere lies in ``[0.5, size - 1.5]``
    along every axis, at least ``gap`` from the earlier objects' spheres (random sequential
    placement). When no free place is found for an object in ``_MAX_TRIES`` candidates, the placement
    starts again from the first object, ``_RESTARTS`` times at most; then ValueError."""
    ndim = len(shape)
    size = np.asarray(shape, dtype=np.float64)
    centres = np.empty((len(objs), ndim))
    bounds = np.array([o["bound"] for o in objs])
    worst = 0
    for _ in range(_RESTARTS):
        for k, o in enumerate(objs):
            lo = 0.5 + o["bound"]
            hi = size - 1.5 - o["bound"]
            for _ in range(0, _MAX_TRIES, _CANDIDATES):
                cand = lo + rng.random((_CANDIDATES, ndim)) * (hi - lo)
                if k:
                    dist = np.linalg.norm(cand[:, None, :] - centres[None, :k, :], axis=2)
                    free = np.all(dist >= bounds[None, :k] + o["bound"] + gap, axis=1)
                else:
                    free = np.ones(_CANDIDATES, dtype=bool)
                if free.any():
                    centres[k] = cand[np.argmax(free)]
                    break
            else:
                worst = max(worst, k)
                break
        else:
            for o, c in zip(objs, centres):
                o["center"] = tuple(float(v) for v in c)
            return
    covered = sum(_ball(ndim, b) for b in bounds[:worst + 1]) / math.prod(shape)
    raise ValueError(
        f"density too high: no free place for object {worst + 1} of {len(objs)} in an image of shape {tuple(shape)} "
        f"({_RESTARTS} placements of {_MAX_TRIES} tries per object; the bounding spheres of objects 1 to {worst + 1} "
        f"would cover {covered:.0%} of it); lower n_objects or density, radius_range or min_gap, or enlarge the shape")


def _ball(ndim: int, r: float) -> float:
    """Area (2D) or volume (3D) of a ball of radius ``r``."""
    return math.pi * r * r if ndim == 2 else 4.0 / 3.0 * math.pi * r ** 3


def _texture_std(sigma: float, ndim: int) -> float:
    """Standard deviation of unit white noise after scipy's Gaussian filter of ``sigma`` (truncate 4)."""
    if sigma == 0:
        return 1.0
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    w /= w.sum()
    return float(np.sqrt(np.sum(w * w)) ** ndim)


def object_patch(obj: Nucleus, texture_strength: float = NucleiParams.texture_strength,
                 texture_sigma: float = NucleiParams.texture_sigma) -> ObjectPatch:
    """Draw ``obj`` (one of :func:`generate`'s ``objects``) in its bounding box, for any ``ndim``:
    the pixels whose centres lie in the object and its texture (deterministic given
    ``obj.texture_seed`` and the texture parameters, which :func:`generate` takes from its
    ``params``; the defaults are ``NucleiParams()``'s). Cost proportional to the box's volume."""
    if not isinstance(obj, Nucleus):
        raise TypeError(f"obj must be a Nucleus, got {type(obj).__name__}")
    for name, v in (("texture_strength", texture_strength), ("texture_sigma", texture_sigma)):
        if _real(v, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {v!r}")
    ndim = obj.ndim
    c = np.asarray(obj.center)
    lo = np.floor(c - obj.bound).astype(int)
    hi = np.ceil(c + obj.bound).astype(int) + 1
    lo = np.maximum(lo, 0)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    bshape = tuple(int(b - a) for a, b in zip(lo, hi))
    # offsets from the centre along each image axis, broadcastable to the box (float64 on the box only)
    dx = [(np.arange(lo[i], hi[i], dtype=np.float64) - c[i]).reshape([-1 if j == i else 1 for j in range(ndim)])
          for i in range(ndim)]
    rot = np.asarray(obj.rotation)
    semi = np.asarray(obj.semi_axes)
    q2 = np.zeros(bshape)
    for j in range(ndim):  # coordinate along the object's axis j, over its semi-axis
        yj = sum(rot[i, j] * dx[i] for i in range(ndim))
        q2 = q2 + (yj / semi[j]) ** 2
    q = np.sqrt(q2)  # ellipsoidal norm: 1 on the unperturbed boundary
    d = np.sqrt(sum(v * v for v in dx) + np.zeros(bshape))  # distance to the centre
    safe = np.where(d > 0, d, 1.0)
    f = np.zeros(bshape)
    for w, ph, om in zip(obj.weights, obj.phases, obj.harmonics):
        f += w * np.cos(obj.frequency * (sum(om[i] * dx[i] for i in range(ndim)) / safe) + ph)
    f /= max(sum(abs(w) for w in obj.weights), 1e-300)
    scale = 1.0 + obj.perturbation * f  # boundary radius along the ray: scale / (q / d)
    inside = q <= scale
    if obj.thickness > 0:
        # boundary distance along the ray R = scale * d / q; keep d >= R - t  <=>  d q >= scale d - t q
        # (the centre itself, d = 0, only where the wall is thicker than the smallest radius)
        centre_in = obj.thickness >= min(obj.semi_axes) * (1.0 - obj.perturbation)
        inside &= (d * q >= scale * d - obj.thickness * q) & ((d > 0) | centre_in)
    texture = np.ones(bshape, dtype=np.float32)
    if texture_strength > 0:
        noise = np.random.default_rng(obj.texture_seed).standard_normal(bshape, dtype=np.float32)
        if texture_sigma > 0:
            noise = ndimage.gaussian_filter(noise, texture_sigma, mode="reflect")
        texture = np.maximum(np.float32(1.0) + np.float32(texture_strength / _texture_std(texture_sigma, ndim)) * noise,
                             np.float32(0.0))
    return ObjectPatch(box, inside, texture.astype(np.float32, copy=False))


def _noise(image: np.ndarray, params: NucleiParams, rng: np.random.Generator) -> None:
    """Shot and read noise in place, slab by slab along axis 0 (float64 only per slab)."""
    if params.photon_scale is None and params.read_noise == 0:
        return
    rows = max(1, _SLAB // max(1, math.prod(image.shape[1:])))
    for start in range(0, image.shape[0], rows):
        slab = image[start:start + rows]
        if params.photon_scale is not None:
            lam = np.maximum(slab, 0.0, dtype=np.float64) * params.photon_scale
            slab[...] = rng.poisson(lam) / params.photon_scale
        if params.read_noise > 0:
            slab += np.float32(params.read_noise) * rng.standard_normal(slab.shape, dtype=np.float32)


def generate(shape: Sequence[int], params: Optional[NucleiParams] = None, seed: SeedLike = 0) -> NucleiSample:
    """One synthetic fluorescence image (``shape`` (H, W)) or volume (``shape`` (Z, Y, X)).

    Returns a :class:`NucleiSample`: ``image`` float32 (intensity units, see the module docstring),
    ``mask`` bool, ``labels`` int32 (0 background, objects 1..n), all of ``shape``, and the
    ``objects``. ``params`` defaults to ``NucleiParams()``; ``seed`` is a non-negative int or a
    sequence of them. Raises ValueError for a bad shape, a shape too small for the largest object
    (every side must be >= ``2 * params.max_bound + 2`` unless the image holds no object; note
    that a small shape holds none under a density), or too many objects to place.
    """
    shape = _check_shape(shape)
    params = _check_params(NucleiParams() if params is None else params)
    seed = _check_seed(seed)
    ndim = len(shape)
    n = params.count(shape)
    need = 2.0 * params.max_bound + 2.0
    if n and min(shape) < need:
        raise ValueError(
            f"shape {shape} too small for the objects: every side must be >= 2 * radius_range[1] * (1 + perturbation) "
            f"+ 2 = {need:.3g} px (objects lie one pixel inside the border); use a larger shape or a smaller radius_range")
    if n:  # quick necessary condition: spheres of the smallest bound (and half the gap) must fit at all
        least = _ball(ndim, params.radius_range[0] * (1 + params.perturbation) + params.min_gap / 2)
        packing = 0.9069 if ndim == 2 else 0.7405
        if n * least > packing * math.prod(shape):
            raise ValueError(
                f"density too high: {n} objects (n_objects/density) need at least {n * least:.0f} px of bounding "
                f"spheres, more than the densest packing offers in an image of shape {shape} "
                f"({packing * math.prod(shape):.0f} px); lower n_objects or density, or radius_range, or min_gap")
    rng = np.random.default_rng(seed)
    objs = _sample_objects(n, ndim, params, rng)
    _place(objs, shape, params.min_gap, rng)
    objects = tuple(Nucleus(**o) for o in objs)

    image = np.full(shape, params.background, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.int32)
    bg = np.float32(params.background)
    for k, obj in enumerate(objects, start=1):
        box, inside, texture = object_patch(obj, params.texture_strength, params.texture_sigma)
        image[box][inside] = bg + np.float32(obj.brightness) * texture[inside]
        labels[box][inside] = k
    mask = labels > 0

    sigma = params.psf_sigma
    sigmas = (sigma,) * ndim if ndim == 2 else (sigma if params.psf_sigma_z is None else params.psf_sigma_z, sigma, sigma)
    if any(s > 0 for s in sigmas):
        image = ndimage.gaussian_filter(image, sigmas, mode="reflect")
    _noise(image, params, rng)
    return NucleiSample(image, mask, labels, objects)


def sparse_volume(shape: Sequence[int] = (256, 256, 256), n_objects: int = 8, seed: SeedLike = 0,
                  params: Optional[NucleiParams] = None) -> NucleiSample:
    """A large, sparse volume for the APR benchmarks: ``n_objects`` objects (default 8) of
    ``params`` (default ``NucleiParams()``, whose count is overridden) in ``shape`` (default
    256^3). With the default parameters 8 nuclei fill about 0.06 to 0.1% of 256^3; the cost is
    that of :func:`generate` (about 2 s for 256^3).

    The APR's compression ratio of such an image is set by the background noise more than by the
    objects: the particles resolve noise above the APR's ``sigma_th``. Measured in 2D (512^2, 4
    nuclei, ``aprlib.apr.formation.form_apr`` of the percentile-normalised image, whose background
    then has a standard deviation of about 0.035): noise-free CR 67; default noise CR 1.05 at
    aprlib's default ``sigma_th`` (1% of the range), 1.7 at ``sigma_th=0.1``, 4.5 at 0.2;
    ``photon_scale=2000, read_noise=0.003`` CR 1.3, 8.9 at 0.1. For high-CR benchmarks generate
    with less noise (``params``) or set ``sigma_th`` above the background noise."""
    params = _check_params(NucleiParams() if params is None else params)
    if isinstance(n_objects, bool) or not isinstance(n_objects, numbers.Integral) or n_objects < 0:
        raise ValueError(f"n_objects must be a non-negative integer, got {n_objects!r}")
    return generate(shape, replace(params, n_objects=int(n_objects), density=None), seed)


def normalize_percentile(img: Any, pmin: float = 1.0, pmax: float = 99.8, clip: bool = False,
                         eps: float = 1e-20) -> np.ndarray:
    """``(img - lo) / (hi - lo)`` as float32, ``lo`` and ``hi`` the ``pmin``-th and ``pmax``-th
    percentiles of ``img`` (``0 <= pmin < pmax <= 100``), so they map to 0 and 1 (the usual
    normalisation of microscopy images for networks, as in CSBDeep / StarDist); with ``clip`` the
    result is clipped to ``[0, 1]``. A constant image (``hi - lo < eps``) maps to 0.
    """
    a = np.asarray(img)
    if a.size == 0:
        raise ValueError("img must not be empty")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise ValueError(f"img must hold real numbers, got dtype {a.dtype}")
    pmin, pmax = _real(pmin, "pmin"), _real(pmax, "pmax")
    if not 0 <= pmin < pmax <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= pmin < pmax <= 100, got pmin={pmin}, pmax={pmax}")
    a = a.astype(np.float32, copy=False)
    lo, hi = np.percentile(a, [pmin, pmax])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("img must be finite (its percentiles are not)")
    out = (a - np.float32(lo)) * np.float32(1.0 / max(hi - lo, eps))
    if clip:
        np.clip(out, 0.0, 1.0, out=out)
    return out


class NucleiDataset(torch.utils.data.Dataset):
    """Fixed, seeded dataset of ``n`` synthetic images or volumes of ``shape``.

    Item ``i`` is ``generate(shape, params, (seed, DATASET_TAG, i))``: it depends on ``seed`` and ``i`` only,
    not on the order of access (DataLoader workers, shuffling), and the dataset of ``n`` items is a
    prefix of any larger one with the same arguments. An item is ``(image, target)``: ``image`` a
    float32 tensor ``(1, *shape)`` (intensity units, or percentile-normalised when ``normalize`` is
    a ``(pmin, pmax)`` pair, see :func:`normalize_percentile`), ``target`` an int64 tensor
    ``shape``: the binary mask (0/1, ``target="mask"``) or the instance labels (``"labels"``). With
    ``transform`` the item is ``transform(sample)`` of the :class:`NucleiSample` instead.
    Indices are ``0 <= i < n``; others raise IndexError.
    """

    def __init__(self, n: int, seed: int, shape: Sequence[int] = (256, 256), params: Optional[NucleiParams] = None,
                 target: str = "mask", normalize: Optional[Tuple[float, float]] = None,
                 transform: Optional[Callable[[NucleiSample], Any]] = None) -> None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if target not in ("mask", "labels"):
            raise ValueError(f"target must be 'mask' or 'labels', got {target!r}")
        if normalize is not None:
            pmin, pmax = _pair(normalize, "normalize")
            if not 0 <= pmin < pmax <= 100:
                raise ValueError(f"normalize must be (pmin, pmax) with 0 <= pmin < pmax <= 100, got {normalize!r}")
            normalize = (pmin, pmax)
        if transform is not None and not callable(transform):
            raise ValueError("transform must be callable or None")
        self.n = int(n)
        self.seed = int(seed)
        self.shape = _check_shape(shape)
        self.params = _check_params(NucleiParams() if params is None else params)
        self.target = target
        self.normalize = normalize
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def sample(self, i: int) -> NucleiSample:
        """The raw :class:`NucleiSample` of item ``i`` (numpy arrays)."""
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range: NucleiDataset has {self.n} items, indexed 0 to {self.n - 1} "
                             f"(negative indices are not supported)")
        return generate(self.shape, self.params, (self.seed, DATASET_TAG, int(i)))

    def __getitem__(self, i: int):
        s = self.sample(i)
        if self.transform is not None:
            return self.transform(s)
        image = s.image if self.normalize is None else normalize_percentile(s.image, *self.normalize)
        target = s.mask if self.target == "mask" else s.labels
        return torch.from_numpy(image).unsqueeze(0), torch.from_numpy(target.astype(np.int64))

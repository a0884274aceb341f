"""Synthetic shape images of thesis section 4.1.1 (Fig 4.1).

Each image holds one object of one of six classes (``CLASS_NAMES``): a circle,
a square or a triangle, either regular or "fuzzy". The object contour is a
continuous curve (circle of radius ``r``; regular polygon of circumradius ``r``
whose sides are walked at constant speed), optionally multiplied radially by
``1 + a*sin(f*t + phase)`` (fuzzy classes), rotated by a random angle and
placed at a random sub-pixel centre. The densely sampled curve is "crudely
mapped to pixel locations by rounding" and the enclosed region (including the
rounded contour pixels) is filled with the foreground intensity; everything
else is background. The resulting aliasing is what makes the task hard.

Conventions: images are ``float32`` arrays of shape ``(H, W)`` with values in
``[0, 1]``; lengths are in pixels, angles in radians, pixel ``(i, j)`` has its
centre at row ``i``, column ``j``. The object never touches the image border
(a one-pixel background margin is kept), so ``H, W >= 3``.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .raster import fill_polygon

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "GeneratorParams",
    "ShapeSpec",
    "sample_shape",
    "shape_polygon",
    "render_shape",
    "generate_image",
    "generate_batch",
    "SyntheticShapes",
    "SyntheticShapesStream",
    "error_kinds",
    "object_canvas",
]

CLASS_NAMES = ("circle", "square", "triangle", "fuzzy_circle", "fuzzy_square", "fuzzy_triangle")
NUM_CLASSES = len(CLASS_NAMES)
_N_SIDES = (0, 4, 3)  # per base shape; 0 = circle

# Tags keeping the random streams of the different entry points apart.
_TAG_DATASET = 0x5D5E7
_TAG_STREAM = 0x57EA3

SizeLike = Union[int, Tuple[int, int], Sequence[int]]


@dataclass(frozen=True)
class GeneratorParams:
    """Distribution of the generated objects.

    Attributes:
        radius_range: ``(min, max)`` circumradius as fractions of ``min(H, W)``;
            sampled uniformly.
        amplitude_range: ``(min, max)`` relative amplitude ``a`` of the radial
            perturbation of fuzzy shapes (unitless, ``0 <= a < 1``); uniform.
        frequency_range: ``(min, max)`` integer number ``f`` of perturbation
            periods per turn of the contour, inclusive; uniform.
        min_contrast: minimum ``|fg - bg|`` of the intensities (both uniform
            in ``[0, 1]``, resampled until the condition holds).

    The thesis gives no numbers besides the 0.05 contrast and "maximum object
    size covering roughly one fourth of the image"; the chosen values are

    ==================  ===============  ===============
    field               ``default()``    ``extreme()``
    ==================  ===============  ===============
    radius_range        (1/16, 1/4)      (1/32, 0.30)
    amplitude_range     (0.05, 0.20)     (0.02, 0.30)
    frequency_range     (5, 15)          (3, 24)
    min_contrast        0.05             0.02
    ==================  ===============  ===============

    With the default on 256x256 the radius is 16..64 px (largest object
    spans half of each side, i.e. about a fourth of the image) and the
    smallest perturbation is 0.8 px, partly lost to rounding. Frequencies of 3
    and 4 (which mimic the triangle/square) are excluded by default. The
    ``extreme()`` variant (shifted test set of Fig 4.6) strictly contains the
    default ranges, so default training data is a subset of its distribution.
    """

    radius_range: Tuple[float, float] = (1.0 / 16.0, 1.0 / 4.0)
    amplitude_range: Tuple[float, float] = (0.05, 0.20)
    frequency_range: Tuple[int, int] = (5, 15)
    min_contrast: float = 0.05

    def __post_init__(self) -> None:
        r0, r1 = _pair(self.radius_range, "radius_range")
        a0, a1 = _pair(self.amplitude_range, "amplitude_range")
        f0, f1 = _pair(self.frequency_range, "frequency_range")
        if not (0.0 < r0 <= r1):
            raise ValueError(f"radius_range must satisfy 0 < min <= max, got {self.radius_range}")
        if not (0.0 <= a0 <= a1 < 1.0):
            raise ValueError(f"amplitude_range must satisfy 0 <= min <= max < 1, got {self.amplitude_range}")
        if r1 * (1.0 + a1) >= 0.5:
            raise ValueError(
                "objects cannot fit: radius_range[1] * (1 + amplitude_range[1]) must be < 0.5, "
                f"got {r1 * (1.0 + a1):.3f}"
            )
        for f in (f0, f1):
            if isinstance(f, bool) or not isinstance(f, numbers.Integral):
                raise ValueError(f"frequency_range must hold integers, got {self.frequency_range}")
        if not (1 <= f0 <= f1):
            raise ValueError(f"frequency_range must satisfy 1 <= min <= max, got {self.frequency_range}")
        c = self.min_contrast
        if not isinstance(c, numbers.Real) or not (0.0 <= float(c) <= 0.9):
            raise ValueError(f"min_contrast must be in [0, 0.9], got {c!r}")
        object.__setattr__(self, "radius_range", (float(r0), float(r1)))
        object.__setattr__(self, "amplitude_range", (float(a0), float(a1)))
        object.__setattr__(self, "frequency_range", (int(f0), int(f1)))
        object.__setattr__(self, "min_contrast", float(c))

    @classmethod
    def default(cls) -> "GeneratorParams":
        """Parameters of the training/validation/test distribution."""
        return cls()

    @classmethod
    def extreme(cls) -> "GeneratorParams":
        """"More extreme" parameters (Fig 4.6 shifted test set); a superset of ``default()``."""
        return cls(
            radius_range=(1.0 / 32.0, 0.30),
            amplitude_range=(0.02, 0.30),
            frequency_range=(3, 24),
            min_contrast=0.02,
        )

    def covers(self, other: "GeneratorParams") -> bool:
        """True if every range of ``other`` lies inside the corresponding range of ``self``."""
        inside = lambda a, b: a[0] <= b[0] and b[1] <= a[1]  # noqa: E731
        return (
            inside(self.radius_range, other.radius_range)
            and inside(self.amplitude_range, other.amplitude_range)
            and inside(self.frequency_range, other.frequency_range)
            and self.min_contrast <= other.min_contrast
        )


@dataclass(frozen=True)
class ShapeSpec:
    """Fully specified object of one image (all lengths in pixels, angles in radians).

    ``center`` is ``(row, col)``; ``radius`` the circumradius before the
    perturbation; ``amplitude`` is 0 for the regular classes.
    """

    label: int
    center: Tuple[float, float]
    radius: float
    rotation: float
    amplitude: float
    frequency: int
    phase: float
    foreground: float
    background: float


def _pair(value: Any, name: str) -> Tuple[Any, Any]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}") from None
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must hold finite numbers, got {value!r}")
    return lo, hi


def _check_size(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = size
    except (TypeError, ValueError):
        raise ValueError(f"size must be an int or a (height, width) pair, got {size!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ValueError(f"size must hold integers, got {size!r}")
        if v < 3:
            raise ValueError(f"height and width must be >= 3 (one-pixel margin around the object), got {size!r}")
    return int(h), int(w)


def _check_label(label: Any) -> int:
    if isinstance(label, bool) or not isinstance(label, numbers.Integral) or not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be an integer in [0, {NUM_CLASSES}), got {label!r}")
    return int(label)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_params(params: Any) -> GeneratorParams:
    if not isinstance(params, GeneratorParams):
        raise ValueError(f"params must be a GeneratorParams, got {type(params).__name__}")
    return params


def _contour(label: int, radius: float, rotation: float, amplitude: float, frequency: int,
             phase: float) -> np.ndarray:
    """Densely sampled closed contour relative to the centre, shape (N, 2) as (dy, dx) in px.

    Consecutive samples are at most 0.5 px apart.
    """
    n_sides = _N_SIDES[label % 3]
    if n_sides == 0:
        perimeter = 2.0 * math.pi * radius
    else:
        perimeter = 2.0 * n_sides * radius * math.sin(math.pi / n_sides)
    # Length bound of the perturbed curve: (1+a) P + 2 pi a f r.
    length = (1.0 + amplitude) * perimeter + 2.0 * math.pi * amplitude * frequency * radius
    n = max(64, int(math.ceil(2.0 * length)))
    t = np.arange(n) * (2.0 * math.pi / n)
    if n_sides == 0:
        x, y = radius * np.cos(t), radius * np.sin(t)
    else:  # walk the sides at constant speed
        s = t * (n_sides / (2.0 * math.pi))
        k = np.floor(s)
        frac = s - k
        a0 = 2.0 * math.pi * k / n_sides
        a1 = a0 + 2.0 * math.pi / n_sides
        x = radius * ((1.0 - frac) * np.cos(a0) + frac * np.cos(a1))
        y = radius * ((1.0 - frac) * np.sin(a0) + frac * np.sin(a1))
    if amplitude != 0.0:
        scale = 1.0 + amplitude * np.sin(frequency * t + phase)
        x, y = x * scale, y * scale
    c, s_ = math.cos(rotation), math.sin(rotation)
    return np.stack([s_ * x + c * y, c * x - s_ * y], axis=1)


def sample_shape(label: int, rng: np.random.Generator, size: SizeLike = (256, 256),
                 params: GeneratorParams = GeneratorParams.default()) -> ShapeSpec:
    """Draw the random object parameters of one image of class ``label``.

    Random draws happen in the same order for every class (intensities,
    radius, rotation, amplitude, frequency, phase, centre), so regular and
    fuzzy classes share their geometry for the same ``rng`` state. In images
    too small for the sampled object (only when ``min(H, W)`` is below about
    14 px) the object is shrunk to fit.
    """
    label = _check_label(label)
    h, w = _check_size(size)
    params = _check_params(params)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    while True:
        bg, fg = rng.random(2)
        if abs(fg - bg) >= params.min_contrast:
            break
    radius = rng.uniform(*params.radius_range) * min(h, w)
    rotation = rng.uniform(0.0, 2.0 * math.pi)
    amplitude = rng.uniform(*params.amplitude_range)
    frequency = int(rng.integers(params.frequency_range[0], params.frequency_range[1] + 1))
    phase = rng.uniform(0.0, 2.0 * math.pi)
    u = rng.random(2)
    if label < 3:
        amplitude = 0.0
    pts = _contour(label, radius, rotation, amplitude, frequency, phase)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    room = np.array([h - 3.0, w - 3.0])  # contour must stay within [1, size - 2]
    shrink = float(np.min(room / np.maximum(hi - lo, 1e-12)))
    if shrink < 1.0:
        radius *= shrink
        lo, hi = lo * shrink, hi * shrink
    first, last = 1.0 - lo, room + 1.0 - hi
    center = first + u * np.maximum(last - first, 0.0)
    return ShapeSpec(label=label, center=(float(center[0]), float(center[1])), radius=float(radius),
                     rotation=float(rotation), amplitude=float(amplitude), frequency=frequency,
                     phase=float(phase), foreground=float(fg), background=float(bg))


def shape_polygon(spec: ShapeSpec, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """The contour of ``spec`` on the pixel grid of ``size`` (H, W): ``(pix, verts)``, both int64
    arrays of (row, column) pairs: ``pix`` the contour points rounded to pixels and clipped to the
    image, ``verts`` the polygon render_shape fills (repeated points and points inside straight
    runs dropped)."""
    h, w = size
    pts = _contour(_check_label(spec.label), spec.radius, spec.rotation, spec.amplitude,
                   spec.frequency, spec.phase)
    pix = np.rint(pts + np.asarray(spec.center)).astype(np.int64)
    pix[:, 0] = np.clip(pix[:, 0], 0, h - 1)
    pix[:, 1] = np.clip(pix[:, 1], 0, w - 1)
    verts = pix[np.any(pix != np.roll(pix, 1, axis=0), axis=1)]
    if len(verts) >= 3:
        step = np.diff(np.vstack([verts, verts[:1]]), axis=0)
        verts = verts[np.any(step != np.roll(step, 1, axis=0), axis=1)]
    return pix, verts


def render_shape(spec: ShapeSpec, size: SizeLike = (256, 256)) -> np.ndarray:
    """Rasterise ``spec`` into a float32 image of shape ``(H, W)``.

    The contour is rounded to integer pixel positions; the polygon through
    the rounded points is filled as ``skimage.draw.polygon`` fills it
    (:func:`aprlib.data.raster.fill_polygon`, the same pixels by scanlines)
    and the rounded contour pixels themselves are set to the foreground too.
    """
    if not isinstance(spec, ShapeSpec):
        raise TypeError(f"spec must be a ShapeSpec, got {type(spec).__name__}")
    h, w = _check_size(size)
    for name in ("radius", "rotation", "amplitude", "phase", "foreground", "background"):
        if not math.isfinite(getattr(spec, name)):
            raise ValueError(f"spec.{name} must be finite, got {getattr(spec, name)!r}")
    if not all(math.isfinite(c) for c in spec.center):
        raise ValueError(f"spec.center must be finite, got {spec.center!r}")
    pix, verts = shape_polygon(spec, (h, w))
    img = np.full((h, w), spec.background, dtype=np.float32)
    if len(verts) >= 3:
        img[fill_polygon(verts[:, 0], verts[:, 1], (h, w))] = spec.foreground
    img[pix[:, 0], pix[:, 1]] = spec.foreground
    return img


def generate_image(label: int, rng: np.random.Generator, size: SizeLike = (256, 256),
                   params: GeneratorParams = GeneratorParams.default()) -> np.ndarray:
    """One image of class ``label`` (index into ``CLASS_NAMES``).

    Returns a float32 array of shape ``(H, W)`` with exactly two values in
    ``[0, 1]`` (background and foreground). ``size`` is ``(H, W)`` or an int.
    """
    size = _check_size(size)
    return render_shape(sample_shape(label, rng, size, params), size)


def generate_batch(n: int, seed: int, size: SizeLike = (256, 256),
                   params: GeneratorParams = GeneratorParams.default(),
                   labels: Optional[Sequence[int]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``n`` images from one ``numpy.random.default_rng(seed)`` stream.

    If ``labels`` is None they are balanced (class counts differ by at most
    one) in random order. Returns ``(images, labels)``: float32 ``(n, H, W)``
    and int64 ``(n,)``. Identical output for identical arguments.

    Raises MemoryError at once, with the numbers, when the images (``4 n H W``
    bytes) would not fit in the memory available now (:func:`_available_memory`);
    :class:`SyntheticShapes` and :class:`SyntheticShapesStream` generate each
    image when it is read instead.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    seed = _check_seed(seed)
    h, w = _check_size(size)
    params = _check_params(params)
    _check_fits_in_memory(n * h * w * np.dtype(np.float32).itemsize + n * 8,
                          f"generate_batch({n}, size=({h}, {w})): {n} float32 images of {h}x{w}")
    rng = np.random.default_rng(seed)
    if labels is None:
        lab = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    else:
        lab = np.asarray(labels)
        if lab.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {lab.shape}")
        lab = np.array([_check_label(v) for v in lab.tolist()], dtype=np.int64)
    images = np.empty((n, h, w), dtype=np.float32)
    for i in range(n):
        images[i] = generate_image(int(lab[i]), rng, (h, w), params)
    return images, lab


def _available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation now, or None where that cannot be told:
    psutil's ``virtual_memory().available`` if psutil is installed, else the kernel's
    MemAvailable (/proc/meminfo), else free pages (``os.sysconf``); no more than the cgroup's
    (container's) memory limit left, where one is set (cgroup v2)."""
    available = None
    try:
        import psutil
        available = int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001  not installed, or no answer: ask the kernel
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        available = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
        if available is None:
            try:
                available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            except (AttributeError, ValueError, OSError):
                return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            current = int(f.read().strip())
        if limit != "max":
            available = min(available, max(int(limit) - current, 0))
    except (OSError, ValueError):
        pass
    return available


def _check_fits_in_memory(nbytes: int, what: str) -> None:
    """MemoryError naming ``what`` and the numbers if ``nbytes`` exceed the available memory."""
    available = _available_memory()
    if available is not None and nbytes > available:
        raise MemoryError(f"{what} need {nbytes / 2 ** 30:.3g} GiB, but only {available / 2 ** 30:.3g} GiB of "
                          f"memory is available: generate fewer or smaller images at a time, or use "
                          f"SyntheticShapes / SyntheticShapesStream, which generate each image when it is read")


def _to_sample(image: np.ndarray, label: int, transform: Optional[Callable[[np.ndarray], Any]]):
    if transform is not None:
        return transform(image), label
    return torch.from_numpy(image).unsqueeze(0), label


class SyntheticShapes(torch.utils.data.Dataset):
    """Fixed dataset of ``n`` images; item ``i`` has label ``i % 6``.

    Image ``i`` is drawn from its own generator seeded by ``(seed, i)``, so
    items do not depend on access order and the dataset with ``n`` items is
    a prefix of any larger one with the same seed, size and params (nested
    training sets). Items are ``(tensor float32 (1, H, W), int label)``, or
    ``(transform(image), label)`` if ``transform`` is given (``image`` being
    the float32 ``(H, W)`` numpy array).
    """

    def __init__(self, n: int, seed: int, size: SizeLike = (256, 256),
                 params: GeneratorParams = GeneratorParams.default(),
                 transform: Optional[Callable[[np.ndarray], Any]] = None) -> None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        if transform is not None and not callable(transform):
            raise ValueError("transform must be callable or None")
        self.n = int(n)
        self.seed = _check_seed(seed)
        self.size = _check_size(size)
        self.params = _check_params(params)
        self.transform = transform

    @property
    def labels(self) -> np.ndarray:
        """int64 array ``(n,)`` of all labels (no image generation)."""
        return np.arange(self.n, dtype=np.int64) % NUM_CLASSES

    def __len__(self) -> int:
        return self.n

    def image(self, i: int) -> Tuple[np.ndarray, int]:
        """Raw ``(float32 (H, W) image, label)`` of item ``i``."""
        if isinstance(i, bool) or not isinstance(i, numbers.Integral):
            raise TypeError(f"index must be an integer, got {type(i).__name__}")
        if not -self.n <= i < self.n:
            raise IndexError(f"index {i} out of range for dataset of length {self.n}")
        i = int(i) % self.n
        label = i % NUM_CLASSES
        rng = np.random.default_rng([self.seed, _TAG_DATASET, i])
        return generate_image(label, rng, self.size, self.params), label

    def __getitem__(self, i: int):
        return _to_sample(*self.image(i), self.transform)


class SyntheticShapesStream(torch.utils.data.IterableDataset):
    """Infinite stream of fresh images with uniformly random labels.

    Stream element ``j`` (starting from ``start``) is drawn from a generator
    seeded by ``(seed, j)``. Under a DataLoader with ``K`` workers, worker
    ``k`` produces the elements ``j = start + k, start + k + K, ...``, so
    workers never repeat each other and the output is deterministic given
    ``seed`` and ``K``. Each new iterator restarts at ``start``. Items as in
    :class:`SyntheticShapes`.
    """

    def __init__(self, seed: int, size: SizeLike = (256, 256),
                 params: GeneratorParams = GeneratorParams.default(),
                 transform: Optional[Callable[[np.ndarray], Any]] = None, start: int = 0) -> None:
        if transform is not None and not callable(transform):
            raise ValueError("transform must be callable or None")
        if isinstance(start, bool) or not isinstance(start, numbers.Integral) or start < 0:
            raise ValueError(f"start must be a non-negative integer, got {start!r}")
        self.seed = _check_seed(seed)
        self.size = _check_size(size)
        self.params = _check_params(params)
        self.transform = transform
        self.start = int(start)

    def image(self, j: int) -> Tuple[np.ndarray, int]:
        """Raw ``(float32 (H, W) image, label)`` of stream element ``j`` (an integer >= 0: the stream is
        infinite, so it has no end to count back from)."""
        if isinstance(j, bool) or not isinstance(j, numbers.Integral):
            raise TypeError(f"stream element index must be an integer, got {type(j).__name__} {j!r}")
        if j < 0:
            raise IndexError(f"stream element index must be >= 0, got {j}: the stream's elements are numbered "
                             f"0, 1, 2, ... without end, so a negative index has nothing to count back from")
        rng = np.random.default_rng([self.seed, _TAG_STREAM, int(j)])
        label = int(rng.integers(NUM_CLASSES))
        return generate_image(label, rng, self.size, self.params), label

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        j = self.start + worker
        while True:
            yield _to_sample(*self.image(j), self.transform)
            j += workers


def error_kinds(confusion) -> dict:
    """Split the errors of a confusion table into the two kinds the six classes allow.

    ``confusion`` has columns true, predicted (class names) and count. Returns the number of
    images, of errors, of errors between a shape and its fuzzy version ("regular/fuzzy": the
    perturbation was missed or imagined) and of errors between different base shapes ("shape").
    """
    base = {name: name.removeprefix("fuzzy_") for name in CLASS_NAMES}
    missing = [c for c in ("true", "predicted", "count") if c not in getattr(confusion, "columns", ())]
    if missing:
        raise ValueError(f"confusion must be a table with columns true, predicted and count; missing {missing}")
    unknown = set(confusion["true"]) | set(confusion["predicted"])
    if not unknown <= set(CLASS_NAMES):
        raise ValueError(f"unknown class names {sorted(unknown - set(CLASS_NAMES))}")
    wrong = confusion[confusion["true"] != confusion["predicted"]]
    same_base = wrong["true"].map(base) == wrong["predicted"].map(base)
    return {"images": int(confusion["count"].sum()), "errors": int(wrong["count"].sum()),
            "regular/fuzzy": int(wrong.loc[same_base, "count"].sum()),
            "shape": int(wrong.loc[~same_base, "count"].sum())}


def object_canvas(n_objects: int, seed: int, size: int = 512, tile: int = 128) -> np.ndarray:
    """(size, size) float32 image with ``n_objects`` synthetic shapes on tiles of ``tile`` pixels;
    more objects -> more particles (lower CR). n_objects = -1 gives uniform noise (CR near 1)."""
    rng = np.random.default_rng(seed)
    if n_objects < 0:
        return rng.random((size, size), dtype=np.float32)
    img = np.full((size, size), 0.2, np.float32)
    n_tiles = (size // tile) ** 2
    if n_objects > n_tiles:
        raise ValueError(f"at most {n_tiles} objects fit on a {size}x{size} canvas with {tile}-pixel tiles")
    for t in rng.choice(n_tiles, n_objects, replace=False):
        ty, tx = divmod(int(t), size // tile)
        spec = sample_shape(int(rng.integers(6)), rng, size=(tile, tile), params=GeneratorParams.default())
        patch = render_shape(spec, size=(tile, tile))
        img[ty * tile:(ty + 1) * tile, tx * tile:(tx + 1) * tile] = patch - patch[0, 0] + 0.2
    return img

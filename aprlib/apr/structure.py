"""The APR object: particle cells (per level, sorted), their tree of ancestors, intensities, of a 2D
image (H, W) or a 3D volume (Z, Y, X): the dimension, ``APR.ndim``, is a parameter.

Coordinates: a cell at level ``l`` with indices ``(y, x)`` (2D) or ``(z, y, x)`` (3D) covers pixel rows
``[y * 2^(L-l), (y+1) * 2^(L-l))`` and columns (and planes) likewise (clipped to the image), where
``L = level_max = max(ceil(log2(max(shape))), 2)``. Particles and tree nodes are sorted by
(level, [z,] y, x); ``level_offsets[l]:level_offsets[l+1]`` are the particles of level ``l``.
2D structures use the C++ kernels of ``aprlib._core``; 3D ones the numpy geometry of :mod:`.cells`
(which gives the same tables in 2D: ``tests/test_cells.py``), but for the neighbourhood tables, the
one costly table, which come from one C++ kernel in both dimensions (``_core.neighbour_table`` and
``neighbour_table3d``; equal to the numpy ones in 3D: ``tests/test_cells.py``).

The index tables an APR's structure determines (the children of each tree node, the neighbourhood
table of each kernel size, the pooled structure with its pooling table, the pixel -> particle map)
are built on first use by the APR's own methods (:meth:`APR.children`, :meth:`APR.neighbourhood`,
:meth:`APR.pooled`, :meth:`APR.pixel_owner`) and held in its one declared cache, ``APR._tables``
(a dict made in ``__init__``, dropped with the APR). No other module writes into an APR; the batch
plans of :mod:`aprlib.ops.plans` are made from these tables. :func:`apr_children`,
:func:`apr_neighbours` and :func:`apr_pooled` are thin wrappers of the methods.
"""
from __future__ import annotations

import copy
import numbers
import operator
import zipfile

import numpy as np

from .. import _core
from . import cells as _cells

__all__ = ["APR", "apr_children", "apr_neighbours", "apr_pooled", "top_level"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _size(value, name: str) -> int:
    """A positive integer image size (Python or numpy integer, not bool or float)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}") from None
    if v < 1:
        raise ValueError(f"APR image size must be positive, got {name} = {v}")
    return v


def _index_array(values, name: str, dtype) -> np.ndarray:
    """A 1D integer array converted to ``dtype`` without silent wrap-around."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1D, got shape {arr.shape}")
    if arr.dtype == dtype:  # nothing to convert, so nothing can wrap around
        return np.ascontiguousarray(arr)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.size:
        info = np.iinfo(dtype)
        lo, hi = int(arr.min()), int(arr.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"{name} has values in [{lo}, {hi}], outside the range of {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _real_values(values, name: str) -> np.ndarray:
    """A real (bool, integer or float) array as float32, refusing complex and object data and
    finite values that float32 cannot hold."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be real numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # an overflow is reported below
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
        finite = np.isfinite(arr)
        if not np.array_equal(finite, np.isfinite(out)):
            raise ValueError(f"{name} has finite values beyond the float32 range (largest magnitude "
                             f"{float(np.abs(arr[finite]).max()):.3g} > {_FLOAT32_MAX:.3g})")
    return out


def _level_index(level) -> int:
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, numbers.Integral):
        raise TypeError(f"level must be an integer, got {type(level).__name__} {level!r}")
    return int(level)


def _offsets(levels: np.ndarray, level_max: int) -> np.ndarray:
    """Start index of each level 0..level_max+1 in an array sorted by level."""
    return np.searchsorted(levels, np.arange(level_max + 2), side="left").astype(np.int64)


class APR:
    """Adaptive Particle Representation of a 2D image or a 3D volume.

    Attributes (numpy arrays): ``level`` (N,) int8, ``y``/``x`` (N,) int32 cell indices,
    ``parent`` (N,) int64 tree index (-1 at level_min), ``tree_level``/``tree_y``/``tree_x``
    (T,), ``tree_parent`` (T,), ``intensities`` (N,) or (N, C) float32 (or None). A 3D APR (made
    with ``depth``, ``z`` and ``tree_z``, or by :meth:`from_cells` and ``form_apr(volume, ndim=3)``) also
    has ``depth`` and the plane indices ``z`` (N,) and ``tree_z`` (T,) int32; ``ndim`` is 2 or 3 and
    ``shape`` is (H, W) or (Z, Y, X).

    With ``validate`` (the default) the arrays are checked to be an APR: particle cells that
    partition the image, sorted by (level, y, x), with the tree and parent indices that these
    cells imply (ValueError otherwise). aprlib's own code skips the check for the structures its
    kernels build.
    """

    #: 2D unless the APR is made with ``depth`` (class defaults, so 2D APRs carry no extra attribute)
    ndim = 2
    depth = None
    z = None
    tree_z = None

    def __init__(self, height, width, level, y, x, parent, tree_level, tree_y, tree_x, tree_parent,
                 intensities=None, params=None, validate: bool = True, *, depth=None, z=None, tree_z=None):
        self.height, self.width = _size(height, "height"), _size(width, "width")
        if depth is not None or z is not None or tree_z is not None:
            if depth is None or z is None or tree_z is None:
                raise ValueError("a 3D APR needs depth, z and tree_z together")
            self.ndim = 3
            self.depth = _size(depth, "depth")
            self.z = _index_array(z, "z", np.int32)
            self.tree_z = _index_array(tree_z, "tree_z", np.int32)
        self.level = _index_array(level, "level", np.int8)
        self.y = _index_array(y, "y", np.int32)
        self.x = _index_array(x, "x", np.int32)
        self.parent = _index_array(parent, "parent", np.int64)
        self.tree_level = _index_array(tree_level, "tree_level", np.int8)
        self.tree_y = _index_array(tree_y, "tree_y", np.int32)
        self.tree_x = _index_array(tree_x, "tree_x", np.int32)
        self.tree_parent = _index_array(tree_parent, "tree_parent", np.int64)
        n, t = len(self.level), len(self.tree_level)
        if not (len(self.y) == len(self.x) == len(self.parent) == n) or (self.ndim == 3 and len(self.z) != n):
            raise ValueError("level, the coordinates and parent must have the same length")
        if not (len(self.tree_y) == len(self.tree_x) == len(self.tree_parent) == t) or (
                self.ndim == 3 and len(self.tree_z) != t):
            raise ValueError("tree_level, the tree coordinates and tree_parent must have the same length")
        if n == 0:
            raise ValueError("an APR needs at least one particle")
        self.level_min, self.level_max = (_core.level_range(self.height, self.width) if self.ndim == 2
                                          else _cells.level_range(self.shape))
        if np.any(np.diff(self.level) < 0) or np.any(np.diff(self.tree_level) < 0):
            raise ValueError("particles and tree nodes must be sorted by level")
        if np.any((self.parent < -1) | (self.parent >= t)) or np.any((self.tree_parent < -1) | (self.tree_parent >= t)):
            raise ValueError("parent indices out of range")
        if validate:
            self._validate()
        self.level_offsets = _offsets(self.level, self.level_max)
        self.tree_offsets = _offsets(self.tree_level, self.level_max)
        self.params = params
        self._intensities = None
        self.intensities = intensities
        self._tables = {}  # the one cache of index tables (see _table)

    def _validate(self) -> None:
        """ValueError unless the arrays are the APR that their particle cells define."""
        # raises ValueError("not a valid APR: ...") for cells outside the image, duplicates,
        # overlaps and gaps
        if self.ndim == 3:
            c = _cells.structure_from_cells(self.shape, self.level, self.coords)
            s = dict(level=c.level, z=c.coords[0], y=c.coords[1], x=c.coords[2], parent=c.parent,
                     tree_level=c.tree_level, tree_z=c.tree_coords[0], tree_y=c.tree_coords[1],
                     tree_x=c.tree_coords[2], tree_parent=c.tree_parent)
        else:
            s = _core.structure_from_cells(self.level, self.y, self.x, self.height, self.width)
        for name in ("level", "z", "y", "x") if self.ndim == 3 else ("level", "y", "x"):
            if not np.array_equal(s[name], getattr(self, name)):
                order = "(level, z, y, x)" if self.ndim == 3 else "(level, y, x)"
                raise ValueError(f"not a valid APR: particles must be sorted by {order}")
        tree_names = ("tree_z", "tree_y", "tree_x") if self.ndim == 3 else ("tree_y", "tree_x")
        for name in ("parent", "tree_level") + tree_names + ("tree_parent",):
            if not np.array_equal(s[name], getattr(self, name)):
                raise ValueError(f"not a valid APR: {name} does not match the particle cells (the tree "
                                 f"must be the ancestors of the particles, sorted by (level, y, x))")

    @classmethod
    def from_structure(cls, s: dict, intensities=None, params=None, validate: bool = True) -> "APR":
        """Build from the dict returned by ``aprlib._core.form_structure``."""
        if not isinstance(s, dict):
            raise TypeError(f"a structure must be a dict, got {type(s).__name__}")
        missing = [k for k in ("height", "width") + cls._FIELDS if k not in s]
        if missing:
            raise ValueError(f"structure dict lacks {missing}")
        return cls(s["height"], s["width"], s["level"], s["y"], s["x"], s["parent"], s["tree_level"],
                   s["tree_y"], s["tree_x"], s["tree_parent"], intensities=intensities, params=params,
                   validate=validate)

    @classmethod
    def _from_kernel(cls, s: dict, intensities: np.ndarray, params=None) -> "APR":
        """An APR straight from the output of ``aprlib._core.form_apr`` (2D) or the cells dict of
        ``aprlib._core.form_apr3d`` (3D: it has a ``depth``), with none of the checks of ``__init__``:
        the arrays are the C++ kernels' own (correct dtypes, contiguous, sorted, valid parent indices,
        level_offsets and tree_offsets included) and ``intensities`` their float32 (N,) or (N, C)
        means. For aprlib's formation only; arrays from anywhere else go through ``__init__`` (the C++
        table builders re-check every index they read anyway)."""
        apr = cls.__new__(cls)
        three = "depth" in s
        apr.height, apr.width = int(s["height"]), int(s["width"])
        for name in cls._FIELDS + (cls._FIELDS_3D if three else ()):
            setattr(apr, name, s[name])
        if three:
            apr.ndim, apr.depth = 3, int(s["depth"])
            apr.level_min, apr.level_max = int(s["level_min"]), int(s["level_max"])
        else:
            apr.level_min, apr.level_max = _core.level_range(apr.height, apr.width)
        apr.level_offsets = s["level_offsets"]
        apr.tree_offsets = s["tree_offsets"]
        apr.params = params
        apr._intensities = intensities
        apr._tables = {}
        return apr

    @classmethod
    def from_cells(cls, shape, level, coords, intensities=None, params=None) -> "APR":
        """The APR whose particle cells are given, in any order and any dimension: ``shape`` (H, W) or
        (Z, Y, X); ``level`` (N,) and ``coords`` (a sequence of d arrays (N,): (y, x) or (z, y, x)) the
        cells; ``intensities`` (N,) or (N, C) in the given order. The structure is sorted, its tree built
        and checked (ValueError "not a valid APR: ..." unless the cells partition the image)."""
        shape = tuple(shape)
        if len(shape) not in (2, 3):
            raise ValueError(f"an APR is 2D (H, W) or 3D (Z, Y, X), got shape {shape}")
        for i, v in enumerate(shape):
            _size(v, f"shape[{i}]")
        level = np.asarray(level)
        keys_order = None
        if intensities is not None:  # reorder the values with the cells
            lmax = _cells.level_range(shape)[1]
            keys_order = np.argsort(_cells.cell_keys(level, [np.asarray(c) for c in coords], lmax), kind="stable")
        c = _cells.structure_from_cells(shape, level, coords)
        if keys_order is not None:
            intensities = np.asarray(intensities)[keys_order]
        return cls._from_cell_structure(c, intensities, params)

    @classmethod
    def _from_cell_structure(cls, c, intensities=None, params=None) -> "APR":
        """An APR from a sorted :class:`~aprlib.apr.cells.Cells` structure (not checked again)."""
        if c.ndim == 2:
            y, x = c.coords
            ty, tx = c.tree_coords
            return cls(c.shape[0], c.shape[1], c.level, y, x, c.parent, c.tree_level, ty, tx, c.tree_parent,
                       intensities=intensities, params=params, validate=False)
        z, y, x = c.coords
        tz, ty, tx = c.tree_coords
        return cls(c.shape[1], c.shape[2], c.level, y, x, c.parent, c.tree_level, ty, tx, c.tree_parent,
                   intensities=intensities, params=params, validate=False, depth=c.shape[0], z=z, tree_z=tz)

    def _structure_only(self) -> "APR":
        """This APR without intensities: the same structure arrays and the same table cache (the dict
        itself, shared: the tables depend on the structure only)."""
        view = copy.copy(self)
        view._intensities = None
        return view

    @property
    def coords(self) -> tuple:
        """The particles' cell indices: (y, x) or (z, y, x)."""
        return (self.y, self.x) if self.ndim == 2 else (self.z, self.y, self.x)

    @property
    def tree_coords(self) -> tuple:
        """The tree nodes' cell indices: (tree_y, tree_x) or (tree_z, tree_y, tree_x)."""
        return (self.tree_y, self.tree_x) if self.ndim == 2 else (self.tree_z, self.tree_y, self.tree_x)

    def _cell_structure(self):
        """This APR's structure as a :class:`~aprlib.apr.cells.Cells` (views of its arrays)."""
        return _cells.Cells(self.shape, self.level, self.coords, self.parent, self.tree_level, self.tree_coords,
                            self.tree_parent)

    # --- index tables, built on first use and held in the APR's one cache -----------------------
    def _table(self, key: tuple, build):
        """The table cached under ``key`` in ``self._tables``, made by ``build()`` on first use."""
        t = self._tables
        if key not in t:
            t[key] = build()
        return t[key]

    def _structure_args(self) -> tuple:
        return (self.level, self.y, self.x, self.parent, self.tree_level, self.tree_y, self.tree_x,
                self.tree_parent, self.height, self.width)

    def children(self) -> tuple[np.ndarray, np.ndarray]:
        """Children of each tree node as local value rows, (T, 2^ndim) int32 -1 padded (child particles
        in order, then child tree nodes), and counts (T,) int32 (built once, cached on the APR)."""
        if self.ndim == 3:
            return self._table(("children",), lambda: _cells.child_table(self._cell_structure()))
        return self._table(("children",), lambda: _core.child_table(*self._structure_args()))

    def neighbourhood(self, k: int) -> np.ndarray:
        """(N, k^ndim) int32 local value rows of each particle's k x k (x k) neighbourhood, offsets in
        row-major order (zero row = N + T), built once per kernel size and cached on the APR.

        Built from the sorted structure by bisection: O(N k^ndim log) time, no dense map."""
        k = int(k)
        if self.ndim == 3:
            return self._table(("neighbours", k), lambda: _core.neighbour_table3d(
                self.level, self.z, self.y, self.x, self.tree_level, self.tree_z, self.tree_y, self.tree_x, *self.shape,
                k))
        return self._table(("neighbours", k), lambda: _core.neighbour_table(*self._structure_args(), k))

    def pooled(self) -> tuple["APR", np.ndarray]:
        """Max-pooling plan: the pooled APR and its (M, 2^ndim) int32 table of input particle rows (-1
        padded), built once and cached on the APR.

        The particles of the finest level present are pooled into their parent cells (the tree nodes
        of the level above become particles); the others are copied. Derived from the APR's structure
        in O(N + T). When the finest level is already ``level_min`` nothing is pooled (every row
        copies) and the pooled APR is this one."""
        def build():
            if self.ndim == 3:
                c, table = _cells.pool_structure(self._cell_structure())
                pooled = self if top_level(self) <= self.level_min else APR._from_cell_structure(c, params=self.params)
                return pooled, table
            s, table = _core.pool_structure(*self._structure_args())
            pooled = (self if top_level(self) <= self.level_min
                      else APR.from_structure(s, params=self.params, validate=False))
            return pooled, table
        return self._table(("pooled",), build)

    def pixel_owner(self) -> np.ndarray:
        """(H, W) or (Z, Y, X) int64: the index of the particle whose cell holds each pixel / voxel
        (built once, cached on the APR)."""
        if self.ndim == 3:
            return self._table(("pixel_owner",), lambda: _cells.owner_map(self._cell_structure()))

        def build():
            if self.n_particles >= 1 << 24:
                raise ValueError(f"pixel_owner supports APRs of fewer than 2^24 particles, got {self.n_particles}")
            # float32 holds every integer below 2^24 exactly
            return self.reconstruct(np.arange(self.n_particles, dtype=np.float32)).astype(np.int64)
        return self._table(("pixel_owner",), build)

    # --- basic properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """(H, W), or (Z, Y, X) for a 3D APR."""
        return (self.height, self.width) if self.ndim == 2 else (self.depth, self.height, self.width)

    @property
    def n_particles(self) -> int:
        return len(self.level)

    def __len__(self) -> int:
        return self.n_particles

    @property
    def n_tree(self) -> int:
        return len(self.tree_level)

    @property
    def computational_ratio(self) -> float:
        """CR = number of pixels (voxels) / number of particles."""
        return float(np.prod(self.shape, dtype=np.float64)) / self.n_particles

    cr = computational_ratio

    @property
    def intensities(self):
        return self._intensities

    @intensities.setter
    def intensities(self, values):
        if values is not None:
            values = _real_values(values, "intensities")
            if values.ndim not in (1, 2) or values.shape[0] != self.n_particles:
                raise ValueError(f"intensities must have shape (N,) or (N, C) with N = {self.n_particles}, "
                                 f"got {values.shape}")
            if values.ndim == 2 and values.shape[1] == 0:
                raise ValueError("intensities must have at least one channel, got shape "
                                 f"{values.shape}")
        self._intensities = values

    def levels_present(self) -> list[int]:
        return sorted(int(v) for v in np.unique(self.level))

    def particles_at(self, level: int) -> slice:
        """Slice of the particles of one level."""
        level = _level_index(level)
        if not 0 <= level <= self.level_max:
            raise ValueError(f"level must be in [0, {self.level_max}], got {level}")
        return slice(int(self.level_offsets[level]), int(self.level_offsets[level + 1]))

    def tree_at(self, level: int) -> slice:
        """Slice of the tree nodes of one level."""
        level = _level_index(level)
        if not 0 <= level <= self.level_max:
            raise ValueError(f"level must be in [0, {self.level_max}], got {level}")
        return slice(int(self.tree_offsets[level]), int(self.tree_offsets[level + 1]))

    def cell_size(self, level=None):
        """Side length in pixels of cells at ``level`` (default: of every particle)."""
        level = self.level if level is None else np.asarray(level)
        return np.left_shift(1, self.level_max - level.astype(np.int64))

    def __repr__(self) -> str:
        return (f"APR(shape={self.shape}, particles={self.n_particles}, tree={self.n_tree}, "
                f"levels={self.levels_present()}, CR={self.computational_ratio:.2f})")

    # --- sampling and reconstruction --------------------------------------------------------
    def sample(self, image) -> np.ndarray:
        """Mean of ``image`` over each particle cell: (H, W) -> (N,), (H, W, C) -> (N, C); for a 3D APR
        (Z, Y, X) -> (N,) and (Z, Y, X, C) -> (N, C).

        Finite real images only (ValueError for NaN, inf or values beyond float32); the means of
        finite pixels are finite."""
        arr = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise ValueError("image contains NaN or infinite values")
        img = _real_values(arr, "image")
        d = self.ndim
        if img.shape[:d] != self.shape or img.ndim not in (d, d + 1):
            raise ValueError(f"image must have shape {self.shape} or {self.shape} + (C,), got {img.shape}")
        if img.ndim == d + 1 and img.shape[d] == 0:
            raise ValueError(f"image must have at least one channel, got shape {img.shape}")
        channels = img if img.ndim == d + 1 else img[..., None]
        if d == 3:
            out = _cells.cell_means(self._cell_structure(), channels, self.pixel_owner())
        else:
            out = _core.cell_means(self.level, self.y, self.x, channels)
        return out if img.ndim == d + 1 else out[:, 0]

    def reconstruct(self, values=None) -> np.ndarray:
        """Piecewise-constant image from particle values (default: the intensities).

        values (N,) -> (H, W); values (N, C) -> (H, W, C) (3D: (Z, Y, X) and (Z, Y, X, C)). float32.
        """
        values = self.intensities if values is None else values
        if values is None:
            raise ValueError("this APR has no intensities; pass values")
        vals = _real_values(values, "values")
        if vals.ndim not in (1, 2):
            raise ValueError(f"values must be (N,) or (N, C), got shape {vals.shape}")
        if self.ndim == 3:
            if vals.shape[0] != self.n_particles:
                raise ValueError(f"values must have {self.n_particles} rows, got shape {vals.shape}")
            return vals[self.pixel_owner()]
        out = _core.reconstruct(self.level, self.y, self.x, vals if vals.ndim == 2 else vals[:, None],
                                self.height, self.width)
        return out if vals.ndim == 2 else out[..., 0]

    def level_map(self) -> np.ndarray:
        """(H, W) (or (Z, Y, X)) int8 image of the level of the particle cell each pixel belongs to."""
        return self.reconstruct(self.level.astype(np.float32)).astype(np.int8)

    def tree_means(self, values=None) -> np.ndarray:
        """Tree node values as means of their children, bottom-up: (N[, C]) -> (T[, C]), float64 for
        float64 input, else float32."""
        values = self.intensities if values is None else values
        if values is None:
            raise ValueError("this APR has no intensities; pass values")
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        values = np.asarray(values)
        if values.dtype.kind not in "biuf":
            raise TypeError(f"values must be real numbers, got dtype {values.dtype}")
        out_dtype = np.float64 if values.dtype == np.float64 else np.float32
        vals = values.astype(np.float64)
        if vals.ndim == 0 or vals.shape[0] != self.n_particles:
            raise ValueError(f"values must have {self.n_particles} rows, got shape {vals.shape}")
        flat = vals.reshape(self.n_particles, -1)
        sums = np.zeros((self.n_tree, flat.shape[1]))
        counts = np.zeros(self.n_tree)
        out = np.zeros_like(sums)
        for lev in range(self.level_max, self.level_min - 1, -1):
            if lev < self.level_max:  # tree nodes at this level are complete: finish and push up
                t = self.tree_at(lev)
                out[t] = sums[t] / counts[t, None]
                if lev > self.level_min:
                    np.add.at(sums, self.tree_parent[t], out[t])
                    np.add.at(counts, self.tree_parent[t], 1)
            if lev > self.level_min:
                p = self.particles_at(lev)
                np.add.at(sums, self.parent[p], flat[p])
                np.add.at(counts, self.parent[p], 1)
        return out.reshape((self.n_tree,) + vals.shape[1:]).astype(out_dtype)

    # --- persistence -------------------------------------------------------------------------
    _FIELDS = ("level", "y", "x", "parent", "tree_level", "tree_y", "tree_x", "tree_parent")

    _FIELDS_3D = ("z", "tree_z")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self._FIELDS}
        d.update(height=self.height, width=self.width)
        if self.ndim == 3:
            d.update(depth=self.depth, z=self.z, tree_z=self.tree_z)
        if self.intensities is not None:
            d["intensities"] = self.intensities
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "APR":
        """Inverse of :meth:`to_dict` (the structure is validated)."""
        missing = [k for k in ("height", "width") + cls._FIELDS if k not in d]
        if missing:
            raise ValueError(f"an APR dict needs {missing}")
        extra = {}
        if "depth" in d or "z" in d or "tree_z" in d:
            missing = [k for k in ("depth",) + cls._FIELDS_3D if k not in d]
            if missing:
                raise ValueError(f"a 3D APR dict needs {missing}")
            extra = dict(depth=d["depth"], z=d["z"], tree_z=d["tree_z"])
        return cls(d["height"], d["width"], *(d[k] for k in cls._FIELDS), intensities=d.get("intensities"), **extra)

    def save(self, path) -> None:
        """Write the APR's arrays (:meth:`to_dict`) to ``path`` as a compressed ``.npz``."""
        np.savez_compressed(path, **self.to_dict())

    @classmethod
    def load(cls, path) -> "APR":
        """The APR that :meth:`save` wrote to ``path`` (the structure is validated). Raises
        FileNotFoundError for a missing file and ValueError, naming the file, for anything else than
        an ``.npz`` of an APR's arrays (nothing pickled is ever loaded)."""
        try:
            f = np.load(path, allow_pickle=False)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            raise
        except Exception as e:  # noqa: BLE001  numpy tries zip, .npy, then pickle: any failure means "not an .npz"
            what = "a damaged zip archive" if isinstance(e, zipfile.BadZipFile) else "not a zip archive"
            raise ValueError(f"{path} is not an APR file ({what}): APR.load reads the .npz archives that APR.save "
                             f"writes") from e
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError(f"{path} holds a single array (.npy), not an APR: APR.load reads the .npz archives "
                             f"that APR.save writes")
        with f:
            missing = [k for k in ("height", "width") + cls._FIELDS if k not in f.files]
            if missing:
                raise ValueError(f"{path} is an .npz archive but not an APR: it lacks the entries {missing} "
                                 f"that APR.save writes")
            d = {}
            for k in f.files:
                try:
                    d[k] = f[k]
                except ValueError as e:  # an object array: it would need unpickling
                    raise ValueError(f"{path}: entry {k!r} holds Python objects (pickled), not an APR's numbers; "
                                     f"APR.load does not unpickle") from e
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{path}: {e}") from e


# --- thin wrappers of the APR's table methods (kept for existing callers) ------------------------
def apr_children(apr: APR) -> tuple[np.ndarray, np.ndarray]:
    """Thin wrapper of :meth:`APR.children`: children of each tree node as local value rows, (T, 2^ndim)
    int32 -1 padded, and counts (T,) int32."""
    return apr.children()


def apr_neighbours(apr: APR, k: int) -> np.ndarray:
    """Thin wrapper of :meth:`APR.neighbourhood`: (N, k^ndim) int32 local value rows of each particle's
    k x k neighbourhood (zero row = N + T)."""
    return apr.neighbourhood(k)


def top_level(apr: APR) -> int:
    """Finest level present: the level the next pooling pools and kernel 0 applies to."""
    return int(apr.level[-1])  # particles are sorted by level


def apr_pooled(apr: APR) -> tuple[APR, np.ndarray]:
    """Thin wrapper of :meth:`APR.pooled`: the pooled APR and its (M, 2^ndim) int32 table of input particle
    rows (-1 padded)."""
    return apr.pooled()

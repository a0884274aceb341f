"""The APR object: particle cells (per level, sorted), their tree of ancestors, intensities.

Coordinates: a cell at level ``l`` with indices ``(y, x)`` covers pixel rows
``[y * 2^(L-l), (y+1) * 2^(L-l))`` and columns likewise (clipped to the image), where
``L = level_max = max(ceil(log2(max(H, W))), 2)``. Particles and tree nodes are sorted by
(level, y, x); ``level_offsets[l]:level_offsets[l+1]`` are the particles of level ``l``.
"""
from __future__ import annotations

import numpy as np

from . import _core

__all__ = ["APR"]


def _offsets(levels: np.ndarray, level_max: int) -> np.ndarray:
    """Start index of each level 0..level_max+1 in an array sorted by level."""
    return np.searchsorted(levels, np.arange(level_max + 2), side="left").astype(np.int64)


class APR:
    """Adaptive Particle Representation of a 2D image.

    Attributes (numpy arrays): ``level`` (N,) int8, ``y``/``x`` (N,) int32 cell indices,
    ``parent`` (N,) int64 tree index (-1 at level_min), ``tree_level``/``tree_y``/``tree_x``
    (T,), ``tree_parent`` (T,), ``intensities`` (N,) or (N, C) float32 (or None).
    """

    def __init__(self, height, width, level, y, x, parent, tree_level, tree_y, tree_x, tree_parent,
                 intensities=None, params=None):
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"APR image size must be positive, got {height}x{width}")
        self.level = np.ascontiguousarray(level, dtype=np.int8)
        self.y = np.ascontiguousarray(y, dtype=np.int32)
        self.x = np.ascontiguousarray(x, dtype=np.int32)
        self.parent = np.ascontiguousarray(parent, dtype=np.int64)
        self.tree_level = np.ascontiguousarray(tree_level, dtype=np.int8)
        self.tree_y = np.ascontiguousarray(tree_y, dtype=np.int32)
        self.tree_x = np.ascontiguousarray(tree_x, dtype=np.int32)
        self.tree_parent = np.ascontiguousarray(tree_parent, dtype=np.int64)
        n, t = len(self.level), len(self.tree_level)
        if not (len(self.y) == len(self.x) == len(self.parent) == n):
            raise ValueError("level, y, x and parent must have the same length")
        if not (len(self.tree_y) == len(self.tree_x) == len(self.tree_parent) == t):
            raise ValueError("tree_level, tree_y, tree_x and tree_parent must have the same length")
        if n == 0:
            raise ValueError("an APR needs at least one particle")
        self.level_min = 1
        self.level_max = max(int(np.ceil(np.log2(max(self.height, self.width)))), 2)
        if np.any(np.diff(self.level) < 0) or np.any(np.diff(self.tree_level) < 0):
            raise ValueError("particles and tree nodes must be sorted by level")
        if np.any((self.parent < -1) | (self.parent >= t)) or np.any((self.tree_parent < -1) | (self.tree_parent >= t)):
            raise ValueError("parent indices out of range")
        self.level_offsets = _offsets(self.level, self.level_max)
        self.tree_offsets = _offsets(self.tree_level, self.level_max)
        self.params = params
        self._intensities = None
        self.intensities = intensities

    @classmethod
    def from_structure(cls, s: dict, intensities=None, params=None) -> "APR":
        """Build from the dict returned by ``aprlib._core.form_structure``."""
        return cls(s["height"], s["width"], s["level"], s["y"], s["x"], s["parent"], s["tree_level"],
                   s["tree_y"], s["tree_x"], s["tree_parent"], intensities=intensities, params=params)

    # --- basic properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

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
        """CR = number of pixels / number of particles."""
        return self.height * self.width / self.n_particles

    cr = computational_ratio

    @property
    def intensities(self):
        return self._intensities

    @intensities.setter
    def intensities(self, values):
        if values is not None:
            values = np.ascontiguousarray(values, dtype=np.float32)
            if values.ndim not in (1, 2) or values.shape[0] != self.n_particles:
                raise ValueError(f"intensities must have shape (N,) or (N, C) with N = {self.n_particles}, "
                                 f"got {values.shape}")
        self._intensities = values

    def levels_present(self) -> list[int]:
        return sorted(int(v) for v in np.unique(self.level))

    def particles_at(self, level: int) -> slice:
        """Slice of the particles of one level."""
        if not 0 <= level <= self.level_max:
            raise ValueError(f"level must be in [0, {self.level_max}], got {level}")
        return slice(int(self.level_offsets[level]), int(self.level_offsets[level + 1]))

    def tree_at(self, level: int) -> slice:
        """Slice of the tree nodes of one level."""
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
        """Mean of ``image`` over each particle cell: (H, W) -> (N,), (H, W, C) -> (N, C)."""
        img = np.ascontiguousarray(image, dtype=np.float32)
        if img.shape[:2] != self.shape or img.ndim not in (2, 3):
            raise ValueError(f"image must have shape {self.shape} or {self.shape} + (C,), got {img.shape}")
        if not np.isfinite(img).all():
            raise ValueError("image contains NaN or infinite values")
        out = _core.cell_means(self.level, self.y, self.x, img if img.ndim == 3 else img[..., None])
        return out if img.ndim == 3 else out[:, 0]

    def reconstruct(self, values=None) -> np.ndarray:
        """Piecewise-constant image from particle values (default: the intensities).

        values (N,) -> (H, W); values (N, C) -> (H, W, C). float32.
        """
        values = self.intensities if values is None else values
        if values is None:
            raise ValueError("this APR has no intensities; pass values")
        if hasattr(values, "detach"):
            values = values.detach().cpu().numpy()
        vals = np.ascontiguousarray(values, dtype=np.float32)
        if vals.ndim not in (1, 2):
            raise ValueError(f"values must be (N,) or (N, C), got shape {vals.shape}")
        out = _core.reconstruct(self.level, self.y, self.x, vals if vals.ndim == 2 else vals[:, None],
                                self.height, self.width)
        return out if vals.ndim == 2 else out[..., 0]

    def level_map(self) -> np.ndarray:
        """(H, W) int8 image of the level of the particle cell each pixel belongs to."""
        return self.reconstruct(self.level.astype(np.float32)).astype(np.int8)

    def tree_means(self, values=None) -> np.ndarray:
        """Tree node values as means of their children, bottom-up: (N[, C]) -> (T[, C]), float64 for
        float64 input, else float32."""
        values = self.intensities if values is None else values
        out_dtype = np.float64 if np.asarray(values).dtype == np.float64 else np.float32
        vals = np.asarray(values, dtype=np.float64)
        if vals.shape[0] != self.n_particles:
            raise ValueError(f"values must have {self.n_particles} rows, got {vals.shape[0]}")
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

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self._FIELDS}
        d.update(height=self.height, width=self.width)
        if self.intensities is not None:
            d["intensities"] = self.intensities
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "APR":
        return cls(int(d["height"]), int(d["width"]), *(d[k] for k in cls._FIELDS),
                   intensities=d.get("intensities"))

    def save(self, path) -> None:
        np.savez_compressed(path, **self.to_dict())

    @classmethod
    def load(cls, path) -> "APR":
        with np.load(path) as f:
            return cls.from_dict({k: f[k] for k in f.files})

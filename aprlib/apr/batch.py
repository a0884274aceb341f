"""Batches of APRs of different sizes, concatenated along the particle axis (like graph batches)."""
from __future__ import annotations

import numbers
from multiprocessing.reduction import ForkingPickler
from typing import Sequence

import numpy as np
import torch

from .packing import pack, unpack
from .structure import APR

__all__ = ["APRBatch", "collate_aprs"]


class APRBatch:
    """B APRs with their particles concatenated in order.

    ``particle_offsets`` (B+1,) and ``tree_offsets`` (B+1,) delimit each APR's particles and tree
    nodes; ``batch_index`` (N_total,) gives each particle's APR. ``features()`` stacks the
    intensities as a float32 tensor (N_total, C).

    The batch's index plans (:meth:`plan`: the tree, convolution and pooling plans of
    :mod:`aprlib.ops.plans`, made from its APRs' own tables) and its per-device tensors
    (:meth:`batch_index_tensor`, :meth:`pixel_owner`) are built once on first use and held in its one
    declared cache, ``_tables`` (made in ``__init__``, dropped with the batch); every layer given the
    batch shares them.
    """

    def __init__(self, aprs: Sequence[APR]):
        if isinstance(aprs, (APR, str, bytes)) or not hasattr(aprs, "__iter__"):
            raise TypeError(f"APRBatch takes a sequence of APRs, got {type(aprs).__name__}")
        aprs = list(aprs)
        if not aprs:
            raise ValueError("an APRBatch needs at least one APR")
        for i, a in enumerate(aprs):
            if not isinstance(a, APR):
                raise TypeError(f"item {i} is a {type(a).__name__}, not an APR")
        channels = {None if a.intensities is None else (1 if a.intensities.ndim == 1 else a.intensities.shape[1])
                    for a in aprs}
        if len({a.ndim for a in aprs}) > 1:
            raise ValueError("all APRs of a batch must have the same dimension, got 2D and 3D APRs")
        if len(channels) > 1:
            raise ValueError(f"all APRs of a batch must have the same number of channels, got {sorted(map(str, channels))}")
        self.aprs = aprs
        self.particle_offsets = np.concatenate([[0], np.cumsum([a.n_particles for a in aprs])]).astype(np.int64)
        self.tree_offsets = np.concatenate([[0], np.cumsum([a.n_tree for a in aprs])]).astype(np.int64)
        self.batch_index = np.repeat(np.arange(len(aprs)), [a.n_particles for a in aprs]).astype(np.int64)
        self._tables = {}  # the one cache of plans and tensors (see _table)

    # --- plans and tensors, built on first use and held in the batch's one cache -------------------
    def _table(self, key: tuple, build):
        """The entry cached under ``key`` in ``self._tables``, made by ``build()`` on first use."""
        t = self._tables
        if key not in t:
            t[key] = build()
        return t[key]

    def plan(self, key: tuple, build):
        """The index plan cached under ``key`` (a tuple) in the batch's cache, made by ``build(aprs)``
        from the batch's APRs on first use. :func:`aprlib.ops.plans.tree_plan`, ``conv_plan`` and
        ``pool_plan`` get the batch's plans through this method, so every layer given the batch shares
        them (this module cannot import those plan classes: they make batches)."""
        if not isinstance(key, tuple):
            raise TypeError(f"a plan key must be a tuple, got {type(key).__name__}")
        return self._table(("plan",) + key, lambda: build(self.aprs))

    def _device_tensor(self, name: str, build, device) -> torch.Tensor:
        """The int64 tensor ``build()`` (numpy) on ``device``, made once per device under (name, device).
        On ``meta`` (a shape pass: :func:`aprlib.nn.prepare.prepare`) the CPU tensor is made and cached,
        the one the real pass will use, and a meta tensor of its shape returned, never cached."""
        device = torch.device(device)
        if device.type == "meta":
            cpu = self._device_tensor(name, build, "cpu")
            return torch.empty_like(cpu, device=device)
        return self._table((name, str(device)), lambda: torch.as_tensor(build(), device=device))

    def pixel_owner(self, device="cpu") -> torch.Tensor:
        """(sum of the images' pixels,) int64 tensor on ``device``: the batch row of the particle holding
        each pixel (voxel) of each image, images one after the other (made once per device from :meth:`APR.pixel_owner`)."""
        return self._device_tensor("pixel_owner", lambda: np.concatenate(
            [a.pixel_owner().ravel() + off for a, off in zip(self.aprs, self.particle_offsets[:-1])]), device)

    def __len__(self) -> int:
        return len(self.aprs)

    def batch_index_tensor(self, device="cpu") -> torch.Tensor:
        """``batch_index`` as an int64 tensor on ``device`` (made once per device)."""
        return self._device_tensor("batch_index", lambda: self.batch_index, device)

    def __getitem__(self, i: int) -> APR:
        return self.aprs[i]

    def __iter__(self):
        return iter(self.aprs)

    @property
    def ndim(self) -> int:
        """2 or 3: the dimension of the batch's APRs."""
        return self.aprs[0].ndim

    @property
    def n_particles(self) -> int:
        return int(self.particle_offsets[-1])

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [a.shape for a in self.aprs]

    def _cat(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(a, name) for a in self.aprs])

    @property
    def level(self) -> np.ndarray:
        return self._cat("level")

    def features(self, dtype=torch.float32) -> torch.Tensor:
        """Intensities of all particles as a tensor (N_total, C) of a floating-point ``dtype``."""
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"features need a floating-point torch dtype, got {dtype!r}")
        if self.aprs[0].intensities is None:
            raise ValueError("the APRs of this batch have no intensities")
        vals = [a.intensities if a.intensities.ndim == 2 else a.intensities[:, None] for a in self.aprs]
        return torch.from_numpy(np.concatenate(vals)).to(dtype)

    def split(self, values) -> list:
        """Split a (N_total, ...) array or tensor into one piece per APR."""
        if not hasattr(values, "shape") or len(values.shape) == 0:
            raise TypeError(f"values must be an array or tensor with {self.n_particles} rows, got "
                            f"{type(values).__name__}")
        if values.shape[0] != self.n_particles:
            raise ValueError(f"values must have {self.n_particles} rows, got {values.shape[0]}")
        o = self.particle_offsets
        return [values[o[i]:o[i + 1]] for i in range(len(self))]

    def reconstruct(self, values=None) -> list[np.ndarray]:
        """Piecewise-constant images, one per APR, from (N_total, ...) values (default intensities)."""
        if values is None:
            return [a.reconstruct() for a in self.aprs]
        return [a.reconstruct(v) for a, v in zip(self.aprs, self.split(values))]

    def __repr__(self) -> str:
        return f"APRBatch(size={len(self)}, particles={self.n_particles})"



def _reduce_for_processes(batch: APRBatch):
    """How torch's DataLoader workers (and other ``multiprocessing`` queues) send a batch: every array
    of it (its APRs, their cached index tables, the batch's plans: everything in ``vars(batch)``, the
    ``_tables`` caches included) in one tensor, which
    ``torch.multiprocessing`` passes through shared memory (:mod:`aprlib.apr.packing`). Plain
    :mod:`pickle` is unaffected."""
    return _unpack_batch, pack(batch.__dict__)


ForkingPickler.register(APRBatch, _reduce_for_processes)


def _unpack_batch(skeleton: bytes, buffer: torch.Tensor, layout: list) -> APRBatch:
    batch = APRBatch.__new__(APRBatch)  # the batch's own attributes, ``_tables`` included, as packed
    batch.__dict__.update(unpack(skeleton, buffer, layout))
    return batch


def collate_aprs(items):
    """DataLoader collate_fn for (APR, label) pairs -> (APRBatch, labels int64 tensor)."""
    items = list(items)
    if not items:
        raise ValueError("collate_aprs needs at least one (APR, label) pair")
    for k, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"item {k} must be an (APR, label) pair, got {type(item).__name__}")
    aprs, labels = zip(*items)
    for k, label in enumerate(labels):
        if isinstance(label, torch.Tensor) and label.numel() == 1:
            label = label.item()
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral):
            raise ValueError(f"label of item {k} must be an integer class index, got {label!r}")
    return APRBatch(aprs), torch.as_tensor([int(label) for label in labels], dtype=torch.int64)

"""One buffer for every array of an object graph, so that a prepared APR batch (its APRs, their
index tables and the batch's plans: hundreds of numpy arrays, ~50 MB for 36 APRs of 256^2) crosses
from a DataLoader worker to the trainer as a single torch tensor.

:func:`pack` pickles an object with every numpy array (of a plain numeric dtype) replaced by a
reference into one uint8 tensor holding all their bytes (64-byte aligned); :func:`unpack` rebuilds it
with the arrays as views of that tensor (no copy). Pickled by torch's DataLoader queues (which use
``torch.multiprocessing``'s reductions), the tensor travels through shared memory: the worker copies
the arrays once into it, and the trainer maps it instead of reading and unpickling ~50 MB. Pickled
by plain :mod:`pickle`, the tensor is one contiguous blob.
"""
from __future__ import annotations

import io
import math
import pickle

import numpy as np
import torch

__all__ = ["pack", "unpack"]

_ALIGN = 64


class _Pickler(pickle.Pickler):
    def __init__(self, file):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays: list[np.ndarray] = []
        self.ids: dict[int, int] = {}

    def persistent_id(self, obj):
        if type(obj) is not np.ndarray or obj.dtype.hasobject or obj.dtype.fields is not None:
            return None
        i = self.ids.get(id(obj))
        if i is None:  # an array reached twice is stored once (and stays one object after unpacking)
            i = self.ids[id(obj)] = len(self.arrays)
            self.arrays.append(obj)
        return ("array", i)


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, arrays):
        super().__init__(file)
        self.arrays = arrays

    def persistent_load(self, pid):
        kind, i = pid
        if kind != "array" or not 0 <= i < len(self.arrays):
            raise pickle.UnpicklingError(f"not an aprlib packed array reference: {pid!r}")
        return self.arrays[i]


def pack(obj) -> tuple[bytes, torch.Tensor, list]:
    """(pickled skeleton, uint8 buffer tensor, array layout [(offset, dtype str, shape)]) of ``obj``."""
    f = io.BytesIO()
    p = _Pickler(f)
    p.dump(obj)
    layout, offset = [], 0
    for a in p.arrays:
        layout.append((offset, a.dtype.str, a.shape))
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    buffer = torch.empty(offset, dtype=torch.uint8)
    raw = buffer.numpy()
    for a, (off, _, _) in zip(p.arrays, layout):
        raw[off:off + a.nbytes].view(a.dtype).reshape(a.shape)[...] = a  # C order, whatever the source's
    return f.getvalue(), buffer, layout


def unpack(skeleton: bytes, buffer: torch.Tensor, layout: list):
    """Inverse of :func:`pack`: the arrays are writable views of ``buffer`` (which they keep alive)."""
    if not isinstance(buffer, torch.Tensor) or buffer.dtype != torch.uint8 or buffer.ndim != 1:
        raise TypeError("a packed buffer must be a 1D uint8 tensor")
    raw = buffer.numpy()
    arrays, dtypes = [], {}
    for off, dtype, shape in layout:
        dt = dtypes.get(dtype) or dtypes.setdefault(dtype, np.dtype(dtype))
        n = math.prod(shape) * dt.itemsize
        if off < 0 or off + n > raw.size:
            raise ValueError(f"packed array at {off} of {n} bytes lies outside the {raw.size}-byte buffer")
        arrays.append(np.ndarray(shape, dt, buffer=raw, offset=off))
    return _Unpickler(io.BytesIO(skeleton), arrays).load()

"""A prepared APR batch crosses process queues packed into one tensor (aprlib.apr.packing)."""
from __future__ import annotations

import pickle
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch

from aprlib.apr import APRBatch
from aprlib.apr.packing import pack, unpack
from aprlib.data.synthetic import SyntheticShapesStream
from aprlib.models import apr_network
from aprlib.train import BatchBuilder, InputSpec, layer_plan


@pytest.fixture(scope="module")
def prepared():
    stream = SyntheticShapesStream(seed=5, size=(48, 48))
    torch.manual_seed(0)
    model = apr_network("B", "full")
    batch, labels = BatchBuilder(InputSpec("apr"), layer_plan(model))([stream.image(j) for j in range(3)])
    return model, batch


def _arrays(obj, out=None, seen=None):
    """Every numpy array reachable from obj, in a stable order."""
    out, seen = ([] if out is None else out), (set() if seen is None else seen)
    if id(obj) in seen:
        return out
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        out.append(obj)
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            _arrays(obj[k], out, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _arrays(v, out, seen)
    elif hasattr(obj, "__dict__"):
        _arrays(vars(obj), out, seen)
    return out


def test_unpacked_batch_equals_the_original(prepared):
    model, batch = prepared
    skeleton, buffer, layout = pack(batch.__dict__)
    copy = APRBatch.__new__(APRBatch)
    copy.__dict__.update(unpack(skeleton, buffer, layout))
    a, b = _arrays(batch), _arrays(copy)
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)
    # every array is a writable view of the one buffer, which the views keep alive
    raw = buffer.numpy()
    assert all(np.shares_memory(y, raw) and y.flags.writeable for y in b if y.size)
    del buffer, raw
    with torch.no_grad():
        assert torch.equal(model(batch), model(copy))  # the cached tables are used as they are


def test_queues_pack_and_plain_pickle_does_not(prepared):
    _, batch = prepared
    reduced = ForkingPickler.dumps(batch)  # what torch's DataLoader queues do: one tensor (shared memory)
    assert len(bytes(reduced)) < 0.5 * len(pickle.dumps(batch))
    copy = pickle.loads(pickle.dumps(batch))  # plain pickle: arrays as they are, no buffer tensor
    assert not any(isinstance(v, torch.Tensor) for v in vars(copy).values())
    assert all(np.array_equal(x, y) for x, y in zip(_arrays(batch), _arrays(copy)))


def test_a_corrupt_layout_is_refused(prepared):
    _, batch = prepared
    skeleton, buffer, layout = pack(batch.__dict__)
    i = next(i for i, (_, _, shape) in enumerate(layout) if np.prod(shape) > 0)
    _, dtype, shape = layout[i]
    past_the_end = layout[:i] + [(buffer.numel() - 1, dtype, shape)] + layout[i + 1:]
    with pytest.raises(ValueError, match="outside"):
        unpack(skeleton, buffer, past_the_end)
    with pytest.raises(TypeError, match="uint8"):
        unpack(skeleton, buffer.to(torch.int32), layout)
    with pytest.raises(pickle.UnpicklingError, match="packed array reference"):
        unpack(skeleton, buffer, layout[:1])


def test_dataloader_workers_deliver_identical_batches(prepared):
    model, _ = prepared
    stream = SyntheticShapesStream(seed=5, size=(48, 48))
    builder = BatchBuilder(InputSpec("apr"), layer_plan(model))

    class Batches(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return builder([stream.image(j) for j in range(3 * i, 3 * i + 3)])

    local = [Batches()[i] for i in range(2)]
    remote = list(torch.utils.data.DataLoader(Batches(), batch_size=None, num_workers=1))
    with torch.no_grad():
        for (xa, ya), (xb, yb) in zip(local, remote):
            assert torch.equal(ya, yb)
            assert torch.equal(model(xa), model(xb))

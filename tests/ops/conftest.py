"""Fixtures shared by the op tests (tests/ops/test_<op>.py)."""
from __future__ import annotations

import pytest

from op_batches import small_batch


@pytest.fixture(scope="module")
def batch():
    """:func:`op_batches.small_batch`, with at least one APR of more than two levels."""
    b = small_batch()
    assert any(len(a.levels_present()) > 2 for a in b.aprs)
    return b

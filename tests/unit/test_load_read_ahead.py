"""The PostgreSQL load reads its object one batch ahead in a thread: every batch, in order, once;
an error in the reading reaches the consumer; a consumer that stops early stops the thread."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from include.etlkit.load.postgres import _read_ahead


def _batches(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"bad batch {i}")
        yield pa.record_batch([pa.array([i])], names=["n"])


def test_every_batch_arrives_once_in_order():
    with _read_ahead(_batches(50)) as batches:
        assert [b.column(0)[0].as_py() for b in batches] == list(range(50))


def test_an_error_while_reading_reaches_the_consumer():
    seen = []
    with pytest.raises(ValueError, match="bad batch 3"), _read_ahead(_batches(10, fail_at=3)) as batches:
        seen.extend(b.column(0)[0].as_py() for b in batches)
    assert seen == [0, 1, 2]


def test_a_consumer_that_stops_early_stops_the_thread():
    before = threading.active_count()
    with pytest.raises(RuntimeError), _read_ahead(_batches(1000)) as batches:
        next(batches)
        raise RuntimeError("the COPY failed")
    assert threading.active_count() == before

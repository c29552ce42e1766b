"""Reading a local Parquet file batch by batch, in memory bounded by the batch, not by the file.

pyarrow pre-buffers by default (coalesced reads, which help on S3) and keeps what it pre-buffered
for the reader's life: iterating a local file's batches then holds the file's compressed column
chunks, row group after row group, until the last batch (measured: a transform's RSS grew by ~45 MB
per million rows, bench/README.md). Every streaming read of a landed or processed file the tasks
downloaded goes through here instead: no pre-buffering, column chunks read through a small buffer.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pq = lazy_module("pyarrow.parquet")

READ_BUFFER_BYTES = 1 << 20


def open_local(path: Path) -> pq.ParquetFile:
    """A local Parquet file opened for streaming (see the module docstring)."""
    return pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)


def stream_batches(
    path: Path, batch_size: int, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The file's record batches of ``batch_size`` rows (``columns`` only, when given)."""
    yield from open_local(path).iter_batches(batch_size=batch_size, columns=columns)

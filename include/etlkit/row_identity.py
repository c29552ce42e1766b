"""A landed row version's identity: one definition for every table extract and its reconciliation.

A table extract lands each row with its identity in :data:`ROW_HASH`; the ledger records it as the
row's version, and the daily reconciliation computes it again over the live table and lands the rows
whose identity differs (changed without moving their cursor). Both sides must compute it the same
way, so it is computed here, in Arrow after the read, never by the source: asking PostgreSQL for
``md5(ROW(t.*)::text)`` cost more than the whole read, and MySQL's ``MD5(CONCAT_WS(...))`` about as
much as a ``mysql --quick`` read of the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

__all__ = ["ROW_HASH", "SEPARATOR", "row_identity"]

# The column a table extract lands each row's identity in (next to the source's columns): the
# ledger's, not the source's (the landed-file validation leaves it out of a feed's columns).
ROW_HASH = "_row_hash"
SEPARATOR = "\x1f"  # between a row's values: the ASCII unit separator
NULL_TEXT = "\\N"  # a NULL value's text, as COPY writes it


def row_identity(columns: Sequence[pa.Array | pa.ChunkedArray]) -> pa.Array:
    """A row version's identity: SipHash-2-4 (64 bits, pandas' fixed key) of its values as text.

    Each value is taken as text (Arrow's cast to string; a binary column's bytes as they are), NULL
    as ``\\N``, the values joined by a unit separator, and the identity written as the hash's decimal
    text. The extract and its reconciliation call this on the same columns (PostgreSQL's typed as the
    catalogue declares them, MySQL's as the server's text), so they agree. pandas' ``hash_array`` is
    the one keyed hash in C this environment offers; its key and algorithm have been fixed for years,
    and a change would only make the next reconciliation land every row again (a new version per
    key, never a lost change). A value's ``str`` and its UTF-8 bytes hash alike, so a binary column
    changes nothing for the others.
    """
    from pandas.util import hash_array

    texts = [c if pa.types.is_binary(c.type) else pc.cast(c, pa.string()) for c in columns]
    separator: str | pa.Scalar = SEPARATOR
    if any(pa.types.is_binary(text.type) for text in texts):
        texts = [text.cast(pa.binary()) for text in texts]
        separator = pa.scalar(SEPARATOR.encode(), pa.binary())
    text = pc.binary_join_element_wise(*texts, separator, null_handling="replace", null_replacement=NULL_TEXT)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    hashes = hash_array(text.to_numpy(zero_copy_only=False), categorize=False)
    return pc.cast(pa.array(hashes, type=pa.uint64()), pa.string())

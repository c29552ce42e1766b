"""What changed between the schemas of a table's landed objects, said in words.

The transform concatenates a table's objects with ``how="diagonal_relaxed"``, so additive drift (a
new column, a widened type) needs nothing from anyone. When a model fails anyway, the change that
broke it (a key column dropped, a type narrowed) is what its owner needs to read first: this is the
sentence the failure carries.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")


def schema_changes(table: str, before: pa.Schema, after: pa.Schema) -> list[str]:
    old = {f.name: f.type for f in before}
    new = {f.name: f.type for f in after}
    changes = [f"{table}.{n} added ({t})" for n, t in new.items() if n not in old]
    changes += [f"{table}.{n} dropped (was {t})" for n, t in old.items() if n not in new]
    changes += [f"{table}.{n} retyped {old[n]} -> {t}" for n, t in new.items() if n in old and old[n] != t]
    return changes


def describe_drift(table: str, paths: Sequence[Path]) -> list[str]:
    """Every change from one landed object's schema to the next (oldest first)."""
    schemas = [pq.read_schema(path) for path in paths]
    return [change for a, b in itertools.pairwise(schemas) for change in schema_changes(table, a, b)]

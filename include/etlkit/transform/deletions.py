"""Rows deleted in a source, as deletions of the warehouse tables built from them.

The reconciliation lands a tombstone object per table (``<table>.deleted``: the deleted keys and
``_deleted_at``). A deletion reaches the models whose *primary* input (the first one) is that table
and reads its rows (not another model's output): their first key column is that table's key
(``dim_location.location_id`` is ``address.address_id``, ``fact_payment.payment_id`` is
``payment.payment_id``). A deleted parent of a join (an address a counterparty pointed to) deletes
nothing of the child's model: the source's own foreign keys forbid deleting a parent still in use.

Each such model gets a processed object ``<model>.deleted`` (its first key column, typed as the
table stores it, and ``_deleted_at``); the load marks the rows (``deleted_at`` on a dimension, a
deletion version of a fact: see ``Warehouse.apply_deletions``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module
from include.etlkit.pipelines.models import Model

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")


def deleting_models(models: Sequence[Model], table: str) -> list[Model]:
    """The models a deletion of ``table``'s rows deletes from."""
    return [m for m in models if m.inputs and m.inputs[0].name == table and m.inputs[0].rows != "model"]


def deletions(
    model: Model, tombstones: Sequence[Path], schemas: Mapping[str, pa.Schema], source_key: str
) -> pa.Table:
    """The model's deletions: its first key column (typed as the target) and ``_deleted_at``.

    ``source_key`` is the table's key column in the tombstones (text, as the reconciliation saw it).
    """
    from include.etlkit.control.ledger import DELETED_AT  # the ledger: imported when a task runs

    table = pa.concat_tables([pq.read_table(path) for path in tombstones])
    key = model.key[0]
    target = schemas[model.name].field(key).type
    try:
        keys = pc.cast(table.column(source_key), target)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{model.name}.{key}: deleted keys of {source_key} are not {target}: {exc}") from exc
    return pa.table({key: keys, DELETED_AT: table.column(DELETED_AT).cast(pa.timestamp("us"))})

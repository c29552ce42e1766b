"""``etl.source_schema`` and ``etl.schema_change``: the columns each source table had, and how they changed.

Before an extract, the table's live columns are compared (:func:`diff_columns`) with those its last
completed run recorded; the changes and the new schema are recorded together
(:meth:`SchemaRegistry.record`), so a change is reported exactly once. The DDL is
``sql/postgres/control/schema_drift.sql``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from include.etlkit.control.store import ControlStore


class Column(Protocol):
    """A live source column: its name and its type as the source's catalogue spells it."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...


@dataclass(frozen=True)
class SchemaChange:
    kind: str  # added, dropped, retyped
    column: str
    old_type: str | None
    new_type: str | None

    def describe(self) -> str:
        if self.kind == "added":
            return f"column {self.column!r} added ({self.new_type}): landed from now on"
        if self.kind == "dropped":
            return f"column {self.column!r} dropped (was {self.old_type}): absent from files landed from now"
        return f"column {self.column!r} retyped {self.old_type} -> {self.new_type}"


def diff_columns(previous: Sequence[dict[str, str]] | None, current: Sequence[Column]) -> list[SchemaChange]:
    """The changes from a recorded schema to the live one (none the first time: nothing to compare)."""
    if previous is None:
        return []
    old = {c["name"]: c["type"] for c in previous}
    new = {c.name: c.type for c in current}
    changes = [SchemaChange("added", n, None, t) for n, t in new.items() if n not in old]
    changes += [SchemaChange("dropped", n, t, None) for n, t in old.items() if n not in new]
    changes += [SchemaChange("retyped", n, old[n], t) for n, t in new.items() if n in old and old[n] != t]
    return changes


class SchemaRegistry:
    """``etl.source_schema`` and ``etl.schema_change`` (DDL: ``sql/postgres/control/schema_drift.sql``)."""

    def __init__(self, store: ControlStore | None = None) -> None:
        self.store = store or ControlStore()

    def recorded(self, source: str, table_name: str) -> list[dict[str, str]] | None:
        rows = self.store.query(
            "SELECT columns FROM etl.source_schema WHERE source = %s AND table_name = %s",
            (source, table_name),
        )
        return rows[0][0] if rows else None

    def added_columns(self, source: str, table_name: str) -> list[str]:
        """Every column ever recorded as added to the table, in the order they were added.

        Columns a table had at its first extract are its baseline, so these are the ones its models
        were (probably) written without: the transform carries them into ``additional_column``.
        """
        rows = self.store.query(
            "SELECT column_name FROM etl.schema_change WHERE source = %s AND table_name = %s "
            "AND change_kind = 'added' GROUP BY column_name ORDER BY min(change_id)",
            (source, table_name),
        )
        return [name for (name,) in rows]

    def record(
        self,
        source: str,
        table_name: str,
        columns: Sequence[Column],
        changes: Sequence[SchemaChange],
        run_id: str,
    ) -> None:
        """Record the changes and the new schema together, so a change is reported exactly once."""
        document = json.dumps([{"name": c.name, "type": c.type} for c in columns])
        with self.store.transaction() as cur:
            for change in changes:
                cur.execute(
                    "INSERT INTO etl.schema_change "
                    "(source, table_name, change_kind, column_name, old_type, new_type, run_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (source, table_name, run_id, change_kind, column_name) DO NOTHING",
                    (
                        source,
                        table_name,
                        change.kind,
                        change.column,
                        change.old_type,
                        change.new_type,
                        run_id,
                    ),
                )
            cur.execute(
                "INSERT INTO etl.source_schema (source, table_name, columns, run_id) "
                "VALUES (%s, %s, %s::jsonb, %s) ON CONFLICT (source, table_name) DO UPDATE SET "
                "columns = EXCLUDED.columns, run_id = EXCLUDED.run_id, recorded_at = now()",
                (source, table_name, document, run_id),
            )

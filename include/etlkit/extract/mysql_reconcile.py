"""Reconciliation of a MySQL table: land the rows that changed without moving their cursor, or
that committed too late for the incremental window, and the keys of rows deleted in the source.

The incremental extract sees a row only when its cursor (``updated_at``) falls in the window it
reads, widened by the feed's ``overlap_minutes``. A row committed by a transaction that ran longer
than the overlap carries a cursor already behind the window, and a row changed in place keeps its
cursor: the extract never sees either. Once a day this reads every row, computes its identity exactly
as the extract does (:func:`~include.etlkit.row_identity.row_identity` of the server's text, the
definition the PostgreSQL extract uses too), compares it with the version last landed
(``Ledger.row_hashes``: the first snapshot's object, the baseline, with the versions landed since
in ``etl.row_version``) and lands the rows that differ or were never landed, as new versions that
flow downstream like any other landing: the PostgreSQL reconciliation's twin
(:mod:`include.etlkit.extract.reconcile`). Keys landed before and absent now are landed as
tombstones (``<table>.deleted``, :func:`~include.etlkit.extract.landing.land_deletions`), once each:
the load marks those rows ``deleted_at`` in the warehouse.
"""

from __future__ import annotations

from typing import Any

from include.etlkit.extract.mysql import MySqlTableExtractOperator, _text_chunks, key_text, quote_identifier
from include.etlkit.row_identity import row_identity
from include.etlkit.windows import ExtractWindow, run_interval, source_clock

# Keys per IN (...) list: MySQL has no array parameter, and a statement has a size limit.
KEYS_PER_STATEMENT = 10_000


class MySqlReconcileOperator(MySqlTableExtractOperator):
    """Land the rows of one MySQL table whose current hash differs from the last landed version."""

    ui_color = "#f6e0e0"

    def execute(self, context: Any) -> dict[str, Any]:
        # The ledger and the landing path: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.extract.landing import Landing, land_deletions

        spec = self.spec
        ledger = Ledger()
        window = ExtractWindow(None, source_clock(run_interval(context)[1]))
        if ledger.landed_until(self.source, spec.name) is None:
            self.log.info(
                "%s.%s was never landed: its first extract takes a full snapshot", self.source, spec.name
            )
            Landing.report(context, rows_in=0, rows_out=0)
            return {"table": spec.name, "rows": 0, "key": None, "mode": "reconcile", "changed": 0}
        landed = ledger.row_hashes(self.source, spec.name, aws_conn_id=self.aws_conn_id)
        current = self._current_hashes()
        changed = sorted(key for key, row_hash in current.items() if landed.get(key) != row_hash)
        self.lineage.read(self.source_table(), rows=len(current))
        deleted = sorted(landed.keys() - current.keys())
        self.log.info(
            "%s.%s: %d rows in the source, %d differ from what was landed, %d were deleted",
            self.source,
            spec.name,
            len(current),
            len(changed),
            len(deleted),
        )
        if deleted:
            land_deletions(
                source=self.source,
                table=spec.name,
                key=spec.key,
                keys=deleted,
                bucket=self.bucket,
                window=window,
                run_id=context["run_id"],
                log=self.log,
                aws_conn_id=self.aws_conn_id,
                lineage=self.lineage,
            )
        if not changed:
            Landing.report(context, rows_in=len(current), rows_out=len(deleted))
            return {
                "table": spec.name, "rows": 0, "key": None, "mode": "reconcile", "changed": 0,
                "deleted": len(deleted),
            }  # fmt: skip
        if len(changed) > KEYS_PER_STATEMENT:
            # Too many keys for one IN list: land the whole table once. The ledger keeps the newest
            # version of each row and the load merges by key, so the unchanged rows change nothing.
            condition = ("1 = 1", [])
        else:
            marks = ", ".join(["%s"] * len(changed))
            condition = (f"CAST({quote_identifier(spec.key)} AS CHAR) IN ({marks})", list(changed))
        result = self.land(context, window, condition=condition, mode="reconcile", advance_state=False)
        return {**result, "changed": len(changed), "deleted": len(deleted)}

    def _current_hashes(self) -> dict[str, str]:
        """Every row's key and identity as they are now (one pass, streamed), computed as the
        extract computes them: the same query's text (:func:`~include.etlkit.extract.mysql.
        _text_chunks`) through the same :func:`~include.etlkit.row_identity.row_identity`, the key
        as the ledger records it (:func:`~include.etlkit.extract.mysql.key_text`)."""
        spec = self.spec
        conn = self._connect()
        try:
            columns = self._columns(conn, spec)
            key = next(i for i, c in enumerate(columns) if c.name == spec.key)
            names = ", ".join(quote_identifier(c.name) for c in columns)
            query = f"SELECT {names} FROM {quote_identifier(spec.name)}"
            hashes: dict[str, str] = {}
            for raw, fallbacks in _text_chunks(conn, query, (), len(columns), self.chunk_size):
                keys = key_text(columns[key], raw[key], fallbacks[key])
                hashes.update(zip(keys.to_pylist(), row_identity(raw).to_pylist(), strict=True))
            return hashes
        finally:
            conn.close()

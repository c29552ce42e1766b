"""Reconciliation: land the rows that changed without moving their ``last_updated``, and deletions.

An incremental extract only sees changes that move the cursor column. The real totesys data also
changes rows in place (a design's file location, an order's agreed date) with ``last_updated``
untouched. Once a day this reads every row (binary COPY into Arrow, as the extract reads), computes its
identity with the extract's own :func:`~include.etlkit.extract.postgres.row_identity` on the same
catalogue-typed columns, and compares it with the identity of the version last landed
(``Ledger.row_hashes``); rows that differ, or were never landed, are landed again as new versions,
and flow downstream like any other landing. Only the differing keys are kept, batch by batch.

Rows deleted in the source (keys landed before, absent now) are landed as tombstones: a Parquet of
their keys and the moment the deletion was seen, under ``<table>.deleted`` (mode ``delete``), with
the deleted rows' versions marked deleted in the same transaction, so each deletion lands once. The
transform turns them into deletions of the models whose primary input is the table, and the load
marks those rows deleted (see :mod:`include.etlkit.transform.deletions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from include.etlkit.extract.postgres import PostgresTableExtractOperator, read_arrow, row_identity
from include.etlkit.lazy import lazy_module
from include.etlkit.windows import ExtractWindow, run_interval, source_clock

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from psycopg import sql
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")
    sql = lazy_module("psycopg.sql")


class PostgresReconcileOperator(PostgresTableExtractOperator):
    """Land the rows of one table whose current hash differs from the last landed version."""

    ui_color = "#f6e0e0"

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        # The ledger and the landing path: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.extract.landing import Landing

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
        hook = PostgresHook(postgres_conn_id=self.conn_id)
        columns, query, conninfo = self._query(hook, spec, sql.SQL("true"), {})
        key_index = [name for name, _ in columns].index(spec.key)
        seen, changed, present = 0, [], set()
        for batch in read_arrow(conninfo, query, columns):
            keys = batch.column(key_index).cast(pa.string()).to_pylist()
            hashes = row_identity(batch.columns).to_pylist()
            changed.extend(key for key, now in zip(keys, hashes, strict=True) if landed.get(key) != now)
            present.update(keys)
            seen += batch.num_rows
        changed.sort()
        deleted = sorted(landed.keys() - present)
        self.lineage.read(self.source_table(), rows=seen)
        self.log.info(
            "%s.%s: %d rows in the source, %d differ from what was landed, %d were deleted",
            self.source,
            spec.name,
            seen,
            len(changed),
            len(deleted),
        )
        if deleted:
            self.land_deletions(context, deleted, window)
        if not changed:
            Landing.report(context, rows_in=seen, rows_out=len(deleted))
            return {
                "table": spec.name, "rows": 0, "key": None, "mode": "reconcile", "changed": 0,
                "deleted": len(deleted),
            }  # fmt: skip
        condition = sql.SQL("t.{key}::text = ANY(%(keys)s)").format(key=sql.Identifier(spec.key))
        result = self.land(
            context, condition, {"keys": changed}, window, mode="reconcile", advance_state=False
        )
        return {**result, "changed": len(changed), "deleted": len(deleted)}

    def land_deletions(self, context: Any, keys: list[str], window: ExtractWindow) -> None:
        """Land the tombstones of rows deleted in the source (their keys, when it was seen)."""
        from include.etlkit.extract.landing import land_deletions

        land_deletions(
            source=self.source,
            table=self.spec.name,
            key=self.spec.key,
            keys=keys,
            bucket=self.bucket,
            window=window,
            run_id=context["run_id"],
            log=self.log,
            aws_conn_id=self.aws_conn_id,
            lineage=self.lineage,
        )

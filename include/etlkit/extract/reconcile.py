"""Reconciliation: land the rows that changed without moving their ``last_updated``.

An incremental extract only sees changes that move the cursor column. The real totesys data also
changes rows in place (a design's file location, an order's agreed date) with ``last_updated``
untouched. Once a day this reads every row (binary COPY into Arrow, as the extract reads), computes its
identity with the extract's own :func:`~include.etlkit.extract.postgres.row_identity` on the same
catalogue-typed columns, and compares it with the identity of the version last landed
(``Ledger.row_hashes``); rows that differ, or were never landed, are landed again as new versions,
and flow downstream like any other landing. Only the differing keys are kept, batch by batch.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from psycopg import sql

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.landing import Landing
from include.etlkit.extract.postgres import PostgresTableExtractOperator, read_arrow, row_identity
from include.etlkit.windows import ExtractWindow, run_interval, source_clock


class PostgresReconcileOperator(PostgresTableExtractOperator):
    """Land the rows of one table whose current hash differs from the last landed version."""

    ui_color = "#f6e0e0"

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

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
        seen, changed = 0, []
        for batch in read_arrow(conninfo, query, columns):
            keys = batch.column(key_index).cast(pa.string()).to_pylist()
            hashes = row_identity(batch.columns).to_pylist()
            changed.extend(key for key, now in zip(keys, hashes, strict=True) if landed.get(key) != now)
            seen += batch.num_rows
        changed.sort()
        self.log.info(
            "%s.%s: %d rows in the source, %d differ from what was landed",
            self.source,
            spec.name,
            seen,
            len(changed),
        )
        if not changed:
            Landing.report(context, rows_in=seen, rows_out=0)
            return {"table": spec.name, "rows": 0, "key": None, "mode": "reconcile", "changed": 0}
        condition = sql.SQL("t.{key}::text = ANY(%(keys)s)").format(key=sql.Identifier(spec.key))
        result = self.land(
            context, condition, {"keys": changed}, window, mode="reconcile", advance_state=False
        )
        return {**result, "changed": len(changed)}

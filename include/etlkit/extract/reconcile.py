"""Reconciliation: land the rows that changed without moving their ``last_updated``.

An incremental extract only sees changes that move the cursor column. The real totesys data also
changes rows in place (a design's file location, an order's agreed date) with ``last_updated``
untouched. Once a day this compares every row's hash, computed by the source exactly as the extract
computes it, with the hash of the version last landed (``etl.row_version``); rows that differ, or
were never landed, are landed again as new versions, and flow downstream like any other landing.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.landing import Landing
from include.etlkit.extract.postgres import ROW_HASH_SQL, PostgresTableExtractOperator
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
        landed = ledger.row_hashes(self.source, spec.name)
        query = sql.SQL("SELECT t.{key}::text, {hash} FROM {table} AS t").format(
            key=sql.Identifier(spec.key), hash=ROW_HASH_SQL, table=sql.Identifier(spec.schema, spec.name)
        )
        hook = PostgresHook(postgres_conn_id=self.conn_id)
        conn = hook.get_conn()
        try:
            with conn.cursor() as cur:
                cur.execute(query)
                current = cur.fetchall()
        finally:
            conn.close()
        changed = sorted(key for key, row_hash in current if landed.get(key) != row_hash)
        self.log.info(
            "%s.%s: %d rows in the source, %d differ from what was landed",
            self.source,
            spec.name,
            len(current),
            len(changed),
        )
        if not changed:
            Landing.report(context, rows_in=len(current), rows_out=0)
            return {"table": spec.name, "rows": 0, "key": None, "mode": "reconcile", "changed": 0}
        condition = sql.SQL("t.{key}::text = ANY(%(keys)s)").format(key=sql.Identifier(spec.key))
        result = self.land(
            context, condition, {"keys": changed}, window, mode="reconcile", advance_state=False
        )
        return {**result, "changed": len(changed)}

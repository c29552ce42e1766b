"""The warehouse tasks: load processed objects, and run a script of ``sql/<dialect>/``.

Both pick the warehouse when the task runs (the ``warehouse_conn_id`` Variable, unless a task names
its connection), so one DAG serves PostgreSQL and Snowflake alike. The quality checks use
common-sql's check operators directly: their ``conn_id`` is a templated field, and
:data:`include.etlkit.load.warehouse.WAREHOUSE_CONN_ID` renders to the same Variable.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.store import ControlStore
from include.etlkit.files.status import FileStatusStore
from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import ReportsLineage, sql_tables
from include.etlkit.load.warehouse import TableLoad, Warehouse, warehouse_for
from include.etlkit.paths import SQL_DIR
from include.etlkit.redaction import redact

if TYPE_CHECKING:
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pq = lazy_module("pyarrow.parquet")


class LoadProcessedOperator(ReportsLineage, BaseOperator):
    """Load a source's pending processed objects into the warehouse, in ``tables`` order.

    Lineage: the processed tables in (rows); the warehouse's ``landing`` tables (rows copied) and
    ``core`` tables (rows merged) out.

    Dimensions come first so the facts' foreign keys resolve. Each object is marked loaded right after
    the warehouse has merged it (in the ledger, and in ``etl.file_status`` when it holds the valid
    rows of a validated file); one that fails stays pending for the next try, and loading an
    object twice changes nothing (see :mod:`include.etlkit.load.warehouse`).

    :param conn_id: the warehouse connection; default: the ``warehouse_conn_id`` Variable at run time.
    """

    template_fields: Sequence[str] = ("conn_id",)
    ui_color = "#e6dcf3"

    def __init__(
        self,
        *,
        source: str,
        tables: Sequence[TableLoad],
        conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.tables = list(tables)
        self.conn_id = conn_id

    def execute(self, context: Any) -> dict[str, int]:
        # One load of a source at a time (the schedule, a manual run, a backfill): a second waits,
        # then finds what the first loaded marked loaded, so neither can put back an older version.
        with ControlStore().exclusive(f"etl.load:{self.source}"):
            return self._load(context)

    def _load(self, context: Any) -> dict[str, int]:
        # The ledger and the object store: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger, deletions_of
        from include.etlkit.storage import ImmutableStore

        ledger = Ledger()
        files = FileStatusStore()
        pending = ledger.pending_processed(self.source)
        known = {spec.name for spec in self.tables} | {deletions_of(spec.name) for spec in self.tables}
        unknown = sorted({o.table_name for o in pending} - known)
        if unknown:
            raise ValueError(f"processed objects for tables this load does not know: {unknown}")
        warehouse = warehouse_for(self.conn_id or None)
        self.log.info("loading into the %s warehouse of connection %r", warehouse.dialect, warehouse.conn_id)
        merged: dict[str, int] = {}
        rows_in = rows_rejected = 0
        refused: list[str] = []
        for spec in self.tables:
            for obj in (o for o in pending if o.table_name == spec.name):
                try:
                    rows, changed = warehouse.load_object(spec, obj.bucket, obj.key)
                except Exception as exc:
                    if not warehouse.refuses(exc):
                        raise  # the warehouse is unavailable: fail, and the retry takes the object
                    # Its data cannot go in, today or on any retry: set it aside, go on with the rest.
                    reason = redact(f"the warehouse refused it: {type(exc).__name__}: {exc}")[:2000]
                    ledger.mark_rejected(obj, context["run_id"], reason)
                    files.mark_refused(obj.key, context["run_id"], reason)
                    rows_in += obj.rows
                    rows_rejected += obj.rows
                    refused.append(obj.key)
                    self.log.error("%s: s3://%s/%s rejected: %s", spec.name, obj.bucket, obj.key, reason)
                    continue
                ledger.mark_loaded([obj], context["run_id"])
                files.mark_loaded([obj.key], context["run_id"])  # validated files: now 'loaded'
                rows_in += rows
                self._trace(warehouse, spec, obj.bucket, obj.key, rows, changed)
                merged[spec.name] = merged.get(spec.name, 0) + changed
                self.log.info(
                    "%s: %d rows from s3://%s/%s, %d merged into core",
                    spec.name,
                    rows,
                    obj.bucket,
                    obj.key,
                    changed,
                )
            # Rows deleted in the source, after the table's new rows (a key re-landed and then
            # deleted ends deleted).
            for obj in (o for o in pending if o.table_name == deletions_of(spec.name)):
                gone = pq.read_table(io.BytesIO(ImmutableStore().get_bytes(obj.bucket, obj.key)))
                changed = warehouse.apply_deletions(spec, gone)
                ledger.mark_loaded([obj], context["run_id"])
                self._trace(warehouse, spec, obj.bucket, obj.key, obj.rows, changed, landed=False)
                merged[spec.name] = merged.get(spec.name, 0) + changed
                self.log.info(
                    "%s: %d row(s) deleted in the source, %d marked in core", spec.name, obj.rows, changed
                )
        if not pending:
            self.log.info("nothing processed and not yet loaded for %s", self.source)
        report_rows(context, rows_in=rows_in, rows_out=sum(merged.values()), rows_rejected=rows_rejected)
        if refused:
            self.log.warning("%d object(s) rejected by the warehouse: %s", len(refused), refused)
        return merged

    def _trace(
        self,
        warehouse: Warehouse,
        spec: TableLoad,
        bucket: str,
        key: str,
        rows: int,
        changed: int,
        *,
        landed: bool = True,
    ) -> None:
        """One loaded object for the task's OpenLineage events: read ``rows``; copied into
        ``landing`` (unless tombstones, which only mark ``core``), ``changed`` rows merged into ``core``."""
        self.lineage.read_object(bucket, key, rows=rows)
        table = spec.warehouse_table
        if landed:
            self.lineage.wrote(self.lineage_table(warehouse.conn_id, spec.landing_schema, table), rows=rows)
        self.lineage.wrote(self.lineage_table(warehouse.conn_id, spec.core_schema, table), rows=changed)


class WarehouseScriptOperator(ReportsLineage, BaseOperator):
    """Run ``sql/<dialect>/<script>`` (DDL, marts, dim_date...) on the warehouse chosen at run time.

    Lineage: the tables its scripts read and the tables and views they write, as OpenLineage's SQL
    parser finds them (the marts: ``core`` tables in, ``mart`` views out).

    ``SQLExecuteQueryOperator`` takes its SQL from the DAG's ``template_searchpath``, one folder
    fixed when the DAG is parsed; the dialect is only known once the connection is, so this
    operator reads the file itself. Scripts are idempotent (``IF NOT EXISTS``, ``CREATE OR
    REPLACE VIEW``, inserts of what is missing), so a retry is safe.

    :param scripts: paths under ``sql/<dialect>/``, run in order (``"totesys/core.sql"``, say).
    :param conn_id: the warehouse connection; default: the ``warehouse_conn_id`` Variable at run time.
    """

    template_fields: Sequence[str] = ("conn_id",)
    ui_color = "#ede6f6"

    def __init__(self, *, scripts: str | Sequence[str], conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scripts = [scripts] if isinstance(scripts, str) else list(scripts)
        self.conn_id = conn_id

    def execute(self, context: Any) -> None:
        warehouse = warehouse_for(self.conn_id or None)
        for script in self.scripts:
            path = SQL_DIR / warehouse.dialect / script
            self.log.info("running %s on connection %r", path.relative_to(SQL_DIR), warehouse.conn_id)
            script_sql = path.read_text()
            warehouse.run_script(script_sql)
            self._trace(warehouse, script_sql)

    def _trace(self, warehouse: Warehouse, script_sql: str) -> None:
        """The script's tables for the task's OpenLineage events (a script the parser cannot read
        only goes without lineage)."""
        try:
            read, written = sql_tables(script_sql, warehouse.dialect)
        except Exception as exc:
            self.log.warning("no lineage for this script: the SQL parser failed (%s)", exc)
            return
        for names, record in ((read, self.lineage.read), (written, self.lineage.wrote)):
            for name in names:
                schema, _, table = name.rpartition(".")
                record(self.lineage_table(warehouse.conn_id, schema or None, table))

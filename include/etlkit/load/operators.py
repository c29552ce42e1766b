"""The load step: every processed object not yet loaded, into the warehouse, table by table."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.ledger import Ledger
from include.etlkit.files.status import FileStatusStore
from include.etlkit.load.postgres import PostgresWarehouse, TableLoad
from include.etlkit.storage import ImmutableStore


class LoadProcessedOperator(BaseOperator):
    """Load a source's pending processed objects into the warehouse, in ``tables`` order.

    Dimensions come first so the facts' foreign keys resolve. Each object is marked loaded right after
    its own transaction commits (in the ledger, and in ``etl.file_status`` when it holds the valid
    rows of a validated file); one that fails stays pending for the next try, and loading an
    object twice changes nothing (see :mod:`include.etlkit.load.postgres`).
    """

    ui_color = "#e6dcf3"

    def __init__(
        self,
        *,
        source: str,
        tables: Sequence[TableLoad],
        conn_id: str = "warehouse",
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.tables = list(tables)
        self.conn_id = conn_id
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> dict[str, int]:
        ledger = Ledger()
        files = FileStatusStore()
        pending = ledger.pending_processed(self.source)
        known = {spec.name for spec in self.tables}
        unknown = sorted({o.table_name for o in pending} - known)
        if unknown:
            raise ValueError(f"processed objects for tables this load does not know: {unknown}")
        warehouse = PostgresWarehouse(self.conn_id)
        store = ImmutableStore(self.aws_conn_id)
        merged: dict[str, int] = {}
        rows_in = 0
        with tempfile.TemporaryDirectory(prefix="load-") as tmp:
            for spec in self.tables:
                for obj in (o for o in pending if o.table_name == spec.name):
                    local = store.download(obj.bucket, obj.key, Path(tmp) / "object.parquet")
                    rows, changed = warehouse.load_parquet(spec, local, load_id=obj.key)
                    ledger.mark_loaded([obj], context["run_id"])
                    files.mark_loaded([obj.key], context["run_id"])  # validated files: now 'loaded'
                    rows_in += rows
                    merged[spec.name] = merged.get(spec.name, 0) + changed
                    self.log.info(
                        "%s: %d rows from s3://%s/%s, %d merged into core",
                        spec.name,
                        rows,
                        obj.bucket,
                        obj.key,
                        changed,
                    )
        if not pending:
            self.log.info("nothing processed and not yet loaded for %s", self.source)
        report_rows(context, rows_in=rows_in, rows_out=sum(merged.values()))
        return merged

"""The totesys transform step: landed rows in, the star schemas' tables out, as Parquet."""

from __future__ import annotations

import io
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.ledger import Ledger, LedgerObject
from include.etlkit.storage import ImmutableStore, StoredObject
from include.etlkit.totesys import model
from include.etlkit.totesys.transform import build_tables


class TotesysTransformOperator(BaseOperator):
    """Model every landed totesys object not yet transformed into the warehouse tables it affects.

    :param bucket: the processed bucket (templated).
    """

    template_fields = ("bucket",)
    ui_color = "#fdf1d6"

    def __init__(self, *, bucket: str, source: str = "totesys", aws_conn_id: str = "aws_default", **kwargs):
        super().__init__(**kwargs)
        self.bucket = bucket
        self.source = source
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> dict[str, int]:
        ledger = Ledger()
        store = ImmutableStore(self.aws_conn_id)
        pending = ledger.pending_landed(self.source)
        if not pending:
            self.log.info("nothing landed and not yet transformed for %s", self.source)
            report_rows(context, rows_in=0, rows_out=0)
            return {}

        def read(objects: list[LedgerObject]) -> pd.DataFrame:
            tables = [pq.read_table(io.BytesIO(store.get_bytes(o.bucket, o.key))) for o in objects]
            return pa.concat_tables(tables).to_pandas()

        by_table: dict[str, list[LedgerObject]] = defaultdict(list)
        for obj in pending:
            by_table[obj.table_name].append(obj)
        new_rows = {table: read(objects) for table, objects in by_table.items()}

        def current(table: str) -> pd.DataFrame:
            return read(ledger.landed(self.source, [table]))

        built = build_tables(new_rows, current)
        produced: list[tuple[str, StoredObject, int]] = []
        with tempfile.TemporaryDirectory(prefix="transform-") as tmp:
            for name, frame in built.items():
                if frame.empty:
                    continue
                local = Path(tmp) / f"{name}.parquet"
                pq.write_table(
                    pa.Table.from_pandas(frame, schema=model.SCHEMAS[name], preserve_index=False),
                    local,
                    compression="zstd",
                )
                stored = store.create_file(self.bucket, f"{self.source}/{name}", name, local, ".parquet")
                produced.append((name, stored, len(frame)))
        ledger.record_transform(
            source=self.source, run_id=context["run_id"], taken=pending, produced=produced
        )
        rows_in = sum(len(frame) for frame in new_rows.values())
        rows_out = sum(rows for _, _, rows in produced)
        report_rows(context, rows_in=rows_in, rows_out=rows_out)
        summary = {name: rows for name, _, rows in produced}
        self.log.info("transformed %d landed rows into %s", rows_in, summary)
        return summary

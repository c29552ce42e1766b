"""What the tests need to run the Snowflake warehouse on fakesnow (0.11.16), and nothing production uses.

fakesnow stands in for a Snowflake account: ``fakesnow.patch()`` answers
``snowflake.connector.connect`` (which the provider's ``SnowflakeHook`` calls) with a DuckDB
database that parses Snowflake SQL. Two things it cannot do are bridged here:

- **The landing COPY.** Production copies from an external stage over the processed bucket, with
  ``INCLUDE_METADATA`` for the load columns (``copy_into_landing_sql``). fakesnow has no external
  stage over S3 and no ``INCLUDE_METADATA``. :class:`LocalParquetCopy` lands the same processed
  object through the closest COPY fakesnow runs: it downloads the object from the (local) S3, writes
  it again with the load columns the metadata would have filled, and runs ``COPY INTO landing ...
  FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE`` from a local folder of
  that object's own. fakesnow keeps a load history by file too, so a second COPY of one object is
  skipped, as on Snowflake.
- **A MERGE that changes nothing.** fakesnow counts its rows with ``COUNT_IF`` over no rows, which is
  NULL in DuckDB, and then fails adding NULL to a number. :func:`fix_merge_counts` wraps those
  counts in ``COALESCE(..., 0)``: a fix of the fake's bookkeeping, not of the statement.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from include.etlkit.load.snowflake import LOADED_AT, ORDINAL, SnowflakeWarehouse
from include.etlkit.load.warehouse import BATCH_ROWS, LOAD_ID
from include.etlkit.storage import ImmutableStore


def snowflake_connection(schema: str = "PUBLIC", **extra: Any) -> str:
    """An Airflow connection to the fake account, as a deployment would set it (no secret in code)."""
    return json.dumps(
        {
            "conn_type": "snowflake",
            "login": "etl_loader",
            "password": "fake",
            "schema": schema,
            "extra": {
                "account": "fakesnow",
                "database": "WAREHOUSE",
                "warehouse": "ETL_WH",
                "role": "ETL",
                **extra,
            },
        }
    )


class LocalParquetCopy:
    """The tests' landing copy: the processed object, COPYed as Parquet from a local folder of its own."""

    def __init__(self, root: Path, aws_conn_id: str = "aws_default") -> None:
        self.root = root
        self.aws_conn_id = aws_conn_id

    def __call__(self, cur: Any, landing: str, bucket: str, key: str) -> None:
        folder = self.root / "staged" / hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]
        staged = folder / "object.parquet"
        if not staged.exists():
            self._stage(bucket, key, folder, staged)
        cur.execute(
            f"COPY INTO {landing} FROM 'file://{folder}' FILE_FORMAT = (TYPE = PARQUET) "
            "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE ON_ERROR = ABORT_STATEMENT"
        )

    def _stage(self, bucket: str, key: str, folder: Path, staged: Path) -> None:
        """The object with the columns INCLUDE_METADATA fills: key, row number (from 1), scan time."""
        downloads = self.root / "downloads"
        downloads.mkdir(parents=True, exist_ok=True)
        local = ImmutableStore(self.aws_conn_id).download(bucket, key, downloads / folder.name)
        parquet = pq.ParquetFile(local)
        schema = (
            parquet.schema_arrow.append(pa.field(LOAD_ID, pa.string()))
            .append(pa.field(ORDINAL, pa.int64()))
            .append(pa.field(LOADED_AT, pa.timestamp("us", tz="UTC")))
        )
        scanned = datetime.now(UTC)
        folder.mkdir(parents=True, exist_ok=True)
        row = 1
        with pq.ParquetWriter(folder / "object.parquet.part", schema) as writer:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                n = batch.num_rows
                extra = [
                    pa.array([key] * n, pa.string()),
                    pa.array(range(row, row + n), pa.int64()),
                    pa.array([scanned] * n, pa.timestamp("us", tz="UTC")),
                ]
                writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, *extra], schema=schema))
                row += n
        (folder / "object.parquet.part").rename(staged)
        local.unlink()


def fakesnow_warehouse(root: Path):
    """A ``warehouse.LOADERS`` entry for ``snowflake`` connections: it lands through ``LocalParquetCopy``."""

    def build(conn: Any) -> SnowflakeWarehouse:
        return SnowflakeWarehouse.from_connection(conn, landing_copy=LocalParquetCopy(root))

    return build


def fix_merge_counts(monkeypatch: Any) -> None:
    """Make fakesnow count a MERGE that changed nothing as 0 rows instead of failing (see the module doc)."""
    import fakesnow.transforms  # noqa: F401  (loads the module patched below)
    import sqlglot

    merge_module = sys.modules["fakesnow.transforms.merge"]

    def counts(merge_expr: Any) -> Any:
        columns = [
            f'COALESCE(COUNT_IF(merge_op IN ({",".join(map(str, indices))})), 0) AS "number of rows {op}"'
            for op, indices in merge_module.operations(merge_expr).items()
            if indices
        ]
        statement = sqlglot.parse_one(f"SELECT {', '.join(columns)} FROM merge_candidates")
        statement.set("merge_counts", True)
        return statement

    monkeypatch.setattr(merge_module, "_counts", counts)

"""Land one PostgreSQL table's new and changed rows in the ingestion bucket, as Parquet.

The rows stream: ``COPY (SELECT ...) TO STDOUT`` as CSV, read incrementally by pyarrow's CSV reader
with the column types the catalogue declares, written to Parquet in record batches on local disk,
then landed once by :class:`~include.etlkit.extract.base.TableExtractOperator`. No table is held in
memory and no row passes through Python one at a time.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from psycopg import sql

from include.etlkit.control.schema_changes import SchemaRegistry, diff_columns
from include.etlkit.extract.base import TableExtractOperator, TableSpec
from include.etlkit.windows import ExtractWindow

__all__ = ["ROW_HASH", "ROW_HASH_SQL", "PostgresTableExtractOperator", "TableSpec", "arrow_type"]

ROW_HASH = "_row_hash"
# A row version's identity, as the source computes it over the whole row (alias ``t``).
ROW_HASH_SQL = sql.SQL("md5(ROW(t.*)::text)")
BLOCK_SIZE = 8 << 20  # bytes of CSV per pyarrow batch: bounds memory per table
VERSION_BATCH_ROWS = 100_000  # row versions sent to the ledger per COPY batch


def arrow_type(data_type: str, precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type for a PostgreSQL catalogue type (exact where it matters: money stays decimal)."""
    simple = {
        "smallint": pa.int16(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "boolean": pa.bool_(),
        "real": pa.float32(),
        "double precision": pa.float64(),
        "date": pa.date32(),
        "timestamp without time zone": pa.timestamp("us"),
        "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    }
    if data_type in simple:
        return simple[data_type]
    if data_type == "numeric" and precision is not None:
        return pa.decimal128(precision, scale or 0)
    return pa.string()  # text, varchar, unconstrained numeric, json, uuid...: kept verbatim


@dataclass(frozen=True)
class LandedColumn:
    """A landed column and its Arrow type: what schema drift is measured on."""

    name: str
    type: str


def landed_columns(path: Path) -> list[LandedColumn]:
    """The source columns of a landed Parquet file (its row hash left out), in order."""
    schema = pq.read_schema(path)
    return [LandedColumn(f.name, str(f.type)) for f in schema if f.name != ROW_HASH]


class _CopyStream(io.RawIOBase):
    """A readable file over psycopg's COPY TO STDOUT chunks, so pyarrow can pull as it parses.

    psycopg hands out one chunk per row; each ``readinto`` fills the caller's whole buffer from as
    many chunks as fit, so pyarrow reads in large blocks rather than row by row.
    """

    def __init__(self, chunks: Iterator[Any]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target):
            if not self._pending:
                if self._done:
                    break
                try:
                    self._pending = memoryview(next(self._chunks)).cast("B")
                except StopIteration:
                    self._done = True
                    break
            size = min(len(target) - filled, len(self._pending))
            target[filled : filled + size] = self._pending[:size]
            self._pending = self._pending[size:]
            filled += size
        return filled


class PostgresTableExtractOperator(TableExtractOperator):
    """Land the rows of one PostgreSQL table that changed in the run's window (a full snapshot first).

    Parameters as :class:`~include.etlkit.extract.base.TableExtractOperator`.
    """

    ui_color = "#dbe9f6"

    def execute(self, context: Any) -> dict[str, Any]:
        spec = self.spec
        window = self.window(context)
        cursor = sql.Identifier("t", spec.cursor)
        condition = sql.SQL("{c} < %(upper)s").format(c=cursor)
        params: dict[str, Any] = {"upper": window.upper}
        if window.lower is not None:
            condition = sql.SQL("{c} >= %(lower)s AND ").format(c=cursor) + condition
            params["lower"] = window.lower
        return self.land(context, condition, params, window, mode=window.mode, advance_state=True)

    def land(
        self,
        context: Any,
        condition: sql.Composable,
        params: dict[str, Any],
        window: ExtractWindow,
        *,
        mode: str,
        advance_state: bool,
    ) -> dict[str, Any]:
        """Land the table's rows matching ``condition`` as one immutable object and record it."""
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        spec = self.spec
        hook = PostgresHook(postgres_conn_id=self.conn_id)
        registry = SchemaRegistry()
        with tempfile.TemporaryDirectory(prefix=f"land-{spec.name}-") as tmp:
            local = Path(tmp) / f"{spec.name}.parquet"
            rows = self._copy_to_parquet(hook, spec, condition, params, local)
            # Measured on what landed (nothing landed: nothing to compare until rows come).
            columns = landed_columns(local) if rows else []
            changes = diff_columns(registry.recorded(self.source, spec.name), columns) if rows else []
            for change in changes:
                self.log.warning("schema drift in %s.%s: %s", self.source, spec.name, change.describe())
            summary = self.land_parquet(
                context,
                local,
                rows,
                window,
                mode=mode,
                advance_state=advance_state,
                row_versions=self._row_versions(local, spec),
            )
        # After the landing: a drift is reported once, by the run that landed the new shape.
        if rows:
            registry.record(self.source, spec.name, columns, changes, context["run_id"])
        return {**summary, "schema_changes": [asdict(change) for change in changes]}

    @staticmethod
    def _columns(cur: Any, spec: TableSpec) -> list[tuple[str, pa.DataType]]:
        cur.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (spec.schema, spec.name),
        )
        columns = [(name, arrow_type(dtype, prec, scale)) for name, dtype, prec, scale in cur.fetchall()]
        if not columns:
            raise LookupError(f"table {spec.schema}.{spec.name} not found in the source catalogue")
        names = {name for name, _ in columns}
        missing = {spec.key, spec.cursor} - names
        if missing:
            raise LookupError(f"{spec.schema}.{spec.name} has no column(s) {sorted(missing)}")
        return columns

    def _copy_to_parquet(
        self, hook: Any, spec: TableSpec, condition: sql.Composable, params: dict[str, Any], path: Path
    ) -> int:
        conn = hook.get_conn()
        try:
            with conn.cursor() as cur:
                columns = self._columns(cur, spec)
                query = self._select(spec, columns, condition)
                schema = pa.schema([*columns, (ROW_HASH, pa.string())])
                with cur.copy(query, params) as copy:
                    return _write_parquet(_CopyStream(iter(copy)), schema, path)
        finally:
            conn.close()

    @staticmethod
    def _select(
        spec: TableSpec, columns: list[tuple[str, pa.DataType]], condition: sql.Composable
    ) -> sql.Composed:
        # The source computes each row's hash: the daily reconciliation recomputes it the same way.
        return sql.SQL(
            "COPY (SELECT {cols}, {hash} AS {hash_name} FROM {table} AS t WHERE {cond} "
            "ORDER BY t.{key}, t.{cursor}) TO STDOUT WITH (FORMAT csv, HEADER true)"
        ).format(
            cols=sql.SQL(", ").join(sql.Identifier("t", name) for name, _ in columns),
            hash=ROW_HASH_SQL,
            hash_name=sql.Identifier(ROW_HASH),
            table=sql.Identifier(spec.schema, spec.name),
            cond=condition,
            key=sql.Identifier(spec.key),
            cursor=sql.Identifier(spec.cursor),
        )

    @staticmethod
    def _row_versions(path: Path, spec: TableSpec) -> Iterator[pa.RecordBatch]:
        """Each landed row's key, hash and cursor, batch by batch (bounded memory)."""
        for batch in pq.ParquetFile(path).iter_batches(
            batch_size=VERSION_BATCH_ROWS, columns=[spec.key, ROW_HASH, spec.cursor]
        ):
            yield pa.record_batch(
                [pc.cast(batch.column(0), pa.string()), batch.column(1), batch.column(2)],
                names=["row_key", "row_hash", "last_updated"],
            )


def _write_parquet(stream: io.RawIOBase, schema: pa.Schema, path: Path) -> int:
    """Parse CSV from ``stream`` batch by batch into a Parquet file; returns the row count."""
    reader = pacsv.open_csv(
        io.BufferedReader(stream, buffer_size=1 << 20),
        read_options=pacsv.ReadOptions(block_size=BLOCK_SIZE),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={field.name: field.type for field in schema},
            include_columns=schema.names,
            # COPY writes NULL as an unquoted empty field and an empty string as "": only the former
            # is NULL (pyarrow's default markers would turn the text 'NA' or 'NULL' into NULL too).
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["t", "true"],
            false_values=["f", "false"],
        ),
    )
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in reader:
            if batch.num_rows:
                writer.write_batch(batch.select(schema.names).cast(schema))
                rows += batch.num_rows
    if rows == 0:
        path.unlink(missing_ok=True)
    return rows

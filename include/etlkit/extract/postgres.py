"""Land one PostgreSQL table's new and changed rows in the ingestion bucket, as Parquet.

The rows stream as binary COPY straight into Arrow record batches (the ADBC PostgreSQL driver, which
runs ``COPY (SELECT ...) TO STDOUT WITH (FORMAT binary)``), are cast to the types the catalogue
declares, get their row identity (:func:`row_identity`, computed here in Arrow rather than by the
source), and are written to Parquet batch by batch on local disk, then landed once by
:class:`~include.etlkit.extract.base.TableExtractOperator`. No table is held in memory and no row
passes through Python one at a time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit import adbc
from include.etlkit.adbc import conninfo
from include.etlkit.extract.base import TableExtractOperator, TableSpec
from include.etlkit.lazy import lazy_module
from include.etlkit.row_identity import ROW_HASH, row_identity

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from psycopg import sql

    from include.etlkit.windows import ExtractWindow
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")
    sql = lazy_module("psycopg.sql")

__all__ = [
    "ROW_HASH",
    "PostgresTableExtractOperator",
    "TableSpec",
    "arrow_type",
    "read_arrow",
    "row_identity",
]

BATCH_BYTES = 8 << 20  # the driver's batch size hint: bounds memory per table


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

        # The control plane's modules: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import VersionColumns
        from include.etlkit.control.schema_changes import SchemaRegistry, diff_columns
        from include.etlkit.storage import ImmutableStore

        spec = self.spec
        hook = PostgresHook(postgres_conn_id=self.conn_id)
        registry = SchemaRegistry()
        objects = ImmutableStore(self.aws_conn_id)
        objects.prepare()  # the S3 client is made while the source sends its rows
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
                version_columns=VersionColumns(key=spec.key, hash=ROW_HASH, cursor=spec.cursor),
                objects=objects,
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
        columns, query, conninfo = self._query(hook, spec, condition, params)
        schema = pa.schema([*columns, (ROW_HASH, pa.string())])
        return _write_parquet(read_arrow(conninfo, query, columns), schema, path)

    def _query(
        self, hook: Any, spec: TableSpec, condition: sql.Composable, params: dict[str, Any]
    ) -> tuple[list[tuple[str, pa.DataType]], str, str]:
        """The table's catalogue columns, the extract's SELECT with ``params`` bound by psycopg, and
        the connection's libpq conninfo for the driver (the hook's own settings, extras included).

        The values are quoted client side (psycopg's ``ClientCursor.mogrify``) because the driver runs
        the query inside a ``COPY``, which takes no parameters.
        """
        import psycopg

        conn = hook.get_conn()
        try:
            with conn.cursor() as cur:
                columns = self._columns(cur, spec)
            query = psycopg.ClientCursor(conn).mogrify(self._select(spec, columns, condition), params)
            return columns, query, conninfo(conn)
        finally:
            conn.close()

    @staticmethod
    def _select(
        spec: TableSpec, columns: list[tuple[str, pa.DataType]], condition: sql.Composable
    ) -> sql.Composed:
        # Ordered by key so the landed bytes, and so the object's key, are the same on a retry.
        return sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond} ORDER BY t.{key}, t.{cursor}").format(
            cols=sql.SQL(", ").join(_selected(name, kind) for name, kind in columns),
            table=sql.Identifier(spec.schema, spec.name),
            cond=condition,
            key=sql.Identifier(spec.key),
            cursor=sql.Identifier(spec.cursor),
        )


def _selected(name: str, kind: pa.DataType) -> sql.Composable:
    """A column as the extract selects it: as text where Arrow keeps it as text or parses a decimal.

    The driver hands numeric, uuid, json and other types without an Arrow equivalent over as opaque
    or binary values; their text form (the one CSV COPY gave) is what lands, exactly as before.
    """
    column = sql.Identifier("t", name)
    if pa.types.is_string(kind) or pa.types.is_decimal(kind):
        return sql.SQL("{c}::text AS {n}").format(c=column, n=sql.Identifier(name))
    return column


def read_arrow(info: str, query: str, columns: list[tuple[str, pa.DataType]]) -> Iterator[pa.RecordBatch]:
    """Run ``query`` through the ADBC PostgreSQL driver: binary COPY into Arrow, batch by batch,
    each batch cast to the catalogue's types (``columns``)."""
    schema = pa.schema(columns)
    with adbc.connect(info) as conn, conn.cursor() as cur:
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(BATCH_BYTES)})
        cur.execute(query)
        for batch in cur.fetch_record_batch():
            if batch.num_rows:
                yield pa.record_batch(
                    [batch.column(i).cast(field.type) for i, field in enumerate(schema)], schema=schema
                )


def _write_parquet(batches: Iterator[pa.RecordBatch], schema: pa.Schema, path: Path) -> int:
    """Write the batches with their row identity to a Parquet file; returns the row count."""
    rows = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in batches:
            arrays = list(batch.columns)
            writer.write_batch(pa.record_batch([*arrays, row_identity(arrays)], schema=schema))
            rows += batch.num_rows
    if rows == 0:
        path.unlink(missing_ok=True)
    return rows

"""Load processed Parquet into a Snowflake warehouse: ``landing`` copies, then ``core`` by key.

The same contract as :mod:`include.etlkit.load.postgres`, through the Snowflake provider's
``SnowflakeHook`` (the connection, ``snowflake_default`` by default, comes from Airflow):

1. Outside the transaction, because Snowflake commits before every DDL statement: the object's rows
   go, batch by batch, into gzip-compressed CSV parts that are ``PUT`` to a temporary stage and
   ``COPY``-ed into a temporary table, each row numbered by its place in the object (``_ordinal``).
2. One transaction: the landing rows of the same ``_load_id`` are deleted and the object's rows
   inserted in their place, then ``core`` is merged from exactly those rows. One row per key
   goes in, the last one in the object (``QUALIFY ROW_NUMBER() OVER (PARTITION BY key ORDER BY
   _ordinal DESC) = 1``):

   - ``merge="upsert"``: rows whose values differ are updated, new keys inserted;
   - ``merge="versions"``: a (key..., row_hash) not there yet is inserted, nothing is updated.

Loading the same object twice therefore leaves both schemas as they were.

Identifiers are upper-cased and double-quoted: ``dim_customer`` becomes ``"DIM_CUSTOMER"``, the
name Snowflake gives an unquoted ``dim_customer``, so the DDL in ``sql/snowflake/`` and analysts'
queries can write names unquoted and still meet the tables this loader writes.

Why CSV rather than Parquet, and UPDATE + INSERT rather than one MERGE. The tests run on fakesnow
0.11.16 (the release whose sqlglot matches MWAA's constraints), and what it cannot do shaped both:

- fakesnow's ``PUT`` gzips every file whatever ``AUTO_COMPRESS`` says, and DuckDB cannot read a
  gzipped Parquet file, so ``COPY ... FILE_FORMAT = (TYPE = PARQUET)`` from a stage fails. CSV
  parts are gzipped by Snowflake's ``PUT`` too, and read back by both. Every non-null value is
  quoted (``""`` is an empty string, an unquoted empty field is NULL), so ``ESCAPE_UNENCLOSED_FIELD``
  never applies and the file format needs no option fakesnow lacks.
- fakesnow runs ``MERGE`` through a temporary table whose bookkeeping writes to a second DuckDB
  database: inside an explicit transaction that fails ("a single transaction can only write to a
  single attached database"), and a MERGE that changes nothing crashes counting its rows. An
  ``UPDATE ... FROM`` followed by ``INSERT ... WHERE NOT EXISTS`` in one transaction is the same
  merge on Snowflake, and runs on both.
- fakesnow cannot ``COPY`` into a schema-qualified temporary table, so the session first does
  ``USE SCHEMA`` on the core schema and creates its temporary stage and table there. (Core rather
  than landing because fakesnow keeps an IDENTITY column's sequence in the schema that was current
  when the table was created, and looks it up in the current one: a core table with an IDENTITY
  column, created from its own schema, can then be inserted into.)

Other fakesnow differences the tests work around (Snowflake's behaviour is the one coded here):
a quoted empty CSV field loads as NULL in fakesnow (DuckDB's ``allow_quoted_nulls``) but as ``''``
in Snowflake; constraint violations surface as DuckDB exceptions, not
``snowflake.connector.errors``; ``CREATE ... IF NOT EXISTS`` on a stage is not honoured (stages
here are named per load instead). ``NULL_IF`` keeps Snowflake's default (``\\N``), because fakesnow
rejects the option: a text value that is exactly ``\\N`` would land as NULL on Snowflake.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from include.etlkit.load.postgres import BATCH_ROWS, LOAD_ID, TableLoad

ORDINAL = "_ordinal"
LOADED_AT = "_loaded_at"
PART_BYTES = 256 * 1024 * 1024  # uncompressed CSV per staged file: Snowflake loads parts in parallel
CSV_FORMAT = "FILE_FORMAT = (TYPE = CSV FIELD_OPTIONALLY_ENCLOSED_BY = '\"')"


def quote(name: str) -> str:
    """A Snowflake identifier for ``name``: upper-cased (as Snowflake folds unquoted names), quoted."""
    return '"' + name.upper().replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


def literal(value: str) -> str:
    """A Snowflake string literal (for PUT, which takes no bind parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def snowflake_type(arrow_type: pa.DataType) -> str:
    """The Snowflake column type for an Arrow type (anything unlisted lands as VARCHAR)."""
    if pa.types.is_integer(arrow_type):
        digits = {8: 3, 16: 5, 32: 10, 64: 19}[arrow_type.bit_width]
        if pa.types.is_unsigned_integer(arrow_type) and arrow_type.bit_width == 64:
            digits = 20
        return f"NUMBER({digits},0)"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    if pa.types.is_date(arrow_type):
        return "DATE"
    if pa.types.is_time(arrow_type):
        return "TIME"
    if pa.types.is_timestamp(arrow_type):
        # An instant (PostgreSQL's timestamptz) is LTZ; a wall-clock time is NTZ.
        return "TIMESTAMP_LTZ" if arrow_type.tz else "TIMESTAMP_NTZ"
    if pa.types.is_decimal(arrow_type):
        if arrow_type.precision > 38:
            raise ValueError(f"Snowflake NUMBER holds at most 38 digits, not {arrow_type.precision}")
        return f"NUMBER({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_floating(arrow_type):
        return "FLOAT"
    return "VARCHAR"


class SnowflakeWarehouse:
    """Writes to the warehouse through a Snowflake Airflow connection (``snowflake_default`` by default).

    The connection names the account, database and warehouse; ``TableLoad`` names the schemas.
    """

    dialect = "snowflake"  # the folder of sql/ holding this warehouse's DDL and marts

    def __init__(self, conn_id: str = "snowflake_default") -> None:
        self.conn_id = conn_id

    def _connect(self):
        from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

        return SnowflakeHook(snowflake_conn_id=self.conn_id).get_conn()

    def run_script(self, script: str) -> None:
        """Run a script of several statements (DDL in ``sql/snowflake/``, say); each commits on its own."""
        conn = self._connect()
        try:
            conn.execute_string(script, remove_comments=True)
        finally:
            conn.close()

    def ensure_landing(self, spec: TableLoad, schema: pa.Schema) -> None:
        """Create ``landing.<table>`` from the processed schema (all columns nullable, plus ``_load_id``)."""
        columns = [f"{quote(f.name)} {snowflake_type(f.type)}" for f in schema]
        columns.append(f"{quote(LOAD_ID)} VARCHAR NOT NULL")
        columns.append(f"{quote(LOADED_AT)} TIMESTAMP_LTZ NOT NULL DEFAULT CURRENT_TIMESTAMP()")
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(spec.landing_schema)}")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {qualified(spec.landing_schema, spec.warehouse_table)} "
                f"({', '.join(columns)})"
            )
        finally:
            conn.close()

    def load_parquet(self, spec: TableLoad, path: Path, load_id: str) -> tuple[int, int]:
        """Load a Parquet file batch by batch; returns (rows read, core rows inserted/updated)."""
        parquet = pq.ParquetFile(path)
        self.ensure_landing(spec, parquet.schema_arrow)
        reader = pa.RecordBatchReader.from_batches(
            parquet.schema_arrow, parquet.iter_batches(batch_size=BATCH_ROWS)
        )
        return parquet.metadata.num_rows, self.load(spec, reader, load_id)

    def load(self, spec: TableLoad, rows: pa.Table | pa.RecordBatchReader, load_id: str) -> int:
        """Land ``rows`` and merge them into core in one transaction; returns core rows inserted/updated.

        ``rows`` may be a reader of record batches: each batch is written to a CSV part on disk and
        the parts are PUT as they fill, so memory stays bounded by the batch size.
        """
        names = list(rows.schema.names)
        batches = rows.to_batches(max_chunksize=BATCH_ROWS) if isinstance(rows, pa.Table) else rows
        conn = self._connect()
        try:
            cur = conn.cursor()
            incoming = self._stage_incoming(cur, spec, rows.schema, batches)
            landing = qualified(spec.landing_schema, spec.warehouse_table)
            cols = ", ".join(quote(n) for n in names)
            cur.execute("BEGIN")
            try:
                cur.execute(f"DELETE FROM {landing} WHERE {quote(LOAD_ID)} = %s", (load_id,))
                cur.execute(
                    f"INSERT INTO {landing} ({cols}, {quote(LOAD_ID)}) SELECT {cols}, %s FROM {incoming}",
                    (load_id,),
                )
                core_names = [n for n in names if n not in spec.landing_only]
                merged = sum(
                    _affected(cur, statement) for statement in self._merge(spec, core_names, incoming)
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return merged
        finally:
            conn.close()

    @staticmethod
    def _stage_incoming(
        cur: Any, spec: TableLoad, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
    ) -> str:
        """COPY the rows, numbered in input order, into a temporary table; returns its name.

        Temporary objects live as long as the session (this load's connection), so nothing is left
        behind even when the load fails; the names are per load all the same.
        """
        tag = uuid.uuid4().hex[:12].upper()
        stage, incoming = quote(f"_ETL_STAGE_{tag}"), quote(f"_ETL_INCOMING_{tag}")
        columns = [f"{quote(f.name)} {snowflake_type(f.type)}" for f in schema]
        columns.append(f"{quote(ORDINAL)} NUMBER(19,0) NOT NULL")
        cur.execute(f"USE SCHEMA {quote(spec.core_schema)}")
        cur.execute(f"CREATE TEMPORARY STAGE {stage}")
        cur.execute(f"CREATE TEMPORARY TABLE {incoming} ({', '.join(columns)})")
        written = 0
        with tempfile.TemporaryDirectory(prefix="snowflake-load-") as tmp:
            for part, rows_so_far in _csv_parts(schema, batches, Path(tmp)):
                cur.execute(f"PUT {literal(f'file://{part}')} @{stage} PARALLEL = 4")
                part.unlink()  # on the stage now: disk, like memory, holds one part at a time
                written = rows_so_far
        if written:
            cur.execute(
                f"COPY INTO {incoming} FROM @{stage} {CSV_FORMAT} ON_ERROR = ABORT_STATEMENT PURGE = TRUE"
            )
            loaded = _copied_rows(cur)
            if loaded != written:
                raise RuntimeError(f"COPY loaded {loaded} rows into {incoming}, {written} were staged")
        return incoming

    @staticmethod
    def _merge(spec: TableLoad, names: Sequence[str], incoming: str) -> list[str]:
        """The core merge: an UPDATE of changed rows (upsert only), then an INSERT of new keys."""
        core = qualified(spec.core_schema, spec.warehouse_table)
        cols = ", ".join(quote(n) for n in names)
        key = ", ".join(quote(k) for k in spec.key)
        # One row per key from this object: the last one in it.
        source = (
            f"(SELECT {cols} FROM {incoming} "
            f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {quote(ORDINAL)} DESC) = 1)"
        )
        on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in spec.key)
        statements = []
        updates = [n for n in names if n not in spec.key]
        if spec.merge == "upsert" and updates:
            sets = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in updates)
            changed = " OR ".join(f"t.{quote(n)} IS DISTINCT FROM s.{quote(n)}" for n in updates)
            statements.append(f"UPDATE {core} AS t SET {sets} FROM {source} AS s WHERE {on} AND ({changed})")
        values = ", ".join(f"s.{quote(n)}" for n in names)
        statements.append(
            f"INSERT INTO {core} ({cols}) SELECT {values} FROM {source} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {core} AS t WHERE {on})"
        )
        return statements


def _csv_parts(
    schema: pa.Schema, batches: Iterable[pa.RecordBatch], folder: Path
) -> Iterator[tuple[Path, int]]:
    """Write the batches, each row with its ``_ordinal``, into CSV parts of about ``PART_BYTES``.

    Yields each part once it is complete, with the number of rows written so far. Every non-null
    value is quoted: that keeps ``""`` (an empty string) apart from an empty field (NULL), and no
    value is ever read unquoted.
    """
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    numbered = schema.append(pa.field(ORDINAL, pa.int64()))
    ordinal = 0
    part = folder / "part.csv"
    writer: pacsv.CSVWriter | None = None
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            if writer is None:
                part = folder / f"part-{ordinal:012d}.csv"
                writer = pacsv.CSVWriter(part, numbered, write_options=options)
            ordinals = pa.array(range(ordinal, ordinal + batch.num_rows), pa.int64())
            writer.write_batch(pa.RecordBatch.from_arrays([*batch.columns, ordinals], schema=numbered))
            ordinal += batch.num_rows
            if part.stat().st_size >= PART_BYTES:
                writer.close()
                writer = None
                yield part, ordinal
        if writer is not None:
            writer.close()
            writer = None
            yield part, ordinal
    finally:
        if writer is not None:
            writer.close()


def _affected(cur: Any, statement: str) -> int:
    """Rows an INSERT or UPDATE changed: the first column of the one row Snowflake returns for it.

    (``cursor.rowcount`` would do on Snowflake, but fakesnow reports 1 for a statement that
    changed nothing.)
    """
    cur.execute(statement)
    row = cur.fetchone()
    return int(row[0] or 0) if row else 0


def _copied_rows(cur: Any) -> int:
    """Rows a COPY loaded, summed over its per-file result rows."""
    names = [d[0].lower() for d in cur.description]
    position = names.index("rows_loaded")
    return sum(int(row[position]) for row in cur.fetchall())

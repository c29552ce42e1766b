"""Load processed Parquet into Snowflake as Snowflake users load it: COPY from an external stage, then MERGE.

The same contract as :mod:`include.etlkit.load.postgres` (see :mod:`include.etlkit.load.warehouse`),
through the Snowflake provider's ``SnowflakeHook`` (so key-pair authentication, ``private_key_file``
or ``private_key_content`` in the connection's extras, works as the provider documents it).

Per processed object ``s3://<processed bucket>/<key>``:

1. ``COPY INTO landing.<table> FROM @<stage>/<key> FILE_FORMAT = (TYPE = PARQUET)
   MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE``, the stage being an external stage over the processed
   bucket (a storage integration: ``infra/terraform/snowflake.tf``, ``docs/warehouses.md``). Each row
   also gets its load id (``METADATA$FILENAME``: the key, the stage pointing at the bucket's root),
   its row number in the object (``_ordinal``) and the scan time (``_loaded_at``). Snowflake's load
   history keeps a file loaded once: a retry, or a rerun within the history's 64 days, copies
   nothing again.
2. One ``MERGE`` into ``core`` from exactly that object's landing rows, the last row per key winning
   (``QUALIFY ROW_NUMBER() OVER (PARTITION BY key ORDER BY _ordinal DESC) = 1``):

   - ``merge="upsert"``: rows whose values differ are updated (only to an equal or newer ``version``
     when the spec names one), new keys inserted;
   - ``merge="versions"``: a (key..., row_hash) not there yet is inserted, nothing is updated.

The two statements need no explicit transaction: COPY is idempotent through the load history and the
MERGE through its own semantics, and each is atomic. A failed MERGE leaves the object in landing;
the retry's COPY skips the file and its MERGE reads the same rows. (Loading the object again
therefore changes nothing in either schema.)

The COPY is the one statement the tests cannot run: fakesnow has no external stages over S3 and no
``INCLUDE_METADATA``. It is built by :func:`copy_into_landing_sql` (unit-tested as text) and run by
the ``landing_copy`` strategy the warehouse is given; production uses :class:`ExternalStageCopy`,
and the tests pass one that lands the same Parquet object through a COPY fakesnow can run.
Everything else, the landing DDL and the MERGE, runs on fakesnow as written here.

Identifiers are upper-cased and double-quoted: ``dim_customer`` becomes ``"DIM_CUSTOMER"``, the
name Snowflake gives an unquoted ``dim_customer``, so the DDL in ``sql/snowflake/`` and analysts'
queries can write names unquoted and still meet the tables this loader writes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from include.etlkit.control.ledger import DELETED_AT
from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import LOAD_ID, ORDINAL, TableLoad
from include.etlkit.storage import ImmutableStore

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")

LOADED_AT = "_loaded_at"
DEFAULT_STAGE = "landing.processed"  # the external stage over the processed bucket's root
# Characters a processed key may have to be written unquoted in a stage path (keys are
# ``<source>/<table>/.../<name>-<sha256 prefix>.parquet``).
STAGE_PATH = re.compile(r"^[A-Za-z0-9_./=-]+$")


def quote(name: str) -> str:
    """A Snowflake identifier for ``name``: upper-cased (as Snowflake folds unquoted names), quoted."""
    return '"' + name.upper().replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote(schema)}.{quote(table)}"


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


def copy_into_landing_sql(landing: str, stage: str, key: str) -> str:
    """The COPY that lands one processed object from the external stage (Snowflake's own Parquet load).

    ``MATCH_BY_COLUMN_NAME`` maps the Parquet columns onto the landing table by name, whatever their
    order; ``INCLUDE_METADATA`` fills the load columns (the stage points at the bucket's root, so
    ``METADATA$FILENAME`` is the object's key, the load id PostgreSQL and the ledger use too).
    ``ON_ERROR = ABORT_STATEMENT``: an object lands whole or not at all.
    """
    if not STAGE_PATH.match(key) or ".." in key:
        raise ValueError(f"processed key {key!r} cannot be written as a stage path")
    return (
        f"COPY INTO {landing} FROM @{stage}/{key} "
        "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
        f"INCLUDE_METADATA = ({quote(LOAD_ID)} = METADATA$FILENAME, "
        f"{quote(ORDINAL)} = METADATA$FILE_ROW_NUMBER, {quote(LOADED_AT)} = METADATA$START_SCAN_TIME) "
        "ON_ERROR = ABORT_STATEMENT"
    )


class LandingCopy(Protocol):
    """Lands processed object ``s3://bucket/key`` in table ``landing`` (a no-op if it was landed before)."""

    def __call__(self, cur: Any, landing: str, bucket: str, key: str) -> None: ...


class ExternalStageCopy:
    """Production's landing copy: :func:`copy_into_landing_sql` through the external stage ``stage``."""

    def __init__(self, stage: str = DEFAULT_STAGE) -> None:
        self.stage = stage

    def __call__(self, cur: Any, landing: str, bucket: str, key: str) -> None:
        cur.execute(copy_into_landing_sql(landing, self.stage, key))


def merge_sql(spec: TableLoad, names: Sequence[str]) -> str:
    """The one MERGE of an object's landing rows (``_load_id`` bound as the only parameter) into core."""
    core = qualified(spec.core_schema, spec.warehouse_table)
    landing = qualified(spec.landing_schema, spec.warehouse_table)
    cols = ", ".join(quote(n) for n in names)
    key = ", ".join(quote(k) for k in spec.key)
    source = (
        f"(SELECT {cols} FROM {landing} WHERE {quote(LOAD_ID)} = %s "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY {quote(ORDINAL)} DESC) = 1)"
    )
    on = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in spec.key)
    clauses = []
    updates = [n for n in names if n not in spec.key]
    if spec.merge == "upsert" and updates:
        changed = " OR ".join(f"t.{quote(n)} IS DISTINCT FROM s.{quote(n)}" for n in updates)
        # With a version column, an object loaded late never takes a row back to an older version.
        newer = f" AND s.{quote(spec.version)} >= t.{quote(spec.version)}" if spec.version else ""
        sets = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in updates)
        clauses.append(f"WHEN MATCHED AND ({changed}){newer} THEN UPDATE SET {sets}")
    values = ", ".join(f"s.{quote(n)}" for n in names)
    clauses.append(f"WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})")
    return f"MERGE INTO {core} AS t USING {source} AS s ON {on} " + " ".join(clauses)


class SnowflakeWarehouse:
    """Writes to the warehouse through a Snowflake Airflow connection (``snowflake_default`` by default).

    The connection names the account, database, role and virtual warehouse (and the external stage,
    extra ``processed_stage``, default ``landing.processed``); ``TableLoad`` names the schemas.
    """

    dialect = "snowflake"  # the folder of sql/ holding this warehouse's DDL and marts

    def __init__(
        self,
        conn_id: str = "snowflake_default",
        *,
        landing_copy: LandingCopy | None = None,
        aws_conn_id: str = "aws_default",
    ) -> None:
        self.conn_id = conn_id
        self.landing_copy = landing_copy or ExternalStageCopy()
        self.aws_conn_id = aws_conn_id

    @classmethod
    def from_connection(cls, conn: Any, **kwargs: Any) -> SnowflakeWarehouse:
        stage = (conn.extra_dejson or {}).get("processed_stage", DEFAULT_STAGE)
        kwargs.setdefault("landing_copy", ExternalStageCopy(stage))
        return cls(conn.conn_id, **kwargs)

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

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A cursor in one explicit transaction: committed when the block ends, rolled back if it raises."""
        conn = self._connect()
        try:
            cur = conn.cursor()
            cur.execute("BEGIN")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    def ensure_landing(self, spec: TableLoad, schema: pa.Schema) -> None:
        """Create ``landing.<table>`` from the processed schema (columns nullable, plus the load columns)."""
        conn = self._connect()
        try:
            _create_landing(conn.cursor(), spec, schema)
        finally:
            conn.close()

    def apply_deletions(self, spec: TableLoad, rows: pa.Table) -> int:
        """Mark rows deleted in the source (see :meth:`Warehouse.apply_deletions`), in one transaction."""
        key = spec.key[0]
        pairs = list(
            zip(
                [str(k) for k in rows.column(key).to_pylist()],
                rows.column(DELETED_AT).to_pylist(),
                strict=True,
            )
        )
        with self.session() as cur:
            cur.execute(f"CREATE TEMPORARY TABLE {GONE} (K VARCHAR, DELETED_AT TIMESTAMP_NTZ)")
            cur.executemany(f"INSERT INTO {GONE} (K, DELETED_AT) VALUES (%s, %s)", pairs)
            copied: list[str] = []
            if spec.merge == "versions":
                if not spec.record_id:
                    raise ValueError(f"{spec.name}: deleting from a versions table needs its record_id")
                cur.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s ORDER BY ordinal_position",
                    (spec.core_schema.upper(), spec.warehouse_table.upper()),
                )
                skip = {spec.record_id.upper(), "ROW_HASH", "DELETED_AT"}
                copied = [c for (c,) in cur.fetchall() if c.upper() not in skip]
            changed = 0
            for statement in deletion_sql(spec, copied):
                cur.execute(statement)
                changed += cur.rowcount or 0
            return changed

    @staticmethod
    def refuses(error: BaseException) -> bool:
        """Whether ``error`` is Snowflake refusing the object's data (a value its column cannot hold, a
        NOT NULL), not the warehouse being unavailable: such an object is rejected, the load goes on.

        The connector raises ``ProgrammingError`` for what the statement or its data got wrong, with
        a SQLSTATE of class 22 (data exception) or 23 (integrity constraint violation).
        """
        from snowflake.connector.errors import ProgrammingError

        state = getattr(error, "sqlstate", None) or ""
        return isinstance(error, ProgrammingError) and state[:2] in ("22", "23")

    def load_object(self, spec: TableLoad, bucket: str, key: str) -> tuple[int, int]:
        """COPY the object into landing (once), then MERGE its rows into core, on one connection.

        Returns (rows of the object in landing, core rows inserted or updated).
        """
        schema = parquet_schema(bucket, key, self.aws_conn_id)
        landing = qualified(spec.landing_schema, spec.warehouse_table)
        conn = self._connect()
        try:
            cur = conn.cursor()
            _create_landing(cur, spec, schema)
            self.landing_copy(cur, landing, bucket, key)
            cur.execute(f"SELECT count(*) FROM {landing} WHERE {quote(LOAD_ID)} = %s", (key,))
            rows = int(cur.fetchone()[0])
            cur.execute(merge_sql(spec, [n for n in schema.names if n not in spec.landing_only]), (key,))
            merged = sum(int(value or 0) for value in cur.fetchone() or ())
            return rows, merged
        finally:
            conn.close()


def _create_landing(cur: Any, spec: TableLoad, schema: pa.Schema) -> None:
    columns = [f"{quote(f.name)} {snowflake_type(f.type)}" for f in schema]
    columns.append(f"{quote(LOAD_ID)} VARCHAR NOT NULL")
    columns.append(f"{quote(ORDINAL)} NUMBER(19,0) NOT NULL")
    columns.append(f"{quote(LOADED_AT)} TIMESTAMP_LTZ NOT NULL")
    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(spec.landing_schema)}")
    landing = qualified(spec.landing_schema, spec.warehouse_table)
    cur.execute(f"CREATE TABLE IF NOT EXISTS {landing} ({', '.join(columns)})")
    # Landing follows its objects: a column they gained (``additional_column``, say) is added.
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (spec.landing_schema.upper(), spec.warehouse_table.upper()),
    )
    existing = {name.upper() for (name,) in cur.fetchall()}
    for f in schema:
        if f.name.upper() not in existing:
            cur.execute(f"ALTER TABLE {landing} ADD COLUMN {quote(f.name)} {snowflake_type(f.type)}")


def parquet_schema(bucket: str, key: str, aws_conn_id: str = "aws_default") -> pa.Schema:
    """The Arrow schema of a Parquet object in S3, from its footer alone (two ranged GETs, not the object)."""
    client = ImmutableStore(aws_conn_id).client
    tail = client.get_object(Bucket=bucket, Key=key, Range="bytes=-8")["Body"].read()
    if len(tail) != 8 or tail[4:] != b"PAR1":
        raise ValueError(f"s3://{bucket}/{key} is not a Parquet file")
    (footer_length,) = struct.unpack("<I", tail[:4])
    footer = client.get_object(Bucket=bucket, Key=key, Range=f"bytes=-{footer_length + 8}")["Body"].read()
    # A file made of the footer alone: enough for pyarrow to read the schema, no row group is touched.
    return pq.read_schema(pa.BufferReader(b"PAR1" + footer))


GONE = '"_ETL_DELETED"'  # a temporary table of the session: the deleted keys and when


def deletion_sql(spec: TableLoad, copied: Sequence[str]) -> list[str]:
    """The statements that mark ``GONE``'s keys deleted in ``spec``'s core table.

    Upsert tables: ``deleted_at`` set where it is not yet. Versions tables: a deletion version (a copy
    of the version numbered last, ``row_hash`` = MD5 of its own plus ``:deleted``) once per key.
    """
    core = qualified(spec.core_schema, spec.warehouse_table)
    key = quote(spec.key[0])
    if spec.merge == "upsert":
        return [
            f"UPDATE {core} AS t SET {quote('deleted_at')} = g.DELETED_AT FROM {GONE} AS g "
            f"WHERE TO_VARCHAR(t.{key}) = g.K AND t.{quote('deleted_at')} IS NULL"
        ]
    cols = ", ".join(quote(c) for c in copied)
    from_t = ", ".join(f"t.{quote(c)}" for c in copied)
    record_id = quote(spec.record_id or "")
    return [
        f"INSERT INTO {core} ({cols}, {quote('row_hash')}, {quote('deleted_at')}) "
        f"SELECT {from_t}, MD5(t.{quote('row_hash')} || ':deleted'), g.DELETED_AT "
        f"FROM {core} AS t JOIN {GONE} AS g ON TO_VARCHAR(t.{key}) = g.K "
        f"WHERE NOT EXISTS (SELECT 1 FROM {core} AS x WHERE x.{key} = t.{key} "
        f"AND x.{quote('deleted_at')} IS NOT NULL) "
        f"QUALIFY ROW_NUMBER() OVER (PARTITION BY t.{key} ORDER BY t.{record_id} DESC) = 1"
    ]

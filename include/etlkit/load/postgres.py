"""Load processed Parquet into a PostgreSQL warehouse: ``landing`` copies, then ``core`` by key.

One transaction per object and table: the object's rows are COPYed into ``landing.<table>``
(tagged with the object's key as ``_load_id``, replacing any earlier copy of the same object), then
merged into ``core.<table>`` from exactly those landing rows:

- dimensions (``merge="upsert"``): ``INSERT ... ON CONFLICT (key) DO UPDATE``, latest values win;
- facts (``merge="versions"``): ``INSERT ... ON CONFLICT (key, row_hash) DO NOTHING``, so every
  distinct version is one fact row and a version loaded again adds nothing.

Loading the same object twice therefore leaves both schemas as they were: retries and reruns are safe
even though the warehouse and the control tables are different databases.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit.control.ledger import DELETED_AT
from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import BATCH_ROWS, LOAD_ID, LOAD_REGISTRY, TableLoad
from include.etlkit.storage import ImmutableStore

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from psycopg import sql
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pacsv = lazy_module("pyarrow.csv")
    pq = lazy_module("pyarrow.parquet")
    sql = lazy_module("psycopg.sql")


def postgres_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_int16(arrow_type):
        return "smallint"
    if pa.types.is_int32(arrow_type):
        return "integer"
    if pa.types.is_int64(arrow_type):
        return "bigint"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_time(arrow_type):
        return "time"
    if pa.types.is_timestamp(arrow_type):
        return "timestamptz" if arrow_type.tz else "timestamp"
    if pa.types.is_decimal(arrow_type):
        return f"numeric({arrow_type.precision},{arrow_type.scale})"
    if pa.types.is_floating(arrow_type):
        return "double precision"
    return "text"


class PostgresWarehouse:
    """Writes to the warehouse through a PostgreSQL Airflow connection (``warehouse`` by default).

    A processed object is downloaded from S3 (``aws_conn_id``) to a temporary file and streamed
    from there: PostgreSQL cannot read S3 itself (RDS's ``aws_s3`` extension is not in every
    PostgreSQL, and not in the local one).
    """

    dialect = "postgres"  # the folder of sql/ holding this warehouse's DDL and marts

    def __init__(self, conn_id: str = "warehouse", aws_conn_id: str = "aws_default") -> None:
        self.conn_id = conn_id
        self.aws_conn_id = aws_conn_id

    def _connect(self):
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        return PostgresHook(postgres_conn_id=self.conn_id).get_conn()

    def run_script(self, script: str) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(script)
            conn.commit()
        finally:
            conn.close()

    @contextmanager
    def session(self) -> Iterator[Any]:
        """A cursor in one transaction: committed when the block ends, rolled back when it raises."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    def apply_deletions(self, spec: TableLoad, rows: pa.Table) -> int:
        """Mark rows deleted in the source (see :meth:`Warehouse.apply_deletions`), in one transaction."""
        key = spec.key[0]
        core = sql.Identifier(spec.core_schema, spec.warehouse_table)
        keys = [str(k) for k in rows.column(key).to_pylist()]
        moments = rows.column(DELETED_AT).to_pylist()
        gone = sql.SQL("unnest(%s::text[], %s::timestamp[]) AS g(k, deleted_at)")
        with self.session() as cur:
            if spec.merge == "upsert":
                cur.execute(
                    sql.SQL(
                        "UPDATE {core} AS t SET deleted_at = g.deleted_at FROM {gone} "
                        "WHERE t.{key}::text = g.k AND t.deleted_at IS NULL"
                    ).format(core=core, gone=gone, key=sql.Identifier(key)),
                    (keys, moments),
                )
                return cur.rowcount
            if not spec.record_id:
                raise ValueError(f"{spec.name}: deleting from a versions table needs its record_id")
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                "AND table_name = %s ORDER BY ordinal_position",
                (spec.core_schema, spec.warehouse_table),
            )
            copied = [c for (c,) in cur.fetchall() if c not in (spec.record_id, "row_hash", "deleted_at")]
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in copied)
            from_t = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in copied)
            # A copy of the version numbered last, with its own row_hash and deleted_at: once only.
            cur.execute(
                sql.SQL(
                    "INSERT INTO {core} ({cols}, row_hash, deleted_at) "
                    "SELECT DISTINCT ON (t.{key}) {from_t}, md5(t.row_hash || ':deleted'), g.deleted_at "
                    "FROM {core} AS t JOIN {gone} ON t.{key}::text = g.k "
                    "WHERE NOT EXISTS (SELECT 1 FROM {core} AS x WHERE x.{key} = t.{key} "
                    "AND x.deleted_at IS NOT NULL) "
                    "ORDER BY t.{key}, t.{record_id} DESC "
                    "ON CONFLICT DO NOTHING"
                ).format(
                    core=core,
                    cols=cols,
                    from_t=from_t,
                    gone=gone,
                    key=sql.Identifier(key),
                    record_id=sql.Identifier(spec.record_id),
                ),
                (keys, moments),
            )
            return cur.rowcount

    @staticmethod
    def refuses(error: BaseException) -> bool:
        """Whether ``error`` is PostgreSQL refusing the object's data (a value too long, a constraint),
        not the warehouse being unavailable: such an object is rejected, and the load goes on."""
        import psycopg

        return isinstance(error, psycopg.errors.DataError | psycopg.errors.IntegrityError)

    def load_object(self, spec: TableLoad, bucket: str, key: str) -> tuple[int, int]:
        """Download ``s3://bucket/key`` and load it (load id: the key); see :meth:`load_parquet`."""
        with tempfile.TemporaryDirectory(prefix="load-") as tmp:
            local = ImmutableStore(self.aws_conn_id).download(bucket, key, Path(tmp) / "object.parquet")
            return self.load_parquet(spec, local, load_id=key)

    def ensure_landing(self, spec: TableLoad, schema: pa.Schema) -> None:
        """Create ``landing.<table>`` from the processed schema (all columns nullable, plus ``_load_id``).

        A column the table lacks (``additional_column`` once a model carries it, say) is added: landing
        follows its objects. Only missing columns are altered, so a load takes no exclusive lock on
        a landing table that already fits.
        """
        columns = [
            sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(postgres_type(f.type))) for f in schema
        ]
        columns.append(sql.SQL("{} text NOT NULL").format(sql.Identifier(LOAD_ID)))
        columns.append(sql.SQL("_loaded_at timestamptz NOT NULL DEFAULT now()"))
        statement = sql.SQL(
            "CREATE SCHEMA IF NOT EXISTS {s}; CREATE TABLE IF NOT EXISTS {t} ({cols})"
        ).format(
            s=sql.Identifier(spec.landing_schema),
            t=sql.Identifier(spec.landing_schema, spec.warehouse_table),
            cols=sql.SQL(", ").join(columns),
        )
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    (spec.landing_schema, spec.warehouse_table),
                )
                existing = {name for (name,) in cur.fetchall()}
                for f in schema:
                    if f.name not in existing:
                        cur.execute(
                            sql.SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} {type}").format(
                                t=sql.Identifier(spec.landing_schema, spec.warehouse_table),
                                c=sql.Identifier(f.name),
                                type=sql.SQL(postgres_type(f.type)),
                            )
                        )
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {r} (table_name text NOT NULL, load_id text NOT NULL, "
                        "loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, load_id))"
                    ).format(r=sql.Identifier(spec.landing_schema, LOAD_REGISTRY))
                )
                cur.execute(
                    sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} ({c})").format(
                        i=sql.Identifier(f"{spec.warehouse_table}_load_id_idx"),
                        t=sql.Identifier(spec.landing_schema, spec.warehouse_table),
                        c=sql.Identifier(LOAD_ID),
                    )
                )
            conn.commit()
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

        ``rows`` may be a reader of record batches: it is COPYed batch by batch, so memory stays
        bounded by the batch size, not by the object's size.
        """
        landing = sql.Identifier(spec.landing_schema, spec.warehouse_table)
        names = rows.schema.names
        column_list = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        batches = rows.to_batches() if isinstance(rows, pa.Table) else rows
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                # The load id's row in the registry is locked first: a second transaction loading the
                # same object waits here until this one commits, then replaces its rows rather than
                # adding a second copy beside them (its DELETE would not see rows not yet committed).
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {r} (table_name, load_id) VALUES (%s, %s) "
                        "ON CONFLICT (table_name, load_id) DO UPDATE SET loaded_at = now()"
                    ).format(r=sql.Identifier(spec.landing_schema, LOAD_REGISTRY)),
                    (spec.warehouse_table, load_id),
                )
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = %s").format(landing, sql.Identifier(LOAD_ID)),
                    (load_id,),
                )
                # Staging keeps the input order (``_ordinal``): when a batch holds several versions
                # of a key, the last one in the object wins, whatever the physical row order.
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE incoming ON COMMIT DROP AS SELECT {} FROM {} WITH NO DATA"
                    ).format(column_list, landing)
                )
                cur.execute("ALTER TABLE incoming ADD COLUMN _ordinal bigserial")
                with cur.copy(
                    sql.SQL("COPY incoming ({}) FROM STDIN WITH (FORMAT csv)").format(column_list)
                ) as copy:
                    for batch in batches:
                        buffer = io.BytesIO()
                        pacsv.write_csv(batch, buffer, write_options=pacsv.WriteOptions(include_header=False))
                        copy.write(buffer.getbuffer())
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} ({cols}, {lid}) SELECT {cols}, %s FROM incoming ORDER BY _ordinal"
                    ).format(landing, cols=column_list, lid=sql.Identifier(LOAD_ID)),
                    (load_id,),
                )
                cur.execute(self._merge(spec, [n for n in names if n not in spec.landing_only]))
                merged = cur.rowcount
            conn.commit()
            return merged
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.close()

    @staticmethod
    def _merge(spec: TableLoad, names: Sequence[str]) -> sql.Composed:
        core = sql.Identifier(spec.core_schema, spec.warehouse_table)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        key = sql.SQL(", ").join(sql.Identifier(k) for k in spec.key)
        # One row per key from this object: the last one in it.
        source = sql.SQL(
            "SELECT DISTINCT ON ({key}) {cols} FROM incoming ORDER BY {key}, _ordinal DESC"
        ).format(key=key, cols=cols)
        updates = [n for n in names if n not in spec.key]
        if spec.merge == "versions" or not updates:
            conflict = sql.SQL("DO NOTHING")
        else:
            # With a version column, an object loaded late (a retry that validated an older landing
            # after a newer one) never takes a row back to an older version.
            newer = (
                sql.SQL(" AND EXCLUDED.{v} >= target.{v}").format(v=sql.Identifier(spec.version))
                if spec.version
                else sql.SQL("")
            )
            conflict = sql.SQL("DO UPDATE SET {sets} WHERE ({old}) IS DISTINCT FROM ({new}){newer}").format(
                sets=sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in updates
                ),
                old=sql.SQL(", ").join(sql.SQL("target.{c}").format(c=sql.Identifier(n)) for n in updates),
                new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(n)) for n in updates),
                newer=newer,
            )
        return sql.SQL(
            "INSERT INTO {core} AS target ({cols}) {source} ON CONFLICT ({key}) {conflict}"
        ).format(core=core, cols=cols, source=source, key=key, conflict=conflict)

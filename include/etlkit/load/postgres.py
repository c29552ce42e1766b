"""Load processed Parquet into a PostgreSQL warehouse: ``landing`` copies, then ``core`` by key.

One transaction per object and table: the object's rows are written once, by binary COPY from
Arrow (the ADBC driver, :mod:`include.etlkit.adbc`), into ``landing.<table>``, tagged with the
object's key as ``_load_id`` and their place in it as ``_ordinal`` (replacing any earlier copy of the
same object), then merged into ``core.<table>`` from exactly those landing rows:

- dimensions (``merge="upsert"``): ``INSERT ... ON CONFLICT (key) DO UPDATE``, latest values win;
- facts (``merge="versions"``): ``INSERT ... ON CONFLICT (key, row_hash) DO NOTHING``, so every
  distinct version is one fact row and a version loaded again adds nothing.

Loading the same object twice therefore leaves both schemas as they were: retries and reruns are safe
even though the warehouse and the control tables are different databases.

Speed (issue 11): an object's landing rows are found by a BRIN index on ``_load_id`` (landing is
append-only, so they are physically together; a btree held a million identical keys per object and
cost about half the landing COPY); the merge's row count is the INSERT's command tag, not a second
pass; an object whose keys rise and which core has none of (a first load, an append-only table's new
rows) is inserted without a per-row look at core.
"""

from __future__ import annotations

import queue
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit import adbc
from include.etlkit.control.ledger import DELETED_AT
from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import (
    LOAD_ID,
    LOAD_REGISTRY,
    LOAD_WORK_MEM_MB,
    ORDINAL,
    TableLoad,
)
from include.etlkit.parquet import open_local
from include.etlkit.storage import ImmutableStore

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from psycopg import sql
else:  # imported on first use, not while a DAG file is parsed
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")
    sql = lazy_module("psycopg.sql")


# Rows per record batch of a load. ADBC encodes a batch whole into COPY's binary format (and libpq
# buffers it whole) before sending it, while the server waits: small batches keep the server busy and
# the process small (measured at 1M rows: +48 MB over the imports with 10,000, +135 MB with 100,000,
# and no slower).
COPY_BATCH_ROWS = 10_000


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
        # One S3 client for every object this warehouse loads (a client costs ~0.1-0.3 s: botocore
        # reads its service model), not one per object.
        self._store: ImmutableStore | None = None

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
        not the warehouse being unavailable: such an object is rejected, and the load goes on.

        Read from the SQLSTATE (class 22, data exception; 23, integrity constraint violation), which
        psycopg's and ADBC's errors both carry: a connection killed mid-load (57P01) is not refusal.
        """
        return str(getattr(error, "sqlstate", None) or "")[:2] in ("22", "23")

    def load_object(self, spec: TableLoad, bucket: str, key: str) -> tuple[int, int]:
        """Download ``s3://bucket/key`` and load it (load id: the key); see :meth:`load_parquet`."""
        with tempfile.TemporaryDirectory(prefix="load-") as tmp:
            if self._store is None:
                self._store = ImmutableStore(self.aws_conn_id)
            local = self._store.download(bucket, key, Path(tmp) / "object.parquet")
            return self.load_parquet(spec, local, load_id=key)

    def ensure_landing(self, spec: TableLoad, schema: pa.Schema) -> None:
        """Create ``landing.<table>`` from the processed schema (all columns nullable, plus ``_load_id``).

        A column the table lacks (``additional_column`` once a model carries it, say) is added: landing
        follows its objects. Only missing columns are altered, so a load takes no exclusive lock on
        a landing table that already fits.
        """
        wanted = [(f.name, postgres_type(f.type)) for f in schema] + [(ORDINAL, "bigint")]
        columns = [sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in wanted]
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
                for name, kind in wanted:
                    if name not in existing:
                        cur.execute(
                            sql.SQL("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS {c} {type}").format(
                                t=sql.Identifier(spec.landing_schema, spec.warehouse_table),
                                c=sql.Identifier(name),
                                type=sql.SQL(kind),
                            )
                        )
                cur.execute(
                    sql.SQL(
                        "CREATE TABLE IF NOT EXISTS {r} (table_name text NOT NULL, load_id text NOT NULL, "
                        "loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (table_name, load_id))"
                    ).format(r=sql.Identifier(spec.landing_schema, LOAD_REGISTRY))
                )
                landing = sql.Identifier(spec.landing_schema, spec.warehouse_table)
                # Until 2026-12-05 a btree on the load id: a million identical keys per object made it
                # cost about half of the landing COPY. Replaced once, on the first load after upgrading.
                cur.execute(
                    "SELECT to_regclass(%s) IS NOT NULL",
                    (_qualified(spec.landing_schema, f"{spec.warehouse_table}_load_id_idx"),),
                )
                if cur.fetchone()[0]:
                    cur.execute(
                        sql.SQL("DROP INDEX {}").format(
                            sql.Identifier(spec.landing_schema, f"{spec.warehouse_table}_load_id_idx")
                        )
                    )
                cur.execute(
                    sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {i} ON {t} USING brin ({c}) WITH (autosummarize = on)"
                    ).format(i=sql.Identifier(_load_id_index(spec)), t=landing, c=sql.Identifier(LOAD_ID))
                )
            conn.commit()
        finally:
            conn.close()

    def load_parquet(self, spec: TableLoad, path: Path, load_id: str) -> tuple[int, int]:
        """Load a Parquet file batch by batch; returns (rows read, core rows inserted/updated)."""
        parquet = open_local(path)
        self.ensure_landing(spec, parquet.schema_arrow)
        reader = pa.RecordBatchReader.from_batches(
            parquet.schema_arrow, parquet.iter_batches(batch_size=COPY_BATCH_ROWS)
        )
        return parquet.metadata.num_rows, self.load(spec, reader, load_id)

    def load(self, spec: TableLoad, rows: pa.Table | pa.RecordBatchReader, load_id: str) -> int:
        """Land ``rows`` and merge them into core in one transaction; returns core rows inserted/updated.

        ``rows`` may be a reader of record batches: it is written batch by batch (binary COPY through
        ADBC), so memory stays bounded by the batch size, not by the object's size.
        """
        names = [n for n in rows.schema.names if n not in (LOAD_ID, ORDINAL)]
        order = KeyOrder(spec.key[0])
        with (
            adbc.connect(adbc.hook_conninfo(self.conn_id)) as conn,
            conn.cursor() as cur,
            _read_ahead(_tagged(rows, names, load_id, order)) as batches,
        ):
            _summarize_load_ids(cur, spec)
            tagged = pa.RecordBatchReader.from_batches(_tagged_schema(rows.schema, names), batches)
            with adbc.transaction(cur):
                return self._land_and_merge(cur, spec, tagged, names, load_id, order)

    def _land_and_merge(
        self,
        cur: Any,
        spec: TableLoad,
        tagged: pa.RecordBatchReader,
        names: Sequence[str],
        load_id: str,
        order: KeyOrder,
    ) -> int:
        """The load's transaction: the registry row, the landing copy, the merge into core."""
        landing = sql.Identifier(spec.landing_schema, spec.warehouse_table)
        # The merge sorts the object's rows (by _ordinal, by key): in memory up to this much.
        cur.execute(f"SET LOCAL work_mem = '{int(LOAD_WORK_MEM_MB)}MB'")
        # The load id's row in the registry is locked first: a second transaction loading the
        # same object waits here until this one commits, then replaces its rows rather than
        # adding a second copy beside them (its DELETE would not see rows not yet committed).
        cur.execute(
            _text(
                sql.SQL(
                    "INSERT INTO {r} (table_name, load_id) VALUES ($1, $2) "
                    "ON CONFLICT (table_name, load_id) DO UPDATE SET loaded_at = now()"
                ).format(r=sql.Identifier(spec.landing_schema, LOAD_REGISTRY))
            ),
            parameters=(spec.warehouse_table, load_id),
        )
        cur.execute(
            _text(sql.SQL("DELETE FROM {} WHERE {} = $1").format(landing, sql.Identifier(LOAD_ID))),
            parameters=(load_id,),
        )
        cur.adbc_ingest(spec.warehouse_table, tagged, mode="append", db_schema_name=spec.landing_schema)
        return self._merge_into_core(
            cur, spec, [n for n in names if n not in spec.landing_only], load_id, order
        )

    def _merge_into_core(
        self, cur: Any, spec: TableLoad, names: Sequence[str], load_id: str, order: KeyOrder
    ) -> int:
        """Merge the object's landing rows into core; returns the rows inserted or updated.

        An object whose leading key column only rises (an extract's object, ordered by key) holds
        each key once: its rows need no sort and, for versions, no ``ON CONFLICT`` (PostgreSQL's
        speculative insertion costs more than the insert itself). When core holds no key in the
        object's range at all (a table's first load, an append-only table's new rows), the rows
        are simply inserted: one probe of core's index replaces a probe per row. Should a row still
        collide (a writer outside the loads, which take turns per source), the unique index
        refuses it and the merge is redone the general way.
        """

        def run(statement: sql.Composed) -> int:
            # The load id as a literal, not a parameter: ADBC reports the command's row count only
            # for a statement without parameters (with one, rowcount is -1).
            cur.execute(_text(statement))
            if cur.rowcount < 0:
                raise RuntimeError("the PostgreSQL driver reported no row count for the merge")
            return int(cur.rowcount)

        if not order.rising:
            return run(self._merge(spec, names, load_id))
        cur.execute("SAVEPOINT merge_in_key_order")
        try:
            unseen = _keys_unseen(cur, spec, order)
            return run(self._merge(spec, names, load_id, keys_once=True, unseen=unseen))
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
            cur.execute("ROLLBACK TO SAVEPOINT merge_in_key_order")
            return run(self._merge(spec, names, load_id))

    @staticmethod
    def _merge(
        spec: TableLoad, names: Sequence[str], load_id: str, keys_once: bool = False, unseen: bool = False
    ) -> sql.Composed:
        """The merge of one object's landing rows (those of ``load_id``) into core.

        ``keys_once``: the object is known to hold each key once; ``unseen``: and core holds none of
        its keys (see :meth:`_merge_into_core`).
        """
        core = sql.Identifier(spec.core_schema, spec.warehouse_table)
        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        key = sql.SQL(", ").join(sql.Identifier(k) for k in spec.key)
        landing = sql.Identifier(spec.landing_schema, spec.warehouse_table)
        this_object = sql.SQL("FROM {landing} WHERE {lid} = {value}").format(
            landing=landing, lid=sql.Identifier(LOAD_ID), value=sql.Literal(load_id)
        )
        updates = [n for n in names if n not in spec.key]
        if keys_once and unseen:
            # Nothing to arbitrate: every row is new to core (a collision raises, see the caller).
            return sql.SQL("INSERT INTO {core} ({cols}) SELECT {cols} {this}").format(
                core=core, cols=cols, this=this_object
            )
        if spec.merge == "versions" and keys_once:
            # Each key once: the versions core lacks, in any order, with no conflict to arbitrate.
            known = sql.SQL(" AND ").join(
                sql.SQL("c.{k} = l.{k}").format(k=sql.Identifier(k)) for k in spec.key
            )
            return sql.SQL(
                "INSERT INTO {core} ({cols}) SELECT {l_cols} FROM {landing} AS l WHERE l.{lid} = {value} "
                "AND NOT EXISTS (SELECT 1 FROM {core} AS c WHERE {known})"
            ).format(
                core=core,
                cols=cols,
                l_cols=sql.SQL(", ").join(sql.SQL("l.{}").format(sql.Identifier(n)) for n in names),
                landing=landing,
                lid=sql.Identifier(LOAD_ID),
                value=sql.Literal(load_id),
                known=known,
            )
        if spec.merge == "versions":
            # Every version is a row, in the object's order (the record ids follow it); a version
            # already in core, or twice in the object, is skipped by the conflict on its key.
            source = sql.SQL("SELECT {cols} {this} ORDER BY {o}").format(
                cols=cols, this=this_object, o=sql.Identifier(ORDINAL)
            )
        elif keys_once:
            source = sql.SQL("SELECT {cols} {this}").format(cols=cols, this=this_object)
        else:
            # One row per key from this object: the last one in it.
            source = sql.SQL("SELECT DISTINCT ON ({key}) {cols} {this} ORDER BY {key}, {o} DESC").format(
                key=key, cols=cols, this=this_object, o=sql.Identifier(ORDINAL)
            )
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


def _load_id_index(spec: TableLoad) -> str:
    """The BRIN index on ``landing.<table>._load_id`` (see :func:`_summarize_load_ids`)."""
    return f"{spec.warehouse_table}_load_id_brin"


def _qualified(schema: str, name: str) -> str:
    return sql.Identifier(schema, name).as_string(None)


def _summarize_load_ids(cur: Any, spec: TableLoad) -> None:
    """Summarize the landing index's block ranges that earlier loads left unsummarized.

    Landing is append-only, so an object's rows are physically together and a BRIN index on the
    load id finds them at a fraction of a btree's upkeep (a btree held a million identical keys per
    object). A BRIN index is lossy, never wrong: a range without a summary is always read, so the
    rows a load has just written are found; rows of a load id are rechecked one by one. What an
    unsummarized range costs is speed: every later merge would read it. ``autosummarize`` has
    autovacuum summarize each range once the next one is started, and this call, outside the load's
    transaction, summarizes what is left (the last range of each load; all of them where autovacuum is
    off). Best effort: a role that does not own the landing table cannot summarize, and the load goes on.
    """
    try:
        cur.execute(
            "SELECT brin_summarize_new_values(to_regclass($1))",
            parameters=(_qualified(spec.landing_schema, _load_id_index(spec)),),
        )
        cur.fetchall()
    except Exception as exc:
        if getattr(exc, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise


def _keys_unseen(cur: Any, spec: TableLoad, order: KeyOrder) -> bool:
    """Whether core holds no row whose leading key lies in the object's key range (one index probe).

    The range's ends are compared as the landing column's type, as the merge compares keys; a key
    type ordered differently by Arrow and PostgreSQL (text), or without a plain text form, answers
    False (the per-row check then runs). A wrong answer could not duplicate a row, only cost a
    retry: the insert that follows is refused by core's unique index (the one the general merge's
    ``ON CONFLICT`` needs) on any key core holds.
    """
    if order.first is None or not _ordered_alike(order.first.type):
        return False
    ends = [pc.cast(v, pa.string()).as_py() for v in (order.first, order.last)]
    kind = sql.SQL(postgres_type(order.first.type))
    cur.execute(
        _text(
            sql.SQL(
                "SELECT NOT EXISTS (SELECT 1 FROM {core} WHERE {k} >= CAST({lo} AS {kind}) "
                "AND {k} <= CAST({hi} AS {kind}))"
            ).format(
                core=sql.Identifier(spec.core_schema, spec.warehouse_table),
                k=sql.Identifier(order.column),
                lo=sql.Literal(ends[0]),
                hi=sql.Literal(ends[1]),
                kind=kind,
            )
        )
    )
    return bool(cur.fetchone()[0])


def _ordered_alike(arrow_type: pa.DataType) -> bool:
    # Not text: Arrow orders it by bytes, PostgreSQL by the column's collation, so the object's
    # first and last keys need not bound its keys in core's order.
    return (
        pa.types.is_integer(arrow_type)
        or pa.types.is_date(arrow_type)
        or (pa.types.is_timestamp(arrow_type) and arrow_type.unit != "ns")  # PostgreSQL keeps microseconds
        or pa.types.is_decimal(arrow_type)
    )


def _text(statement: sql.Composable) -> str:
    """A composed statement as text for ADBC (identifiers quoted by psycopg; values stay ``$n``)."""
    return statement.as_string(None)


def _tagged_schema(schema: pa.Schema, names: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [schema.field(n) for n in names] + [pa.field(LOAD_ID, pa.string()), pa.field(ORDINAL, pa.int64())]
    )


def _tagged(
    rows: pa.Table | pa.RecordBatchReader, names: Sequence[str], load_id: str, order: KeyOrder
) -> Iterator[pa.RecordBatch]:
    """The object's batches with the landing columns: its load id and each row's place in it
    (``order`` watches the leading key column go by)."""
    schema = _tagged_schema(rows.schema, names)
    batches = rows.to_batches() if isinstance(rows, pa.Table) else rows
    offset = 0
    load_ids = pa.array([], pa.string())  # one column of the load id, sliced for every batch
    for batch in batches:
        count = batch.num_rows
        if count > len(load_ids):
            load_ids = pa.repeat(pa.scalar(load_id), count)
        ordinal = pa.array(np.arange(offset, offset + count, dtype=np.int64))
        offset += count
        order.see(batch.column(order.column))
        yield pa.record_batch(
            [batch.column(n) for n in names] + [load_ids.slice(0, count), ordinal], schema=schema
        )


@contextmanager
def _read_ahead(batches: Iterator[pa.RecordBatch], depth: int = 1) -> Iterator[Iterator[pa.RecordBatch]]:
    """``batches``, produced by a thread up to ``depth`` batches ahead of their consumer.

    ADBC's COPY pulls a batch, encodes it and sends it, one after the other: without this the
    server idles while the next batch is read from Parquet (pyarrow decodes without the GIL, so
    the thread runs beside the send). Memory: ``depth`` more batches. The thread stops when the
    block ends, consumed or not; its error is raised to the consumer.
    """
    done = object()
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        ready.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            item: Any = done
        except BaseException as exc:  # handed to the consumer
            item = exc
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def consume() -> Iterator[pa.RecordBatch]:
        while True:
            item = ready.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    producer = threading.Thread(target=produce, name="load-read-ahead", daemon=True)
    producer.start()
    try:
        yield consume()
    finally:
        stop.set()
        producer.join()


UNIQUE_VIOLATION = "23505"
INSUFFICIENT_PRIVILEGE = "42501"


class KeyOrder:
    """Watches an object's leading key column as its batches go by: does it only rise?

    Written by hand because it is one comparison per batch: an object that passes holds each key
    once, which lets the merge skip a sort and PostgreSQL's conflict arbitration.
    """

    def __init__(self, column: str) -> None:
        self.column = column
        self.rising = True
        self.first: Any = None  # the first and last values seen (Arrow scalars), while rising
        self._last: Any = None

    @property
    def last(self) -> Any:
        return self._last

    def see(self, values: pa.Array) -> None:
        if not self.rising or not len(values):
            return
        if values.null_count or (self._last is not None and not pc.greater(values[0], self._last).as_py()):
            self.rising = False
            return
        if len(values) > 1 and not pc.all(pc.greater(values[1:], values[:-1])).as_py():
            self.rising = False
            return
        if self.first is None:
            self.first = values[0]
        self._last = values[-1]

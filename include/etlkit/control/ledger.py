"""The pipeline ledger: how far each extract got, and which objects are still to transform or load.

Downstream DAGs work from here, not from the Asset event that woke them: each processes everything
landed (or processed) and not yet taken, so manual runs, retries and reruns all do the right thing.
Every state change commits together with the records that justify it.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from include.etlkit.control.source_files import SourceFileRecord, write_source_file
from include.etlkit.control.store import ControlStore
from include.etlkit.lazy import lazy_module
from include.etlkit.storage import StoredObject
from include.etlkit.windows import ExtractWindow

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from include.etlkit.storage import ImmutableStore
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pacsv = lazy_module("pyarrow.csv")

# Every control table that remembers something per source: what was landed, validated, processed and
# loaded, how far each extract got, the files and schemas seen. ``Ledger.forget`` clears them together.
SOURCE_TABLES = (
    "extract_state",
    "landed_object",
    "processed_object",
    "row_version",
    "row_version_base",
    "row_version_object",
    "source_file",
    "source_schema",
    "schema_change",
    "file_status",
    "current_state",
)


def _baseline_versions(
    bucket: str, key: str, key_column: str, hash_column: str, cursor_column: str, *, aws_conn_id: str
) -> dict[str, tuple[str, datetime | None]]:
    """Each key's identity and cursor in a baseline object, read from the bucket batch by batch."""
    import tempfile
    from pathlib import Path

    import pyarrow.compute as pc

    from include.etlkit.parquet import stream_batches
    from include.etlkit.storage import ImmutableStore

    versions: dict[str, tuple[str, datetime | None]] = {}
    with tempfile.TemporaryDirectory(prefix="row-versions-") as tmp:
        local = ImmutableStore(aws_conn_id).download(bucket, key, Path(tmp) / "base.parquet")
        for batch in stream_batches(local, 100_000, columns=[key_column, hash_column, cursor_column]):
            cursor = batch.column(2)
            if pa.types.is_timestamp(cursor.type) and cursor.type.tz is not None:
                cursor = cursor.cast(pa.timestamp(cursor.type.unit))  # as etl.row_version holds it: UTC
            keys = pc.cast(batch.column(0), pa.string()).to_pylist()
            hashes = batch.column(1).to_pylist()
            versions.update(zip(keys, zip(hashes, cursor.to_pylist(), strict=True), strict=True))
    return versions


def landed_versions(path, columns: VersionColumns, batch_rows: int = 100_000) -> Iterator[pa.RecordBatch]:
    """Each row's version in a landed Parquet file that carries them (``columns``), as
    ``record_landing`` takes them (``row_key``, ``row_hash``, ``last_updated``), batch by batch.

    The key's text is Arrow's cast, as :func:`_baseline_versions` reads a baseline: one rule whether a
    table's versions come from its baseline object or from ``etl.row_version``.
    """
    import pyarrow.compute as pc

    from include.etlkit.parquet import stream_batches

    for batch in stream_batches(path, batch_rows, columns=[columns.key, columns.hash, columns.cursor]):
        yield pa.record_batch(
            [pc.cast(batch.column(0), pa.string()), batch.column(1), batch.column(2)],
            names=["row_key", "row_hash", "last_updated"],
        )


def _copy_csv(cur, statement: str, batches: Iterable[pa.RecordBatch]) -> None:
    """COPY record batches as CSV rendered by Arrow, one batch in memory at a time."""
    with cur.copy(statement) as copy:
        for batch in batches:
            buffer = io.BytesIO()
            pacsv.write_csv(batch, buffer, write_options=pacsv.WriteOptions(include_header=False))
            copy.write(buffer.getbuffer())


def _upsert_versions(
    cur, source: str, table_name: str, landed_key: str, batches: Iterable[pa.RecordBatch]
) -> None:
    """Upsert one landed object's versions into ``etl.row_version``, through a temporary table."""
    cur.execute(
        "CREATE TEMP TABLE incoming_version (row_key text, row_hash text, last_updated timestamp) "
        "ON COMMIT DROP"
    )
    _copy_csv(cur, "COPY incoming_version FROM STDIN WITH (FORMAT csv)", batches)
    # Newest version wins; on equal last_updated (silent changes) the latest landing wins.
    cur.execute(
        "INSERT INTO etl.row_version (source, table_name, row_key, row_hash, last_updated, landed_key) "
        "SELECT DISTINCT ON (row_key) %s, %s, row_key, row_hash, last_updated, %s FROM incoming_version "
        "ORDER BY row_key, last_updated DESC "
        "ON CONFLICT (source, table_name, row_key) DO UPDATE SET row_hash = EXCLUDED.row_hash, "
        "last_updated = EXCLUDED.last_updated, landed_key = EXCLUDED.landed_key "
        "WHERE etl.row_version.last_updated IS NULL "
        "OR EXCLUDED.last_updated >= etl.row_version.last_updated",
        (source, table_name, landed_key),
    )


@dataclass(frozen=True)
class VersionColumns:
    """Where a landed Parquet object carries each row's version: its key, identity and cursor columns.

    Given for a table extract's landing, it lets a table's first landing stand as the baseline of its
    row versions (``etl.row_version_base``), and a later landing wait as one row
    (``etl.row_version_object``) until it is folded, rather than being copied into ``etl.row_version``
    as it lands.
    """

    key: str
    hash: str
    cursor: str


@dataclass(frozen=True)
class LedgerObject:
    bucket: str
    key: str
    table_name: str
    rows: int


# Tombstones of rows deleted in a source: landed (and processed) under ``<table>.deleted``.
DELETIONS = ".deleted"
DELETED_AT = "_deleted_at"
# The row_version of a row deleted in the source: no source row hashes to it.
DELETED_VERSION = "deleted"

# An extract folds a table's waiting objects (``etl.row_version_object``) into ``etl.row_version``
# itself once more than this many wait: a table nobody reconciles (the reconciliation folds them
# first) keeps at most this many rows there, and a fold never has more than this many objects to read.
FOLD_AFTER_WAITING = 50
# How many landed objects of a (source, table) wait to be folded.
WAITING_OBJECTS = "SELECT count(*) FROM etl.row_version_object WHERE source = %s AND table_name = %s"


def deletions_of(table_name: str) -> str:
    """The ledger table name of ``table_name``'s deletions."""
    return f"{table_name}{DELETIONS}"


class Ledger:
    def __init__(self, store: ControlStore | None = None) -> None:
        self.store = store or ControlStore()

    # -- extract ----------------------------------------------------------------------------------

    def landed_until(self, source: str, table_name: str) -> datetime | None:
        rows = self.store.query(
            "SELECT landed_until FROM etl.extract_state WHERE source = %s AND table_name = %s",
            (source, table_name),
        )
        return rows[0][0] if rows else None

    def advance_listing_mark(self, source: str, feed: str, mark: datetime, run_id: str) -> None:
        """Move an S3 drop feed's LastModified high-water mark forward to ``mark`` (never back).

        Kept as the feed's ``etl.extract_state.landed_until`` (S3's clock, naive UTC) and read with
        :meth:`landed_until`; ``extract.s3_drop`` says why it can never make a listing skip a file.
        """
        self.store.query(
            "INSERT INTO etl.extract_state (source, table_name, landed_until, last_run_id) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (source, table_name) DO UPDATE SET "
            "landed_until = GREATEST(etl.extract_state.landed_until, EXCLUDED.landed_until), "
            "last_run_id = EXCLUDED.last_run_id, updated_at = now()",
            (source, feed, mark, run_id),
        )

    def record_landing(
        self,
        *,
        source: str,
        table_name: str,
        window: ExtractWindow,
        run_id: str,
        stored: StoredObject | None,
        rows: int,
        mode: str | None = None,
        row_versions: Iterable[pa.RecordBatch] | None = None,
        advance_state: bool = True,
        source_file: SourceFileRecord | None = None,
        forget_versions: tuple[str, Sequence[str]] | None = None,
        version_columns: VersionColumns | None = None,
    ) -> int:
        """Record a landed object (if any rows), its row versions, and move the table's state.

        Returns how many landed objects of the table wait for their versions to be folded into
        ``etl.row_version`` (:meth:`fold_versions`), this one included; 0 when none does.

        ``forget_versions``: ``(table, keys)`` of rows deleted in the source: their latest version
        becomes a deletion (``row_hash`` :data:`DELETED_VERSION`, at the window's upper bound), in the
        transaction that records their tombstones, so each deletion is landed once.

        ``row_versions``: batches with columns ``row_key``, ``row_hash``, ``last_updated``.
        ``source_file``: the remote file version the object came from (file drops), recorded in
        ``etl.source_file`` in the same transaction, so no landed file is left without its sender.
        ``version_columns``: the object itself carries the row versions in these columns, and
        ``row_versions`` is not read: a table's first landing is recorded as their baseline
        (``etl.row_version_base``), a later one (an increment, a reconciliation) as one row waiting in
        ``etl.row_version_object`` until :meth:`fold_versions` copies its versions into
        ``etl.row_version``. Either way one ledger row, whatever the object's row count.
        """
        waiting = 0
        with self.store.transaction() as cur:
            if stored is not None:
                cur.execute(
                    "INSERT INTO etl.landed_object (bucket, key, source, table_name, mode, rows, sha256, "
                    "window_start, window_end, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (bucket, key) DO NOTHING",
                    (
                        stored.bucket,
                        stored.key,
                        source,
                        table_name,
                        mode or window.mode,
                        rows,
                        stored.sha256,
                        window.lower,
                        window.upper,
                        run_id,
                    ),
                )
            if stored is not None and row_versions is not None:
                waiting = self._record_row_versions(
                    cur, source, table_name, stored, row_versions, version_columns
                )
            if advance_state:
                cur.execute(
                    "INSERT INTO etl.extract_state (source, table_name, landed_until, last_run_id) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (source, table_name) DO UPDATE SET "
                    "landed_until = GREATEST(etl.extract_state.landed_until, EXCLUDED.landed_until), "
                    "last_run_id = EXCLUDED.last_run_id, updated_at = now()",
                    (source, table_name, window.upper, run_id),
                )
            if source_file is not None:
                write_source_file(cur, source_file)
            if forget_versions is not None and stored is not None:
                table, keys = forget_versions
                # A version like any other, so it also covers keys whose versions live in the baseline.
                cur.execute(
                    "INSERT INTO etl.row_version "
                    "(source, table_name, row_key, row_hash, last_updated, landed_key) "
                    "SELECT %s, %s, k, %s, %s, %s FROM unnest(%s::text[]) AS k "
                    "ON CONFLICT (source, table_name, row_key) DO UPDATE SET row_hash = EXCLUDED.row_hash, "
                    "last_updated = EXCLUDED.last_updated, landed_key = EXCLUDED.landed_key",
                    (source, table, DELETED_VERSION, window.upper, stored.key, list(keys)),
                )
        return waiting

    @staticmethod
    def _record_row_versions(
        cur,
        source: str,
        table_name: str,
        stored: StoredObject,
        batches: Iterable[pa.RecordBatch],
        columns: VersionColumns | None,
    ) -> int:
        """Record a landed object's row versions; return how many objects of the table now wait."""
        key = stored.key
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM etl.row_version WHERE source = %s AND table_name = %s) "
            "OR EXISTS (SELECT 1 FROM etl.row_version_base WHERE source = %s AND table_name = %s) "
            "OR EXISTS (SELECT 1 FROM etl.row_version_object WHERE source = %s AND table_name = %s)",
            (source, table_name) * 3,
        )
        first = not cur.fetchone()[0]
        if first and columns is not None:
            # The first landing (a full snapshot) is the baseline: one row naming the object.
            cur.execute(
                "INSERT INTO etl.row_version_base "
                "(source, table_name, bucket, key, key_column, hash_column, cursor_column) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, table_name) DO NOTHING",
                (source, table_name, stored.bucket, key, columns.key, columns.hash, columns.cursor),
            )
            return 0
        if columns is not None:
            # A later landing waits, one row naming the object, until a fold copies its versions.
            cur.execute(
                "INSERT INTO etl.row_version_object "
                "(source, table_name, bucket, key, key_column, hash_column, cursor_column) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (bucket, key) DO NOTHING",
                (source, table_name, stored.bucket, key, columns.key, columns.hash, columns.cursor),
            )
            cur.execute(
                WAITING_OBJECTS,
                (source, table_name),
            )
            return cur.fetchone()[0]
        if first:
            # A table's first landing (a full snapshot, one row per key): no conflicts to resolve, so
            # the versions are COPYed straight into the table, with no staging copy.
            constants = {"source": source, "table_name": table_name, "landed_key": key}
            _copy_csv(
                cur,
                "COPY etl.row_version (row_key, row_hash, last_updated, source, table_name, landed_key) "
                "FROM STDIN WITH (FORMAT csv)",
                (
                    pa.record_batch(
                        [
                            *batch.columns,
                            *(pa.array([v] * batch.num_rows, pa.string()) for v in constants.values()),
                        ],
                        names=[*batch.schema.names, *constants],
                    )
                    for batch in batches
                ),
            )
            return 0
        _upsert_versions(cur, source, table_name, key, batches)
        return 0

    def waiting_versions(self, source: str, table_name: str) -> int:
        """How many landed objects of a table wait for their versions to be folded."""
        return self.store.query(
            WAITING_OBJECTS,
            (source, table_name),
        )[0][0]

    def fold_versions(
        self,
        source: str,
        table_name: str,
        aws_conn_id: str = "aws_default",
        *,
        objects: ImmutableStore | None = None,
    ) -> int:
        """Fold the table's waiting landed objects into ``etl.row_version``; return how many.

        Oldest first (the order they were recorded in), each in its own transaction: its waiting row
        is deleted and its versions upserted by the rule every version is (the newer cursor wins; on
        an equal cursor, the later landing), together, so an object is folded exactly once, and a
        failure leaves it waiting. Every transaction holds the table's advisory lock first: a fold
        running beside this one waits, then finds the objects already folded gone.
        """
        import tempfile
        from pathlib import Path

        from include.etlkit.storage import ImmutableStore

        folded = 0
        lock = f"etl.row_version_object:{source}:{table_name}"
        while True:
            with self.store.transaction() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (lock,))
                cur.execute(
                    "DELETE FROM etl.row_version_object WHERE seq = ("
                    "SELECT seq FROM etl.row_version_object WHERE source = %s AND table_name = %s "
                    "ORDER BY seq LIMIT 1) "
                    "RETURNING bucket, key, key_column, hash_column, cursor_column",
                    (source, table_name),
                )
                row = cur.fetchone()
                if row is None:
                    return folded
                bucket, key, *names = row
                objects = objects or ImmutableStore(aws_conn_id)
                with tempfile.TemporaryDirectory(prefix="row-versions-") as tmp:
                    local = objects.download(bucket, key, Path(tmp) / "versions.parquet")
                    _upsert_versions(
                        cur, source, table_name, key, landed_versions(local, VersionColumns(*names))
                    )
            folded += 1

    def row_hashes(self, source: str, table_name: str, aws_conn_id: str = "aws_default") -> dict[str, str]:
        """The identity of the latest landed version of every key of a table (key as text).

        The baseline object (a table's first landing, ``etl.row_version_base``) is read from the bucket,
        key, hash and cursor columns only, batch by batch; the versions landed since
        (``etl.row_version``) are laid over it by the rule they were upserted with: the newer cursor
        wins, and on an equal cursor (a silent change) the later landing. Landed objects still waiting
        (``etl.row_version_object``) are folded first (:meth:`fold_versions`), so every landed
        version is seen.
        """
        self.fold_versions(source, table_name, aws_conn_id)
        base = self.store.query(
            "SELECT bucket, key, key_column, hash_column, cursor_column FROM etl.row_version_base "
            "WHERE source = %s AND table_name = %s",
            (source, table_name),
        )
        later = self.store.query(
            "SELECT row_key, row_hash, last_updated FROM etl.row_version "
            "WHERE source = %s AND table_name = %s",
            (source, table_name),
        )
        if not base:
            return {row_key: row_hash for row_key, row_hash, _ in later or [] if row_hash != DELETED_VERSION}
        versions = _baseline_versions(*base[0], aws_conn_id=aws_conn_id)
        for row_key, row_hash, last_updated in later or []:
            held = versions.get(row_key)
            if held is None or held[1] is None or (last_updated is not None and last_updated >= held[1]):
                versions[row_key] = (row_hash, last_updated)
        return {
            row_key: row_hash for row_key, (row_hash, _) in versions.items() if row_hash != DELETED_VERSION
        }

    def landed_count(self, source: str) -> int:
        """How many objects the source ever landed (the demo checks them against the bucket)."""
        return self.store.query("SELECT count(*) FROM etl.landed_object WHERE source = %s", (source,))[0][0]

    # -- transform --------------------------------------------------------------------------------

    def pending_landed(self, source: str) -> list[LedgerObject]:
        rows = self.store.query(
            "SELECT bucket, key, table_name, rows FROM etl.landed_object "
            "WHERE source = %s AND transformed_at IS NULL ORDER BY landed_at, key",
            (source,),
        )
        return [LedgerObject(*row) for row in rows or []]

    def landed(self, source: str, table_names: Sequence[str]) -> list[LedgerObject]:
        """Every object ever landed for these tables, oldest first (to rebuild current state)."""
        rows = self.store.query(
            "SELECT bucket, key, table_name, rows FROM etl.landed_object "
            "WHERE source = %s AND table_name = ANY(%s) ORDER BY landed_at, key",
            (source, list(table_names)),
        )
        return [LedgerObject(*row) for row in rows or []]

    def current_state(self, source: str, table_name: str) -> LedgerObject | None:
        """The snapshot of a source table's latest version of every key, if one was recorded."""
        rows = self.store.query(
            "SELECT bucket, key, table_name, rows FROM etl.current_state "
            "WHERE source = %s AND table_name = %s",
            (source, table_name),
        )
        return LedgerObject(*rows[0]) if rows else None

    def record_transform(
        self,
        *,
        source: str,
        run_id: str,
        taken: Sequence[LedgerObject],
        produced: Sequence[tuple[str, StoredObject, int]],
        states: Sequence[tuple[str, StoredObject, int]] = (),
    ) -> None:
        """Record the processed objects, the new current-state snapshots (``states``: table, object,
        rows) and mark the landed objects they came from, together."""
        with self.store.transaction() as cur:
            for table_name, stored, rows in states:
                cur.execute(
                    "INSERT INTO etl.current_state (source, table_name, bucket, key, rows, sha256, run_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, table_name) DO UPDATE SET "
                    "bucket = EXCLUDED.bucket, key = EXCLUDED.key, rows = EXCLUDED.rows, "
                    "sha256 = EXCLUDED.sha256, run_id = EXCLUDED.run_id, updated_at = now()",
                    (source, table_name, stored.bucket, stored.key, rows, stored.sha256, run_id),
                )
            for table_name, stored, rows in produced:
                cur.execute(
                    "INSERT INTO etl.processed_object "
                    "(bucket, key, source, table_name, rows, sha256, run_id) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (bucket, key) DO NOTHING",
                    (stored.bucket, stored.key, source, table_name, rows, stored.sha256, run_id),
                )
            cur.execute(
                "UPDATE etl.landed_object SET transformed_at = now(), transform_run_id = %s "
                "WHERE bucket = ANY(%s) AND key = ANY(%s) AND transformed_at IS NULL",
                (run_id, [o.bucket for o in taken], [o.key for o in taken]),
            )

    # -- load -------------------------------------------------------------------------------------

    def pending_processed(self, source: str) -> list[LedgerObject]:
        rows = self.store.query(
            "SELECT bucket, key, table_name, rows FROM etl.processed_object "
            "WHERE source = %s AND loaded_at IS NULL AND rejected_at IS NULL ORDER BY created_at, key",
            (source,),
        )
        return [LedgerObject(*row) for row in rows or []]

    def mark_loaded(self, objects: Sequence[LedgerObject], run_id: str) -> None:
        self.store.query(
            "UPDATE etl.processed_object SET loaded_at = now(), load_run_id = %s "
            "WHERE bucket = ANY(%s) AND key = ANY(%s) AND loaded_at IS NULL",
            (run_id, [o.bucket for o in objects], [o.key for o in objects]),
        )

    def mark_rejected(self, obj: LedgerObject, run_id: str, reason: str) -> None:
        """The warehouse refused this object's data: it is set aside with the reason, never retried
        (it would fail the same way) and never blocks the objects after it."""
        self.store.query(
            "UPDATE etl.processed_object SET rejected_at = now(), reject_reason = %s, load_run_id = %s "
            "WHERE bucket = %s AND key = %s AND loaded_at IS NULL",
            (reason, run_id, obj.bucket, obj.key),
        )

    def rejected_processed(self, source: str) -> list[tuple[LedgerObject, str]]:
        """The objects of ``source`` the warehouse refused, with the reason."""
        rows = self.store.query(
            "SELECT bucket, key, table_name, rows, reject_reason FROM etl.processed_object "
            "WHERE source = %s AND rejected_at IS NOT NULL ORDER BY rejected_at, key",
            (source,),
        )
        return [(LedgerObject(*row[:4]), row[4]) for row in rows or []]

    # -- reset ------------------------------------------------------------------------------------

    def forget(self, source: str) -> None:
        """Clear everything the control plane remembers about ``source``, in one transaction.

        For a local reset (the demo after the local S3 lost its objects) and for tests: the next runs
        then start afresh, with a full snapshot of every table.
        """
        with self.store.transaction() as cur:
            for table in SOURCE_TABLES:
                cur.execute(f"DELETE FROM etl.{table} WHERE source = %s", (source,))

"""``etl.file_status``: one row per landed file validated, and what became of its rows.

The validation writes a file's row (:meth:`FileStatusStore.record`); the load step flips the files
whose valid rows it loaded to ``loaded`` (:meth:`FileStatusStore.mark_loaded`). The table's CHECK
holds ``rows_loaded + rows_rejected = rows_read`` for every file. The DDL is
``sql/postgres/control/file_status.sql``; the file validation (:mod:`include.etlkit.files`) uses
this module through ``include.etlkit.files.status``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from include.etlkit.control.store import ControlStore

# The statuses a validation writes (``include.etlkit.files.validate`` names them too; a unit test
# holds the two the same), and the one the load writes. The table's CHECK allows exactly these.
VALIDATED = "validated"
PARTIALLY_QUARANTINED = "partially_quarantined"
REJECTED = "rejected"

LOADED = "loaded"
STATUSES = (VALIDATED, PARTIALLY_QUARANTINED, REJECTED, LOADED)

COLUMNS = (
    "bucket",
    "key",
    "source",
    "dataset",
    "status",
    "rows_read",
    "rows_loaded",
    "rows_rejected",
    "reason",
    "processed_bucket",
    "processed_key",
    "quarantine_key",
    "error_key",
    "run_id",
    "received_at",
    "validated_at",
    "loaded_at",
    "load_run_id",
)


@dataclass(frozen=True)
class FileStatus:
    """One ``etl.file_status`` row."""

    bucket: str
    key: str
    source: str
    dataset: str
    status: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    reason: str | None
    processed_bucket: str | None
    processed_key: str | None
    quarantine_key: str | None
    error_key: str | None
    run_id: str
    received_at: datetime | None
    validated_at: datetime
    loaded_at: datetime | None
    load_run_id: str | None


class FileStatusStore:
    """Reads and writes ``etl.file_status`` through the control plane's connection."""

    def __init__(self, store: ControlStore | None = None) -> None:
        self.store = store or ControlStore()

    def record(
        self,
        *,
        bucket: str,
        key: str,
        source: str,
        dataset: str,
        status: str,
        rows_read: int,
        rows_loaded: int,
        rows_rejected: int,
        run_id: str,
        reason: str | None = None,
        processed_bucket: str | None = None,
        processed_key: str | None = None,
        quarantine_key: str | None = None,
        error_key: str | None = None,
    ) -> None:
        """Write the validation of the landed object ``bucket``/``key`` (once per object).

        A rerun rewrites the row (same objects, same counts: the validation is deterministic);
        a row already ``loaded`` is left alone. ``received_at`` is when the object was landed.
        """
        if status not in (VALIDATED, PARTIALLY_QUARANTINED, REJECTED):
            raise ValueError(
                f"a validation records validated, partially_quarantined or rejected, not {status!r}"
            )
        self.store.query(
            "INSERT INTO etl.file_status AS f (bucket, key, source, dataset, status, rows_read, rows_loaded, "
            "rows_rejected, reason, processed_bucket, processed_key, quarantine_key, error_key, run_id, "
            "received_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
            "(SELECT landed_at FROM etl.landed_object WHERE bucket = %s AND key = %s)) "
            "ON CONFLICT (bucket, key) DO UPDATE SET source = EXCLUDED.source, dataset = EXCLUDED.dataset, "
            "status = EXCLUDED.status, rows_read = EXCLUDED.rows_read, rows_loaded = EXCLUDED.rows_loaded, "
            "rows_rejected = EXCLUDED.rows_rejected, reason = EXCLUDED.reason, "
            "processed_bucket = EXCLUDED.processed_bucket, processed_key = EXCLUDED.processed_key, "
            "quarantine_key = EXCLUDED.quarantine_key, error_key = EXCLUDED.error_key, "
            "run_id = EXCLUDED.run_id, received_at = EXCLUDED.received_at, validated_at = now() "
            "WHERE f.status <> 'loaded'",
            (
                bucket,
                key,
                source,
                dataset,
                status,
                rows_read,
                rows_loaded,
                rows_rejected,
                reason,
                processed_bucket,
                processed_key,
                quarantine_key,
                error_key,
                run_id,
                bucket,
                key,
            ),
        )

    def mark_loaded(self, processed_keys: Iterable[str], run_id: str) -> int:
        """Flip to ``loaded`` the files whose valid rows are in these processed objects.

        For the load step, right after it loads each processed object (a key the validation did
        not produce matches nothing). Returns the number of files flipped; loading again flips none.
        """
        keys = sorted(set(processed_keys))
        if not keys:
            return 0
        rows = self.store.query(
            "UPDATE etl.file_status SET status = 'loaded', loaded_at = now(), load_run_id = %s "
            "WHERE processed_key = ANY(%s) AND status IN ('validated', 'partially_quarantined') RETURNING 1",
            (run_id, keys),
        )
        return len(rows)

    def mark_refused(self, processed_key: str, run_id: str, reason: str) -> int:
        """The warehouse refused the valid rows of these files (their processed object): the files
        become ``rejected`` with every row counted rejected and the reason, so the counts still
        reconcile (rows read = loaded + rejected). Returns the number of files changed."""
        rows = self.store.query(
            "UPDATE etl.file_status SET status = 'rejected', rows_rejected = rows_read, rows_loaded = 0, "
            "processed_key = NULL, processed_bucket = NULL, reason = %s, load_run_id = %s "
            "WHERE processed_key = %s AND status IN ('validated', 'partially_quarantined') RETURNING 1",
            (reason, run_id, processed_key),
        )
        return len(rows)

    def get(self, bucket: str, key: str) -> FileStatus | None:
        rows = self.store.query(
            f"SELECT {', '.join(COLUMNS)} FROM etl.file_status WHERE bucket = %s AND key = %s",
            (bucket, key),
        )
        return FileStatus(*rows[0]) if rows else None

    def statuses(
        self, source: str, *, dataset: str | None = None, status: str | None = None
    ) -> list[FileStatus]:
        """The source's files (optionally one dataset's, or one status's), oldest validation first."""
        rows = self.store.query(
            f"SELECT {', '.join(COLUMNS)} FROM etl.file_status WHERE source = %s "
            "AND (%s::text IS NULL OR dataset = %s) AND (%s::text IS NULL OR status = %s) "
            "ORDER BY validated_at, bucket, key",
            (source, dataset, dataset, status, status),
        )
        return [FileStatus(*row) for row in rows]

    def summary(self, source: str) -> list[tuple]:
        """Per dataset and status: files, rows read, loaded and rejected, and the distinct reasons."""
        return self.store.query(
            "SELECT dataset, status, count(*), sum(rows_read), sum(rows_loaded), sum(rows_rejected), "
            "string_agg(DISTINCT reason, '; ') FROM etl.file_status WHERE source = %s "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            (source,),
        )

"""``etl.source_file``: which versions of which remote files (FTP, S3 drops) were landed, skipped or failed.

One row per version seen; the table's UNIQUE constraint over the version's identity (remote path,
size, modification time and, where the source has one, the ETag) makes the database itself land a
version once even when two runs race. A ``landed`` row never changes. The DDL is
``sql/postgres/control/source_file.sql``.

A landed version's row is written in the same transaction as its ``etl.landed_object`` row
(:meth:`include.etlkit.control.ledger.Ledger.record_landing` takes a :class:`SourceFileRecord`), so
a crash can never leave a landed file whose sender is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from include.etlkit.control.store import ControlStore

if TYPE_CHECKING:  # the drop operators import this module; a DAG file's parse needs no object store
    from include.etlkit.storage import StoredObject

LANDED = "landed"
SKIPPED_IN_PROGRESS = "skipped_in_progress"
FAILED = "failed"

Version = tuple[str, int, datetime, str | None]


class FileVersion(Protocol):
    """One version of a remote file, as the extract saw it (``extract.files.RemoteFile``)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def modified_at(self) -> datetime: ...
    @property
    def etag(self) -> str | None: ...


@dataclass(frozen=True)
class SourceFileRecord:
    """What to write in a version's ``etl.source_file`` row."""

    source: str
    remote: FileVersion
    status: str
    run_id: str
    reason: str | None = None
    stored: StoredObject | None = None
    version_id: str | None = None


_UPSERT = (
    "INSERT INTO etl.source_file AS f (source, remote_path, size, modified_at, etag, version_id, "
    "sha256, status, landed_bucket, landed_key, reason, run_id, landed_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
    "CASE WHEN %s = 'landed' THEN now() END) "
    "ON CONFLICT (source, remote_path, size, modified_at, etag) DO UPDATE SET "
    "version_id = coalesce(EXCLUDED.version_id, f.version_id), "
    "sha256 = EXCLUDED.sha256, status = EXCLUDED.status, landed_bucket = EXCLUDED.landed_bucket, "
    "landed_key = EXCLUDED.landed_key, reason = EXCLUDED.reason, run_id = EXCLUDED.run_id, "
    "landed_at = EXCLUDED.landed_at, updated_at = now() "
    "WHERE f.status <> 'landed'"
)


def write_source_file(cur: Any, record: SourceFileRecord) -> None:
    """Insert or update the version's row on ``cur`` (the caller's transaction)."""
    remote, stored = record.remote, record.stored
    cur.execute(
        _UPSERT,
        (
            record.source,
            remote.path,
            remote.size,
            remote.modified_at,
            remote.etag,
            record.version_id,
            stored.sha256 if stored else None,
            record.status,
            stored.bucket if stored else None,
            stored.key if stored else None,
            record.reason,
            record.run_id,
            record.status,
        ),
    )


class SourceFileLedger:
    """Reads and writes ``etl.source_file`` through the control plane's connection."""

    def __init__(self, store: ControlStore | None = None) -> None:
        self.store = store or ControlStore()

    def landed_versions(self, source: str, paths: Sequence[str]) -> set[Version]:
        if not paths:
            return set()
        rows = self.store.query(
            "SELECT remote_path, size, modified_at, etag FROM etl.source_file "
            "WHERE source = %s AND remote_path = ANY(%s) AND status = 'landed'",
            (source, list(paths)),
        )
        return {(path, size, modified_at, etag) for path, size, modified_at, etag in rows}

    def remote_paths(self, landed_bucket: str, landed_key: str) -> list[str]:
        """The remote path(s) a landed object came from, first landed first (none: not a drop's).

        Usually one. Landed keys are content-addressed, so the same bytes under the same file name
        dropped in two folders the same day land as one object with two ``etl.source_file`` rows:
        a caller deciding who sent the file must consider every path.
        """
        rows = self.store.query(
            "SELECT remote_path FROM etl.source_file "
            "WHERE landed_bucket = %s AND landed_key = %s AND status = 'landed' "
            "GROUP BY remote_path ORDER BY min(landed_at), remote_path",
            (landed_bucket, landed_key),
        )
        return [path for (path,) in rows]

    def remote_path(self, landed_bucket: str, landed_key: str) -> str | None:
        """The remote path a landed object came from: None if unknown or if it came from several."""
        paths = self.remote_paths(landed_bucket, landed_key)
        return paths[0] if len(paths) == 1 else None

    def record(
        self,
        source: str,
        remote: FileVersion,
        status: str,
        run_id: str,
        *,
        reason: str | None = None,
        stored: StoredObject | None = None,
        version_id: str | None = None,
    ) -> None:
        """Insert or update the version's row on its own; a row already ``landed`` is never changed.

        For skipped and failed versions. A landed version is recorded with its landed object, in
        one transaction, by ``Ledger.record_landing(..., source_file=...)``.
        """
        with self.store.transaction() as cur:
            write_source_file(
                cur, SourceFileRecord(source, remote, status, run_id, reason, stored, version_id)
            )

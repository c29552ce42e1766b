"""Landing of file drops (FTP, S3 prefixes): the one way a dropped file becomes a landed object.

A drop delivers whole files, not rows. Each *version* of each remote file is landed exactly once:
``etl.source_file`` keeps one row per version seen, and its UNIQUE constraint over the version's
identity (remote path, size, modification time and, where the source has one, the ETag) makes the
database itself guarantee it even when two runs race. A version is recorded ``landed``,
``skipped_in_progress`` (still being written: a later run takes it) or ``failed`` (a later run, or
Airflow's retry, takes it again); a ``landed`` row never changes.

The pieces every drop operator shares live here, so the FTP and S3 operators cannot drift apart:

- :class:`RemoteFile`, one version of a remote file, and :func:`unsettled`, the settle-time rule;
- :class:`DigestingWriter`, which streams a download to a local file while hashing and counting
  lines (a file is never held whole in memory);
- :class:`SourceFileLedger` (owned by :mod:`include.etlkit.control.source_files`, re-exported
  here), the ``etl.source_file`` reads and writes;
- :class:`FileDropRun`, one run's bookkeeping: land (through the landing path every extract shares,
  :mod:`include.etlkit.extract.landing`: created once under a content-addressed key, recorded in
  ``etl.landed_object`` with ``mode="file"`` and in ``etl.source_file`` in one transaction), skip,
  fail, and at the end report the counts (files, not rows) and fail the task if any file failed,
  after every other file has landed, so Airflow's retry has only the failures left to do.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any

from include.etlkit.control.source_files import (
    FAILED,
    LANDED,
    SKIPPED_IN_PROGRESS,
    SourceFileLedger,
    Version,
)
from include.etlkit.lineage import DatasetRef, RunLineage
from include.etlkit.windows import ExtractWindow

# Files whose landed row count is their line count (minus a header line for the delimited ones).
# Anything else (archives, spreadsheets, JSON documents, binaries) is landed with rows = 0: only a
# parser could count.
TEXT_SUFFIXES = frozenset({".csv", ".tsv", ".psv", ".txt", ".dat", ".jsonl", ".ndjson"})
HEADER_SUFFIXES = frozenset({".csv", ".tsv", ".psv"})
BLOCK_SIZE = 1 << 20  # bytes per read: the most a download holds in memory at once

ALREADY_LANDED = "already_landed"  # a run's summary only: such a version has its row already
# The most bytes of a dropped file's name kept in its landed key. S3 keys stop at 1,024 bytes and a
# partner's name may already use them all; the landed key adds the source, feed, date and digest, and
# the validation's errors/ copy a little more. The full name stays in etl.source_file.
MAX_KEY_STEM_BYTES = 200


def key_stem(name: str, limit: int = MAX_KEY_STEM_BYTES) -> str:
    """``name`` cut to at most ``limit`` UTF-8 bytes (never inside a character) for a landed key.

    The key stays content-addressed (its digest follows the stem), so two long names that share
    their first bytes still land apart, and the same bytes land under the same key on a retry.
    """
    encoded = name.encode()
    if len(encoded) <= limit:
        return name
    return encoded[:limit].decode(errors="ignore")


@dataclass(frozen=True)
class RemoteFile:
    """One version of a remote file: its identity is (path, size, modified_at, etag).

    ``etag`` is None where the source has none (FTP). ``path`` is what the ledger records, so it
    must name the file unambiguously across the source (an S3 drop uses ``s3://bucket/key``).
    """

    path: str
    size: int
    modified_at: datetime  # naive UTC, like every source clock in etl.*
    etag: str | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def version(self) -> Version:
        return (self.path, self.size, self.modified_at, self.etag)


@dataclass(frozen=True)
class Download:
    path: Path
    size: int
    sha256: str
    lines: int


def unsettled(remote: RemoteFile, settle_seconds: float, now: datetime | None = None) -> str | None:
    """Why ``remote`` looks still being written (modified under ``settle_seconds`` ago), or None."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    age = now - remote.modified_at
    if age < timedelta(seconds=settle_seconds):
        return (
            f"modified {age.total_seconds():.0f}s ago (at {remote.modified_at:%Y-%m-%d %H:%M:%S} UTC), "
            f"less than settle_seconds={settle_seconds:g}: still being written?"
        )
    return None


def count_rows(name: str, lines: int) -> int:
    """Landed rows of a text file: its lines, less the header of a delimited file; 0 otherwise.

    Lines, not parsed records: a quoted CSV field spanning lines counts once per line. The count is
    for the task log and the ledger, not a contract; the transforms parse the file properly.
    """
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        return 0
    return max(lines - 1, 0) if suffix in HEADER_SUFFIXES else lines


class DigestingWriter:
    """Write blocks of a download to ``out`` while computing its size, SHA-256 and line count."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.size = 0
        self._digest = hashlib.sha256()
        self._lines = 0
        self._last = b"\n"

    def write(self, block: bytes) -> None:
        if not block:
            return
        self.out.write(block)
        self._digest.update(block)
        self.size += len(block)
        self._lines += block.count(b"\n")
        self._last = block[-1:]

    def download(self, path: Path) -> Download:
        # A last line without its newline is still a line.
        lines = self._lines + (1 if self.size and self._last != b"\n" else 0)
        return Download(path, self.size, self._digest.hexdigest(), lines)


class FileDropRun:
    """One run of a drop operator: lands, skips and fails files, then reports and fails at the end.

    :param source: the first part of every landed key, and the ledger's ``source``.
    :param name: the feed name: the second part of the key, the ledger's ``table_name``.
    :param bucket: the ingestion bucket the files land in.
    :param window: the run's window; its ``upper`` dates the keys (``YYYY/MM/DD``).
    :param log: the operator's logger, so every line appears in the task's log.
    """

    def __init__(
        self,
        *,
        source: str,
        name: str,
        bucket: str,
        aws_conn_id: str,
        run_id: str,
        window: ExtractWindow,
        log: logging.Logger | Any,
        files: SourceFileLedger | None = None,
        lineage: RunLineage | None = None,
        origin: DatasetRef | None = None,
    ) -> None:
        # The ledger and the landing path: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.extract.landing import Landing

        self.source = source
        self.name = name
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.run_id = run_id
        self.window = window
        self.log = log
        self.files = files or SourceFileLedger()
        self.landing = Landing(
            source=source,
            name=name,
            bucket=bucket,
            window=window,
            run_id=run_id,
            log=log,
            aws_conn_id=aws_conn_id,
            ledger=Ledger(self.files.store),
            lineage=lineage,
        )
        # The operator's lineage: each landed file is read from ``origin`` (the remote directory).
        self.lineage = lineage
        self.origin = origin
        self.summary: dict[str, list[Any]] = {
            LANDED: [],
            SKIPPED_IN_PROGRESS: [],
            ALREADY_LANDED: [],
            FAILED: [],
        }

    def landed_versions(self, seen: Sequence[RemoteFile]) -> set[Version]:
        return self.files.landed_versions(self.source, [f.path for f in seen])

    def already_landed(self, remote: RemoteFile) -> None:
        self.summary[ALREADY_LANDED].append(remote.path)

    def skip(self, remote: RemoteFile, reason: str) -> None:
        self.log.info("leaving %s for a later run: %s", remote.path, reason)
        self.files.record(self.source, remote, SKIPPED_IN_PROGRESS, self.run_id, reason=reason)
        self.summary[SKIPPED_IN_PROGRESS].append(remote.path)

    def fail(self, remote: RemoteFile, reason: str) -> None:
        self.log.error("failed %s: %s", remote.path, reason)
        self.files.record(self.source, remote, FAILED, self.run_id, reason=reason)
        self.summary[FAILED].append({"path": remote.path, "reason": reason})

    def land(
        self, remote: RemoteFile, download: Download, *, version_id: str | None = None
    ) -> dict[str, Any]:
        """Land the file through the one landing path: its object, then its ledger and
        ``etl.source_file`` rows in one transaction (a retry after a crash finds the same key)."""
        name = PurePosixPath(remote.name)
        rows = count_rows(remote.name, download.lines)
        stored = self.landing.land(
            download.path,
            rows=rows,
            mode="file",
            advance_state=False,
            suffix=key_stem(name.suffix, 16),
            file_name=key_stem(name.stem),
            sha256=download.sha256,
            remote=remote,
            version_id=version_id,
            detail=f"from {remote.path}, {download.size} bytes",
        )
        assert stored is not None  # a file with a local copy is always stored
        if self.lineage is not None and self.origin is not None:
            self.lineage.read(self.origin, rows=rows, files=1, size=download.size)
        landed = {
            "path": remote.path,
            "key": stored.key,
            "sha256": stored.sha256,
            "size": download.size,
            "rows": rows,
        }
        self.summary[LANDED].append(landed)
        return landed

    def land_or_fail(
        self, remote: RemoteFile, download: Download, *, version_id: str | None = None
    ) -> dict[str, Any] | None:
        """:meth:`land`, or record the file failed with why: one file that cannot be landed (S3
        refusing its key, the store or the ledger unreachable) never keeps the others from landing;
        the task still fails at :meth:`finish`, naming it, so Airflow's retry takes it again."""
        try:
            return self.land(remote, download, version_id=version_id)
        except Exception as exc:  # any failure is this file's, reported at finish
            reason = f"could not be landed: {type(exc).__name__}: {exc}"
            try:
                self.fail(remote, reason)
            except Exception:  # the ledger is down too: still report it at finish
                self.log.exception("could not record %s failed", remote.path)
                self.summary[FAILED].append({"path": remote.path, "reason": reason})
            return None

    def finish(self, context: Any, seen: int, where: str, error: type[Exception]) -> dict[str, list[Any]]:
        """Report the try's counts and log the outcome; raise ``error`` naming every failed file."""
        summary = self.summary
        self.landing.report(
            context, rows_in=seen, rows_out=len(summary[LANDED]), rows_rejected=len(summary[FAILED])
        )
        self.log.info(
            "%s/%s: %d landed, %d left in progress, %d already landed, %d failed",
            self.source,
            self.name,
            *(len(summary[k]) for k in (LANDED, SKIPPED_IN_PROGRESS, ALREADY_LANDED, FAILED)),
        )
        if summary[FAILED]:
            details = "; ".join(f"{f['path']}: {f['reason']}" for f in summary[FAILED])
            raise error(
                f"{len(summary[FAILED])} of {seen} file(s) in {where} could not be landed "
                f"({len(summary[LANDED])} landed, {len(summary[ALREADY_LANDED])} already landed, "
                f"{len(summary[SKIPPED_IN_PROGRESS])} left in progress); a retry takes them again: "
                f"{details}"
            )
        return summary

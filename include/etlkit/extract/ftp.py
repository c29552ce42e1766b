"""Land the files of an FTP drop in the ingestion bucket, each version of each file exactly once.

A file is identified by its remote path, size and modification time (the server's MDTM clock).
``etl.source_file`` keeps one row per version seen, with a UNIQUE constraint over that identity, so
the database itself guarantees a version is landed once; a file re-uploaded with new content gets a
new size or time, hence a new row and a new object. Files still being written are left alone: one
modified within ``settle_seconds`` (and, optionally, one whose size moves between two listings
``stable_check_seconds`` apart) is recorded as ``skipped_in_progress`` and taken by a later run.

Each file streams to a local temporary file (never whole in memory) while its SHA-256 and line
count are computed, is checked against the listed size (a file truncated, replaced or deleted
mid-download is recorded ``failed`` and the others still land), and is created once in S3 under a
content-addressed key (:mod:`include.etlkit.storage`), then recorded in the ledger
(``etl.landed_object``, mode ``file``) for the transforms. Any failed file fails the task at the end,
after every other file has landed, so Airflow's retry only has the failures left to do. That
bookkeeping is the one every file drop shares (:mod:`include.etlkit.extract.files`).
"""

from __future__ import annotations

import fnmatch
import ftplib  # nosec: B402 (the drop speaks plain FTP; the connection decides the server)
import posixpath
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from airflow.sdk import BaseOperator

from include.etlkit.extract.files import (
    BLOCK_SIZE,
    SKIPPED_IN_PROGRESS,
    DigestingWriter,
    Download,
    FileDropRun,
    RemoteFile,
    unsettled,
)
from include.etlkit.lineage import DatasetRef, ReportsLineage, remote_dataset
from include.etlkit.windows import ExtractWindow, run_interval, source_clock

if TYPE_CHECKING:
    from airflow.providers.ftp.hooks.ftp import FTPHook

# Errors a single transfer can raise without the whole drop being unusable.
TRANSFER_ERRORS = (ftplib.Error, OSError, EOFError)


class FtpExtractError(RuntimeError):
    """The FTP drop could not be read, or some of its files could not be landed (see the message)."""


def to_utc(server_time: datetime, zone: ZoneInfo) -> datetime:
    """A naive server time in ``zone`` as naive UTC (the ledger's clock)."""
    if zone.key == "UTC":
        return server_time
    return server_time.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


class FtpFileExtractOperator(ReportsLineage, BaseOperator):
    """Land every settled file of an FTP directory matching ``pattern`` that is not landed yet.

    :param ftp_conn_id: the Airflow FTP connection (passive mode unless its extra says otherwise).
    :param remote_dir: the directory on the server to take files from (not recursive).
    :param pattern: an ``fnmatch`` pattern for the file names to take, e.g. ``"sales_*.csv"``
        (case-sensitive; other files are ignored and not recorded).
    :param source: the source name: the first part of every landed key and of the ledger's records.
    :param name: the feed name: the second part of the key, the ledger's ``table_name``.
    :param bucket: the ingestion bucket (templated; e.g. ``{{ var.value.ingestion_bucket }}``).
    :param aws_conn_id: the Airflow connection of S3.
    :param settle_seconds: a file modified less than this long ago (MDTM against UTC now) is taken
        to be still being written and is left for a later run.
    :param stable_check_seconds: when positive, the candidates are listed again this many seconds
        later and a file whose size or time moved is left for a later run (for writers that keep
        the modification time unchanged, or servers whose clock is not to be trusted).
    :param timeout: seconds before a silent FTP control or data connection is given up.
    :param secure: FTPS (explicit TLS, ``AUTH TLS``): the control and data connections are encrypted
        and the server's certificate is verified against the system's trusted CAs (the provider's
        ``FTPSHook``); plain FTP otherwise.
    :param server_timezone: the zone of the server's MDTM times (an IANA name). RFC 3659 says UTC,
        but some servers answer in their local time; the times are converted to UTC here, so the
        settle check and a file's version mean the same whatever the server's habit.
    """

    template_fields: Sequence[str] = ("bucket", "remote_dir", "pattern")
    scheme = "ftp"  # of the remote directory's OpenLineage namespace (``sftp`` for SFTP)
    ui_color = "#e8f0d8"

    def __init__(
        self,
        *,
        ftp_conn_id: str,
        remote_dir: str,
        pattern: str,
        source: str,
        name: str,
        bucket: str,
        aws_conn_id: str = "aws_default",
        settle_seconds: float = 60,
        stable_check_seconds: float = 0,
        timeout: float = 60,
        server_timezone: str = "UTC",
        secure: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if settle_seconds < 0 or stable_check_seconds < 0:
            raise ValueError("settle_seconds and stable_check_seconds cannot be negative")
        self.server_zone = ZoneInfo(server_timezone)  # an unknown zone fails when the DAG is parsed
        self.secure = secure
        self.ftp_conn_id = ftp_conn_id
        self.remote_dir = remote_dir
        self.pattern = pattern
        self.source = source
        self.name = name
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.settle_seconds = settle_seconds
        self.stable_check_seconds = stable_check_seconds
        self.timeout = timeout

    # -- the run ----------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        run = FileDropRun(
            source=self.source,
            name=self.name,
            bucket=self.bucket,
            aws_conn_id=self.aws_conn_id,
            run_id=context["run_id"],
            window=ExtractWindow(None, source_clock(run_interval(context)[1])),
            log=self.log,
            lineage=self.lineage,
            origin=self.remote_directory(),
        )
        hook = self.get_hook()
        try:
            self._connect(hook)
            seen = self._list(hook)
            self.log.info(
                "%d file(s) in %s match %r on %s", len(seen), self.remote_dir, self.pattern, self.ftp_conn_id
            )
            done = run.landed_versions(seen)
            candidates = []
            for remote in seen:
                if remote.version in done:
                    run.already_landed(remote)
                    continue
                reason = unsettled(remote, self.settle_seconds)
                if reason:
                    run.skip(remote, reason)
                else:
                    candidates.append(remote)
            for remote, reason in self._unstable(hook, candidates):
                run.skip(remote, reason)
            unstable = set(run.summary[SKIPPED_IN_PROGRESS])
            to_land = [f for f in candidates if f.path not in unstable]

            with tempfile.TemporaryDirectory(prefix=f"ftp-{self.name}-") as tmp:
                for index, remote in enumerate(to_land):
                    local = Path(tmp) / f"{index:06d}{PurePosixPath(remote.name).suffix}"
                    try:
                        download = self._download(hook, remote, local)
                    except FtpExtractError as exc:
                        run.fail(remote, str(exc))
                        continue
                    try:
                        run.land_or_fail(remote, download)
                    finally:
                        local.unlink(missing_ok=True)
        finally:
            self._close(hook)
        return run.finish(context, len(seen), self.remote_dir, FtpExtractError)

    def lineage_inputs(self) -> list[DatasetRef]:
        return [self.remote_directory()]

    def remote_directory(self) -> DatasetRef:
        """The remote directory as an OpenLineage dataset (``ftp://host:port`` + the directory)."""
        return remote_dataset(self.ftp_conn_id, "ftps" if self.secure else self.scheme, self.remote_dir)

    def get_hook(self) -> FTPHook:
        from airflow.providers.ftp.hooks.ftp import FTPHook, FTPSHook

        return (FTPSHook if self.secure else FTPHook)(ftp_conn_id=self.ftp_conn_id)

    # -- the connection ---------------------------------------------------------------------------

    def _connect(self, hook: FTPHook) -> ftplib.FTP:
        """Open (or reuse) the hook's connection; every way it can fail says which server and why."""
        if hook.conn is not None:
            return hook.conn
        where = self._where(hook)
        try:
            conn = hook.get_conn()
        except ftplib.error_perm as exc:  # 530: a refused login
            self._close(hook)
            raise FtpExtractError(f"FTP server {where} refused the login: {exc}") from exc
        except TRANSFER_ERRORS as exc:
            self._close(hook)
            raise FtpExtractError(f"cannot reach FTP server {where}: {exc}") from exc
        if self.timeout:
            # The hook connects without a timeout; from here a silent server cannot hang the task.
            conn.timeout = self.timeout
            if conn.sock is not None:
                conn.sock.settimeout(self.timeout)
        return conn

    def _where(self, hook: FTPHook) -> str:
        conn = hook.get_connection(self.ftp_conn_id)
        port = conn.port or ftplib.FTP_PORT
        return f"{conn.host}:{port} (connection {self.ftp_conn_id!r}, user {conn.login!r})"

    @staticmethod
    def _close(hook: FTPHook) -> None:
        """Drop the hook's connection, politely if it still answers (the next call reconnects)."""
        conn, hook.conn = hook.conn, None
        if conn is None:
            return
        try:
            if conn.sock is not None:
                conn.quit()
        except TRANSFER_ERRORS:
            conn.close()

    # -- listing ----------------------------------------------------------------------------------

    def _list(self, hook: FTPHook) -> list[RemoteFile]:
        """The matching regular files of ``remote_dir`` with their size and time, oldest first."""
        try:
            entries = hook.list_directory(self.remote_dir)
        except ftplib.error_perm as exc:
            if "no files" in str(exc).lower():  # some servers answer an empty NLST with 550
                return []
            raise FtpExtractError(f"cannot list {self.remote_dir!r} on {self.ftp_conn_id!r}: {exc}") from exc
        except TRANSFER_ERRORS as exc:
            raise FtpExtractError(f"cannot list {self.remote_dir!r} on {self.ftp_conn_id!r}: {exc}") from exc
        # Servers answer NLST with bare names or with paths: the name is what the pattern matches.
        names = sorted({posixpath.basename(e.rstrip("/")) for e in entries} - {"", ".", ".."})
        files = []
        for name in names:
            if not fnmatch.fnmatchcase(name, self.pattern):
                continue
            remote = self._stat(hook, posixpath.join(self.remote_dir, name))
            if remote is not None:
                files.append(remote)
        return sorted(files, key=lambda f: (f.modified_at, f.path))

    def _stat(self, hook: FTPHook, path: str) -> RemoteFile | None:
        """Size and MDTM time of ``path``; None for a directory or a file gone since the listing."""
        try:
            hook.get_conn().voidcmd("TYPE I")  # SIZE is refused in ASCII mode, which NLST leaves on
            size = hook.get_size(path)
            modified_at = hook.get_mod_time(path)
        except ftplib.error_perm as exc:
            self.log.info("ignoring %s: %s", path, exc)
            return None
        except TRANSFER_ERRORS as exc:
            raise FtpExtractError(f"cannot read the size and time of {path!r}: {exc}") from exc
        if size is None:
            return None
        return RemoteFile(path, size, to_utc(modified_at, self.server_zone))

    def _unstable(self, hook: FTPHook, candidates: Sequence[RemoteFile]) -> Iterable[tuple[RemoteFile, str]]:
        """The candidates whose size or time moved over ``stable_check_seconds``, with why."""
        if not self.stable_check_seconds or not candidates:
            return
        time.sleep(self.stable_check_seconds)
        for remote in candidates:
            again = self._stat(hook, remote.path)
            if again is None:
                yield remote, f"disappeared within stable_check_seconds={self.stable_check_seconds:g}"
            elif again.version != remote.version:
                yield (
                    remote,
                    (
                        f"changed within stable_check_seconds={self.stable_check_seconds:g} "
                        f"(size {remote.size} -> {again.size}, modified {remote.modified_at} -> "
                        f"{again.modified_at}): still being written?"
                    ),
                )

    # -- landing ----------------------------------------------------------------------------------

    def _download(self, hook: FTPHook, remote: RemoteFile, local: Path) -> Download:
        """Stream ``remote`` to ``local``, hashing and counting lines as blocks arrive."""
        with local.open("wb") as out:
            writer = DigestingWriter(out)
            try:
                self._connect(hook)
                hook.retrieve_file(remote.path, None, callback=writer.write, block_size=BLOCK_SIZE)
            except TRANSFER_ERRORS as exc:
                if not isinstance(exc, ftplib.error_perm):
                    self._close(hook)  # the connection may be half-way through a transfer: start afresh
                raise FtpExtractError(
                    f"download failed after {writer.size} of {remote.size} bytes: {exc}"
                ) from exc
        if writer.size != remote.size:
            raise FtpExtractError(
                f"downloaded {writer.size} bytes but the listing said {remote.size}: the file changed "
                "or was removed during the download"
            )
        return writer.download(local)

"""Land the files partners deliver over SFTP: the FTP drop's rules, over SSH.

Everything but the wire is the FTP extract's (:class:`~include.etlkit.extract.ftp.FtpFileExtractOperator`):
each file version (path, size, modification time) lands once, only once settled, through the one
landing path. The sftp provider's ``SFTPHook`` owns the connection (password or key, host key checks
as the connection's extras say); SFTP reports sizes and times in one ``stat`` and times in UTC
(seconds since the epoch), so no zone guessing is needed.
"""

from __future__ import annotations

import contextlib
import fnmatch
import posixpath
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from include.etlkit.extract.files import BLOCK_SIZE, DigestingWriter, Download, RemoteFile
from include.etlkit.extract.ftp import FtpExtractError, FtpFileExtractOperator

# What a broken connection or a refused operation raises (paramiko's errors are OSError or SSHException).
SFTP_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError)


def _errors() -> tuple[type[BaseException], ...]:
    from paramiko.ssh_exception import SSHException

    return (*SFTP_ERRORS, SSHException)


class SftpFileExtractOperator(FtpFileExtractOperator):
    """Land every settled file of an SFTP directory matching ``pattern`` that is not landed yet.

    Takes the FTP extract's parameters (``ftp_conn_id`` names the SFTP connection); ``secure`` and
    ``server_timezone`` do not apply.
    """

    ui_color = "#dcecd8"
    scheme = "sftp"

    def get_hook(self) -> Any:
        from airflow.providers.sftp.hooks.sftp import SFTPHook

        return SFTPHook(ssh_conn_id=self.ftp_conn_id)

    def _connect(self, hook: Any) -> Any:
        try:
            return hook.get_conn()
        except _errors() as exc:
            raise FtpExtractError(f"cannot open SFTP connection {self.ftp_conn_id!r}: {exc}") from exc

    @staticmethod
    def _close(hook: Any) -> None:
        with contextlib.suppress(Exception):  # closing what is already broken: nothing left to do
            hook.close_conn()

    def _list(self, hook: Any) -> list[RemoteFile]:
        try:
            entries = self._connect(hook).listdir_attr(self.remote_dir)
        except _errors() as exc:
            raise FtpExtractError(f"cannot list {self.remote_dir!r} on {self.ftp_conn_id!r}: {exc}") from exc
        files = [
            _remote(posixpath.join(self.remote_dir, entry.filename), entry)
            for entry in entries
            if fnmatch.fnmatchcase(entry.filename, self.pattern) and stat.S_ISREG(entry.st_mode or 0)
        ]
        return sorted(files, key=lambda f: (f.modified_at, f.path))

    def _stat(self, hook: Any, path: str) -> RemoteFile | None:
        try:
            attributes = self._connect(hook).stat(path)
        except FileNotFoundError:
            return None
        except _errors() as exc:
            raise FtpExtractError(f"cannot read the size and time of {path!r}: {exc}") from exc
        return _remote(path, attributes) if stat.S_ISREG(attributes.st_mode or 0) else None

    def _download(self, hook: Any, remote: RemoteFile, local: Path) -> Download:
        """Stream ``remote`` to ``local``, hashing and counting lines as blocks arrive."""
        with local.open("wb") as out:
            writer = DigestingWriter(out)
            try:
                with self._connect(hook).open(remote.path, "rb") as source:
                    source.prefetch(remote.size)
                    for block in iter(lambda: source.read(BLOCK_SIZE), b""):
                        writer.write(block)
            except _errors() as exc:
                raise FtpExtractError(
                    f"download failed after {writer.size} of {remote.size} bytes: {exc}"
                ) from exc
        if writer.size != remote.size:
            raise FtpExtractError(
                f"downloaded {writer.size} bytes but the listing said {remote.size}: the file changed "
                "or was removed during the download"
            )
        return writer.download(local)


def _remote(path: str, attributes: Any) -> RemoteFile:
    modified = datetime.fromtimestamp(attributes.st_mtime or 0, UTC).replace(tzinfo=None)
    return RemoteFile(path, int(attributes.st_size or 0), modified)

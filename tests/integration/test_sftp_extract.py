"""SFTP feeds against a real SSH/SFTP server (asyncssh's, started by the test on loopback).

The server's host key is generated here and pinned in the connection (``host_key`` extra), so the
client checks it; a password logs in. The extract lands each settled file version once, leaves a
file still being written, and refuses a server whose host key is not the pinned one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.etlkit.extract.ftp import FtpExtractError
from include.etlkit.extract.sftp import SftpFileExtractOperator
from infra.local import settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "partner", "sftp-Secret-1"
LONG_AGO = dt.datetime(2024, 11, 15, 9, 0, tzinfo=dt.UTC).timestamp()


@pytest.fixture(scope="module")
def sftp_server(tmp_path_factory) -> Iterator[tuple[int, Path, str]]:
    """(port, served root, the host's public key as ``type base64``)."""
    import asyncssh

    root = tmp_path_factory.mktemp("sftp")
    key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return (username, password) == (LOGIN, PASSWORD)

    class Jail(asyncssh.SFTPServer):
        def __init__(self, chan) -> None:
            super().__init__(chan, chroot=str(root))

    with socket.socket() as probe:
        probe.bind((settings.LOOPBACK, 0))
        port = probe.getsockname()[1]
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            holder["server"] = await asyncssh.listen(
                settings.LOOPBACK, port, server_factory=Server, server_host_keys=[key], sftp_factory=Jail
            )
            started.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10), "the SFTP server did not start"
    public = key.export_public_key("openssh").decode().split()
    yield port, root, f"{public[0]} {public[1]}"
    loop.call_soon_threadsafe(holder["server"].close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def drop(sftp_server, monkeypatch) -> Path:
    port, root, host_key = sftp_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_SFTP_PARTNER",
        json.dumps(
            {
                "conn_type": "sftp",
                "host": settings.LOOPBACK,
                "port": port,
                "login": LOGIN,
                "password": PASSWORD,
                "extra": {"host_key": host_key, "no_host_key_check": "false", "look_for_keys": "false"},
            }
        ),
    )
    folder = root / f"drop_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def _extract(drop: Path, source: str, bucket: str, **kwargs) -> dict:
    operator = SftpFileExtractOperator(
        task_id="land_sales",
        ftp_conn_id="sftp_partner",
        remote_dir=f"/{drop.name}",
        pattern="sales_*.csv",
        source=source,
        name="sales",
        bucket=bucket,
        **{"settle_seconds": 60, **kwargs},
    )
    interval = (
        dt.datetime(2024, 11, 15, 9, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 11, 15, 10, 0, tzinfo=dt.UTC),
    )
    return TaskTry(operator, "sftp_ingest", f"scheduled__{uuid.uuid4().hex[:8]}", interval).execute()


def _put(drop: Path, name: str, data: bytes, settled: bool = True) -> None:
    path = drop / name
    path.write_bytes(data)
    if settled:
        os.utime(path, (LONG_AGO, LONG_AGO))


def test_an_sftp_drop_lands_each_settled_file_version_once(
    drop, source_name, bucket, local_services, control_plane
):
    _put(drop, "sales_1.csv", b"id,amount\n1,9.99\n")
    _put(drop, "sales_2.csv", b"id,amount\n2,0.50\n", settled=False)  # still being written
    _put(drop, "notes.txt", b"not for us\n")

    first = _extract(drop, source_name, bucket)

    assert [f["path"] for f in first["landed"]] == [f"/{drop.name}/sales_1.csv"]
    assert first["skipped_in_progress"] == [f"/{drop.name}/sales_2.csv"]
    (key,) = bucket_keys(s3_client(), bucket, source_name)
    assert s3_client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"id,amount\n1,9.99\n"

    os.utime(drop / "sales_2.csv", (LONG_AGO, LONG_AGO))  # the writer finished
    second = _extract(drop, source_name, bucket)
    assert [f["path"] for f in second["landed"]] == [f"/{drop.name}/sales_2.csv"]
    assert second["already_landed"] == [f"/{drop.name}/sales_1.csv"]
    assert _extract(drop, source_name, bucket)["landed"] == []


def test_a_server_with_another_host_key_is_refused(drop, source_name, bucket, monkeypatch):
    import asyncssh

    conn = json.loads(os.environ["AIRFLOW_CONN_SFTP_PARTNER"])
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode().split()
    conn["extra"]["host_key"] = f"{other[0]} {other[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_SFTP_PARTNER", json.dumps(conn))
    with pytest.raises(FtpExtractError, match=r"(?i)host key"):
        _extract(drop, source_name, bucket)

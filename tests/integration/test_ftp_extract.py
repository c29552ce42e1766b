"""FtpFileExtractOperator against the real local FTP server (pyftpdlib), S3 (moto) and the etl ledger.

Fixture files are written straight into the server's root on disk (``STATE_DIR/ftp/<unique dir>``),
so a test sets modification times with ``os.utime`` and the server reports them through MDTM exactly
as it would for an upload. Each test has a source name, a directory and S3 keys of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

import pytest

from include.etlkit.extract.ftp import FtpExtractError, FtpFileExtractOperator
from infra.local import settings
from tests.conftest import TaskTry, s3_client

pytestmark = pytest.mark.integration

FEED = "sales"
PATTERN = "sales_*.csv"
INTERVAL_END = datetime(2024, 11, 15, 10, 0, tzinfo=UTC)
LONG_AGO = datetime(2024, 11, 15, 9, 0, tzinfo=UTC).timestamp()  # well settled


@pytest.fixture(scope="module")
def control(control_plane):
    # control_plane has applied every file of sql/postgres/control/, source_file.sql included.
    return control_plane


@pytest.fixture
def drop(local_services) -> Path:
    """A directory of its own in the FTP server's root; the operator sees it as ``/<name>``."""
    path = settings.STATE_DIR / "ftp" / f"drop-{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def s3(local_services):
    return s3_client()


def put(drop: Path, name: str, data: bytes, mtime: float | None = LONG_AGO) -> Path:
    path = drop / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def extract(drop, source_name, bucket):
    """Run the operator's ``execute`` once; returns its summary (and checks the try's row counts)."""

    def run(conn_id: str = "ftp_drop", **kwargs: Any) -> dict[str, Any]:
        operator = FtpFileExtractOperator(
            task_id="land_sales_files",
            ftp_conn_id=conn_id,
            remote_dir=f"/{drop.name}",
            pattern=PATTERN,
            source=source_name,
            name=FEED,
            bucket=bucket,
            **kwargs,
        )
        run_id = f"scheduled__{uuid.uuid4().hex[:8]}"
        task = TaskTry(operator, "ftp_ingest", run_id, (INTERVAL_END - timedelta(minutes=30), INTERVAL_END))
        try:
            return task.execute()
        finally:
            run.outcome = task.outcome

    return run


def expected_key(source: str, name: str, data: bytes) -> str:
    stem, ext = os.path.splitext(name)
    return f"{source}/{FEED}/2024/11/15/{stem}-{hashlib.sha256(data).hexdigest()[:16]}{ext}"


def keys(s3, bucket: str, source: str) -> set[str]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{source}/")
    return {item["Key"] for item in listing.get("Contents", [])}


def source_files(store, source: str) -> list[tuple]:
    return store.query(
        "SELECT remote_path, size, status, landed_key, sha256, reason FROM etl.source_file "
        "WHERE source = %s ORDER BY remote_path, first_seen_at",
        (source,),
    )


def test_lands_matching_files_once_with_exact_bytes(extract, drop, source_name, bucket, s3, control):
    one = b"id,amount\n1,9.99\n2,0.01\n"
    two = b"id,amount\n3,1.50\n4,2.00\n5,\xc2\xa3 in pounds"  # no final newline: still a row
    put(drop, "sales_1.csv", one)
    put(drop, "sales_2.csv", two)
    put(drop, "notes.txt", b"not for us\n")
    put(drop, "sales_3.csv.partial", b"id,amount\n")
    (drop / "sales_dir.csv").mkdir()  # a directory matching the pattern is not a file to land

    summary = extract()

    assert sorted(f["path"] for f in summary["landed"]) == [
        f"/{drop.name}/sales_1.csv",
        f"/{drop.name}/sales_2.csv",
    ]
    assert summary["skipped_in_progress"] == summary["already_landed"] == summary["failed"] == []
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (2, 2, 0)
    landed = {
        expected_key(source_name, "sales_1.csv", one): one,
        expected_key(source_name, "sales_2.csv", two): two,
    }
    assert keys(s3, bucket, source_name) == set(landed)
    for key, data in landed.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    assert source_files(control, source_name) == [
        (f"/{drop.name}/sales_1.csv", len(one), "landed", expected_key(source_name, "sales_1.csv", one),
         hashlib.sha256(one).hexdigest(), None),
        (f"/{drop.name}/sales_2.csv", len(two), "landed", expected_key(source_name, "sales_2.csv", two),
         hashlib.sha256(two).hexdigest(), None),
    ]  # fmt: skip
    ledger = control.query(
        "SELECT key, table_name, mode, rows, window_start, window_end FROM etl.landed_object "
        "WHERE source = %s ORDER BY key",
        (source_name,),
    )
    assert ledger == [
        (expected_key(source_name, "sales_1.csv", one), FEED, "file", 2, None, datetime(2024, 11, 15, 10)),
        (expected_key(source_name, "sales_2.csv", two), FEED, "file", 3, None, datetime(2024, 11, 15, 10)),
    ]

    again = extract()
    assert again["landed"] == []
    assert sorted(again["already_landed"]) == [f"/{drop.name}/sales_1.csv", f"/{drop.name}/sales_2.csv"]
    assert (extract.outcome.rows_in, extract.outcome.rows_out) == (2, 0)
    assert keys(s3, bucket, source_name) == set(landed)
    assert len(source_files(control, source_name)) == 2


def test_file_still_being_written_is_left_until_settled(extract, drop, source_name, control):
    data = b"id,amount\n1,9.99\n"
    path = put(drop, "sales_late.csv", data, mtime=None)  # modified just now
    put(drop, "sales_done.csv", b"id,amount\n2,1.00\n")

    first = extract(settle_seconds=300)
    assert [f["path"] for f in first["landed"]] == [f"/{drop.name}/sales_done.csv"]
    assert first["skipped_in_progress"] == [f"/{drop.name}/sales_late.csv"]
    (row,) = [r for r in source_files(control, source_name) if r[0].endswith("sales_late.csv")]
    assert row[2] == "skipped_in_progress" and "settle_seconds=300" in row[5]

    os.utime(path, (LONG_AGO, LONG_AGO))  # the writer finished long enough ago
    second = extract(settle_seconds=300)
    assert [f["path"] for f in second["landed"]] == [f"/{drop.name}/sales_late.csv"]
    assert second["already_landed"] == [f"/{drop.name}/sales_done.csv"]
    statuses = {r[0].rsplit("/", 1)[1]: r[2] for r in source_files(control, source_name)}
    assert statuses == {"sales_done.csv": "landed", "sales_late.csv": "landed"}

    assert extract(settle_seconds=300)["landed"] == []


def test_file_growing_between_two_listings_is_left(extract, drop, source_name, control, monkeypatch):
    path = put(drop, "sales_growing.csv", b"id,amount\n1,9.99\n")

    def writer_appends(seconds: float) -> None:
        # The writer keeps the old modification time (as some do): only the size gives it away.
        with path.open("ab") as handle:
            handle.write(b"2,3.00\n")
        os.utime(path, (LONG_AGO, LONG_AGO))

    monkeypatch.setattr("include.etlkit.extract.ftp.time.sleep", writer_appends)
    first = extract(settle_seconds=0, stable_check_seconds=5)
    assert first["landed"] == [] and first["skipped_in_progress"] == [f"/{drop.name}/sales_growing.csv"]
    (row,) = source_files(control, source_name)
    assert row[2] == "skipped_in_progress" and "size 17 -> 24" in row[5]

    monkeypatch.undo()
    second = extract(settle_seconds=0, stable_check_seconds=0.1)
    assert [(f["path"], f["size"]) for f in second["landed"]] == [(f"/{drop.name}/sales_growing.csv", 24)]


def test_reuploaded_file_is_landed_as_a_new_version(extract, drop, source_name, bucket, s3, control):
    old, new = b"id,amount\n1,9.99\n", b"id,amount\n1,9.99\n2,5.00\n"
    put(drop, "sales_daily.csv", old)
    assert len(extract()["landed"]) == 1

    put(drop, "sales_daily.csv", new, mtime=LONG_AGO + 600)
    summary = extract()
    assert [(f["key"], f["rows"]) for f in summary["landed"]] == [
        (expected_key(source_name, "sales_daily.csv", new), 2)
    ]
    assert keys(s3, bucket, source_name) == {
        expected_key(source_name, "sales_daily.csv", old),
        expected_key(source_name, "sales_daily.csv", new),
    }
    assert [(r[1], r[2]) for r in source_files(control, source_name)] == [
        (len(old), "landed"),
        (len(new), "landed"),
    ]

    # Same bytes uploaded again (a new time): a new version, landed under the existing content key.
    put(drop, "sales_daily.csv", new, mtime=LONG_AGO + 1200)
    summary = extract()
    assert [f["key"] for f in summary["landed"]] == [expected_key(source_name, "sales_daily.csv", new)]
    assert len(keys(s3, bucket, source_name)) == 2
    assert len(source_files(control, source_name)) == 3


def _sabotage(monkeypatch, target: Path, action) -> None:
    """Make ``action(target)`` happen after the listing, just before the operator downloads it."""
    from airflow.providers.ftp.hooks.ftp import FTPHook

    original = FTPHook.retrieve_file

    def retrieve_file(self, remote_full_path, *args, **kwargs):
        if remote_full_path.endswith("/" + target.name):
            action(target)
        return original(self, remote_full_path, *args, **kwargs)

    monkeypatch.setattr(FTPHook, "retrieve_file", retrieve_file)


def test_file_vanishing_before_download_fails_after_the_others_land(
    extract, drop, source_name, bucket, s3, control, monkeypatch
):
    for n in (1, 2, 3):
        put(drop, f"sales_{n}.csv", f"id,amount\n{n},1.00\n".encode())
    gone = drop / "sales_2.csv"
    _sabotage(monkeypatch, gone, Path.unlink)

    with pytest.raises(
        FtpExtractError, match=r"1 of 3 file\(s\) .* \(2 landed.*sales_2\.csv: download failed"
    ):
        extract()
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (3, 2, 1)
    assert {k.rsplit("/", 1)[1].split("-")[0] for k in keys(s3, bucket, source_name)} == {
        "sales_1",
        "sales_3",
    }
    rows = {r[0].rsplit("/", 1)[1]: r for r in source_files(control, source_name)}
    assert rows["sales_2.csv"][2] == "failed" and "550" in rows["sales_2.csv"][5]
    assert rows["sales_1.csv"][2] == rows["sales_3.csv"][2] == "landed"

    # The retry: the file is back (same version), and only it is landed.
    monkeypatch.undo()
    put(drop, "sales_2.csv", b"id,amount\n2,1.00\n")
    retry = extract()
    assert [f["path"] for f in retry["landed"]] == [f"/{drop.name}/sales_2.csv"]
    assert {r[2] for r in source_files(control, source_name)} == {"landed"}
    assert len(source_files(control, source_name)) == 3


def test_file_shrinking_before_download_is_failed_with_the_reason(
    extract, drop, source_name, control, monkeypatch
):
    put(drop, "sales_big.csv", b"id,amount\n" + b"1,1.00\n" * 1000)
    _sabotage(monkeypatch, drop / "sales_big.csv", lambda p: p.write_bytes(b"id,amount\n"))

    with pytest.raises(FtpExtractError, match="downloaded 10 bytes but the listing said 7010"):
        extract()
    (row,) = source_files(control, source_name)
    assert row[2] == "failed" and row[3] is None and "changed or was removed" in row[5]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((settings.LOOPBACK, 0))
        return sock.getsockname()[1]


def _connection(monkeypatch, conn_id: str, **overrides: Any) -> str:
    import json

    params = {
        "conn_type": "ftp",
        "host": settings.LOOPBACK,
        "port": settings.FTP_PORT,
        "login": settings.FTP_USER,
        "password": settings.FTP_PASSWORD,
        "extra": {"passive": True},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(params | overrides))
    return conn_id


def test_server_down_is_a_clear_error(extract, drop, monkeypatch):
    port = _free_port()
    conn_id = _connection(monkeypatch, "ftp_down", port=port)
    with pytest.raises(FtpExtractError, match=rf"cannot reach FTP server 127\.0\.0\.1:{port} .*'ftp_down'"):
        extract(conn_id)


def test_wrong_credentials_are_a_clear_error(extract, drop, monkeypatch):
    conn_id = _connection(monkeypatch, "ftp_wrong_password", password="not-the-password")
    with pytest.raises(FtpExtractError, match=r"refused the login: 530"):
        extract(conn_id)


def test_a_server_answering_in_local_time_is_read_as_that_zone(extract, drop, source_name, control):
    """The same file seen through a server declared to answer in New York time is 5 hours later in
    UTC (November: UTC-5) than through one declared UTC; the settle check uses the converted time."""
    put(drop, "sales_tz.csv", b"id,amount\n1,9.99\n")
    extract()
    (utc_row,) = control.query("SELECT modified_at FROM etl.source_file WHERE source = %s", (source_name,))
    control.query("DELETE FROM etl.source_file WHERE source = %s", (source_name,))
    control.query("DELETE FROM etl.landed_object WHERE source = %s", (source_name,))

    extract(server_timezone="America/New_York")
    (zoned_row,) = control.query("SELECT modified_at FROM etl.source_file WHERE source = %s", (source_name,))
    assert zoned_row[0] - utc_row[0] == timedelta(hours=5)
    with pytest.raises(ZoneInfoNotFoundError):
        extract(server_timezone="Mars/Olympus_Mons")

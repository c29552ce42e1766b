"""S3 file drops against the real local S3 (moto server) and the etl ledger on PostgreSQL.

The extract: every format lands once with its bytes intact, a rerun lands nothing, a re-upload is a
new version, the dropped objects are never touched, an object gone or replaced between listing
and download fails only itself, and so does one whose landed key the store refuses. The sensor:
``dag.test()`` of a fixture DAG shows it deferring while only landed files are there and completing
once a file is dropped; the trigger's ``run()`` is also driven directly with asyncio. Each test has a
source name and a drop prefix of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.s3_drop import (
    ListingBound,
    S3DropError,
    S3DropExtractOperator,
    list_drop,
    normalise_prefix,
)
from include.etlkit.sensors.s3_drop import S3DropSensor, S3DropTrigger
from infra.local import settings
from tests.conftest import FIXTURE_DAGS, TaskTry, bucket_keys, load_dag, s3_client

pytestmark = pytest.mark.integration

FEED = "partner_files"
INTERVAL_END = datetime(2024, 11, 15, 10, 0, tzinfo=UTC)


def xlsx_bytes() -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["id", "amount"])
    sheet.append([1, 9.99])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


FILES = {
    "sales.csv": (b"id,amount\n1,9.99\n2,\xc2\xa3 0.01\n", 2),
    "stock.xlsx": (xlsx_bytes(), 0),
    "rates.json": (json.dumps({"rates": [{"ccy": "EUR", "rate": 1.17}]}).encode(), 0),
    "events.ndjson": (b'{"id": 1}\n{"id": 2}\n{"id": 3}\n', 3),
    "notes.txt": (b"id|note\n1|first\n2|no final newline", 3),
}


@pytest.fixture(scope="module")
def s3(local_services):
    return s3_client()


@pytest.fixture
def drop(bucket) -> str:
    """A drop prefix of the test's own in the module's bucket (the default drop bucket)."""
    return f"drops/partner-{uuid.uuid4().hex[:10]}/"


def put(s3, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    return s3.put_object(Bucket=bucket, Key=key, Body=data)


def drop_state(s3, bucket: str, prefix: str) -> dict[str, tuple]:
    """Every object under the drop with its ETag, LastModified and bytes: what must never change."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"]: (o["ETag"], o["LastModified"], s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())
        for o in listing
    }


def expected_key(source: str, name: str, data: bytes) -> str:
    stem, ext = os.path.splitext(name)
    return f"{source}/{FEED}/2024/11/15/{stem}-{hashlib.sha256(data).hexdigest()[:16]}{ext}"


def source_files(store, source: str) -> list[tuple]:
    return store.query(
        "SELECT remote_path, size, status, landed_key, sha256, etag, version_id, reason FROM etl.source_file "
        "WHERE source = %s ORDER BY remote_path, first_seen_at",
        (source,),
    )


@pytest.fixture
def extract(drop, source_name, bucket):
    """Run the operator's ``execute`` once; returns its summary (and keeps the try's row counts)."""

    def run(operator_class: type[S3DropExtractOperator] = S3DropExtractOperator, **kwargs: Any) -> dict:
        run_id = f"scheduled__{uuid.uuid4().hex[:8]}"
        kwargs = {"drop_prefix": drop, "settle_seconds": 0, **kwargs}
        operator = operator_class(
            task_id="land_partner_files", source=source_name, name=FEED, bucket=bucket, **kwargs
        )
        task = TaskTry(
            operator, "partner_ingest", run_id, (INTERVAL_END - timedelta(minutes=30), INTERVAL_END)
        )
        try:
            return task.execute()
        finally:
            run.outcome = task.outcome

    return run


# -- the extract -----------------------------------------------------------------------------------


def test_every_format_lands_once_with_its_bytes_and_the_drop_is_untouched(
    extract, drop, source_name, bucket, s3, control_plane
):
    for name, (data, _) in FILES.items():
        put(s3, bucket, f"{drop}{name}", data)
    # Not files to land: temporary names, markers, a folder key, other file types.
    put(s3, bucket, f"{drop}sales.csv.tmp", b"id,amount\n")
    put(s3, bucket, f"{drop}upload.part", b"id,amount\n")
    put(s3, bucket, f"{drop}_SUCCESS", b"")
    put(s3, bucket, f"{drop}archive/", b"")
    put(s3, bucket, f"{drop}readme.md", b"# not data\n")
    # Recursive: a file in a sub-"folder" of the drop is a file of the drop; upper case is fine.
    nested = b"id,amount\n7,7.00\n"
    put(s3, bucket, f"{drop}2024-11-15/LATE.CSV", nested)
    before = drop_state(s3, bucket, drop)

    summary = extract()

    paths = {f"s3://{bucket}/{drop}{n}" for n in FILES} | {f"s3://{bucket}/{drop}2024-11-15/LATE.CSV"}
    assert {f["path"] for f in summary["landed"]} == paths
    assert summary["skipped_in_progress"] == summary["already_landed"] == summary["failed"] == []
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (6, 6, 0)
    landed = {expected_key(source_name, n, data): data for n, (data, _) in FILES.items()}
    landed[expected_key(source_name, "LATE.CSV", nested)] = nested
    assert set(bucket_keys(s3, bucket, source_name)) == set(landed)
    for key, data in landed.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data

    rows = {r[0].rsplit("/", 1)[1]: r for r in source_files(control_plane, source_name)}
    assert set(rows) == {*FILES, "LATE.CSV"}
    for name, (data, _) in FILES.items():
        _path, size, status, key, sha256, etag, version_id, reason = rows[name]
        assert (size, status, key, sha256) == (
            len(data),
            "landed",
            expected_key(source_name, name, data),
            hashlib.sha256(data).hexdigest(),
        )
        assert etag == before[f"{drop}{name}"][0].strip('"') and version_id is None and reason is None
    ledger = control_plane.query(
        "SELECT key, table_name, mode, rows FROM etl.landed_object WHERE source = %s",
        (source_name,),
    )
    assert sorted(ledger) == sorted(
        [(expected_key(source_name, n, data), FEED, "file", rows) for n, (data, rows) in FILES.items()]
        + [(expected_key(source_name, "LATE.CSV", nested), FEED, "file", 1)]
    )

    again = extract()
    assert again["landed"] == [] and sorted(again["already_landed"]) == sorted(paths)
    assert (extract.outcome.rows_in, extract.outcome.rows_out) == (6, 0)
    assert set(bucket_keys(s3, bucket, source_name)) == set(landed)
    assert len(source_files(control_plane, source_name)) == 6
    assert drop_state(s3, bucket, drop) == before  # read, never modified or deleted


def test_a_reupload_of_the_same_key_lands_as_a_new_version(
    extract, drop, source_name, bucket, s3, control_plane
):
    old, new = b"id,amount\n1,9.99\n", b"id,amount\n1,9.99\n2,5.00\n"
    put(s3, bucket, f"{drop}daily.csv", old)
    assert len(extract()["landed"]) == 1

    put(s3, bucket, f"{drop}daily.csv", new)
    summary = extract()
    assert [(f["key"], f["rows"]) for f in summary["landed"]] == [
        (expected_key(source_name, "daily.csv", new), 2)
    ]
    assert set(bucket_keys(s3, bucket, source_name)) == {
        expected_key(source_name, "daily.csv", old),
        expected_key(source_name, "daily.csv", new),
    }
    assert [(r[1], r[2]) for r in source_files(control_plane, source_name)] == [
        (len(old), "landed"),
        (len(new), "landed"),
    ]
    assert extract()["landed"] == []


def test_an_object_younger_than_settle_seconds_is_left_for_a_later_run(
    extract, drop, source_name, bucket, s3, control_plane
):
    put(s3, bucket, f"{drop}fresh.csv", b"id,amount\n1,9.99\n")

    first = extract(settle_seconds=300)
    assert first["landed"] == [] and first["skipped_in_progress"] == [f"s3://{bucket}/{drop}fresh.csv"]
    (row,) = source_files(control_plane, source_name)
    assert row[2] == "skipped_in_progress" and row[3] is None and "settle_seconds=300" in row[7]

    second = extract(settle_seconds=0)  # the same version, now taken: its row moves to landed
    assert [f["path"] for f in second["landed"]] == [f"s3://{bucket}/{drop}fresh.csv"]
    assert [r[2] for r in source_files(control_plane, source_name)] == ["landed"]


# -- the bounded listing ------------------------------------------------------------------------------


def _mark(source: str) -> datetime | None:
    return Ledger().landed_until(source, FEED)


def test_a_bounded_extract_keeps_a_high_water_mark_and_looks_only_behind_it(
    extract, drop, source_name, bucket, s3, control_plane
):
    put(s3, bucket, f"{drop}first.csv", b"id\n1\n")
    assert len(extract(listing_margin_hours=1)["landed"]) == 1
    (modified,) = [o["LastModified"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=drop)["Contents"]]
    assert _mark(source_name) == modified.replace(tzinfo=None)  # the newest version seen

    # Push the mark two hours ahead: a file modified now is then more than the margin behind it,
    # so the bounded listing no longer reaches it (nor the landed one): that is the bound at work.
    later = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2)
    Ledger().advance_listing_mark(source_name, FEED, later, "test")
    put(s3, bucket, f"{drop}second.csv", b"id\n2\n")
    bounded = extract(listing_margin_hours=1)
    assert bounded["landed"] == [] and bounded["already_landed"] == []
    # The whole prefix (no listing option, as every feed without one) still finds it, and only it.
    whole = extract()
    assert [f["path"] for f in whole["landed"]] == [f"s3://{bucket}/{drop}second.csv"]
    assert len(whole["already_landed"]) == 1


def test_a_version_left_unlanded_holds_the_mark_until_it_lands(
    extract, drop, source_name, bucket, s3, control_plane
):
    put(s3, bucket, f"{drop}landed.csv", b"id\n1\n")
    assert len(extract(listing_margin_hours=1)["landed"]) == 1
    before = _mark(source_name)
    put(s3, bucket, f"{drop}settling.csv", b"id\n2\n")
    put(s3, bucket, f"{drop}zz-settling.csv", b"id\n3\n")

    waiting = extract(listing_margin_hours=1, settle_seconds=3600)
    assert len(waiting["skipped_in_progress"]) == 2
    settling = min(
        o["LastModified"].replace(tzinfo=None)
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=drop)["Contents"]
        if "settling" in o["Key"]
    )
    assert before <= _mark(source_name) <= settling  # never past the version still to land

    taken = extract(listing_margin_hours=1, settle_seconds=0)
    assert len(taken["landed"]) == 2 and len(taken["already_landed"]) == 1
    assert _mark(source_name) >= settling


def test_date_folders_start_the_listing_at_the_floors_folder(bucket, s3):
    drop = f"drops/dated-{uuid.uuid4().hex[:8]}/"
    for key in ("2024/11/13/a.csv", "2024/11/14/b.csv", "2024/11/15/c.csv", "2024/11/15/late/d.csv"):
        put(s3, bucket, f"{drop}{key}", b"id\n1\n")
    since = datetime(2024, 11, 14, 6, 0)  # every object here was modified today, so all are admitted
    bound = ListingBound(since=since, date_folders="%Y/%m/%d")
    listed = list_drop(s3, bucket, normalise_prefix(drop), ["*.csv"], [], bound)
    assert sorted(o.key.removeprefix(drop) for o in listed) == [
        "2024/11/14/b.csv",
        "2024/11/15/c.csv",
        "2024/11/15/late/d.csv",
    ]
    assert len(list_drop(s3, bucket, drop, ["*.csv"], [])) == 4  # unbounded: every folder


def test_the_sensor_lists_from_the_mark_and_hands_the_bound_to_its_trigger(
    extract, drop, source_name, bucket, s3
):
    put(s3, bucket, f"{drop}landed.csv", b"id\n1\n")
    assert len(extract(listing_margin_hours=2)["landed"]) == 1
    sensor = S3DropSensor(
        task_id="wait_for_drop",
        source=source_name,
        name=FEED,
        drop_bucket=bucket,
        drop_prefix=drop,
        settle_seconds=0,
        listing_margin_hours=2,
        date_folders="%Y",
    )
    new, known = sensor.check()
    assert new == [] and len(known) == 1
    assert sensor._bound.since == _mark(source_name) - timedelta(hours=2)
    with pytest.raises(TaskDeferred) as deferred:  # the trigger carries the bound
        sensor._wait(datetime.now(UTC) + timedelta(minutes=5))
    trigger = deferred.value.trigger
    assert trigger.listed_since == sensor._bound.since.isoformat() and trigger.date_folders == "%Y"
    _, kwargs = trigger.serialize()
    assert S3DropTrigger(**kwargs).listed_since == trigger.listed_since


class _Sabotaged(S3DropExtractOperator):
    """Lists the drop, then lets the test's ``action(client, key)`` change it before any download."""

    action: Any = None
    target: str = ""

    def _list(self, client, bucket, prefix, bound):
        listed = super()._list(client, bucket, prefix, bound)
        type(self).action(client, bucket, f"{prefix}{type(self).target}")
        return listed


def test_an_object_deleted_before_its_download_fails_only_itself_and_the_task_names_it(
    extract, drop, source_name, bucket, s3, control_plane
):
    for n in (1, 2, 3):
        put(s3, bucket, f"{drop}sales_{n}.csv", f"id,amount\n{n},1.00\n".encode())
    _Sabotaged.action = staticmethod(lambda client, b, key: client.delete_object(Bucket=b, Key=key))
    _Sabotaged.target = "sales_2.csv"

    gone = f"s3://{bucket}/{drop}sales_2.csv"
    with pytest.raises(S3DropError, match=rf"1 of 3 file\(s\) .*\(2 landed.*{gone}: gone since the listing"):
        extract(_Sabotaged)
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (3, 2, 1)
    assert {k.rsplit("/", 1)[1].split("-")[0] for k in bucket_keys(s3, bucket, source_name)} == {
        "sales_1",
        "sales_3",
    }
    rows = {r[0].rsplit("/", 1)[1]: r for r in source_files(control_plane, source_name)}
    assert rows["sales_2.csv"][2] == "failed" and "NoSuchKey" in rows["sales_2.csv"][7]
    assert rows["sales_1.csv"][2] == rows["sales_3.csv"][2] == "landed"

    # The partner drops it again (same bytes, so the same ETag but a new time): only it is landed.
    put(s3, bucket, f"{drop}sales_2.csv", b"id,amount\n2,1.00\n")
    retry = extract()
    assert [f["path"] for f in retry["landed"]] == [gone]
    assert sorted(retry["already_landed"]) == [f"s3://{bucket}/{drop}sales_{n}.csv" for n in (1, 3)]


def test_an_object_replaced_before_its_download_is_refused_not_landed_under_the_old_identity(
    extract, drop, source_name, bucket, s3, control_plane
):
    listed, replacement = b"id,price\n1,1.00\n", b"id,price\n1,2.00\n"  # same size: only the ETag differs
    put(s3, bucket, f"{drop}prices.csv", listed)
    _Sabotaged.action = staticmethod(
        lambda client, b, key: client.put_object(Bucket=b, Key=key, Body=replacement)
    )
    _Sabotaged.target = "prices.csv"

    with pytest.raises(S3DropError, match=r"prices\.csv: replaced since the listing"):
        extract(_Sabotaged)
    assert bucket_keys(s3, bucket, source_name) == []
    (row,) = source_files(control_plane, source_name)
    assert (row[2], row[3], row[5]) == ("failed", None, hashlib.md5(listed).hexdigest())
    assert "PreconditionFailed" in row[7]

    retry = extract()  # the new version is what gets landed, under its own identity
    assert [f["key"] for f in retry["landed"]] == [expected_key(source_name, "prices.csv", replacement)]
    assert s3.get_object(Bucket=bucket, Key=retry["landed"][0]["key"])["Body"].read() == replacement


def test_a_file_that_cannot_be_landed_fails_alone_and_does_not_block_later_runs(
    extract, drop, source_name, bucket, s3, control_plane
):
    """``land_or_fail`` for real: the landed key of one file is already taken by other bytes in the
    ingestion bucket, so the immutable store refuses to land it (it never overwrites). The other
    files of the drop land; the refused one is recorded failed with its reason, nothing is written
    over, and a later run lands what is new (and the refused file, once its key is free)."""
    files = {f"orders_{n}.csv": f"id,amount\n{n},{n}.00\n".encode() for n in (1, 2, 3)}
    for name, data in files.items():
        put(s3, bucket, f"{drop}{name}", data)
    blocked = expected_key(source_name, "orders_2.csv", files["orders_2.csv"])
    squatter = b"not the partner's bytes\n"
    s3.put_object(Bucket=bucket, Key=blocked, Body=squatter)
    refused = f"s3://{bucket}/{drop}orders_2.csv"

    with pytest.raises(
        S3DropError,
        match=rf"1 of 3 file\(s\) .*\(2 landed.*{refused}: could not be landed: ImmutableObjectConflict",
    ):
        extract()
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (3, 2, 1)
    assert s3.get_object(Bucket=bucket, Key=blocked)["Body"].read() == squatter  # never overwritten
    for name in ("orders_1.csv", "orders_3.csv"):
        key = expected_key(source_name, name, files[name])
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == files[name]
    rows = {r[0].rsplit("/", 1)[1]: r for r in source_files(control_plane, source_name)}
    assert [rows[n][2] for n in sorted(rows)] == ["landed", "failed", "landed"]
    _path, _size, _status, key, _sha, _etag, _version, reason = rows["orders_2.csv"]
    assert key is None and reason.startswith("could not be landed: ImmutableObjectConflict")
    assert blocked in reason and "never overwritten" in reason
    ledger = control_plane.query(
        "SELECT key FROM etl.landed_object WHERE source = %s ORDER BY key", (source_name,)
    )
    assert [k for (k,) in ledger] == sorted(
        expected_key(source_name, n, files[n]) for n in ("orders_1.csv", "orders_3.csv")
    )

    # A later run: the refused file is tried again (and refused again, alone); a new file lands.
    late = b"id,amount\n4,4.00\n"
    put(s3, bucket, f"{drop}orders_4.csv", late)
    with pytest.raises(S3DropError, match=r"1 of 4 file\(s\) .*\(1 landed, 2 already landed"):
        extract()
    assert (extract.outcome.rows_in, extract.outcome.rows_out, extract.outcome.rows_rejected) == (4, 1, 1)
    late_key = expected_key(source_name, "orders_4.csv", late)
    assert s3.get_object(Bucket=bucket, Key=late_key)["Body"].read() == late

    # Once the key is free (the squatting object removed by whoever owns the bucket), it lands.
    s3.delete_object(Bucket=bucket, Key=blocked)
    retry = extract()
    assert [f["path"] for f in retry["landed"]] == [refused] and retry["failed"] == []
    assert s3.get_object(Bucket=bucket, Key=blocked)["Body"].read() == files["orders_2.csv"]
    statuses = {r[0].rsplit("/", 1)[1]: (r[2], r[7]) for r in source_files(control_plane, source_name)}
    assert statuses == {n: ("landed", None) for n in (*files, "orders_4.csv")}


def test_a_versioned_bucket_of_the_partners_records_the_version_landed(
    extract, source_name, bucket, s3, control_plane
):
    partner = f"test-drop-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=partner, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    try:
        s3.put_bucket_versioning(Bucket=partner, VersioningConfiguration={"Status": "Enabled"})
        first = put(s3, partner, "out/orders.csv", b"id\n1\n")
        second = put(s3, partner, "out/orders.csv", b"id\n1\n2\n")

        summary = extract(drop_bucket=partner, drop_prefix="out")
        assert [f["path"] for f in summary["landed"]] == [f"s3://{partner}/out/orders.csv"]
        (row,) = source_files(control_plane, source_name)
        assert row[6] == second["VersionId"] != first["VersionId"]
        assert s3.get_object(Bucket=bucket, Key=row[3])["Body"].read() == b"id\n1\n2\n"
    finally:
        for item in s3.list_object_versions(Bucket=partner).get("Versions", []):
            s3.delete_object(Bucket=partner, Key=item["Key"], VersionId=item["VersionId"])
        s3.delete_bucket(Bucket=partner)


def test_a_drop_overlapping_the_landing_prefix_is_refused(extract, source_name):
    with pytest.raises(ValueError, match="overlaps the landing prefix"):
        extract(drop_prefix=f"{source_name}/")


# -- the trigger -----------------------------------------------------------------------------------


def trigger_for(bucket: str, prefix: str, **kwargs: Any) -> S3DropTrigger:
    params = {
        "drop_bucket": bucket,
        "drop_prefix": prefix,
        "patterns": ["*.csv"],
        "ignore_patterns": ["*.tmp"],
        "known": [],
        "settle_seconds": 0,
        "poke_interval": 0.2,
    }
    return S3DropTrigger(**(params | kwargs))


def test_the_trigger_serialises_to_its_classpath_and_kwargs_and_back():
    trigger = trigger_for("b", "drops/p/", known=["abc", "def"], deadline="2024-11-15T10:00:00+00:00")
    classpath, kwargs = trigger.serialize()
    assert classpath == "include.etlkit.sensors.s3_drop.S3DropTrigger"
    json.dumps(kwargs)  # what the triggerer stores must be plain JSON
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)


def test_the_trigger_fires_once_an_unknown_object_appears_and_not_before(
    extract, drop, source_name, bucket, s3
):
    put(s3, bucket, f"{drop}landed.csv", b"id\n1\n")
    put(s3, bucket, f"{drop}ignored.csv.tmp", b"id\n")
    assert len(extract()["landed"]) == 1
    sensor = S3DropSensor(
        task_id="probe", source=source_name, name=FEED, drop_bucket=bucket, drop_prefix=drop,
        settle_seconds=0,
    )  # fmt: skip
    new, known = sensor.check()
    assert new == [] and len(known) == 1

    async def scenario() -> dict:
        events = trigger_for(bucket, drop, known=known).run()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(1.5)  # several polls: the landed file and the .tmp must not fire it
        assert not pending.done()
        await asyncio.to_thread(put, s3, bucket, f"{drop}new.csv", b"id\n2\n")
        event = await asyncio.wait_for(pending, timeout=10)
        await events.aclose()
        return event.payload

    payload = asyncio.run(scenario())
    assert payload["status"] == "success" and payload["new"] == [f"s3://{bucket}/{drop}new.csv"]


def test_the_trigger_times_out_at_the_deadline_and_reports_listing_errors(bucket, drop):
    async def first(trigger: S3DropTrigger) -> dict:
        return (await asyncio.wait_for(anext(trigger.run()), timeout=10)).payload

    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    assert asyncio.run(first(trigger_for(bucket, drop, deadline=soon)))["status"] == "timeout"

    missing = asyncio.run(first(trigger_for(f"no-such-bucket-{uuid.uuid4().hex[:8]}", drop)))
    assert missing["status"] == "error" and "NoSuchBucket" in missing["message"]


# -- the sensor in a DAG run -------------------------------------------------------------------------

PROBE = "s3_drop_probe"


@pytest.fixture
def probe(airflow_db, control_plane):
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (PROBE,))
    dag = load_dag(PROBE, FIXTURE_DAGS)
    control_plane.register([(PROBE, t) for t in dag.task_ids])
    yield dag
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (PROBE,))
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (PROBE,))


def test_the_sensor_defers_while_only_landed_files_are_there_and_ends_when_a_file_is_dropped(
    probe, extract, drop, source_name, bucket, s3, monkeypatch
):
    put(s3, bucket, f"{drop}already.csv", b"id\n1\n")
    assert len(extract()["landed"]) == 1
    quiet = f"drops/quiet-{uuid.uuid4().hex[:8]}/"

    # The partner drops a file once the sensor's trigger is running, i.e. once it has deferred.
    deferred = threading.Event()
    original_run = S3DropTrigger.run

    def watched_run(self):
        if self.drop_prefix == drop:
            deferred.set()
        return original_run(self)

    monkeypatch.setattr(S3DropTrigger, "run", watched_run)

    def partner() -> None:
        if deferred.wait(timeout=90):
            put(s3, bucket, f"{drop}arrived.json", b'{"id": 2}')

    thread = threading.Thread(target=partner, daemon=True)
    thread.start()
    run = probe.test(
        run_conf={"source": source_name, "drop_bucket": bucket, "drop_prefix": drop, "quiet_prefix": quiet}
    )
    thread.join(timeout=5)

    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert deferred.is_set()  # it did not succeed on the landed file: it waited in the trigger
    assert states == {"wait_for_drop": "success", "wait_soft": "skipped", "wait_strict": "failed"}
    (ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "wait_for_drop"]
    assert _return_value(ti) == [f"s3://{bucket}/{drop}arrived.json"]


def _return_value(ti) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(run_id=ti.run_id, dag_ids=ti.dag_id, task_ids=ti.task_id, key="return_value")
        ).first()
        return XComModel.deserialize_value(row)

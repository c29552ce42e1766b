"""ValidateLandedFilesOperator against the real local S3 (moto server) and the PostgreSQL control tables.

Files are landed the way the FTP extract lands them (``ImmutableStore`` + ``Ledger.record_landing``,
mode 'file'), then the operator's ``execute`` runs as a worker would call it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.files import DigestingWriter, FileDropRun, RemoteFile, SourceFileLedger
from include.etlkit.files.operators import FileValidationError, ValidateLandedFilesOperator
from include.etlkit.files.schema import FileSchema
from include.etlkit.files.status import FileStatusStore
from include.etlkit.storage import ImmutableStore
from include.etlkit.windows import ExtractWindow
from infra.local import settings
from tests.conftest import TaskTry, s3_client

pytestmark = pytest.mark.integration

FEED = "sales"
DAY = "2024/11/15"
SALES = {
    "key": ["order_id"],
    "columns": [
        {"name": "order_id", "type": "int", "min": 1},
        {"name": "amount", "type": "decimal(12,2)", "min": 0},
        {"name": "sold_on", "type": "date", "format": "%d/%m/%Y"},
        {"name": "channel", "type": "string", "choices": ["web", "shop"]},
    ],
}
GOOD = b"Order ID,Amount,Sold On,Channel,Region\n1,9.99,05/11/2024,web,North\n2,0.50,06/11/2024,shop,South\n"
BAD_ROWS = (
    b"order_id,amount,sold_on,channel\n"
    b"10,1.00,01/11/2024,web\n"
    b"11,-5,01/11/2024,web\n"  # below the minimum
    b"12,2.00,31/11/2024,web\n"  # no 31 November
    b"13,3.00,02/11/2024,shop\n"
)
MISSING = b"order_id,amount,channel\n20,1.00,web\n21,2.00,shop\n"
BROKEN_XLSX = b"PK\x03\x04 a truncated upload, not a workbook"


@pytest.fixture(scope="module")
def s3(local_services):
    return s3_client()


@pytest.fixture(scope="module")
def processed_bucket(s3) -> str:
    name = f"test-proc-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in page.get("Versions", []):
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def source(source_name, control_plane):
    """The test's source, with its file_status rows removed afterwards (the ledger's are by source_name)."""
    yield source_name
    control_plane.query("DELETE FROM etl.file_status WHERE source = %s", (source_name,))


def land(bucket: str, source: str, name: str, data: bytes, table_name: str = FEED) -> str:
    """Land ``data`` as the FTP extract would: created once, recorded with mode 'file'."""
    stem, _, suffix = name.rpartition(".")
    stored = ImmutableStore().create_bytes(bucket, f"{source}/{table_name}/{DAY}", stem, data, f".{suffix}")
    Ledger().record_landing(
        source=source,
        table_name=table_name,
        window=ExtractWindow(None, datetime(2024, 11, 15, 10)),
        run_id="scheduled__land",
        stored=stored,
        rows=max(data.count(b"\n") - 1, 0),
        mode="file",
        advance_state=False,
    )
    return stored.key


def run(
    source: str, bucket: str, processed_bucket: str, datasets: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Any]:
    """The operator's execute, as a worker calls it; returns its summary and the try's row counts."""
    operator = ValidateLandedFilesOperator(
        task_id="validate_sales_files",
        source=source,
        datasets=datasets or {FEED: SALES},
        ingestion_bucket=bucket,
        processed_bucket=processed_bucket,
    )
    task = TaskTry(operator, "files_transform", f"manual__{uuid.uuid4().hex[:8]}")
    try:
        return task.execute(), None
    except FileValidationError as exc:
        return {"error": str(exc)}, exc
    finally:
        run.outcome = task.outcome


def listing(s3, bucket: str, prefix: str) -> dict[str, str]:
    """key -> ETag of every object under ``prefix``."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: item["ETag"] for page in pages for item in page.get("Contents", [])}


def parquet(s3, bucket: str, key: str):
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def status_rows(control, source: str) -> dict[str, tuple]:
    rows = control.query(
        "SELECT key, status, rows_read, rows_loaded, rows_rejected, processed_key, quarantine_key, "
        "error_key, reason, received_at IS NOT NULL FROM etl.file_status WHERE source = %s",
        (source,),
    )
    return {row[0]: row[1:] for row in rows}


def sha16(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def test_landed_files_are_split_into_processed_quarantine_and_error_objects(
    source, bucket, processed_bucket, s3, control_plane
):
    good = land(bucket, source, "good.csv", GOOD)
    bad_rows = land(bucket, source, "bad_rows.csv", BAD_ROWS)
    missing = land(bucket, source, "missing.csv", MISSING)
    broken = land(bucket, source, "broken.xlsx", BROKEN_XLSX)
    other = land(bucket, source, "stock.csv", b"sku,qty\nA,1\n", table_name="stock")
    originals = listing(s3, bucket, f"{source}/")

    summary, error = run(source, bucket, processed_bucket)

    assert error is None
    assert summary == {
        "validated": [good],
        "partially_quarantined": [bad_rows],
        "rejected": [missing, broken],
        "failed": [],
    }
    # rows in: 2 + 4 + 2 (+ 0: the workbook has no rows to count); out: 2 + 2; set aside: 2 + 2.
    assert (run.outcome.rows_in, run.outcome.rows_out, run.outcome.rows_rejected) == (8, 4, 4)

    # The originals are all still there, byte for byte, and nothing else was added beside them.
    assert listing(s3, bucket, f"{source}/") == originals
    assert s3.get_object(Bucket=bucket, Key=missing)["Body"].read() == MISSING

    # Valid rows: Parquet in the processed bucket, typed, recorded for the load as the dataset.
    statuses = status_rows(control_plane, source)
    processed = {key: statuses[key][4] for key in (good, bad_rows)}
    assert all(k.startswith(f"{source}/{FEED}/{DAY}/") for k in processed.values())
    assert set(listing(s3, processed_bucket, f"{source}/")) == set(processed.values())
    schema = FileSchema.from_dict({"name": FEED, **SALES})
    good_rows = parquet(s3, processed_bucket, processed[good])
    assert good_rows.schema.remove_metadata() == schema.arrow_schema
    assert good_rows.column("order_id").to_pylist() == [1, 2]
    assert [json.loads(v) for v in good_rows.column("additional_column").to_pylist()] == [
        {"Region": "North"},
        {"Region": "South"},
    ]
    assert parquet(s3, processed_bucket, processed[bad_rows]).column("source_row").to_pylist() == [1, 4]
    pending = Ledger().pending_processed(source)
    assert sorted((o.bucket, o.key, o.table_name, o.rows) for o in pending) == sorted(
        [(processed_bucket, processed[good], FEED, 2), (processed_bucket, processed[bad_rows], FEED, 2)]
    )

    # Quarantined rows: raw strings, reason, source row and landed key, under quarantine/.
    quarantine_key = statuses[bad_rows][5]
    assert quarantine_key.startswith(f"quarantine/{source}/{FEED}/{DAY}/bad_rows-")
    quarantined = parquet(s3, bucket, quarantine_key).to_pylist()
    assert quarantined == [
        {
            "source_row": 2,
            "reason": "amount='-5' is below the minimum 0",
            "order_id": "11",
            "amount": "-5",
            "sold_on": "01/11/2024",
            "channel": "web",
            "landed_key": bad_rows,
        },
        {
            "source_row": 3,
            "reason": "sold_on='31/11/2024' is not a date (%d/%m/%Y)",
            "order_id": "12",
            "amount": "2.00",
            "sold_on": "31/11/2024",
            "channel": "web",
            "landed_key": bad_rows,
        },
    ]

    # Rejected files: a copy of the bytes under errors/, same name, and a reason beside it.
    assert listing(s3, bucket, f"errors/{source}/").keys() == {
        f"errors/{missing}",
        f"errors/{missing}.reason.json",
        f"errors/{broken}",
        f"errors/{broken}.reason.json",
    }
    assert s3.get_object(Bucket=bucket, Key=f"errors/{missing}")["Body"].read() == MISSING
    assert s3.get_object(Bucket=bucket, Key=f"errors/{broken}")["Body"].read() == BROKEN_XLSX
    why = json.loads(s3.get_object(Bucket=bucket, Key=f"errors/{missing}.reason.json")["Body"].read())
    assert why["missing_columns"] == ["sold_on"] and why["landed_key"] == missing
    assert why["reason"].startswith("missing required column(s): sold_on") and why["run_id"].startswith(
        "manual__"
    )
    why = json.loads(s3.get_object(Bucket=bucket, Key=f"errors/{broken}.reason.json")["Body"].read())
    assert why["reason"] == (
        f"unreadable: broken-{sha16(BROKEN_XLSX)}.xlsx is not a readable .xlsx workbook: "
        "File is not a zip file"
    )

    # One status row per landed file, its counts reconciling.
    assert {k: v[:4] for k, v in statuses.items()} == {
        good: ("validated", 2, 2, 0),
        bad_rows: ("partially_quarantined", 4, 2, 2),
        missing: ("rejected", 2, 0, 2),
        broken: ("rejected", 0, 0, 0),
    }
    assert statuses[bad_rows][7] == (
        "2 of 4 row(s) quarantined, first: row 2: amount='-5' is below the minimum 0"
    )
    assert statuses[missing][6] == f"errors/{missing}" and statuses[broken][6] == f"errors/{broken}"
    assert all(row[8] for row in statuses.values())  # received_at: when it was landed

    # Every sales file is transformed; the stock file is another transform's business.
    assert [(o.key, o.table_name) for o in Ledger().pending_landed(source)] == [(other, "stock")]

    # A rerun finds nothing to do: no object, no status row changes.
    before = (listing(s3, bucket, ""), listing(s3, processed_bucket, ""), statuses)
    summary, error = run(source, bucket, processed_bucket)
    assert error is None and not any(summary.values())
    assert (run.outcome.rows_in, run.outcome.rows_out) == (0, 0)
    assert (
        listing(s3, bucket, ""),
        listing(s3, processed_bucket, ""),
        status_rows(control_plane, source),
    ) == before


@pytest.mark.parametrize(
    "crash_at",
    [
        "include.etlkit.files.status.FileStatusStore.record",
        "include.etlkit.control.ledger.Ledger.record_transform",
    ],
)
def test_rerun_after_a_crash_creates_no_second_object_or_status_row(
    crash_at, source, bucket, processed_bucket, s3, control_plane, monkeypatch
):
    good = land(bucket, source, "good.csv", GOOD)
    bad_rows = land(bucket, source, "bad_rows.csv", BAD_ROWS)
    missing = land(bucket, source, "missing.csv", MISSING)

    def crash(*args, **kwargs):
        raise ConnectionError("control database went away")

    with monkeypatch.context() as patch:
        patch.setattr(crash_at, crash)
        summary, error = run(source, bucket, processed_bucket)
    # The objects were written before the crash; every file failed alone and stays pending.
    assert error is not None and "3 of 3 landed file(s)" in str(error)
    assert "ConnectionError: control database went away" in str(error)
    assert {o.key for o in Ledger().pending_landed(source)} == {good, bad_rows, missing}
    after_crash = (listing(s3, bucket, ""), listing(s3, processed_bucket, ""))

    summary, error = run(source, bucket, processed_bucket)

    assert error is None
    assert summary["validated"] == [good] and summary["rejected"] == [missing]
    assert (listing(s3, bucket, ""), listing(s3, processed_bucket, "")) == after_crash
    assert len(status_rows(control_plane, source)) == 3
    assert len(Ledger().pending_processed(source)) == 2
    assert Ledger().pending_landed(source) == []


def test_load_marks_files_loaded_and_a_revalidation_never_undoes_it(
    source, bucket, processed_bucket, control_plane
):
    good = land(bucket, source, "good.csv", GOOD)
    missing = land(bucket, source, "missing.csv", MISSING)
    run(source, bucket, processed_bucket)
    statuses = FileStatusStore()
    processed_key = statuses.get(bucket, good).processed_key

    assert statuses.mark_loaded([processed_key, "not/a/processed/key.parquet"], "manual__load") == 1
    assert statuses.mark_loaded([processed_key], "manual__load_again") == 0
    loaded = statuses.get(bucket, good)
    assert (loaded.status, loaded.load_run_id, loaded.rows_loaded) == ("loaded", "manual__load", 2)
    assert loaded.loaded_at is not None
    assert statuses.get(bucket, missing).status == "rejected"
    assert [s.key for s in statuses.statuses(source, dataset=FEED, status="loaded")] == [good]

    statuses.record(
        bucket=bucket, key=good, source=source, dataset=FEED, status="validated",
        rows_read=2, rows_loaded=2, rows_rejected=0, run_id="manual__again",
        processed_bucket=processed_bucket, processed_key=processed_key,
    )  # fmt: skip
    assert statuses.get(bucket, good).status == "loaded"


def test_status_table_refuses_counts_that_do_not_reconcile(source, bucket, control_plane):
    with pytest.raises(psycopg.errors.CheckViolation, match="file_status_check"):
        FileStatusStore().record(
            bucket=bucket, key=f"{source}/{FEED}/x.csv", source=source, dataset=FEED, status="rejected",
            rows_read=5, rows_loaded=0, rows_rejected=4, run_id="manual__x", reason="because",
        )  # fmt: skip


# -- a partner's file may only speak for that partner ----------------------------------------------

PARTNER_FEED = "partner_customers"
PARTNER_SCHEMA = {
    "key": ["partner", "partner_customer_ref"],
    "path_values": {"partner": r"^s3://[^/]+/drops/partners/(?P<partner>[^/]+)/"},
    "columns": [
        {"name": "partner", "type": "string"},
        {"name": "partner_customer_ref", "type": "string"},
        {"name": "full_name", "type": "string"},
    ],
}
# Only ever named in remote paths: the files are landed the way the S3 drop extract lands them.
DROP_BUCKET = "partner-drop-bucket"
CLAIMS_BRIGHTMAIL = (
    b"partner,partner_customer_ref,full_name\n"
    b"acme,A-1,Ann Able\n"
    b"brightmail,B-1,Bob Bright\n"  # acme's file speaking for brightmail
    b"acme,A-2,Cat Cole\n"
)
NO_PARTNER_COLUMN = b"partner_customer_ref,full_name\nA-3,Dan Dee\nA-4,Eve Ely\n"


def drop_and_land(bucket: str, source: str, tmp_path: Path, key: str, data: bytes) -> str:
    """Land ``data`` as the S3 drop extract lands ``s3://DROP_BUCKET/<key>``: FileDropRun.land."""
    drop = FileDropRun(
        source=source,
        name=PARTNER_FEED,
        bucket=bucket,
        aws_conn_id="aws_default",
        run_id="scheduled__drops",
        window=ExtractWindow(None, datetime(2024, 11, 15, 10)),
        log=logging.getLogger(__name__),
    )
    local = tmp_path / f"{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}"
    with local.open("wb") as out:
        writer = DigestingWriter(out)
        writer.write(data)
    remote = RemoteFile(
        f"s3://{DROP_BUCKET}/{key}", len(data), datetime(2024, 11, 15, 9, 30), etag=sha16(data)
    )
    return drop.land(remote, writer.download(local))["key"]


def test_a_partners_file_may_only_speak_for_that_partner(
    source, bucket, processed_bucket, s3, control_plane, tmp_path
):
    claims = drop_and_land(bucket, source, tmp_path, "drops/partners/acme/customers_1.csv", CLAIMS_BRIGHTMAIL)
    filled = drop_and_land(bucket, source, tmp_path, "drops/partners/acme/customers_2.csv", NO_PARTNER_COLUMN)
    outside = drop_and_land(bucket, source, tmp_path, "drops/misc/customers_3.csv", CLAIMS_BRIGHTMAIL)
    # The same bytes under the same name in two partners' folders are one landed object.
    twice = drop_and_land(bucket, source, tmp_path, "drops/partners/acme/same.csv", NO_PARTNER_COLUMN)
    assert drop_and_land(bucket, source, tmp_path, "drops/partners/zeta/same.csv", NO_PARTNER_COLUMN) == twice
    unknown = land(bucket, source, "customers_4.csv", CLAIMS_BRIGHTMAIL, table_name=PARTNER_FEED)
    files = SourceFileLedger(control_plane)
    assert files.remote_path(bucket, claims) == f"s3://{DROP_BUCKET}/drops/partners/acme/customers_1.csv"
    assert files.remote_paths(bucket, twice) == [
        f"s3://{DROP_BUCKET}/drops/partners/acme/same.csv",
        f"s3://{DROP_BUCKET}/drops/partners/zeta/same.csv",
    ]
    assert files.remote_path(bucket, twice) is None and files.remote_path(bucket, unknown) is None

    summary, error = run(source, bucket, processed_bucket, {PARTNER_FEED: PARTNER_SCHEMA})

    assert error is None
    assert summary == {
        "validated": [filled],
        "partially_quarantined": [claims],
        "rejected": [outside, twice, unknown],
        "failed": [],
    }
    statuses = status_rows(control_plane, source)
    assert {k: v[:4] for k, v in statuses.items()} == {
        claims: ("partially_quarantined", 3, 2, 1),
        filled: ("validated", 2, 2, 0),
        outside: ("rejected", 3, 0, 3),
        twice: ("rejected", 2, 0, 2),
        unknown: ("rejected", 3, 0, 3),
    }
    # acme's rows are loaded as acme's; the row speaking for brightmail is set aside, saying why.
    loaded = parquet(s3, processed_bucket, statuses[claims][4])
    assert loaded.select(["partner", "partner_customer_ref"]).to_pylist() == [
        {"partner": "acme", "partner_customer_ref": "A-1"},
        {"partner": "acme", "partner_customer_ref": "A-2"},
    ]
    assert parquet(s3, bucket, statuses[claims][5]).select(
        ["source_row", "reason", "partner"]
    ).to_pylist() == [
        {
            "source_row": 2,
            "reason": "partner='brightmail' does not match the drop folder value 'acme'",
            "partner": "brightmail",
        }
    ]
    assert statuses[claims][7].endswith(
        "row 2: partner='brightmail' does not match the drop folder value 'acme'"
    )
    # A file without the column says nothing for anyone: the folder names its partner.
    assert parquet(s3, processed_bucket, statuses[filled][4]).select(
        ["partner", "partner_customer_ref"]
    ).to_pylist() == [
        {"partner": "acme", "partner_customer_ref": "A-3"},
        {"partner": "acme", "partner_customer_ref": "A-4"},
    ]
    # Who sent the others cannot be told: rejected whole, the reason (and the paths) beside the copy.
    reasons = {
        key: json.loads(s3.get_object(Bucket=bucket, Key=f"errors/{key}.reason.json")["Body"].read())
        for key in (outside, twice, unknown)
    }
    assert reasons[outside]["reason"] == (
        f"remote path 's3://{DROP_BUCKET}/drops/misc/customers_3.csv' does not match the path_values "
        "pattern of partner '^s3://[^/]+/drops/partners/(?P<partner>[^/]+)/'"
    )
    assert reasons[outside]["remote_paths"] == [f"s3://{DROP_BUCKET}/drops/misc/customers_3.csv"]
    assert reasons[twice]["reason"] == (
        "the file landed from remote paths that disagree on partner: "
        f"'acme' (s3://{DROP_BUCKET}/drops/partners/acme/same.csv), "
        f"'zeta' (s3://{DROP_BUCKET}/drops/partners/zeta/same.csv)"
    )
    assert reasons[unknown]["reason"].startswith("the file's remote path is unknown")
    assert "remote_paths" not in reasons[unknown]
    assert s3.get_object(Bucket=bucket, Key=f"errors/{outside}")["Body"].read() == CLAIMS_BRIGHTMAIL


def test_poison_files_are_rejected_alone_and_the_good_one_goes_on(
    source, bucket, processed_bucket, s3, control_plane
):
    """Files that used to raise past the reader (RecursionError), swallow rows (an unbalanced quote),
    take hundreds of MB (thousands of NDJSON keys) or overflow a local path (a 250-character name) are
    each rejected with their reason in one run; the good file is validated, and the task succeeds so
    the processed Asset is published."""
    deep = land(bucket, source, "deep.json", b"[" * 100_000 + b"]" * 100_000)
    unbalanced = b'order_id,amount,sold_on,channel\n1,"9.99,05/11/2024,web\n2,1.00",06/11/2024,shop\n'
    merged = land(bucket, source, "merged.csv", unbalanced)
    keys = "\n".join(json.dumps({f"k{i}_{j}": j for j in range(5)}) for i in range(2000)).encode()
    many_keys = land(bucket, source, "keys.ndjson", keys)
    long_name = land(bucket, source, "n" * 250 + ".csv", GOOD)
    good = land(bucket, source, "good.csv", GOOD.replace(b"1,9.99", b"3,9.99").replace(b"2,0.50", b"4,0.50"))

    summary, error = run(source, bucket, processed_bucket)

    assert error is None, error
    assert summary["failed"] == []
    assert summary["validated"] == [long_name, good]
    assert summary["rejected"] == [deep, merged, many_keys]
    statuses = status_rows(control_plane, source)
    reasons = {key: statuses[key][7] for key in (deep, merged, many_keys)}
    assert "nests too deeply" in reasons[deep]
    assert "a quoted value spans lines" in reasons[merged]
    assert "over max_columns=1,000" in reasons[many_keys]
    for key in (deep, merged, many_keys):
        status, rows_read, loaded, rejected = statuses[key][:4]
        assert status == "rejected" and loaded == 0 and rows_read == rejected
        error_key = statuses[key][6]
        assert error_key.startswith(f"errors/{source}/{FEED}/{DAY}/")
        assert (
            json.loads(s3.get_object(Bucket=bucket, Key=error_key + ".reason.json")["Body"].read())["reason"]
            == reasons[key]
        )
    # Nothing is left pending for a later run to trip over.
    assert [o for o in Ledger().pending_landed(source)] == []

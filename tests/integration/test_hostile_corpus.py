"""The hostile-input corpus through the real path: S3 drop -> extract -> validation -> load.

Every case of :mod:`tests.integration.corpus` is dropped in the local S3 at once; one run of each
step takes them all. Each file ends loaded, quarantined with a reason, or rejected whole with a
reason, rows read = loaded + rejected for each, and no file holds up another: the steps succeed
and every good file is in the warehouse.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from include.etlkit.extract.s3_drop import S3DropExtractOperator
from include.etlkit.files.operators import ValidateLandedFilesOperator
from include.etlkit.load.operators import LoadProcessedOperator
from include.etlkit.load.postgres import TableLoad
from infra.local import settings
from tests.conftest import TaskTry, s3_client
from tests.integration.airflow_server import dsn
from tests.integration.corpus import CASES, SCHEMA, table

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FEED = "partner_corpus"
INTERVAL_END = datetime(2024, 11, 15, 10, 0, tzinfo=UTC)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _run(operator, dag_id: str) -> dict:
    interval = (INTERVAL_END - timedelta(minutes=30), INTERVAL_END)
    return TaskTry(operator, dag_id, f"scheduled__{uuid.uuid4().hex[:8]}", interval).execute()


@pytest.fixture
def core_table(control_plane):
    name = f"corpus_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn(settings.database("warehouse")), autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE core.{name} (customer_ref text PRIMARY KEY, full_name text NOT NULL, email text, "
            "signed_up_on date, spend numeric(12,2), additional_column text)"
        )
    yield name
    with psycopg.connect(dsn(settings.database("warehouse")), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS core.{name}; DROP TABLE IF EXISTS landing.{name}")


def test_every_hostile_file_ends_loaded_quarantined_or_rejected_alone(
    source_name, bucket, control_plane, core_table
):
    s3 = s3_client()
    drop = f"drops/corpus-{uuid.uuid4().hex[:8]}/"
    for case in CASES:
        s3.put_object(Bucket=bucket, Key=drop + case.name, Body=case.data)

    landed = _run(
        S3DropExtractOperator(
            task_id="land_corpus",
            source=source_name,
            name=FEED,
            bucket=bucket,
            drop_prefix=drop,
            patterns=("*.csv", "*.txt", "*.xlsx", "*.json", "*.ndjson", "*.parquet"),
            settle_seconds=0,
        ),
        "corpus_drops",
    )
    assert landed["failed"] == [], landed["failed"]
    assert len(landed["landed"]) == len(CASES)
    # S3 refuses keys over 1,024 bytes (moto does not check it): no landed key may pass it.
    assert max(len(f["key"].encode()) for f in landed["landed"]) <= 1024

    validated = _run(
        ValidateLandedFilesOperator(
            task_id="validate_corpus",
            source=source_name,
            datasets={FEED: SCHEMA},
            ingestion_bucket=bucket,
            processed_bucket=bucket,
        ),
        "corpus_transform",
    )
    assert validated["failed"] == []

    loaded = _run(
        LoadProcessedOperator(
            task_id="load_corpus",
            source=source_name,
            tables=[
                TableLoad(FEED, ("customer_ref",), "upsert", table=core_table, landing_only=("source_row",))
            ],
        ),
        "corpus_load",
    )
    assert isinstance(loaded, dict)

    with psycopg.connect(dsn(settings.database("warehouse"))) as conn:
        statuses = conn.execute(
            "SELECT f.remote_path, s.status, s.rows_read, s.rows_loaded, s.rows_rejected, s.reason, "
            "s.processed_key FROM etl.source_file f "
            "JOIN etl.file_status s ON s.bucket = f.landed_bucket AND s.key = f.landed_key "
            "WHERE f.source = %s",
            (source_name,),
        ).fetchall()
        in_landing = dict(
            conn.execute(f"SELECT _load_id, count(*) FROM landing.{core_table} GROUP BY _load_id").fetchall()
        )
    files = {
        remote.removeprefix(f"s3://{bucket}/{drop}"): (status, read, ok, rejected, reason or "", processed)
        for remote, status, read, ok, rejected, reason, processed in statuses
    }
    problems = []
    for case in CASES:
        if case.name not in files:
            problems.append(f"{case.id}: no file status")
            continue
        status, read, ok, rejected, reason, processed = files[case.name]
        outcome = {"rejected": "rejected", "loaded": "loaded"}.get(status, status)
        if case.outcome == "rejected":
            good = status == "rejected" and ok == 0 and case.reason in reason
        elif case.outcome == "quarantined":
            good = rejected > 0 and case.reason in reason and status in ("loaded", "partially_quarantined")
            good = good and (ok == 0 or status == "loaded")
        else:
            good = rejected == 0 and (status == "loaded" or (read == 0 and status == "validated"))
        if case.rows is not None and (read, ok, rejected) != case.rows:
            good = False
        if read != ok + rejected:
            good = False
        if ok and in_landing.get(processed) != ok:
            good = False  # what validation let through is what the warehouse holds
        if not good:
            problems.append(f"{case.id}: {outcome} {(read, ok, rejected)} {reason[:200]!r}")
    assert not problems, "\n".join(problems)


def test_docs_reliability_lists_every_case_with_its_outcome():
    text = DOCS.read_text(encoding="utf-8")
    assert table() in text, "docs/reliability.md is out of date: python -m tests.integration.corpus"

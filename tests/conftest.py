"""Test-suite environment: its own Airflow home, databases and buckets, on the real local servers.

Set before Airflow is imported. ``ETL_SUFFIX=_test`` gives the suite databases ``warehouse_test``,
``totesys_test``, ``retail_test`` and buckets ``etl-ingestion-test`` / ``etl-processed-test`` on the
same PostgreSQL, MariaDB and S3 servers the demo uses, so running the tests never disturbs a
developer's demo data. Fixtures start what they need (``infra.local.services``); nothing relies on a
process started by hand.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from include.etlkit.control.accounting import TryOutcome

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DAGS = ROOT / "tests" / "dags" / "fixtures"

# ETL_TEST_SUFFIX lets two suites share one machine (say, two checkouts) without sharing data.
os.environ["ETL_SUFFIX"] = os.environ.get("ETL_TEST_SUFFIX", "_test")
os.environ["AIRFLOW_HOME"] = os.environ.get("ETL_TEST_AIRFLOW_HOME", str(ROOT / ".airflow-test"))

from infra.local import settings  # noqa: E402  (reads ETL_SUFFIX)

os.environ.update(settings.airflow_environment())
# Two bundles: the project's DAGs and the suite's fixture DAGs, so dag.test() can run either.
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags")},
        },
        {
            "name": "test-fixtures",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(FIXTURE_DAGS)},
        },
    ]
)


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Airflow's metadata database (SQLite in the test AIRFLOW_HOME), migrated once."""
    from infra.local.bootstrap import ensure_airflow_db

    ensure_airflow_db()


@pytest.fixture(scope="session")
def local_services() -> None:
    """The local S3, FTP and REST API servers, started if not already answering."""
    from infra.local.services import ensure_running

    ensure_running()


@pytest.fixture(scope="session")
def control_plane():
    """The warehouse test database with its schemas and the control tables."""
    from include.etlkit.control.store import ControlStore
    from infra.local.bootstrap import ensure_postgres_database, ensure_warehouse_schemas

    ensure_postgres_database("warehouse")
    ensure_warehouse_schemas("warehouse")
    store = ControlStore()
    store.ensure_tables()
    return store


def load_dag(dag_id: str, folder: Path):
    """A DAG as Airflow's workers see it: parsed by a DagBag, so cluster policies apply."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(folder))
    assert not bag.import_errors, bag.import_errors
    return bag.dags[dag_id]


@dataclass
class TaskInstanceStub:
    """The task-instance fields an operator's ``execute`` reads when called directly by a test
    (``report_rows`` keys a try by them)."""

    dag_id: str = "test_dag"
    task_id: str = "test_task"
    run_id: str = "test_run"
    map_index: int = -1
    try_number: int = 1


class TaskTry:
    """One try of an operator's ``execute``, called by a test as a worker calls it.

    Integration tests run an operator against the real services without a scheduler, so they hand
    ``execute`` the context the framework's operators read: ``run_id``, ``ti`` (a
    :class:`TaskInstanceStub`, by which ``report_rows`` keys the try's row counts) and, given
    ``interval``, the run's data interval. :attr:`outcome` is what the try reported
    (``take_outcome``), kept even when ``execute`` raised: a failed try's counts are asserted too.
    """

    def __init__(
        self, operator: Any, dag_id: str, run_id: str, interval: tuple[datetime, datetime] | None = None
    ) -> None:
        self.operator = operator
        self.ti = TaskInstanceStub(dag_id, operator.task_id, run_id)
        self.context: dict[str, Any] = {"run_id": run_id, "ti": self.ti}
        if interval is not None:
            self.context["data_interval_start"], self.context["data_interval_end"] = interval
        self.outcome: TryOutcome | None = None

    def execute(self) -> Any:
        """``operator.execute(context)``; the try's counts start from nothing and end in :attr:`outcome`."""
        from include.etlkit.control.accounting import take_outcome

        take_outcome(self.ti)  # counts an earlier, failed try of the same key left behind
        try:
            return self.operator.execute(self.context)
        finally:
            self.outcome = take_outcome(self.ti)


def s3_client():
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id="aws_default").get_conn()


def bucket_keys(s3, bucket: str, prefix: str) -> list[str]:
    """The keys under ``prefix/`` in ``bucket``, sorted."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="module")
def bucket(local_services) -> Iterator[str]:
    """A bucket of the module's own on the local S3, emptied and removed afterwards."""
    s3 = s3_client()
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def source_name(control_plane) -> Iterator[str]:
    """A source name of the test's own, with no ledger rows before or after the test."""
    name = f"test_src_{uuid.uuid4().hex[:10]}"

    from include.etlkit.control.ledger import Ledger

    def clean() -> None:
        Ledger(control_plane).forget(name)

    clean()
    yield name
    clean()

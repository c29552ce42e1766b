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
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DAGS = ROOT / "tests" / "dags" / "fixtures"

os.environ["ETL_SUFFIX"] = "_test"
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

"""A real scheduler: Asset-chained runs, then ``airflow backfill create`` leaves the warehouse as it was.

``airflow standalone`` (API server, scheduler, DAG processor, triggerer, LocalExecutor) runs in its
own AIRFLOW_HOME against its own source, warehouse and buckets. A triggered ``totesys_ingest`` run
wakes ``totesys_transform`` and then ``totesys_load`` through their Assets; a backfill of the hours
before re-lands those windows, and the warehouse ends exactly as before, with no object overwritten.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from infra.local import settings
from tests.integration.pipeline_checks import assert_nothing_changed_since, snapshot, warehouse_fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = ("totesys_ingest", "totesys_transform", "totesys_load")
RUN_TIMEOUT = 600


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dsn(database: str) -> str:
    return f"host={settings.PG_HOST} port={settings.PG_PORT} user={settings.PG_USER} dbname={database}"


def _pg_uri(database: str) -> str:
    return f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{database}"


class Standalone:
    """``airflow standalone`` in the background, and what the test asks of it."""

    def __init__(self, home: Path, env: dict[str, str], metadata_db: str) -> None:
        self.home = home
        self.metadata_db = metadata_db
        self.env = env
        self.log = home / "standalone.log"
        self.port = int(env["AIRFLOW__API__PORT"])
        self.process: subprocess.Popen | None = None

    def airflow(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self) -> None:
        self.airflow("db", "migrate")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for("the API server to answer", self._healthy, timeout=240)
        self.wait_for("the DAGs to be parsed", lambda: self._parsed() >= len(DAG_IDS), timeout=240)
        # Everything else stays paused (DAGS_ARE_PAUSED_AT_CREATION): only the chain under test runs.
        for dag_id in DAG_IDS:
            self.airflow("dags", "unpause", dag_id)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/api/v2/monitor/health", timeout=5
            ) as r:
                return r.status == 200
        except OSError:
            return False

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(_dsn(self.metadata_db)) as conn:
            return conn.execute(sql, params).fetchall()

    def _parsed(self) -> int:
        return self._query("SELECT count(*) FROM dag WHERE dag_id = ANY(%s)", (list(DAG_IDS),))[0][0]

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        return self._query(
            "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s ORDER BY id", (dag_id,)
        )

    def busy(self) -> bool:
        busy = "SELECT 1 FROM dag_run WHERE dag_id = ANY(%s) AND state IN ('queued', 'running')"
        return bool(self._query(busy, (list(DAG_IDS),)))

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = RUN_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                pytest.fail(f"airflow standalone exited while waiting for {what}:\n{self.tail()}")
            try:
                if condition():
                    return
            except psycopg.Error:
                pass  # the metadata DB is being migrated; ask again
            time.sleep(3)
        pytest.fail(f"timed out waiting for {what}:\n{self.tail()}")

    def wait_until_idle(self, what: str) -> None:
        # Asset-triggered runs are created a moment after their upstream finishes: idle twice in a row.
        def idle_twice() -> bool:
            if self.busy():
                return False
            time.sleep(5)
            return not self.busy()

        self.wait_for(what, idle_twice)

    def tail(self, lines: int = 60) -> str:
        return (
            "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""
        )


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, local_services, control_plane):
    suffix = uuid.uuid4().hex[:8]
    source_db, warehouse_db = f"totesys_bf_{suffix}", f"warehouse_bf_{suffix}"
    metadata_db = f"airflow_bf_{suffix}"
    home = tmp_path_factory.mktemp("airflow-standalone")
    port = _free_port()
    overrides = {
        "AIRFLOW_HOME": str(home),
        # PostgreSQL, not SQLite: the API server, scheduler, DAG processor and workers write at once.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
            f"postgresql+psycopg2://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{metadata_db}"
        ),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW_CONN_TOTESYS": _pg_uri(source_db),
        "AIRFLOW_CONN_WAREHOUSE": _pg_uri(warehouse_db),
        "AIRFLOW_CONN_ETL_CONTROL": _pg_uri(warehouse_db),
        "AIRFLOW_VAR_INGESTION_BUCKET": f"etl-ingestion-bf-{suffix}",
        "AIRFLOW_VAR_PROCESSED_BUCKET": f"etl-processed-bf-{suffix}",
    }
    patch = pytest.MonkeyPatch()
    for key, value in overrides.items():
        patch.setenv(key, value)
    patch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)

    from include.etlkit.control.cli import dag_tasks
    from include.etlkit.control.store import ControlStore
    from infra.local.bootstrap import ensure_buckets, ensure_postgres_database, ensure_warehouse_schemas
    from infra.local.seed_totesys import seed

    with psycopg.connect(_dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{metadata_db}"')
    ensure_postgres_database("warehouse")
    ensure_warehouse_schemas("warehouse")
    seed("2024-11-15", _dsn(source_db))
    ensure_buckets()
    store = ControlStore()
    store.ensure_tables()
    store.register(dag_tasks(str(ROOT / "dags")))

    # standalone starts its components as `airflow ...`: the virtualenv's must come first on PATH.
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))
    server = Standalone(home, env, metadata_db)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        patch.undo()
        with psycopg.connect(_dsn("postgres"), autocommit=True) as admin:
            for database in (source_db, warehouse_db, metadata_db):
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_assets_chain_the_dags_and_a_backfill_leaves_the_warehouse_exactly_as_before(standalone):
    standalone.airflow("dags", "trigger", "totesys_ingest", "--logical-date", "2024-11-15T15:00:00+00:00")
    standalone.wait_for(
        "totesys_load to be triggered through the Assets",
        lambda: any(state == "success" for _, _, state in standalone.runs("totesys_load")),
    )
    standalone.wait_until_idle("the first runs to finish")
    for dag_id in DAG_IDS:
        states = [state for _, _, state in standalone.runs(dag_id)]
        assert "failed" not in states, f"{dag_id}: {states}\n{standalone.tail()}"
    assert [t for _, t, _ in standalone.runs("totesys_transform")] == ["asset_triggered"] * len(
        standalone.runs("totesys_transform")
    )
    fact_rows = warehouse_fingerprint()["fact_sales_order"][0]
    assert fact_rows == 11187
    before = snapshot()

    standalone.airflow(
        "backfill",
        "create",
        "--dag-id",
        "totesys_ingest",
        "--from-date",
        "2024-11-15T13:00:00+00:00",
        "--to-date",
        "2024-11-15T14:30:00+00:00",
        "--reprocess-behavior",
        "completed",
    )
    standalone.wait_for(
        "the backfill runs to be created",
        lambda: sum(t == "backfill" for _, t, _ in standalone.runs("totesys_ingest")) >= 4,
    )
    standalone.wait_until_idle("the backfill and the runs it triggers to finish")

    backfill = [(run_id, state) for run_id, t, state in standalone.runs("totesys_ingest") if t == "backfill"]
    assert [state for _, state in backfill] == ["success"] * 4, f"{backfill}\n{standalone.tail()}"
    from include.etlkit.control.store import ControlStore

    relanded = ControlStore()._run(
        "SELECT count(*) FROM etl.landed_object WHERE source = 'totesys' AND run_id LIKE 'backfill%%'",
        fetch=True,
    )[0][0]
    assert relanded > 0, "the backfill re-landed nothing: its windows hold rows of the snapshot"
    pending = ControlStore()._run(
        "SELECT (SELECT count(*) FROM etl.landed_object "
        "        WHERE source = 'totesys' AND transformed_at IS NULL), "
        "       (SELECT count(*) FROM etl.processed_object WHERE source = 'totesys' AND loaded_at IS NULL)",
        fetch=True,
    )[0]
    assert pending == (0, 0), "the Assets did not carry the re-landed windows through transform and load"

    assert_nothing_changed_since(before)

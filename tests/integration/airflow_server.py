"""A real Airflow for tests: ``airflow standalone`` in its own AIRFLOW_HOME, on a free port.

``airflow standalone`` runs the API server, scheduler, DAG processor and triggerer (LocalExecutor)
against a PostgreSQL metadata database of the test's own, so several components can write at once.
Used by the tests that need a real scheduler or a real UI (the backfill test, the browser test).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

import psycopg
import pytest

from infra.local import settings

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dsn(database: str) -> str:
    return f"host={settings.PG_HOST} port={settings.PG_PORT} user={settings.PG_USER} dbname={database}"


def pg_uri(database: str) -> str:
    return f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{database}"


def create_databases(*names: str) -> None:
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        for name in names:
            admin.execute(f'CREATE DATABASE "{name}"')


def drop_databases(*names: str) -> None:
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def standalone_settings(home: Path, metadata_db: str, port: int) -> dict[str, str]:
    """The Airflow settings of a standalone test server: its home, metadata DB, port, the project DAGs."""
    return {
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
    }


class Standalone:
    """``airflow standalone`` in the background, and what a test asks of it.

    ``dag_ids`` are the DAGs under test: start() waits until they are parsed and unpauses them
    (everything else stays paused, DAGS_ARE_PAUSED_AT_CREATION), and busy() watches their runs.
    """

    def __init__(self, home: Path, env: dict[str, str], metadata_db: str, dag_ids: Iterable[str]) -> None:
        self.home = home
        self.metadata_db = metadata_db
        self.env = env
        self.dag_ids = tuple(dag_ids)
        self.log = home / "standalone.log"
        self.port = int(env["AIRFLOW__API__PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
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

    def start(self, timeout: float = 240) -> None:
        """Migrate, start, wait for the API server and the DAGs (each up to ``timeout`` seconds)."""
        self.airflow("db", "migrate")
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "airflow", "standalone"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.wait_for("the API server to answer", self._healthy, timeout=timeout)
        self.wait_for("the DAGs to be parsed", lambda: self._parsed() >= len(self.dag_ids), timeout=timeout)
        for dag_id in self.dag_ids:
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
            with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(dsn(self.metadata_db)) as conn:
            return conn.execute(sql, params).fetchall()

    def _parsed(self) -> int:
        return self._query("SELECT count(*) FROM dag WHERE dag_id = ANY(%s)", (list(self.dag_ids),))[0][0]

    def runs(self, dag_id: str) -> list[tuple[str, str, str]]:
        return self._query(
            "SELECT run_id, run_type, state FROM dag_run WHERE dag_id = %s ORDER BY id", (dag_id,)
        )

    def busy(self) -> bool:
        busy = "SELECT 1 FROM dag_run WHERE dag_id = ANY(%s) AND state IN ('queued', 'running')"
        return bool(self._query(busy, (list(self.dag_ids),)))

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


def venv_env() -> dict[str, str]:
    """``os.environ`` with the virtualenv's bin first: standalone starts its components as ``airflow``."""
    venv_bin = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=os.pathsep.join([venv_bin, os.environ.get("PATH", "")]))

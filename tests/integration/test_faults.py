"""The fault suite: the real services broken mid-flight, then the retry; nothing lost, nothing doubled.

totesys runs end to end with ``dag.test()`` (the real task runner, audit gate and task-log listener)
as in ``test_totesys_end_to_end.py``, but each step meets a fault:

- the source connection is killed during the extract (``pg_terminate_backend`` on the extract's
  backend, held still by a lock the test takes on a source table so the kill is deterministic);
- the task process is SIGKILLed between the S3 write and the ledger commit, and between the
  warehouse commit and marking the object loaded (the try runs in a process of its own whose
  wrapper, here, kills itself at that point: production code has no hook for it);
- two ingest runs for overlapping intervals run at once (a backfill beside the scheduled run), and
  two whole load runs of the source at once;
- the warehouse connection is killed during a load (the load's backend, waiting on a lock the test
  holds on a core table after its landing copy, is terminated).

Each ends with the warehouse equal to a clean run's (the counts ``test_totesys_end_to_end`` holds,
every core table reconciled with the source), no object written twice (the buckets are versioned
here: every key has exactly one version) and, where Airflow retried, the task log showing the failed
try and the good one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.ledger import Ledger
from include.etlkit.control.store import ControlStore
from infra.local import settings
from infra.local.seed_totesys import seed
from tests.conftest import ROOT, load_dag, s3_client
from tests.integration.airflow_server import dsn
from tests.integration.test_totesys_end_to_end import (
    DAGS,
    FIRST_INTERVAL_END,
    SECOND_INTERVAL_END,
    SOURCE_DB,
    WAREHOUSE_DB,
    _scalar,
    assert_core_reconciles_with_source,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_IDS = ("totesys_ingest", "totesys_transform", "totesys_load", "totesys_reconcile")
CLEAN_FIRST = {"fact_sales_order": 11187, "fact_purchase_order": 4649, "fact_payment": 15836}
CLEAN_SECOND = {
    "fact_sales_order": 11187 + 1649 + 21,
    "fact_purchase_order": 4649 + 651 + 20,
    "fact_payment": 15836,
}

# A dag.test() in a process of its own. FAULT_KILL_AT names a Ledger method: the process SIGKILLs
# itself when the task calls it, i.e. after the work before it (the S3 write, the warehouse
# commit) and before the ledger says so. The hook lives here, in the test, not in production code.
RUN = """
import os, signal, sys
from datetime import datetime
import tests.conftest  # the suite's environment: Airflow home, connections, plugins
from tests.conftest import load_dag
from include.etlkit.control.ledger import Ledger

kill_at = os.environ.get("FAULT_KILL_AT")
if kill_at:
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    setattr(Ledger, kill_at, killed)
dag_id, logical = sys.argv[1], sys.argv[2]
dag = load_dag(dag_id, tests.conftest.ROOT / "dags")
result = dag.test(logical_date=datetime.fromisoformat(logical)) if logical else dag.test()
sys.exit(0 if result.state == "success" else 1)
"""


class S3Endpoint:
    """The S3 server as the pipeline sees it: a TCP proxy in front of moto that can be stopped
    (listener and open connections closed: connection refused, as when the server is down) and
    started again on the same port. Stopping moto itself would lose its objects (it keeps them
    in memory)."""

    def __init__(self, target_port: int) -> None:
        self.target = (settings.LOOPBACK, target_port)
        with socket.socket() as probe:
            probe.bind((settings.LOOPBACK, 0))
            self.port = probe.getsockname()[1]
        self.listener: socket.socket | None = None
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{settings.LOOPBACK}:{self.port}"

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.LOOPBACK, self.port))
        listener.listen(64)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way: close() would not
            listener.close()
        with self.lock:
            for sock in self.open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self.open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(1 << 16):
                sink.sendall(data)
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def start(dag_id: str, logical_date=None, *, kill_at: str | None = None) -> subprocess.Popen:
    env = os.environ.copy()
    env.pop("FAULT_KILL_AT", None)
    if kill_at:
        env["FAULT_KILL_AT"] = kill_at
    logical = logical_date.isoformat() if logical_date else ""
    return subprocess.Popen([sys.executable, "-c", RUN, dag_id, logical], cwd=ROOT, env=env)


def finish(*processes: subprocess.Popen, timeout: float = 240) -> list[int]:
    try:
        return [process.wait(timeout=timeout) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()


@pytest.fixture(scope="module")
def faults(airflow_db, local_services, control_plane):
    """A fresh source and warehouse, versioned buckets of our own, every totesys task enabled and
    allowed one immediate retry (the fault's try fails, the retry must put everything right)."""
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SOURCE_DB}" WITH (FORCE)')
    seed("2024-11-15", dsn(SOURCE_DB))
    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS core, landing, mart CASCADE")
        conn.execute("CREATE SCHEMA core; CREATE SCHEMA landing; CREATE SCHEMA mart")
    Ledger(control_plane).forget("totesys")

    suffix = uuid.uuid4().hex[:8]
    patch = pytest.MonkeyPatch()
    endpoint = S3Endpoint(settings.S3_PORT)
    endpoint.start()
    aws = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    aws["extra"] = {**aws["extra"], "endpoint_url": endpoint.url}
    patch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
    patch.setenv("AWS_MAX_ATTEMPTS", "2")  # an outage fails the try in seconds, not minutes
    patch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", f"etl-ingestion-fl-{suffix}")
    patch.setenv("AIRFLOW_VAR_PROCESSED_BUCKET", f"etl-processed-fl-{suffix}")
    from infra.local.bootstrap import ensure_buckets

    for name in ensure_buckets():
        s3_client().put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    store = ControlStore()
    store.register(dag_tasks(str(DAGS)))
    for dag_id in DAG_IDS:
        store.set_enabled(dag_id, None, True)
    dags = {dag_id: load_dag(dag_id, DAGS) for dag_id in DAG_IDS}
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = 1
            task.retry_delay = timedelta(0)
    yield dags, endpoint
    patch.undo()
    endpoint.stop()


def run(dag, logical_date=None):
    result = dag.test(logical_date=logical_date) if logical_date else dag.test()
    failed = [ti.task_id for ti in result.get_task_instances() if ti.state != "success"]
    assert result.state == "success", f"{dag.dag_id} failed: {failed}"
    return result


@contextmanager
def kill_the_waiter(database: str, table: str, on_wait=None) -> Iterator[list[str]]:
    """Lock ``table`` in ``database``; the first backend that waits on it is terminated
    (``pg_terminate_backend``), then the lock is released so the retry can pass. ``on_wait``, when
    given, is called instead of the kill (the backend then goes on once the lock is released).

    The lock holds the victim still mid-task, so the fault lands at the same point every time.
    Yields the queries caught (one, once the block has run).
    """
    killed: list[str] = []
    holder = psycopg.connect(dsn(database))
    holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
    # The waiter to catch: one whose query names the table (two watchers may watch one database),
    # or, for a schema-qualified table, any (a load's statements may name it through a view or key).
    quoted = ".".join(f'"{part}"' for part in table.split("."))
    patterns = ["%"] if "." in table else [f"%{quoted}%", f"% {table} %"]
    done = threading.Event()

    def watch() -> None:
        with psycopg.connect(dsn(database), autocommit=True) as watcher:
            deadline = time.monotonic() + 300
            while not done.is_set() and time.monotonic() < deadline:
                rows = watcher.execute(
                    "SELECT pid, query FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock' "
                    "AND pid NOT IN (pg_backend_pid(), %s) AND query LIKE ANY(%s)",
                    (database, holder.info.backend_pid, patterns),
                ).fetchall()
                if rows:
                    pid, query = rows[0]
                    if on_wait is None:
                        watcher.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    else:
                        on_wait()
                    killed.append(query)
                    holder.rollback()  # the lock goes: the victim (or its retry) goes on
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        done.set()
        thread.join(timeout=10)
        holder.close()


def tries(dag_id: str, run_id: str) -> dict[str, list[tuple[int, str]]]:
    """The task log's tries of a run: {task_id: [(try_number, status), ...]}."""
    found: dict[str, list[tuple[int, str]]] = {}
    for task_id, try_number, status in ControlStore().query(
        "SELECT task_id, try_number, status FROM etl.task_log WHERE dag_id = %s AND run_id = %s "
        "ORDER BY task_id, map_index, try_number",
        (dag_id, run_id),
    ):
        found.setdefault(task_id, []).append((try_number, status))
    return found


def assert_retried(dag_id: str, run_id: str, task_id: str) -> None:
    """The task failed its first try and succeeded at its second, as the task log says."""
    logged = tries(dag_id, run_id).get(task_id, [])
    assert logged[:1] in ([(1, "failed")], [(1, "up_for_retry")]) and (2, "success") in logged, (
        f"{dag_id}.{task_id} {run_id}: no failed try followed by a good one in etl.task_log: {logged}"
    )


class S3Outage:
    """Stop the S3 endpoint when the task is under way; start it again once its try has failed."""

    def __init__(self, endpoint: S3Endpoint, dag_id: str, task_id: str) -> None:
        self.endpoint, self.dag_id, self.task_id = endpoint, dag_id, task_id
        self.failed_try = False
        self.thread: threading.Thread | None = None

    def begin(self) -> None:
        self.since = datetime.now(UTC)
        self.endpoint.stop()
        self.thread = threading.Thread(target=self._restart_after_failure, daemon=True)
        self.thread.start()

    def _restart_after_failure(self) -> None:
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                rows = ControlStore().query(
                    "SELECT 1 FROM etl.task_log WHERE dag_id = %s AND task_id = %s AND try_number = 1 "
                    "AND status IN ('failed', 'up_for_retry') AND ended_at >= %s",
                    (self.dag_id, self.task_id, self.since),
                )
                if rows:
                    self.failed_try = True
                    return
                time.sleep(0.2)
        finally:
            self.endpoint.start()

    def end(self) -> None:
        if self.thread is not None:
            self.thread.join(timeout=130)


def assert_each_object_written_once() -> None:
    """Versioned buckets: a second write of a key would show as a second version."""
    s3 = s3_client()
    for variable in ("AIRFLOW_VAR_INGESTION_BUCKET", "AIRFLOW_VAR_PROCESSED_BUCKET"):
        versions: dict[str, int] = {}
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=os.environ[variable]):
            for item in page.get("Versions", []):
                versions[item["Key"]] = versions.get(item["Key"], 0) + 1
            assert not page.get("DeleteMarkers"), "an object was deleted"
        twice = sorted(key for key, n in versions.items() if n > 1)
        assert versions and not twice, f"objects written more than once: {twice[:3]}"


def assert_clean(counts: dict[str, int]) -> None:
    """The warehouse a clean run leaves: its counts, every table reconciled, no version twice."""
    got = {table: _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM core.{table}") for table in counts}
    assert got == counts
    assert_core_reconciles_with_source()
    assert_each_object_written_once()


def test_first_load_survives_a_killed_source_connection_and_two_loads_at_once(faults):
    dags, s3 = faults
    # The extract's source connection is killed while it waits to read sales_order, and the S3
    # server stops while the payment extract is under way (it is back for the retry).
    dags["totesys_ingest"].get_task("land_payment").retry_delay = timedelta(seconds=15)
    outage = S3Outage(s3, "totesys_ingest", "land_payment")
    with (
        kill_the_waiter(SOURCE_DB, "sales_order") as killed,
        kill_the_waiter(SOURCE_DB, "payment", on_wait=outage.begin) as stopped_during,
    ):
        ingest = run(dags["totesys_ingest"], FIRST_INTERVAL_END)
    outage.end()
    assert len(killed) == 1, "the extract never reached the locked table"
    assert len(stopped_during) == 1, "the S3 outage never happened"
    assert outage.failed_try, "the try the S3 outage met did not fail"
    assert_retried("totesys_ingest", ingest.run_id, "land_sales_order")
    assert_retried("totesys_ingest", ingest.run_id, "land_payment")

    run(dags["totesys_transform"])

    # Two whole load runs of the source at once: they take turns and load each object once.
    assert finish(start("totesys_load"), start("totesys_load")) == [0, 0]
    assert_clean(CLEAN_FIRST)
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_design") == 473


def test_next_snapshot_survives_kills_overlapping_runs_and_a_killed_warehouse_connection(faults):
    seed("2025-02-25", dsn(SOURCE_DB))
    landed_before = Ledger().landed_count("totesys")

    # SIGKILL after the first landed object is written to S3, before the ledger records it.
    assert finish(start("totesys_ingest", SECOND_INTERVAL_END, kill_at="record_landing")) == [-9]
    assert Ledger().landed_count("totesys") == landed_before, "the killed try recorded a landing"

    # A backfill beside the scheduled run: two ingest runs for overlapping intervals at once.
    overlapping = SECOND_INTERVAL_END - timedelta(minutes=30)
    scheduled, backfill = start("totesys_ingest", SECOND_INTERVAL_END), start("totesys_ingest", overlapping)
    assert finish(scheduled, backfill) == [0, 0]
    dags, _ = faults
    run(dags["totesys_reconcile"], SECOND_INTERVAL_END)
    run(dags["totesys_transform"])

    # SIGKILL after the warehouse committed an object, before the ledger marks it loaded.
    assert finish(start("totesys_load", kill_at="mark_loaded")) == [-9]

    # The load's warehouse connection is killed while it waits to merge into a core table.
    with kill_the_waiter(WAREHOUSE_DB, "core.fact_sales_order") as killed:
        load = run(dags["totesys_load"])
    assert len(killed) == 1, "the load never reached the locked table"
    assert_retried("totesys_load", load.run_id, "load_processed")

    assert_clean(CLEAN_SECOND)
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_design") == 535
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_transaction") == 18136

"""A task try killed with SIGKILL never reports its end; its task-log row is closed by the next try.

The try runs for real in a process of its own (``dag.test()`` with the project's listener and audit
gate); the test kills that process with SIGKILL once its row says ``running``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from include.etlkit.control.store import KILLED_TRY, TaskTry
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

DAG_ID, TASK_ID = "kill_probe", "sleeps"

RUN = """
import tests.conftest  # the suite's environment: Airflow home, connections, plugins
from tests.conftest import FIXTURE_DAGS, load_dag
load_dag("kill_probe", FIXTURE_DAGS).test()
"""


def _started_since(store, since: datetime) -> list[str]:
    rows = store.query(
        "SELECT run_id FROM etl.task_log WHERE dag_id = %s AND task_id = %s AND started_at >= %s",
        (DAG_ID, TASK_ID, since),
    )
    return [run_id for (run_id,) in rows]


def _rows(store, run_id: str) -> list[tuple]:
    return store.query(
        "SELECT try_number, status, error, ended_at IS NOT NULL FROM etl.task_log "
        "WHERE dag_id = %s AND task_id = %s AND run_id = %s ORDER BY try_number",
        (DAG_ID, TASK_ID, run_id),
    )


def test_a_killed_try_is_closed_as_failed_when_the_next_try_starts(airflow_db, control_plane):
    control_plane.register([(DAG_ID, TASK_ID)])
    since = datetime.now(UTC)
    process = subprocess.Popen([sys.executable, "-c", RUN], cwd=ROOT, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 90
        while not (started := _started_since(control_plane, since)):
            assert process.poll() is None, "the task process ended before its try started"
            assert time.monotonic() < deadline, "the try never started"
            time.sleep(0.5)
        (run_id,) = started
        assert _rows(control_plane, run_id) == [(1, "running", None, False)]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()

    # The killed try said nothing: its row is still running.
    assert _rows(control_plane, run_id) == [(1, "running", None, False)]

    # The retry starts (the listener's start hook, as the worker calls it for try 2).
    control_plane.log_started(
        TaskTry(DAG_ID, TASK_ID, run_id, -1, 2),
        started_at=datetime.now(UTC),
        operator="_PythonDecoratedOperator",
        hostname="retry-host",
        logical_date=None,
        data_interval=(None, None),
    )
    assert _rows(control_plane, run_id) == [(1, "failed", KILLED_TRY, True), (2, "running", None, False)]
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id))

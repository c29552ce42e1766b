"""Secrets in what a real deployment writes: the worker's log files and the task log the API serves.

``airflow standalone`` (API server, scheduler, DAG processor, triggerer, LocalExecutor workers) runs
``secrets_worker_probe`` (tests/dags/fixtures), whose two tasks fail quoting secrets: an API
extract whose connection carries a bearer token in its password and whose API key travels in a
query string (from a Variable with an ordinary name, so Airflow's masker would not know it), against
a port with nothing listening so the HTTP client's error quotes the URL; and a task whose exception
holds the connection's password. Every file under the Airflow home's ``logs`` folder and each
task's log as ``GET /api/v2/.../logs/1`` serves it are then searched for the secrets: none may
appear, while the failures themselves must be there. The components' console output is searched
too, and its one known leak (Airflow's unmasked console copy of task logs) reported as ``xfail``.
"""

from __future__ import annotations

import json
import secrets
import shutil
import time
import urllib.request
import uuid
from typing import Any

import pytest

from tests.conftest import FIXTURE_DAGS
from tests.integration.airflow_server import (
    Standalone,
    create_databases,
    drop_databases,
    free_port,
    standalone_settings,
    venv_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_ID = "secrets_worker_probe"
TASKS = ("land_rates_unreachable", "quotes_a_password")
USERNAME = "secrets_tester"
CONN_PASSWORD = "conn-FAKE-3e9d51b7a2"
API_KEY = "apikey-FAKE-c07f2e64d1"
SECRETS = (CONN_PASSWORD, API_KEY)
STARTUP_TIMEOUT = 480  # two shared cores: the API server and the DAG processor start slowly


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, airflow_db, control_plane):
    """A standalone Airflow whose DAGs folder holds only the probe, with the secrets it quotes."""
    suffix = uuid.uuid4().hex[:8]
    metadata_db = f"airflow_sec_{suffix}"
    home = tmp_path_factory.mktemp("airflow-secrets")
    dags = home / "dags"
    dags.mkdir()
    shutil.copy(FIXTURE_DAGS / f"{DAG_ID}.py", dags / f"{DAG_ID}.py")
    password = secrets.token_urlsafe(16)
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({USERNAME: password}))
    overrides = {
        **standalone_settings(home, metadata_db, free_port()),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        # Ports of its own: other suites on this machine run their own log servers.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW_CONN_SECRETS_WORKER_API": json.dumps(
            {
                "conn_type": "http",
                "host": "127.0.0.1",
                "port": free_port(),  # nothing listens there: the request is refused
                "schema": "http",
                "password": CONN_PASSWORD,
                "extra": {"auth_type": "bearer"},
            }
        ),
        "AIRFLOW_VAR_RATES_CLIENT_REF": API_KEY,
        # No alert mail server: the failure callback logs that it could not deliver, nothing more.
        "AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN": "",
    }
    patch = pytest.MonkeyPatch()
    for key, value in overrides.items():
        patch.setenv(key, value)
    patch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (DAG_ID,))
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (DAG_ID,))

    create_databases(metadata_db)
    server = Standalone(home, venv_env(), metadata_db, [DAG_ID])
    try:
        server.start(timeout=STARTUP_TIMEOUT)
        yield server, password
    finally:
        server.stop()
        patch.undo()
        drop_databases(metadata_db)
        control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (DAG_ID,))
        control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (DAG_ID,))


def found_in(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def around(text: str) -> list[str]:
    """Each secret found with the text before it, to say where it leaked."""
    return [text[max(0, i - 240) : i + 40] for secret in SECRETS if (i := text.find(secret)) >= 0]


def api(server: Standalone, path: str, token: str | None = None, body: dict | None = None) -> Any:
    request = urllib.request.Request(
        f"{server.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {token}"} if token else {}),
        },
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def served_log(server: Standalone, token: str, run_id: str, task_id: str) -> str:
    """The task's first try as the API server serves it (what the UI's log view shows)."""
    from urllib.parse import quote

    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/1"
    return json.dumps(api(server, f"{path}?full_content=true", token))


@pytest.fixture(scope="module")
def failed_run(standalone) -> str:
    """The probe's run, triggered once and ended ``failed`` with both tasks failed: its run id."""
    server, _ = standalone
    server.airflow("dags", "trigger", DAG_ID)
    server.wait_for("the probe's run to end", lambda: [s for _, _, s in server.runs(DAG_ID)] == ["failed"])
    ((run_id, _, _),) = server.runs(DAG_ID)
    states = dict(
        server._query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = %s AND run_id = %s", (DAG_ID, run_id)
        )
    )
    assert states == dict.fromkeys(TASKS, "failed"), f"{states}\n{server.tail()}"
    return run_id


def test_no_secret_appears_in_the_worker_log_files_nor_in_the_served_task_logs(standalone, failed_run):
    server, password = standalone
    # The worker's log files (one per try, under logs/dag_id=.../run_id=.../task_id=...), and every
    # other file the components wrote under the logs folder (DAG processor).
    logs = server.home / "logs"
    task_logs = {
        task_id: "\n".join(p.read_text(errors="replace") for p in logs.rglob(f"task_id={task_id}/**/*.log"))
        for task_id in TASKS
    }
    # The failures are there, for the reasons that would have quoted the secrets.
    assert "failed after 2 attempt(s)" in task_logs["land_rates_unreachable"], task_logs
    assert "login refused with password" in task_logs["quotes_a_password"], task_logs
    leaks = {
        str(path.relative_to(server.home)): around(text)
        for path in logs.rglob("*")
        if path.is_file() and found_in(text := path.read_text(errors="replace"))
    }
    assert leaks == {}

    # The task logs as the API server serves them.
    token = api(server, "/auth/token", body={"username": USERNAME, "password": password})["access_token"]
    for task_id in TASKS:
        deadline = time.monotonic() + 60
        while "login refused" not in (text := served_log(server, token, failed_run, task_id)) and (
            "failed after" not in text
        ):
            assert time.monotonic() < deadline, f"{task_id}: the served log never showed the failure: {text}"
            time.sleep(3)
        assert around(text) == [], task_id


def test_the_executors_console_copy_of_the_task_logs(standalone, failed_run):
    """Known leak outside the log files (Airflow's, not the project's): the LocalExecutor (and a
    containerised executor's execute_workload; not the CeleryExecutor MWAA runs) also copies every
    task log line to its own console (``subprocess_logs_to_stdout``), and that copy is not masked at
    all: an exception's text and even a value registered with the masker show there in clear. See
    docs/reliability.md. Reported as an expected failure while it leaks."""
    server, _ = standalone
    console = server.log.read_text(errors="replace")
    assert "login refused with password" in console  # the copy is there
    if leaks := around(console):
        pytest.xfail(f"the executor's console copy of the task logs is unmasked: {leaks[0][-160:]!r}")

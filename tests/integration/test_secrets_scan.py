"""The secrets scan: run pipelines with recognisable fake secrets in their connections, make tasks
fail with errors that would quote them, then search everything the runs wrote for them.

Secrets: a password on the totesys source and warehouse connections (PostgreSQL trusts local
logins, so the pipelines still run), the S3 secret key (moto accepts any), a password a failing
task quotes in its exception (``alert_probe``) and an API key sent in a query string to an endpoint
that answers an error (``secrets_probe``). Scanned: Airflow's task log files under the suite's
AIRFLOW_HOME, every text column of ``etl.task_log``, the alert e-mails a real SMTP server received,
every object in the ingestion and processed buckets, and the control UI's JSON.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from include.etlkit.control.store import ControlStore
from tests.conftest import FIXTURE_DAGS, load_dag, s3_client
from tests.integration import test_alerts, test_control_ui, test_faults
from tests.integration.test_faults import run
from tests.integration.test_totesys_end_to_end import FIRST_INTERVAL_END

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Reused fixtures: a fresh totesys source, warehouse and buckets; a real SMTP server; the API app.
faults = test_faults.faults
smtp_server = test_alerts.smtp_server
airflow_api = test_control_ui.airflow_api

DB_PASSWORD = "pw-FAKE-7f3a1c9e0b"
AWS_SECRET = "aws-FAKE-5d2b8e61c4"
PROBE_PASSWORD = "probe-FAKE-91c4d7a2"
API_KEY = "key-FAKE-44e0aa17f3"
SECRETS = (DB_PASSWORD, AWS_SECRET, PROBE_PASSWORD, API_KEY)


@pytest.fixture
def secret_connections(monkeypatch) -> None:
    """Every connection the runs use carries a secret of the test's own."""
    for conn_id in ("TOTESYS", "WAREHOUSE", "ETL_CONTROL"):
        uri = os.environ[f"AIRFLOW_CONN_{conn_id}"]
        assert "postgres@" in uri, uri
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id}", uri.replace("postgres@", f"postgres:{DB_PASSWORD}@", 1))
    aws = json.loads(os.environ["AIRFLOW_CONN_AWS_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({**aws, "password": AWS_SECRET}))
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_PROBE_SECRET",
        json.dumps({"conn_type": "generic", "login": "probe", "password": PROBE_PASSWORD}),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_SECRETS_PROBE_KEY",
        json.dumps({"conn_type": "generic", "login": "probe", "password": API_KEY}),
    )
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_EMAILS", "oncall@example.com")
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN", "")


def found_in(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def leaks_in_log_files() -> dict[str, list[str]]:
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    leaks = {}
    for path in logs.rglob("*"):
        if path.is_file() and (hits := found_in(path.read_text(errors="replace"))):
            leaks[str(path)] = hits
    return leaks


def leaks_in_task_log(dag_ids: tuple[str, ...]) -> list[tuple]:
    rows = ControlStore().query(
        "SELECT dag_id, task_id, try_number, t::text FROM etl.task_log AS t WHERE dag_id = ANY(%s)",
        (list(dag_ids),),
    )
    assert rows, "the runs wrote no task-log rows"
    return [(dag, task, n, found_in(text)) for dag, task, n, text in rows if found_in(text)]


def leaks_in_objects() -> dict[str, list[str]]:
    s3 = s3_client()
    leaks = {}
    for variable in ("AIRFLOW_VAR_INGESTION_BUCKET", "AIRFLOW_VAR_PROCESSED_BUCKET"):
        bucket = os.environ[variable]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                if hits := found_in(body.decode("latin-1")):
                    leaks[item["Key"]] = hits
    return leaks


def test_no_secret_appears_in_anything_the_runs_write(
    faults, secret_connections, smtp_server, airflow_api, control_plane, capfd, caplog
):
    # The totesys pipeline, every connection with a password.
    dags, _ = faults
    run(dags["totesys_ingest"], FIRST_INTERVAL_END)
    run(dags["totesys_transform"])
    run(dags["totesys_load"])

    # Two tasks that fail quoting a secret: an exception with a password, a URL with an API key.
    for dag_id in ("alert_probe", "secrets_probe"):
        dag = load_dag(dag_id, FIXTURE_DAGS)
        for task in dag.tasks:
            task.retries = 0
        control_plane.register([(dag_id, task_id) for task_id in dag.task_ids])
        dag.test()
    errors = dict(
        control_plane.query(
            "SELECT task_id, error FROM etl.task_log WHERE dag_id IN ('alert_probe', 'secrets_probe') "
            "AND status = 'failed'"
        )
    )
    # The failures happened, and for the reasons that would have quoted the secrets.
    assert "login refused with password" in errors["quotes_a_password"]
    assert "no-such-listing" in errors["land_rates_with_a_key"]

    _, inbox = smtp_server
    assert inbox.received, "no alert was e-mailed"
    mails = "\n".join(message.as_string() for _, _, message in inbox.received)
    assert found_in(mails) == []

    assert (
        leaks_in_task_log(
            ("totesys_ingest", "totesys_transform", "totesys_load", *("alert_probe", "secrets_probe"))
        )
        == []
    )
    # dag.test() runs the tasks in this process and writes their logs to its output, not to files:
    # the output is scanned below (the files too, for a run that writes them).
    output = "\n".join([*capfd.readouterr(), caplog.text])
    assert "land_rates_with_a_key" in output and "login refused with password" in output
    assert leaks_in_log_files() == {}
    assert leaks_in_objects() == {}

    client, token = airflow_api
    client.cookies.set("_token", token("admin", "admin"))
    for endpoint in ("/api/task-log?limit=500", "/api/audit"):
        response = client.get(f"/etl-control{endpoint}")
        assert response.status_code == 200, response.text
        assert found_in(response.text) == [], endpoint
    for dag_id in ("alert_probe", "secrets_probe"):
        control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (dag_id,))
        control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (dag_id,))

    # Not checked here: the traceback dag.test() prints to its console (``output`` above), which
    # Airflow renders from the exception itself, after its masker ran on the event. dag.test() runs
    # tasks in this process: that console is not a log a deployment writes. What a deployment's
    # workers write (their log files, the task logs the API serves) is scanned by
    # tests/integration/test_secrets_worker_logs.py under a real scheduler: see docs/reliability.md.

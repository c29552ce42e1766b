"""The control-plane page, mounted by the ``etl_control`` plugin in Airflow's own API app.

The app is Airflow's (``create_app``) with the project's plugins folder, so the mount, the auth
manager and the JWT cookie are the real ones; the control tables are the real PostgreSQL ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.integration

PAGE = "/etl-control/"
HTML = {"accept": "text/html"}


@pytest.fixture(scope="module")
def airflow_api(airflow_db):
    """Airflow's API app as the API server builds it (plugins included), and a token minter."""
    from airflow.api_fastapi.app import create_app, get_auth_manager, purge_cached_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    app = create_app(apps="core")

    def token(username: str, role: str) -> str:
        return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=username, role=role))

    yield TestClient(app), token
    purge_cached_app()


@pytest.fixture
def dag_id(control_plane) -> Iterator[str]:
    """A DAG of the test's own in etl.audit (three tasks) and etl.task_log (two tries)."""
    from include.etlkit.control.store import TaskTry

    dag = f"ui_test_{uuid.uuid4().hex[:10]}"
    control_plane.register([(dag, "extract"), (dag, "transform"), (dag, "load")])
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    for task, status, error in (("extract", "success", None), ("transform", "failed", "boom\nTraceback")):
        key = TaskTry(dag, task, "manual__2026-01-02", -1, 1)
        control_plane.log_started(
            key,
            started_at=started,
            operator="PythonOperator",
            hostname="test",
            logical_date=started,
            data_interval=(started, started),
        )
        control_plane.log_finished(
            key,
            status=status,
            started_at=started,
            ended_at=started + timedelta(seconds=7),
            rows_in=120,
            rows_out=118,
            rows_rejected=2,
            error=error,
        )
    yield dag
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (dag,))
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (dag,))


def audit_row(store, dag: str, task: str) -> tuple:
    rows = store.query(
        "SELECT enabled, reason, updated_by FROM etl.audit WHERE dag_id = %s AND task_id = %s",
        (dag, task),
    )
    return rows[0]


def login(client, token, username: str = "alice", role: str = "user") -> None:
    client.cookies.set("_token", token(username, role))


@pytest.fixture
def client(airflow_api):
    client, _ = airflow_api
    client.cookies.clear()
    yield client
    client.cookies.clear()


def test_the_plugin_lists_the_page_in_the_ui_navigation(client, airflow_api):
    login(client, airflow_api[1], role="admin")
    plugins = client.get("/api/v2/plugins").json()["plugins"]
    plugin = next(p for p in plugins if p["name"] == "etl_control")
    assert plugin["fastapi_apps"][0]["url_prefix"] == "/etl-control"
    views = [(v["href"], v["url_route"], v["destination"]) for v in plugin["external_views"]]
    assert views == [
        ("etl-control/", "etl-control", "nav"),
        ("etl-control/dashboard", "etl-dashboard", "nav"),
    ]


def test_an_anonymous_browser_is_sent_to_the_login_page_and_an_anonymous_api_call_is_refused(client):
    response = client.get(PAGE, headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?next=")
    assert client.get("/etl-control/api/audit").status_code == 401


def test_the_dashboard_needs_a_login_and_shows_health_and_charts_each_failing_alone(
    client, airflow_api, dag_id, control_plane, monkeypatch
):
    from tests.integration.airflow_server import pg_uri
    from tests.integration.warehouse_seed import load_retail_sample, scratch_database

    dashboard = "/etl-control/dashboard"
    response = client.get(dashboard, headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/auth/login?next=")

    with scratch_database("warehouse_ui") as (name, conn):
        load_retail_sample(conn)  # retail marts only: the four totesys charts have no mart
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE core.dim_sales_person SET first_name = '<script>alert(1)</script>'")
        monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_UI_TEST", pg_uri(name))
        monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", "warehouse_ui_test")
        # The page lists the newest failures of the whole control plane: make this DAG's the newest,
        # whatever other tests logged since the fixture did (its try is dated 2026-01-02).
        control_plane.query(
            "UPDATE etl.task_log SET ended_at = now() WHERE dag_id = %s AND status = 'failed'", (dag_id,)
        )
        login(client, airflow_api[1], role="viewer")
        html = client.get(dashboard).text

    assert "connection <code>warehouse_ui_test</code>" in html
    assert html.count('data-state="error"') == 4 and html.count("This chart could not be drawn") == 4
    assert 'data-chart="sales_team_incentives"\n  data-state="data"' in html
    assert html.count('class="point"') == 3  # the incentives' three sellers
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Health: the DAG's run task by task, and its failed try with the error's first line only.
    assert f'<table class="runs" data-dag-id="{dag_id}">' in html
    failure = html[html.index(f'<tr data-dag-id="{dag_id}" data-task-id="transform">') :]
    assert '<td class="error-text">boom</td>' in failure[: failure.index("</tr>")]
    assert 'id="freshness"' in html and 'data-feed="totesys.sales_order"' in html
    assert 'href="/etl-control/" id="control-plane-link"' in html
    assert 'href="/etl-control/dashboard" id="dashboard-link"' in client.get(PAGE).text


def test_the_page_lists_every_audit_row_and_the_dags_recent_tries(client, airflow_api, dag_id):
    login(client, airflow_api[1], role="viewer")
    html = client.get(PAGE, params={"dag": dag_id}).text
    for task in ("extract", "transform", "load"):
        assert f'data-dag-id="{dag_id}" data-task-id="{task}"' in html
    assert html.count(">Disable</button>") == 3
    assert html.count(f'data-dag-id="{dag_id}" data-run-id="manual__2026-01-02"') == 2
    assert 'data-status="failed"' in html and 'title="boom\nTraceback"' in html
    assert "2026-01-02 03:04:05 UTC" in html

    everything = client.get(PAGE).text
    assert f'<option value="{dag_id}">' in everything  # the DAG filter offers it

    log = client.get("/etl-control/api/task-log", params={"dag": dag_id, "limit": 1}).json()
    assert len(log) == 1 and log[0]["dag_id"] == dag_id and log[0]["duration_seconds"] == 7.0
    audit = client.get("/etl-control/api/audit", params={"dag": dag_id}).json()
    assert [(r["task_id"], r["enabled"]) for r in audit] == [
        ("extract", True),
        ("load", True),
        ("transform", True),
    ]


def test_disabling_with_a_reason_then_enabling_records_the_airflow_user(
    client, airflow_api, dag_id, control_plane
):
    login(client, airflow_api[1], username="alice", role="user")
    response = client.post(
        f"/etl-control/audit/{dag_id}/load/disable",
        data={"reason": "  warehouse maintenance  ", "dag": dag_id},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith(f"{PAGE}?switched_dag={dag_id}&switched_task=load")
    assert audit_row(control_plane, dag_id, "load") == (False, "warehouse maintenance", "alice")
    assert audit_row(control_plane, dag_id, "extract")[0] is True  # only the one task

    page = client.get(response.headers["location"]).text
    assert f"{dag_id}.load is now\n<strong>disabled</strong> (by alice" in page
    assert page.count(">Enable</button>") == 1

    login(client, airflow_api[1], username="bob", role="user")
    response = client.post(f"/etl-control/audit/{dag_id}/load/enable", follow_redirects=False)
    assert response.status_code == 303
    assert audit_row(control_plane, dag_id, "load") == (True, None, "bob")
    decision = control_plane.decide(dag_id, "load")
    assert decision.allowed


def test_a_reason_cannot_inject_html(client, airflow_api, dag_id, control_plane):
    login(client, airflow_api[1])
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    client.post(f"/etl-control/audit/{dag_id}/extract/disable", data={"reason": evil})
    assert audit_row(control_plane, dag_id, "extract")[1] == evil
    html = client.get(PAGE, params={"dag": dag_id}).text
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html


def test_an_unauthenticated_or_read_only_or_cross_origin_switch_is_refused(
    client, airflow_api, dag_id, control_plane
):
    url = f"/etl-control/audit/{dag_id}/load/disable"
    before = audit_row(control_plane, dag_id, "load")
    assert before[:2] == (True, None)
    assert client.post(url, data={"reason": "anonymous"}).status_code == 401

    login(client, airflow_api[1], role="viewer")
    assert client.post(url, data={"reason": "viewer"}).status_code == 403

    login(client, airflow_api[1], role="user")
    forged = client.post(url, data={"reason": "forged"}, headers={"origin": "http://evil.example"})
    assert forged.status_code == 403

    assert audit_row(control_plane, dag_id, "load") == before


def test_switching_an_unregistered_task_or_an_unknown_action_is_not_found(client, airflow_api, dag_id):
    login(client, airflow_api[1])
    assert client.post(f"/etl-control/audit/{dag_id}/no_such_task/disable").status_code == 404
    assert client.post(f"/etl-control/audit/{dag_id}/load/delete").status_code == 404


@pytest.fixture
def deployed_probe(airflow_db, control_plane) -> Iterator[str]:
    """The control-plane probe DAG as Airflow's DAG processor records it in the metadata database."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    from tests.conftest import FIXTURE_DAGS

    DagBundlesManager().sync_bundles_to_db()
    bag = BundleDagBag(dag_folder=str(FIXTURE_DAGS), bundle_path=FIXTURE_DAGS, bundle_name="test-fixtures")
    sync_bag_to_db(bag, "test-fixtures", None)
    dag = "control_plane_probe"
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (dag,))
    yield dag
    control_plane.query("DELETE FROM etl.audit WHERE dag_id = %s", (dag,))


def test_the_page_lists_deployed_tasks_that_have_no_audit_row(
    client, airflow_api, deployed_probe, control_plane
):
    control_plane.register([(deployed_probe, "count_rows"), (deployed_probe, "sql_probe")])
    login(client, airflow_api[1], role="viewer")

    missing = client.get("/etl-control/api/unregistered", params={"dag": deployed_probe}).json()
    html = client.get(PAGE, params={"dag": deployed_probe}).text

    expected = ["always_fails", "disabled_step", "mapped_sql"]
    assert [(r["dag_id"], r["task_id"]) for r in missing] == [(deployed_probe, t) for t in expected]
    for task in expected:
        assert f'data-unregistered-dag-id="{deployed_probe}" data-task-id="{task}"' in html
    for task in ("count_rows", "sql_probe"):  # registered: listed with a switch, not as missing
        assert f'data-unregistered-dag-id="{deployed_probe}" data-task-id="{task}"' not in html
        assert f'data-dag-id="{deployed_probe}" data-task-id="{task}"' in html

    control_plane.register([(deployed_probe, t) for t in expected])
    assert client.get("/etl-control/api/unregistered", params={"dag": deployed_probe}).json() == []
    assert 'id="unregistered"' not in client.get(PAGE, params={"dag": deployed_probe}).text


# Run as an MWAA API server would: the plugins folder on the path, the framework only in the dags folder.
FROM_BUNDLE = r"""
import importlib.util, json, sys
from starlette.testclient import TestClient
import etl_control_plugin

before = importlib.util.find_spec("include") is not None
response = TestClient(etl_control_plugin.ControlPlaneApp()).get("/api/audit")
import include
print(json.dumps({"before": before, "status": response.status_code, "include": include.__file__}))
"""


def test_on_an_mwaa_api_server_the_page_finds_the_framework_in_the_dags_folder(tmp_path):
    """The API server parses no DAGs, so nothing else puts the dags folder (and ``include``) on its path."""
    from infra.mwaa.package import build

    bundle = build(tmp_path / "dist")
    with zipfile.ZipFile(bundle / "plugins.zip") as plugins:
        plugins.extractall(tmp_path / "plugins")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow-home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(bundle / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(tmp_path / "plugins"),
    }
    run = [sys.executable, "-c", FROM_BUNDLE]
    result = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["before"] is False  # not importable until the page needed it
    assert outcome["status"] == 401  # the app was built, and wants a login
    assert outcome["include"].startswith(str(bundle / "dags" / "include"))


def test_a_dags_page_shows_its_last_runs_feed_by_feed_and_enables_with_a_reason(
    client, airflow_api, dag_id, control_plane
):
    login(client, airflow_api[1], role="viewer")
    html = client.get(PAGE, params={"dag": dag_id}).text
    assert '<table id="runs">' in html
    assert 'data-run-id="manual__2026-01-02" data-task-id="transform" data-status="failed"' in html
    runs = client.get("/etl-control/api/runs", params={"dag": dag_id}).json()
    assert [(r["task_id"], r["status"], r["tries"], r["rows_in"], r["rows_rejected"]) for r in runs] == [
        ("extract", "success", 1, 120, 2),
        ("transform", "failed", 1, 120, 2),
    ]
    assert '<table id="runs">' not in client.get(PAGE).text  # only for one DAG

    login(client, airflow_api[1], username="carol", role="user")
    control_plane.set_enabled(dag_id, "load", False, reason="maintenance")
    client.post(f"/etl-control/audit/{dag_id}/load/enable", data={"reason": "maintenance over"})
    assert audit_row(control_plane, dag_id, "load") == (True, "maintenance over", "carol")

"""The Airflow UI in a real browser: log in, trigger a DAG, see it succeed, switch a task on the audit page;
open the Dashboard over seeded marts and see every chart drawn.

A real ``airflow standalone`` (its own AIRFLOW_HOME, metadata and control databases, a free port),
the simple auth manager with a user and password of the test's own, and Debian's Chromium driven by
Playwright (headless). Screenshots land in the test's ``tmp_path`` and in ``test-output/ui/``.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.integration.airflow_server import (
    ROOT,
    Standalone,
    create_databases,
    drop_databases,
    free_port,
    pg_uri,
    standalone_settings,
    venv_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: without these flags Chromium stalls on its background services.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DAG_ID = "etl_control_sync"
USERNAME = "ui_tester"
SCREENSHOTS = ROOT / "test-output" / "ui"
UI_TIMEOUT_MS = 30_000
RUN_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory, airflow_db, local_services):
    """A standalone Airflow whose only login is USERNAME, with its password.

    ``airflow_db`` first: Airflow must configure itself in this process with the suite's settings
    before the environment below points elsewhere, or it would keep this server's (dropped) database.
    """
    suffix = uuid.uuid4().hex[:8]
    metadata_db, control_db = f"airflow_ui_{suffix}", f"warehouse_ui_{suffix}"
    home = tmp_path_factory.mktemp("airflow-ui")
    password = secrets.token_urlsafe(16)
    passwords_file = home / "simple_auth_manager_passwords.json"
    passwords_file.write_text(json.dumps({USERNAME: password}))
    overrides = {
        **standalone_settings(home, metadata_db, free_port()),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW_CONN_ETL_CONTROL": pg_uri(control_db),
        # The warehouse shares the control database, as in the local setup; the Dashboard's test
        # seeds its marts.
        "AIRFLOW_CONN_WAREHOUSE": pg_uri(control_db),
        "AIRFLOW_VAR_WAREHOUSE_CONN_ID": "warehouse",
    }
    patch = pytest.MonkeyPatch()
    for key, value in overrides.items():
        patch.setenv(key, value)
    patch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)

    from include.etlkit.control.store import ControlStore

    create_databases(metadata_db, control_db)
    ControlStore().ensure_tables()  # empty: the DAG run under test registers the tasks

    server = Standalone(home, venv_env(), metadata_db, [DAG_ID])
    try:
        server.start()
        yield server, password, control_db
    finally:
        server.stop()
        patch.undo()
        drop_databases(metadata_db, control_db)


@pytest.fixture
def browser_page(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package (infra/local/install.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile",  # a fresh profile for every run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        try:
            yield context.new_page()
        finally:
            context.close()


def log_in(page, server: Standalone, password: str, shots: Path | None = None) -> None:
    """Sign in through the simple auth manager's form; the UI's home page is then open."""
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/")
    expect(page).to_have_url(f"{server.base_url}/auth/login?next=%2F")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", password)
    if shots:
        page.screenshot(path=shots / "01-login.png")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{server.base_url}/")


def keep_screenshots(shots: Path) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for shot in sorted(shots.glob("*.png")):
        shutil.copy2(shot, SCREENSHOTS / shot.name)


def show_dag(audit_page, dag_id: str) -> None:
    """Filter the audit page to one DAG, and wait for the filtered page (no other DAG's rows)."""
    from playwright.sync_api import expect

    audit_page.locator("#dag-filter").select_option(dag_id)
    audit_page.get_by_role("button", name="Show").click()
    other_dags = f':not([data-dag-id="{dag_id}"])'
    expect(audit_page.locator(f"#audit tbody tr{other_dags}")).to_have_count(0)
    expect(audit_page.locator(f"#task-log tbody tr[data-dag-id]{other_dags}")).to_have_count(0)


def test_log_in_trigger_a_dag_see_it_succeed_and_switch_a_task_on_the_audit_page(
    airflow_ui, browser_page, tmp_path
):
    from playwright.sync_api import expect

    server, password, _ = airflow_ui
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # Log in through the simple auth manager's form.
    log_in(page, server, password, shots)

    # The DAG list, the DAG, the trigger dialog.
    page.get_by_role("link", name="Dags").click()
    expect(page).to_have_url(f"{server.base_url}/dags")
    page.get_by_role("link", name=DAG_ID).first.click()
    expect(page).to_have_url(f"{server.base_url}/dags/{DAG_ID}")
    trigger = page.get_by_role("button", name="Trigger Dag")
    expect(trigger).to_have_count(1)  # the list's per-DAG buttons are gone: the DAG page is up
    trigger.click()
    page.get_by_role("dialog").get_by_role("button", name="Trigger").click()

    # The UI opens the new run; it refreshes itself until the run ends.
    page.wait_for_url(f"{server.base_url}/dags/{DAG_ID}/runs/manual__*")
    run_id = unquote(page.url.rsplit("/runs/", 1)[1])
    expect(page.get_by_text(run_id).first).to_be_visible()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=RUN_TIMEOUT_MS)
    server.wait_for("the run to succeed", lambda: (run_id, "manual", "success") in server.runs(DAG_ID), 60)
    page.reload()
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    page.screenshot(path=shots / "02-dag-run-success.png")

    # The audit page, from the navigation (Admin menu): Airflow embeds the plugin's page.
    page.get_by_role("button", name="Admin").click()
    page.get_by_role("menuitem", name="ETL control plane").click()
    expect(page).to_have_url(f"{server.base_url}/plugin/etl-control")
    audit_page = page.frame_locator("iframe[title='ETL control plane']")
    expect(audit_page.get_by_role("heading", name="ETL control plane")).to_be_visible()
    # The run just made registered every task of the DAG folder.
    registered = audit_page.locator("#audit tbody tr[data-task-id]")
    expect(registered.first).to_be_visible()
    assert registered.count() > 10
    page.screenshot(path=shots / "03-audit-page.png")

    # Disable a task with a reason, and see it disabled, by this user.
    show_dag(audit_page, "totesys_ingest")
    row = audit_page.locator('#audit tr[data-dag-id="totesys_ingest"][data-task-id="announce_landed"]')
    expect(row.locator(".badge")).to_have_text("enabled")
    reason = f"paused by the browser test <{uuid.uuid4().hex[:6]}>"
    row.get_by_placeholder("reason").fill(reason)
    row.get_by_role("button", name="Disable").click()
    notice = audit_page.locator("#switched")
    expect(notice).to_contain_text("totesys_ingest.announce_landed is now disabled")
    expect(notice).to_contain_text(f"by {USERNAME}")
    expect(row.locator(".badge")).to_have_text("disabled")
    expect(row.locator(".reason")).to_have_text(reason)
    expect(row.locator(".updated-by")).to_have_text(USERNAME)
    expect(row).to_have_class("switched")
    expect(audit_page.locator("#dag-filter")).to_have_value("totesys_ingest")  # the filter is kept
    page.screenshot(path=shots / "04-audit-task-disabled.png")

    from include.etlkit.control.store import ControlStore

    decision = ControlStore().decide("totesys_ingest", "announce_landed")
    assert not decision.allowed and reason in decision.reason

    # Enable it again.
    row.get_by_role("button", name="Enable").click()
    expect(notice).to_contain_text("totesys_ingest.announce_landed is now enabled")
    expect(row.locator(".badge")).to_have_text("enabled")
    assert ControlStore().decide("totesys_ingest", "announce_landed").allowed

    # The recent task_log rows of the DAG include the try of the run just made.
    show_dag(audit_page, DAG_ID)
    tried = audit_page.locator(f'#task-log tr[data-run-id="{run_id}"]')
    expect(tried).to_have_count(1)
    expect(tried).to_have_attribute("data-status", "success")
    expect(tried).to_contain_text("register_tasks")
    log_rows = audit_page.locator("#task-log tbody tr")
    assert {log_rows.nth(i).get_attribute("data-dag-id") for i in range(log_rows.count())} == {DAG_ID}
    page.screenshot(path=shots / "05-audit-task-log.png")

    keep_screenshots(shots)
    assert len(list(shots.glob("*.png"))) == 5


def test_the_dashboard_draws_every_chart_from_the_marts_behind_the_login(airflow_ui, browser_page, tmp_path):
    import psycopg2
    from playwright.sync_api import expect

    from include.etlkit.control.dashboard import CHARTS
    from infra.local import seed_totesys
    from tests.integration.warehouse_seed import load_retail_sample, load_totesys_snapshot

    server, password, warehouse_db = airflow_ui
    page = browser_page
    shots = tmp_path / "screenshots"
    shots.mkdir()

    # An anonymous browser is sent to the login page, and back to the Dashboard after it.
    dashboard_url = f"{server.base_url}/etl-control/dashboard"
    page.goto(dashboard_url)
    expect(page).to_have_url(re.compile(re.escape(f"{server.base_url}/auth/login?next=") + ".*dashboard"))

    conn = psycopg2.connect(seed_totesys.local_dsn(warehouse_db))
    try:
        load_totesys_snapshot(conn)
        load_retail_sample(conn)
    finally:
        conn.close()

    # From the navigation (Browse menu): Airflow embeds the page.
    log_in(page, server, password)
    page.get_by_role("button", name="Browse").click()
    page.get_by_role("menuitem", name="ETL dashboard").click()
    expect(page).to_have_url(f"{server.base_url}/plugin/etl-dashboard")
    embedded = page.frame_locator("iframe[title='ETL dashboard']")
    expect(embedded.get_by_role("heading", name="ETL dashboard")).to_be_visible()
    expect(embedded.locator("section[data-chart]")).to_have_count(len(CHARTS))
    page.screenshot(path=shots / "06-dashboard-embedded.png")

    # Every chart has data points and none says "no data yet" or shows an error.
    page.goto(dashboard_url)
    for spec in CHARTS:
        chart = page.locator(f'section[data-chart="{spec.name}"]')
        expect(chart).to_have_attribute("data-state", "data")
        expect(chart.locator("svg.chart").first).to_be_visible()
        assert chart.locator(".point").count() > 0, spec.name
    expect(page.get_by_text("no data yet")).to_have_count(0)
    expect(page.locator(".error")).to_have_count(0)
    expect(page.locator("#freshness tbody tr[data-feed]").first).to_be_visible()
    page.screenshot(path=shots / "07-dashboard.png", full_page=True)
    page.locator('section[data-chart="monthly_sales"]').screenshot(path=shots / "08-monthly-sales.png")

    # Back to the control plane through its link.
    page.locator("#control-plane-link").click()
    expect(page.get_by_role("heading", name="ETL control plane")).to_be_visible()

    keep_screenshots(shots)
    assert len(list(shots.glob("*.png"))) == 3

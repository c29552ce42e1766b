"""The Dashboard's data on the real local PostgreSQL: business charts from seeded marts, pipeline
health from the real control tables.

The warehouses are scratch databases (``warehouse_dash_<random>``) seeded directly
(``tests/integration/warehouse_seed.py``): the totesys snapshot and a small retail sample. Each is
an Airflow connection of the test's own, read through the warehouse interface as the page does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from include.etlkit.control.dashboard import CHARTS, business_charts, pipeline_health
from include.etlkit.control.freshness import FreshnessRule
from include.etlkit.control.store import TaskTry
from include.etlkit.load.warehouse import warehouse_for
from tests.integration.airflow_server import pg_uri
from tests.integration.test_freshness import _age_landings, _land
from tests.integration.warehouse_seed import load_retail_sample, load_totesys_snapshot, scratch_database

pytestmark = pytest.mark.integration


def _connect_as(monkeypatch: pytest.MonkeyPatch, database: str) -> str:
    conn_id = f"dash_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", pg_uri(database))
    return conn_id


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[str, object]]:
    """A warehouse with the totesys snapshot and the retail sample in core, and every mart."""
    with scratch_database("warehouse_dash") as (name, conn):
        load_totesys_snapshot(conn)
        load_retail_sample(conn)
        yield name, conn


def _rows(conn, query: str) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def test_every_chart_has_data_from_the_marts_of_the_warehouse_in_force(seeded, monkeypatch):
    name, conn = seeded
    conn_id = _connect_as(monkeypatch, name)
    monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", conn_id)  # the Variable picks the warehouse

    charts = {chart.spec.name: chart for chart in business_charts()}

    assert list(charts) == [spec.name for spec in CHARTS]
    assert {name: (c.error, c.has_data) for name, c in charts.items()} == {
        spec.name: (None, True) for spec in CHARTS
    }
    # Monthly sales: a panel per currency, a point per month, the mart's own figures.
    expected = _rows(
        conn,
        "SELECT currency_code, sales_month, total_value FROM mart.sales_monthly_by_currency "
        "ORDER BY sales_month, currency_code",
    )
    monthly = {p.title: dict(p.points) for p in charts["monthly_sales"].panels}
    assert set(monthly) == {code for code, _, _ in expected}
    for code, month, value in expected:
        assert monthly[code][month.isoformat()] == float(value)
    # Ageing: a panel per currency and payment type, never adding across them.
    for panel in charts["payments_ageing"].panels:
        currency, payment_type = panel.title.split(" · ")
        (total,) = _rows(
            conn,
            "SELECT sum(payment_amount) FROM mart.outstanding_payments "
            f"WHERE currency_code = '{currency}' AND payment_type_name = '{payment_type}'",
        )[0]
        assert sum(v for _, v in panel.points) == pytest.approx(float(total))
    # Incentives (GBP): 1% of each store's top monthly seller's sales (the retail sample's figures).
    [incentives] = charts["sales_team_incentives"].panels
    assert incentives.title == "GBP"
    assert incentives.points == [
        ("Grace Hopper · 20", 1.23),
        ("Alan Turing · 10", 1.2),
        ("Ada Byron · 10", 1.0),
    ]
    assert all(len(p.points) <= 10 for p in charts["sales_by_staff"].panels)


def test_a_missing_mart_fails_its_chart_only_and_an_empty_one_says_no_data(monkeypatch):
    with scratch_database("warehouse_dash") as (name, conn):
        load_retail_sample(conn)  # no totesys marts at all
        monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", _connect_as(monkeypatch, name))

        charts = {chart.spec.name: chart for chart in business_charts()}
        for chart_name in ("monthly_sales", "top_designs", "sales_by_staff", "payments_ageing"):
            assert "does not exist" in charts[chart_name].error
            assert not charts[chart_name].has_data
        assert charts["sales_team_incentives"].error is None
        assert charts["sales_team_incentives"].has_data

        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM core.fact_sale")
        [empty] = [c for c in business_charts() if c.spec.name == "sales_team_incentives"]
        assert (empty.error, empty.has_data, empty.svgs()) == (None, False, [])


def test_the_chart_queries_only_read(seeded, monkeypatch):
    name, _ = seeded
    warehouse = warehouse_for(_connect_as(monkeypatch, name))
    with pytest.raises(Exception, match="read-only transaction"), warehouse.session() as cur:
        cur.execute("SET TRANSACTION READ ONLY")  # what each chart's session does first
        cur.execute("CREATE TABLE mart.should_not_exist (x int)")


def test_an_unavailable_warehouse_fails_every_chart_with_a_masked_error():
    def down():
        raise ConnectionError("could not connect to postgres://etl:hunter2@db:5432/warehouse")

    charts = business_charts(down)
    assert len(charts) == len(CHARTS)
    for chart in charts:
        assert chart.error.startswith("the warehouse is unavailable: ConnectionError")
        assert "hunter2" not in chart.error


@pytest.fixture
def logged_dag(control_plane) -> Iterator[str]:
    """A DAG of the test's own with two runs in etl.task_log, the later one with a failed try."""
    dag = f"dash_test_{uuid.uuid4().hex[:10]}"
    first = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    second = first + timedelta(days=1)
    error = "GET https://rates.example/v1?api_key=hunter2 refused\nTraceback ..."
    tries = (
        ("manual__1", "extract_sales", "success", 120, 118, 2, None, first),
        ("manual__2", "extract_sales", "success", 80, 80, 0, None, second),
        ("manual__2", "load", "failed", None, None, None, error, second),
    )
    for run_id, task, status, rows_in, rows_out, rejected, error, started in tries:
        key = TaskTry(dag, task, run_id, -1, 1)
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
            ended_at=started + timedelta(seconds=5),
            rows_in=rows_in,
            rows_out=rows_out,
            rows_rejected=rejected,
            error=error,
        )
    yield dag
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (dag,))


def test_pipeline_health_from_the_control_plane(control_plane, logged_dag, source_name):
    _land(source_name, "fresh_feed")
    _land(source_name, "old_feed")
    rules = [
        FreshnessRule(source_name, "fresh_feed", 24),
        FreshnessRule(source_name, "never_feed", 24),
    ]
    health = pipeline_health(control_plane, rules, runs=2, failures=50)

    runs = health.runs[logged_dag]
    assert [(r["run_id"], r["task_id"], r["status"]) for r in runs] == [
        ("manual__2", "extract_sales", "success"),
        ("manual__2", "load", "failed"),
        ("manual__1", "extract_sales", "success"),
    ]
    assert (runs[2]["rows_in"], runs[2]["rows_out"], runs[2]["rows_rejected"]) == (120, 118, 2)
    [failure] = [f for f in health.failures if f["dag_id"] == logged_dag]
    assert failure["task_id"] == "load" and failure["run_id"] == "manual__2"
    assert "hunter2" not in failure["error"] and "Traceback" not in failure["error"]
    assert failure["error"].endswith("refused")

    feeds = {row["feed"]: row for row in health.freshness}
    assert feeds["fresh_feed"]["state"] == "fresh" and feeds["fresh_feed"]["age_hours"] < 1
    assert feeds["never_feed"]["state"] == "never landed" and feeds["never_feed"]["last_landed"] is None
    assert "old_feed" not in feeds  # no rule declared for it

    _age_landings(source_name, 30)
    [stale] = pipeline_health(control_plane, rules[:1]).freshness
    assert stale["state"] == "stale" and stale["age_hours"] == pytest.approx(30, abs=0.5)


# PostgreSQL type OIDs (cursor.description) -> the QuickSight column type that holds them.
QUICKSIGHT_TYPES = {
    20: "INTEGER", 21: "INTEGER", 23: "INTEGER",
    700: "DECIMAL", 701: "DECIMAL", 1700: "DECIMAL",
    1082: "DATETIME", 1114: "DATETIME", 1184: "DATETIME",
    25: "STRING", 1042: "STRING", 1043: "STRING",
}  # fmt: skip


def test_the_quicksight_data_sets_declare_each_querys_columns_and_types(seeded):
    from include.etlkit.control.dashboard import DASHBOARD_SQL
    from tests.unit.test_terraform import local

    _, conn = seeded
    declared = local("quicksight_data_sets")
    for name, columns in declared.items():
        with conn, conn.cursor() as cur:
            cur.execute((DASHBOARD_SQL / f"{name}.sql").read_text())
            returned = {d.name: QUICKSIGHT_TYPES[d.type_code] for d in cur.description}
            assert cur.fetchall(), f"{name} returns no rows on the seeded warehouse"
        assert returned == columns, name

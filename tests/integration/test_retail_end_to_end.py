"""The retail pipeline end to end, every source kind on its real local server, run twice.

MariaDB holds the reference tables, the rates API serves the exchange rates, the FTP drop has a week
of daily sales files (two rows with bad values), and partners have dropped customer files in S3 in
five formats, one of them without its ``full_name`` column. ``retail_ingest``, ``retail_drops``,
``retail_transform`` and ``retail_load`` run with ``dag.test()`` (real task runner, audit gate and
task-log listener). What the warehouse holds is checked against the generated deliveries directly,
not through the pipeline's code: every row is loaded or quarantined with a reason, per file; the
broken file is in the error prefix and its original is untouched; the marts add up; and a second run
of the same interval changes nothing.
"""

from __future__ import annotations

import csv
import ftplib
import io
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.ledger import Ledger
from include.etlkit.control.store import ControlStore
from include.etlkit.sensors.s3_drop import S3DropSensor
from infra.local import settings
from infra.local.rates_api import rate_for
from infra.local.seed_retail import seed as seed_retail
from infra.local.seed_retail_files import (
    BROKEN_PARTNER,
    DROP_PREFIX,
    deliver_partner_files,
    deliver_sales,
    delivery,
    partner_records,
    sales_dir,
)
from tests.conftest import load_dag
from tests.integration.airflow_server import dsn
from tests.integration.pipeline_checks import bucket_digests, warehouse_fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_IDS = ("retail_ingest", "retail_drops", "retail_transform", "retail_load")
LAST_SALES_DAY = date(2024, 11, 7)
DAYS = 7
INTERVAL = datetime(2024, 11, 8, 6, 5, tzinfo=UTC)  # the hourly run after the files arrived
WAREHOUSE_DB = settings.database("warehouse")
CENT = Decimal("0.01")


def _query(sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn(WAREHOUSE_DB)) as conn:
        return conn.execute(sql, params).fetchall()


def _clear_ftp_dir(remote_dir: str) -> None:
    ftp = ftplib.FTP()
    ftp.connect(settings.LOOPBACK, settings.FTP_PORT, timeout=30)
    ftp.login(settings.FTP_USER, settings.FTP_PASSWORD)
    try:
        for name in ftp.nlst(remote_dir):
            ftp.delete(name if name.startswith("/") else f"{remote_dir}/{name}")
    except ftplib.error_perm:
        pass  # no directory yet
    finally:
        ftp.quit()


@pytest.fixture(scope="module")
def pipeline(airflow_db, local_services, control_plane):
    """Fresh sources, warehouse schemas, ledger and buckets; every retail task enabled; files delivered."""
    yield from fresh_pipeline(control_plane)


def fresh_pipeline(control_plane) -> Iterator[tuple[dict, Any]]:
    """:func:`pipeline`'s work, for other modules' fixtures (the lineage test runs it too): yields
    the retail DAGs by id after one run of all of them, and the deliveries."""
    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS core, landing, mart CASCADE")
        for schema in ("core", "landing", "mart"):
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    Ledger(control_plane).forget("retail")

    import MySQLdb

    admin = MySQLdb.connect(host=settings.MYSQL_HOST, port=settings.MYSQL_PORT, user=settings.MYSQL_USER)
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{settings.database('retail')}`")
    admin.close()
    seed_retail(scale=1, seed=1)

    suffix = uuid.uuid4().hex[:8]
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", f"etl-ingestion-retail-{suffix}")
    patch.setenv("AIRFLOW_VAR_PROCESSED_BUCKET", f"etl-processed-retail-{suffix}")
    from infra.local.bootstrap import ensure_buckets

    ensure_buckets()
    files = delivery(LAST_SALES_DAY, DAYS)
    _clear_ftp_dir(sales_dir())
    deliver_sales(files.sales)
    deliver_partner_files(files.partners, bucket=f"etl-ingestion-retail-{suffix}")

    store = ControlStore()
    store.register(dag_tasks(str(DAGS)))
    for dag_id in DAG_IDS:
        store.set_enabled(dag_id, None, True)
    dags = {dag_id: load_dag(dag_id, DAGS) for dag_id in DAG_IDS}
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = 0
            if isinstance(task, S3DropSensor):
                # A rerun finds nothing new: the sensor then waits its whole timeout before it
                # skips (soft_fail), 14 minutes in production; a few seconds make the same point.
                task.timeout, task.poke_interval = 5, 1
    run_all(dags)
    yield dags, files
    patch.undo()


def run(dag, logical_date: datetime | None = None) -> None:
    result = dag.test(logical_date=logical_date) if logical_date else dag.test()
    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    failed = {task: state for task, state in states.items() if state not in ("success", "skipped")}
    assert result.state == "success" and not failed, f"{dag.dag_id} failed: {failed}"


def run_all(dags) -> None:
    run(dags["retail_ingest"], INTERVAL)
    run(dags["retail_drops"], INTERVAL)
    run(dags["retail_transform"])
    run(dags["retail_load"])


def _file_status() -> dict[str, dict]:
    rows = _query(
        "SELECT dataset, key, status, rows_read, rows_loaded, rows_rejected, reason, error_key,"
        " quarantine_key FROM etl.file_status WHERE source = 'retail'"
    )
    names = (
        "dataset",
        "key",
        "status",
        "read",
        "loaded",
        "rejected",
        "reason",
        "error_key",
        "quarantine_key",
    )
    return {row[1]: dict(zip(names, row, strict=True)) for row in rows}


def _sales_rows(files) -> list[dict[str, str]]:
    rows = []
    for data in files.sales.values():
        rows.extend(csv.DictReader(io.StringIO(data.decode())))
    return rows


def _valid(row: dict[str, str]) -> bool:
    try:
        datetime.fromisoformat(row["sold_at"])
    except ValueError:
        return False
    return int(row["quantity"]) > 0


def test_every_sales_row_is_loaded_or_quarantined_with_a_reason_per_file(pipeline):
    _dags, files = pipeline
    statuses = [s for s in _file_status().values() if s["dataset"] == "sales"]
    assert len(statuses) == len(files.sales)
    for status in statuses:
        assert status["read"] == status["loaded"] + status["rejected"]
    rows = _sales_rows(files)
    assert sum(s["read"] for s in statuses) == len(rows)
    good = [r for r in rows if _valid(r)]
    assert sum(s["loaded"] for s in statuses) == len(good) == len(rows) - 2
    partial = [s for s in statuses if s["rejected"]]
    assert len(partial) == 1 and partial[0]["rejected"] == 2 and partial[0]["quarantine_key"]
    # The warehouse holds exactly the valid rows, with their amounts.
    loaded = dict(_query("SELECT sale_id, quantity * unit_price FROM core.fact_sale"))
    assert loaded == {int(r["sale_id"]): int(r["quantity"]) * Decimal(r["unit_price"]) for r in good}


def test_a_file_missing_a_required_column_goes_to_the_error_prefix_and_the_others_load(pipeline):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    _dags, files = pipeline
    broken = [s for s in _file_status().values() if s["status"] == "rejected"]
    assert len(broken) == 1, broken
    assert "full_name" in broken[0]["reason"]
    s3 = S3Hook(aws_conn_id="aws_default").get_conn()
    bucket = os.environ["AIRFLOW_VAR_INGESTION_BUCKET"]
    error = s3.get_object(Bucket=bucket, Key=broken[0]["error_key"])["Body"].read()
    name = next(n for n in files.partners if n.startswith(f"{BROKEN_PARTNER}/"))
    assert error == files.partners[name]
    # The partner's own object is still there, unchanged.
    original = s3.get_object(Bucket=bucket, Key=f"{DROP_PREFIX}/{name}")["Body"].read()
    assert original == files.partners[name]
    # Every other partner's records are in the warehouse, but the one with a bad date.
    partners = {n.split("/")[0] for n in files.partners} - {BROKEN_PARTNER}
    expected = sum(len(partner_records(p)) for p in partners) - 1
    assert _query("SELECT count(*) FROM core.partner_customer")[0][0] == expected
    assert _query("SELECT count(DISTINCT partner) FROM core.partner_customer")[0][0] == len(partners)


def test_extra_columns_are_kept_in_additional_column(pipeline):
    rows = _query(
        "SELECT partner_customer_ref, additional_column FROM core.partner_customer WHERE partner = 'acme'"
    )
    assert rows and all(
        json.loads(extra)["loyalty_tier"] in ("gold", "silver", "bronze") for _, extra in rows
    )
    others = _query(
        "SELECT count(*) FROM core.partner_customer WHERE partner <> 'acme' AND additional_column IS NOT NULL"
    )
    assert others[0][0] == 0


def test_partner_customers_are_unified_with_known_customers(pipeline):
    decided = dict(
        ((p, r), (c, d))
        for p, r, c, d in _query(
            "SELECT source, source_customer_ref, customer_id, decision FROM core.customer_xref"
        )
    )
    in_review = {
        (p, r) for p, r in _query("SELECT partner, partner_customer_ref FROM core.customer_match_review")
    }
    known = {
        row[0]: row
        for row in _query(
            "SELECT customer_id, email, phone_number FROM core.dim_customer WHERE customer_source = 'retail'"
        )
    }
    partner_rows = _query("SELECT partner, partner_customer_ref, email FROM core.partner_customer")
    assert {(p, r) for p, r, _ in partner_rows} == set(decided) | in_review
    assert len(in_review) <= max(1, len(partner_rows) // 10)
    for partner, ref, email in partner_rows:
        if (partner, ref) not in decided:
            continue
        customer_id, decision = decided[(partner, ref)]
        truly_known = email is not None and email.endswith("@example.com")  # the generator's known people
        if decision == "match":
            assert customer_id in known, (partner, ref)
            if email:
                assert known[customer_id][1] == email, (partner, ref)
        else:
            assert customer_id >= 100_000_000 and not truly_known, (partner, ref, decision)


def test_marts_add_up_from_the_delivered_files(pipeline):
    _dags, files = pipeline
    good = [r for r in _sales_rows(files) if _valid(r)]
    by_customer: dict[tuple, Decimal] = defaultdict(Decimal)
    by_seller: dict[tuple, Decimal] = defaultdict(Decimal)
    for r in good:
        month = datetime.fromisoformat(r["sold_at"]).date().replace(day=1)
        amount = int(r["quantity"]) * Decimal(r["unit_price"])
        if r["customer_id"]:
            by_customer[(int(r["customer_id"]), month, r["currency"])] += amount
        by_seller[(int(r["store_id"]), int(r["sales_person_id"]), month, r["currency"])] += amount
    customer_mart = {
        (c, m, cur): total
        for c, m, cur, total in _query(
            "SELECT customer_id, sales_month, currency, total_sales FROM mart.customer_monthly"
        )
    }
    assert customer_mart == dict(by_customer)

    seller_mart = _query(
        "SELECT store_id, sales_person_id, sales_month, currency, total_sales, incentive, full_name"
        " FROM mart.sales_team_monthly"
    )
    assert {(s, p, m, c): t for s, p, m, c, t, _i, _n in seller_mart} == dict(by_seller)
    top: dict[tuple, Decimal] = defaultdict(Decimal)
    for (store, _person, month, _cur), total in by_seller.items():
        top[(store, month)] = max(top[(store, month)], total)  # one currency per store
    for store, person, month, _cur, total, incentive, full_name in seller_mart:
        expected = (
            (total * Decimal("0.01")).quantize(CENT, ROUND_HALF_UP) if total == top[(store, month)] else 0
        )
        assert incentive == expected, (store, person, month)
        assert full_name
    assert sum(1 for row in seller_mart if row[5] > 0) == len(top)


def test_gbp_totals_use_the_rate_of_the_sale_date(pipeline):
    rows = _query("SELECT sale_date, currency, amount, gbp_rate, amount_gbp, rate_date FROM mart.retail_sale")
    assert {currency for _d, currency, *_ in rows} >= {"GBP", "EUR", "USD"}
    for sale_date, currency, amount, rate, amount_gbp, rate_date in rows:
        assert rate_date == sale_date
        expected_rate = Decimal(1) if currency == "GBP" else Decimal(str(rate_for(sale_date, currency)))
        assert abs(rate - expected_rate) < Decimal("0.00000001"), (sale_date, currency)
        assert amount_gbp == (amount / rate).quantize(CENT, ROUND_HALF_UP)
    # The customer mart's GBP totals are the sums of those sale amounts.
    mart_total = _query("SELECT sum(total_sales_gbp) FROM mart.customer_monthly")[0][0]
    sale_total = _query("SELECT sum(amount_gbp) FROM mart.retail_sale WHERE customer_id IS NOT NULL")[0][0]
    assert mart_total == sale_total and mart_total > 0


def test_running_the_same_interval_again_changes_nothing(pipeline):
    dags, _files = pipeline
    objects = bucket_digests()
    warehouse = warehouse_fingerprint()
    marts = {
        name: sorted(_query(f"SELECT * FROM mart.{name}"))
        for name in ("customer_monthly", "sales_team_monthly")
    }
    statuses = _file_status()
    run_all(dags)
    after = bucket_digests()
    assert all(after.get(key) == digest for key, digest in objects.items()), "an object was overwritten"
    assert after.keys() == objects.keys(), sorted(after.keys() - objects.keys())[:5]
    assert warehouse_fingerprint() == warehouse
    assert {name: sorted(_query(f"SELECT * FROM mart.{name}")) for name in marts} == marts
    assert _file_status() == statuses

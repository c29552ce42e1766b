"""Integration tests of the totesys marts (``sql/postgres/totesys/marts.sql``) and dashboard queries.

The module works in one throwaway database (``warehouse_marts_<random>``, dropped afterwards): it
applies core.sql and marts.sql, loads the 2024-11-15 snapshot through the totesys models
with COPY (as the load does), and checks the marts against figures computed independently, in pandas,
from the snapshot's Parquet files. Tests that add fact versions do so in a transaction they roll back,
so every test sees the snapshot as loaded.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from psycopg2.extensions import connection

from include.etlkit.paths import SQL_DIR
from include.etlkit.totesys.transform import build_tables
from tests.integration.warehouse_seed import (
    SNAPSHOT,
    apply_totesys_marts,
    copy_frame,
    load_totesys_snapshot,
    scratch_database,
    totesys_source,
)

pytestmark = pytest.mark.integration

# The totesys dashboard queries; retail_*.sql read the retail marts (tests/integration/test_dashboard.py).
DASHBOARD_QUERIES = sorted(
    p for p in (SQL_DIR / "dashboard").glob("*.sql") if not p.name.startswith("retail_")
)
CENT = Decimal("0.01")

# The mart's contract with BI tools: renaming or dropping one of these breaks saved datasets.
MART_COLUMNS = {
    "sales_monthly_by_design": [
        "sales_month", "design_id", "design_name", "currency_id", "currency_code",
        "units_sold", "total_value", "order_count",
    ],
    "sales_monthly_by_counterparty": [
        "sales_month", "counterparty_id", "counterparty_legal_name", "counterparty_legal_country",
        "currency_id", "currency_code", "units_sold", "total_value", "order_count",
    ],
    "sales_monthly_by_currency": [
        "sales_month", "currency_id", "currency_code", "currency_name",
        "units_sold", "total_value", "order_count",
    ],
    "outstanding_payments": [
        "payment_id", "payment_record_id", "transaction_id", "transaction_type", "payment_type_name",
        "counterparty_id", "counterparty_legal_name", "currency_id", "currency_code", "payment_amount",
        "payment_date", "as_of_date", "days_overdue", "ageing_bucket", "ageing_bucket_order",
    ],
}  # fmt: skip


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source() -> dict[str, pd.DataFrame]:
    return totesys_source(SNAPSHOT)


@pytest.fixture(scope="module")
def warehouse(source: dict[str, pd.DataFrame]) -> Iterator[connection]:
    """A connection to a fresh database holding core (with the snapshot) and the marts."""
    with scratch_database("warehouse_marts") as (_, conn):
        load_totesys_snapshot(conn, source)
        yield conn


def _all(conn: connection, query: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def _one(conn: connection, query: str, params: tuple = ()) -> tuple:
    (row,) = _all(conn, query, params)
    return row


# -- independent figures from the source -----------------------------------------------------------


def _money(value: float) -> Decimal:
    # The dumps hold money as double; the source column is numeric(.., 2), so 2 decimals are exact.
    return Decimal(str(value)).quantize(CENT)


def _sales_value(sales_order: pd.DataFrame) -> Decimal:
    return sum(
        (_money(p) * q for p, q in zip(sales_order["unit_price"], sales_order["units_sold"], strict=True)),
        Decimal(0),
    )


def _sales_by_month(sales_order: pd.DataFrame) -> dict[dt.date, tuple[int, Decimal]]:
    """Per first day of the created_at month: (order count, sum of units_sold * unit_price)."""
    months = sales_order["created_at"].dt.to_period("M").dt.start_time.dt.date
    return {
        month: (len(orders), _sales_value(orders)) for month, orders in sales_order.groupby(months, sort=True)
    }


# -- the DDL ---------------------------------------------------------------------------------------


def test_marts_sql_is_idempotent(warehouse):
    def definitions() -> dict[str, str]:
        rows = _all(
            warehouse,
            "SELECT c.relname, pg_get_viewdef(c.oid) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'mart' AND c.relkind = 'v'",
        )
        return dict(rows)

    before = definitions()
    apply_totesys_marts(warehouse)
    apply_totesys_marts(warehouse)

    assert definitions() == before
    assert set(before) >= {
        "current_sales_order", "current_purchase_order", "current_payment",
        "sales_monthly_by_design", "sales_monthly_by_counterparty", "sales_monthly_by_currency",
        "outstanding_payments", "outstanding_payments_by_counterparty",
    }  # fmt: skip


def test_mart_columns_are_the_documented_ones(warehouse):
    rows = _all(
        warehouse,
        "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
        " FROM information_schema.columns WHERE table_schema = 'mart' GROUP BY table_name",
    )
    columns = dict(rows)
    assert {view: columns[view] for view in MART_COLUMNS} == MART_COLUMNS


# -- sales -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "view", ["sales_monthly_by_design", "sales_monthly_by_counterparty", "sales_monthly_by_currency"]
)
def test_sales_marts_total_every_order_once(warehouse, source, view):
    sales_order = source["sales_order"]

    total_value, order_count, units = _one(
        warehouse, f"SELECT sum(total_value), sum(order_count), sum(units_sold) FROM mart.{view}"
    )

    assert total_value == _sales_value(sales_order)
    assert order_count == len(sales_order)
    assert units == int(sales_order["units_sold"].sum())


def test_sales_per_month_match_the_source(warehouse, source):
    expected = _sales_by_month(source["sales_order"])
    for view in ("sales_monthly_by_design", "sales_monthly_by_counterparty", "sales_monthly_by_currency"):
        rows = _all(
            warehouse,
            f"SELECT sales_month, sum(order_count), sum(total_value) FROM mart.{view} GROUP BY sales_month",
        )
        assert {month: (count, value) for month, count, value in rows} == expected, view


def test_sales_by_design_per_design_and_currency_match_the_source(warehouse, source):
    so = source["sales_order"]
    currency_codes = dict(
        zip(source["currency"]["currency_id"], source["currency"]["currency_code"], strict=True)
    )
    expected = {
        (int(design), currency_codes[currency]): (len(orders), _sales_value(orders))
        for (design, currency), orders in so.groupby(["design_id", "currency_id"])
    }
    rows = _all(
        warehouse,
        "SELECT design_id, currency_code, sum(order_count), sum(total_value)"
        " FROM mart.sales_monthly_by_design GROUP BY design_id, currency_code",
    )
    assert {(design, code): (count, value) for design, code, count, value in rows} == expected


def _modelled(source_table: str, rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """New versions of a source table's rows, mapped by the models (the fact and its dates)."""
    return build_tables({source_table: rows}, {}.__getitem__)


def _new_version(row: pd.DataFrame, **changes) -> dict[str, pd.DataFrame]:
    """A source sales_order row changed as the source would change it, mapped by the model."""
    changed = row.copy()
    for column, value in changes.items():
        changed[column] = value
    return _modelled("sales_order", changed)


def _insert_versions(conn: connection, table: str, built: dict[str, pd.DataFrame]) -> None:
    """Append fact versions (and their dates) inside the caller's open transaction."""
    frame = built[table]
    with conn.cursor() as cur:
        for date in built["dim_date"].itertuples(index=False):
            cur.execute(
                "INSERT INTO core.dim_date VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                tuple(date),
            )
        copy_frame(cur, table, frame)


def test_a_sales_order_with_several_versions_counts_once_with_its_latest_values(warehouse, source):
    so = source["sales_order"]
    original = so.iloc[[100]].reset_index(drop=True)
    order_id = int(original.at[0, "sales_order_id"])
    old_units, price = int(original.at[0, "units_sold"]), _money(original.at[0, "unit_price"])
    month = original.at[0, "created_at"].to_period("M").start_time.date()
    design = int(original.at[0, "design_id"])
    query = (
        "SELECT order_count, units_sold, total_value FROM mart.sales_monthly_by_design"
        " WHERE sales_month = %s AND design_id = %s AND currency_id = %s"
    )
    params = (month, design, int(original.at[0, "currency_id"]))
    before = _one(warehouse, query, params)
    later = original.at[0, "last_updated"] + pd.Timedelta(days=3)
    try:
        # A genuine update (later last_updated), then an older version replayed late: same
        # last_updated as the original but different values, so it gets a new row_hash and the
        # highest record id. The update must still win: the source's clock decides first.
        _insert_versions(
            warehouse,
            "fact_sales_order",
            _new_version(original, units_sold=old_units + 1000, last_updated=later),
        )
        _insert_versions(warehouse, "fact_sales_order", _new_version(original, units_sold=old_units + 7))

        assert _one(
            warehouse, "SELECT count(*) FROM core.fact_sales_order WHERE sales_order_id = %s", (order_id,)
        ) == (3,)
        assert _one(
            warehouse,
            "SELECT units_sold, last_updated_date, order_value, version_count FROM mart.current_sales_order"
            " WHERE sales_order_id = %s",
            (order_id,),
        ) == (old_units + 1000, later.date(), (old_units + 1000) * price, 3)
        assert _one(warehouse, query, params) == (
            before[0],  # still one order
            before[1] + 1000,
            before[2] + 1000 * price,
        )
        assert _one(warehouse, "SELECT sum(order_count) FROM mart.sales_monthly_by_currency") == (len(so),)
    finally:
        warehouse.rollback()


def test_a_silent_change_with_the_same_last_updated_wins_by_load_order(warehouse, source):
    # The source changes some rows without moving last_updated: the version loaded last is current.
    original = source["sales_order"].iloc[[200]].reset_index(drop=True)
    order_id = int(original.at[0, "sales_order_id"])
    try:
        _insert_versions(warehouse, "fact_sales_order", _new_version(original, unit_price=1.23))

        assert _one(
            warehouse,
            "SELECT unit_price, version_count FROM mart.current_sales_order WHERE sales_order_id = %s",
            (order_id,),
        ) == (Decimal("1.23"), 2)
    finally:
        warehouse.rollback()


# -- payments --------------------------------------------------------------------------------------


def test_outstanding_payments_are_the_unpaid_ones(warehouse, source):
    payment = source["payment"]
    unpaid = payment[~payment["paid"]]

    count, amount = _one(warehouse, "SELECT count(*), sum(payment_amount) FROM mart.outstanding_payments")
    summary = _one(
        warehouse,
        "SELECT sum(payment_count), sum(outstanding_amount), sum(amount_not_yet_due + amount_0_30"
        " + amount_31_60 + amount_61_90 + amount_90_plus) FROM mart.outstanding_payments_by_counterparty",
    )

    assert count == len(unpaid) > 0
    assert amount == sum((_money(v) for v in unpaid["payment_amount"]), Decimal(0))
    assert summary == (count, amount, amount)  # every payment in exactly one bucket
    ids = {row[0] for row in _all(warehouse, "SELECT payment_id FROM mart.outstanding_payments")}
    assert ids == set(unpaid["payment_id"].tolist())


def test_days_overdue_and_ageing_buckets(warehouse):
    rows = _all(
        warehouse,
        "SELECT payment_date, as_of_date, days_overdue, ageing_bucket, ageing_bucket_order"
        " FROM mart.outstanding_payments",
    )
    today = _one(warehouse, "SELECT CURRENT_DATE")[0]
    for payment_date, as_of, days, bucket, order in rows:
        assert as_of == today
        assert days == (today - payment_date).days
        expected = (
            ("not yet due", 0) if days < 0
            else ("0-30", 1) if days <= 30
            else ("31-60", 2) if days <= 60
            else ("61-90", 3) if days <= 90
            else ("90+", 4)
        )  # fmt: skip
        assert (bucket, order) == expected


def test_ageing_bucket_boundaries(warehouse, source):
    # The sample's payment dates are all long past (every one is '90+'): move some unpaid payments'
    # dates, through new versions, to each side of each bucket boundary relative to today.
    days_overdue = {-1: "not yet due", 0: "0-30", 30: "0-30", 31: "31-60", 60: "31-60", 61: "61-90"}
    days_overdue |= {90: "61-90", 91: "90+"}
    payment = source["payment"]
    moved = payment[~payment["paid"]].head(len(days_overdue)).reset_index(drop=True)
    (today,) = _one(warehouse, "SELECT CURRENT_DATE")
    moved["payment_date"] = [(today - dt.timedelta(days=days)).isoformat() for days in days_overdue]
    moved["last_updated"] = moved["last_updated"] + pd.Timedelta(minutes=5)
    try:
        _insert_versions(warehouse, "fact_payment", _modelled("payment", moved))

        rows = _all(
            warehouse,
            "SELECT days_overdue, ageing_bucket FROM mart.outstanding_payments WHERE payment_id = ANY(%s)",
            (moved["payment_id"].tolist(),),
        )
        assert dict(rows) == days_overdue
    finally:
        warehouse.rollback()


def test_a_payment_settled_by_a_later_version_is_no_longer_outstanding(warehouse, source):
    payment = source["payment"]
    unpaid = payment[~payment["paid"]].iloc[[0]].reset_index(drop=True)
    payment_id = int(unpaid.at[0, "payment_id"])
    settled = unpaid.copy()
    settled["paid"] = True
    settled["last_updated"] = settled["last_updated"] + pd.Timedelta(hours=1)
    try:
        _insert_versions(warehouse, "fact_payment", _modelled("payment", settled))

        assert _one(warehouse, "SELECT count(*) FROM mart.outstanding_payments") == (
            int((~payment["paid"]).sum()) - 1,
        )
        assert (
            _all(warehouse, "SELECT 1 FROM mart.outstanding_payments WHERE payment_id = %s", (payment_id,))
            == []
        )
        assert _one(warehouse, "SELECT count(*) FROM mart.current_payment") == (len(payment),)
    finally:
        warehouse.rollback()


def test_current_purchase_order_has_one_row_per_order(warehouse, source):
    po = source["purchase_order"]
    assert _one(
        warehouse, "SELECT count(*), count(DISTINCT purchase_order_id) FROM mart.current_purchase_order"
    ) == (len(po), len(po))


# -- dashboard queries -----------------------------------------------------------------------------


def test_there_are_four_to_six_dashboard_queries():
    assert 4 <= len(DASHBOARD_QUERIES) <= 6
    assert (SQL_DIR / "dashboard" / "README.md").is_file()


@pytest.mark.parametrize("path", DASHBOARD_QUERIES, ids=lambda path: path.name)
def test_dashboard_query_runs_and_returns_rows(warehouse, path: Path):
    query = path.read_text()
    assert query.lstrip().startswith("--"), "each query starts with a comment saying what it answers"

    rows = _all(warehouse, query)
    # BI tools (QuickSight custom SQL among them) wrap the query as a subquery: no trailing semicolon
    # or comment may break that.
    (wrapped_count,) = _one(warehouse, f"SELECT count(*) FROM (\n{query}\n) AS dashboard_query")

    assert rows
    assert wrapped_count == len(rows)
    assert "core." not in query, "dashboards read the marts only"

"""PostgreSQL and Snowflake (through fakesnow) end with the same core and marts, row for row.

Both pipelines run end to end with ``dag.test()``: totesys on the first snapshot, then the second
snapshot with the reconciliation, then a rerun of that interval; retail on a week of deliveries (every
source kind). After each transform the ``totesys_load`` / ``retail_load`` DAG runs twice on the
same processed objects: once with the ``warehouse_conn_id`` Variable naming the PostgreSQL
warehouse, once naming a Snowflake connection (``snowflake_default``) answered by fakesnow. Every
task of the load DAG (DDL from ``sql/<dialect>/``, load, customer unification, dim_date, quality
checks, marts) runs against each. Between the two, the objects' ``loaded_at`` is cleared in the
ledger, because each object is normally loaded into one warehouse only.

What differs by design is left out of the comparison: the surrogate record ids each warehouse's
own sequence assigns (``*_record_id``, ``review_id``) and load times (``matched_at``,
``created_at``, the ``updated_at`` of customers first seen in a partner file). Numbers compare as
decimals (fakesnow returns some NUMBER expressions as floats), instants in UTC.

The landing COPY is the tests' (``fakesnow_support.LocalParquetCopy``): fakesnow has no external
stage over S3. Everything after it is the production SQL.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import fakesnow
import psycopg
import pytest

from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.ledger import Ledger
from include.etlkit.control.store import ControlStore
from include.etlkit.load import warehouse as warehouse_module
from infra.local import settings
from infra.local.seed_totesys import seed
from tests.conftest import load_dag
from tests.integration.airflow_server import dsn
from tests.integration.fakesnow_support import fakesnow_warehouse, fix_merge_counts, snowflake_connection

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"
WAREHOUSE_DB = settings.database("warehouse")
SOURCE_DB = settings.database("totesys")
SNOWFLAKE = "snowflake_default"
FIRST_INTERVAL_END = dt.datetime(2024, 11, 15, 15, 0, tzinfo=dt.UTC)
SECOND_INTERVAL_END = dt.datetime(2025, 2, 25, 15, 0, tzinfo=dt.UTC)

TOTESYS_CORE = (
    "dim_date",
    "dim_staff",
    "dim_location",
    "dim_design",
    "dim_currency",
    "dim_counterparty",
    "dim_transaction",
    "dim_payment_type",
    "fact_sales_order",
    "fact_purchase_order",
    "fact_payment",
)
TOTESYS_MARTS = (
    "current_sales_order",
    "current_purchase_order",
    "current_payment",
    "sales_monthly_by_design",
    "sales_monthly_by_counterparty",
    "sales_monthly_by_currency",
    "sales_monthly_by_staff",
    "outstanding_payments",
    "outstanding_payments_by_counterparty",
)
# The seeded partner files have no record between the review and match thresholds.
MAY_BE_EMPTY = {"customer_match_review"}
# Assigned by each warehouse itself: sequences and clocks.
NOT_COMPARED = {
    "sales_record_id",
    "purchase_record_id",
    "payment_record_id",
    "review_id",
    "matched_at",
    "created_at",
}


@pytest.fixture(scope="module")
def warehouses(airflow_db, local_services, control_plane, tmp_path_factory) -> Iterator[pytest.MonkeyPatch]:
    """A fresh PostgreSQL warehouse and a fresh fake Snowflake account, both reachable by connection."""
    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS core, landing, mart CASCADE")
        conn.execute("CREATE SCHEMA core; CREATE SCHEMA landing; CREATE SCHEMA mart")
    patch = pytest.MonkeyPatch()
    # CORE: fakesnow looks an IDENTITY's sequence up in the session's current schema.
    patch.setenv(f"AIRFLOW_CONN_{SNOWFLAKE.upper()}", snowflake_connection(schema="CORE"))
    patch.setitem(
        warehouse_module.LOADERS, "snowflake", fakesnow_warehouse(tmp_path_factory.mktemp("fakesnow"))
    )
    fix_merge_counts(patch)
    suffix = uuid.uuid4().hex[:8]
    patch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", f"etl-ingestion-wh-{suffix}")
    patch.setenv("AIRFLOW_VAR_PROCESSED_BUCKET", f"etl-processed-wh-{suffix}")
    from infra.local.bootstrap import ensure_buckets

    ensure_buckets()
    store = ControlStore()
    store.register(dag_tasks(str(DAGS)))
    with fakesnow.patch():
        yield patch
    patch.undo()


def dags_of(*dag_ids: str) -> dict:
    store = ControlStore()
    for dag_id in dag_ids:
        store.set_enabled(dag_id, None, True)
    dags = {dag_id: load_dag(dag_id, DAGS) for dag_id in dag_ids}
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = 0
    return dags


def run(dag, logical_date: dt.datetime | None = None) -> None:
    result = dag.test(logical_date=logical_date) if logical_date else dag.test()
    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    failed = {task: state for task, state in states.items() if state not in ("success", "skipped")}
    assert result.state == "success" and not failed, f"{dag.dag_id} failed: {failed}"


def load_into_both(load_dag_, patch: pytest.MonkeyPatch, source: str) -> None:
    """Run the load DAG on PostgreSQL, then on Snowflake, from the same processed objects."""
    pending = Ledger().pending_processed(source)
    patch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", "warehouse")
    run(load_dag_)
    if pending:
        with ControlStore().transaction() as cur:  # the same objects, once more, for the other warehouse
            cur.execute(
                "UPDATE etl.processed_object SET loaded_at = NULL, load_run_id = NULL WHERE key = ANY(%s)",
                ([o.key for o in pending],),
            )
    patch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", SNOWFLAKE)
    run(load_dag_)
    assert Ledger().pending_processed(source) == []


# -- comparing --------------------------------------------------------------------------------------


def _postgres_columns(schema: str, table: str) -> list[str]:
    with psycopg.connect(dsn(WAREHOUSE_DB)) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
            "ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
    columns = [name for (name,) in rows if name not in NOT_COMPARED]
    assert columns, f"{schema}.{table} has no columns in PostgreSQL"
    return columns


def _normal(value):
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value.rstrip() if isinstance(value, str) else value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)).quantize(Decimal("0.000001"), ROUND_HALF_UP)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    return value


def _sorted_rows(rows) -> list[tuple]:
    normal = [tuple(_normal(v) for v in row) for row in rows]
    return sorted(normal, key=repr)


def contents(schema: str, table: str, select: dict[str, str] | None = None) -> tuple[list, list]:
    """The rows of ``schema.table`` in PostgreSQL and in Snowflake, on the same columns, normalised."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    columns = _postgres_columns(schema, table)
    expressions = ", ".join((select or {}).get(c, c) for c in columns)
    query = f"SELECT {expressions} FROM {schema}.{table}"
    with psycopg.connect(dsn(WAREHOUSE_DB)) as conn:
        postgres = conn.execute(query).fetchall()
    snowflake = SnowflakeHook(snowflake_conn_id=SNOWFLAKE).get_records(query)
    return _sorted_rows(postgres), _sorted_rows(snowflake)


def assert_same(
    schema: str, tables: tuple[str, ...], select: dict[str, dict[str, str]] | None = None
) -> None:
    for table in tables:
        postgres, snowflake = contents(schema, table, (select or {}).get(table))
        assert postgres or table in MAY_BE_EMPTY, f"{schema}.{table} is empty: nothing compared"
        only_postgres = [r for r in postgres if r not in snowflake][:3]
        only_snowflake = [r for r in snowflake if r not in postgres][:3]
        assert postgres == snowflake, (
            f"{schema}.{table}: {len(postgres)} rows in PostgreSQL, {len(snowflake)} in Snowflake; "
            f"only in PostgreSQL {only_postgres}, only in Snowflake {only_snowflake}"
        )


# -- totesys ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def totesys(warehouses):
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SOURCE_DB}" WITH (FORCE)')
    seed("2024-11-15", dsn(SOURCE_DB))
    Ledger().forget("totesys")
    return dags_of("totesys_ingest", "totesys_reconcile", "totesys_transform", "totesys_load")


def totesys_step(dags, patch, interval_end: dt.datetime, *, reconcile: bool) -> None:
    run(dags["totesys_ingest"], interval_end)
    if reconcile:
        run(dags["totesys_reconcile"], interval_end)
    run(dags["totesys_transform"])
    load_into_both(dags["totesys_load"], patch, "totesys")


def test_totesys_both_snapshots_then_a_rerun_end_the_same_on_both_warehouses(totesys, warehouses):
    totesys_step(totesys, warehouses, FIRST_INTERVAL_END, reconcile=False)
    assert_same("core", TOTESYS_CORE)

    seed("2025-02-25", dsn(SOURCE_DB))
    totesys_step(totesys, warehouses, SECOND_INTERVAL_END, reconcile=True)
    assert_same("core", TOTESYS_CORE)
    assert_same("mart", TOTESYS_MARTS)
    before = {table: contents("core", table) for table in TOTESYS_CORE}

    totesys_step(totesys, warehouses, SECOND_INTERVAL_END, reconcile=True)  # the rerun

    assert {table: contents("core", table) for table in TOTESYS_CORE} == before  # neither side changed
    assert_same("mart", TOTESYS_MARTS)


# -- retail -----------------------------------------------------------------------------------------

RETAIL_CORE = (
    "dim_store",
    "dim_customer",
    "dim_product",
    "dim_sales_person",
    "exchange_rate",
    "fact_sale",
    "partner_customer",
    "customer_xref",
    "customer_match_review",
)
RETAIL_MARTS = ("retail_sale", "customer_monthly", "sales_team_monthly")
RETAIL_DAGS = ("retail_ingest", "retail_drops", "retail_transform", "retail_load")
RETAIL_INTERVAL = dt.datetime(2024, 11, 8, 6, 5, tzinfo=dt.UTC)  # the hourly run after the files arrived
# A customer first seen in a partner file is stamped with the time of the load that created it.
RETAIL_SELECT = {
    "dim_customer": {"updated_at": "CASE WHEN customer_source = 'retail' THEN updated_at END"},
    "customer_match_review": {
        "record": "NULL"
    },  # jsonb and VARIANT print differently; its fields are columns
}


@pytest.fixture(scope="module")
def retail(warehouses):
    """Fresh retail sources with a week of deliveries (as in test_retail_end_to_end)."""
    import MySQLdb

    from include.etlkit.sensors.s3_drop import S3DropSensor
    from infra.local.seed_retail import seed as seed_retail
    from infra.local.seed_retail_files import deliver_partner_files, deliver_sales, delivery, sales_dir
    from tests.integration.test_retail_end_to_end import DAYS, LAST_SALES_DAY, _clear_ftp_dir

    Ledger().forget("retail")
    admin = MySQLdb.connect(host=settings.MYSQL_HOST, port=settings.MYSQL_PORT, user=settings.MYSQL_USER)
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{settings.database('retail')}`")
    admin.close()
    seed_retail(scale=1, seed=1)
    files = delivery(LAST_SALES_DAY, DAYS)
    _clear_ftp_dir(sales_dir())
    deliver_sales(files.sales)
    from airflow.sdk import Variable

    deliver_partner_files(files.partners, bucket=Variable.get("ingestion_bucket"))
    dags = dags_of(*RETAIL_DAGS)
    for task in dags["retail_drops"].tasks:
        if isinstance(task, S3DropSensor):
            task.timeout, task.poke_interval = 5, 1
    return dags


def test_retail_end_to_end_and_a_second_run_end_the_same_on_both_warehouses(retail, warehouses):
    for _run in range(2):
        run(retail["retail_ingest"], RETAIL_INTERVAL)
        run(retail["retail_drops"], RETAIL_INTERVAL)
        run(retail["retail_transform"])
        load_into_both(retail["retail_load"], warehouses, "retail")

    assert_same("core", RETAIL_CORE, RETAIL_SELECT)
    assert_same("core", ("dim_date",))
    assert_same("mart", RETAIL_MARTS)

"""totesys end to end on the real snapshots and the real local services.

ingest -> transform -> load with ``dag.test()`` (the real task runner, audit gate and task-log
listener), first for the data interval right after ``snapshot_2024-11-15`` (a full snapshot), then,
after ``snapshot_2025-02-25`` is applied to the source, for the interval after that one plus the daily
reconciliation. Every core table is reconciled with the source independently of the pipeline's code.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.ledger import Ledger
from include.etlkit.control.store import ControlStore
from infra.local import settings
from infra.local.seed_totesys import seed
from tests.conftest import load_dag
from tests.integration.airflow_server import dsn
from tests.integration.pipeline_checks import assert_nothing_changed_since, snapshot

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAGS = Path(__file__).resolve().parents[2] / "dags"
FIRST_INTERVAL_END = datetime(2024, 11, 15, 15, 0, tzinfo=UTC)
SECOND_INTERVAL_END = datetime(2025, 2, 25, 15, 0, tzinfo=UTC)
SOURCE_DB = settings.database("totesys")
WAREHOUSE_DB = settings.database("warehouse")


def _query(database: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(dsn(database)) as conn:
        return conn.execute(sql, params).fetchall()


def _scalar(database: str, sql: str, params: tuple = ()):
    return _query(database, sql, params)[0][0]


@pytest.fixture(scope="module")
def pipeline(airflow_db, local_services, control_plane):
    """A fresh source and warehouse, buckets of our own, and every totesys task enabled."""
    yield from fresh_pipeline(control_plane)


def fresh_pipeline(control_plane) -> Iterator[dict]:
    """:func:`pipeline`'s work, for other modules' fixtures (the lineage test runs it too): yields
    the totesys DAGs by id, retries off."""
    with psycopg.connect(dsn("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{SOURCE_DB}" WITH (FORCE)')
    seed("2024-11-15", dsn(SOURCE_DB))
    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS core, landing, mart CASCADE")
        conn.execute("CREATE SCHEMA core; CREATE SCHEMA landing; CREATE SCHEMA mart")

    Ledger(control_plane).forget("totesys")

    suffix = uuid.uuid4().hex[:8]
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", f"etl-ingestion-e2e-{suffix}")
    patch.setenv("AIRFLOW_VAR_PROCESSED_BUCKET", f"etl-processed-e2e-{suffix}")
    from infra.local.bootstrap import ensure_buckets

    ensure_buckets()
    store = ControlStore()
    store.register(dag_tasks(str(DAGS)))
    for dag_id in ("totesys_ingest", "totesys_transform", "totesys_load", "totesys_reconcile"):
        store.set_enabled(dag_id, None, True)
    dags = {
        dag_id: load_dag(dag_id, DAGS)
        for dag_id in ("totesys_ingest", "totesys_transform", "totesys_load", "totesys_reconcile")
    }
    for dag in dags.values():
        for task in dag.tasks:
            task.retries = 0  # fail fast: a failure here is a bug, not a flaky source
    yield dags
    patch.undo()


def run(dag, logical_date: datetime | None = None) -> None:
    result = dag.test(logical_date=logical_date) if logical_date else dag.test()
    failed = [ti.task_id for ti in result.get_task_instances() if ti.state != "success"]
    assert result.state == "success", f"{dag.dag_id} failed: {failed}"


def run_chain(dags, interval_end: datetime, *, reconcile: bool = False) -> None:
    run(dags["totesys_ingest"], interval_end)
    if reconcile:
        run(dags["totesys_reconcile"], interval_end)
    run(dags["totesys_transform"])
    run(dags["totesys_load"])


FACTS = {
    # core table: (source table, key, amount expression in core, the same in the source)
    "fact_sales_order": (
        "sales_order",
        "sales_order_id",
        "units_sold * unit_price",
        "units_sold * unit_price",
    ),
    "fact_purchase_order": (
        "purchase_order",
        "purchase_order_id",
        "item_quantity * item_unit_price",
        "item_quantity * item_unit_price",
    ),
    "fact_payment": ("payment", "payment_id", "payment_amount", "payment_amount"),
}
DIMENSIONS = {
    "dim_design": ("design", "design_id"),
    "dim_currency": ("currency", "currency_id"),
    "dim_payment_type": ("payment_type", "payment_type_id"),
    "dim_transaction": ("transaction", "transaction_id"),
    "dim_location": ("address", "address_id"),
    "dim_counterparty": ("counterparty", "counterparty_id"),
    "dim_staff": ("staff", "staff_id"),
}


def assert_core_reconciles_with_source() -> None:
    for table, (source, key, core_amount, source_amount) in FACTS.items():
        source_keys = {r[0] for r in _query(SOURCE_DB, f'SELECT {key} FROM "{source}"')}
        core_keys = {r[0] for r in _query(WAREHOUSE_DB, f"SELECT DISTINCT {key} FROM core.{table}")}
        assert core_keys == source_keys, f"{table}: key sets differ"
        source_total = _scalar(SOURCE_DB, f'SELECT sum({source_amount}) FROM "{source}"')
        core_total = _scalar(
            WAREHOUSE_DB,
            f"SELECT sum({core_amount}) FROM (SELECT DISTINCT ON ({key}) * FROM core.{table} "
            f"ORDER BY {key}, last_updated_date DESC, last_updated_time DESC) AS latest",
        )
        assert Decimal(core_total) == Decimal(source_total), f"{table}: amounts of the latest versions differ"
    for table, (source, key) in DIMENSIONS.items():
        dim_key = "location_id" if table == "dim_location" else key
        source_keys = {r[0] for r in _query(SOURCE_DB, f'SELECT {key} FROM "{source}"')}
        core_keys = {r[0] for r in _query(WAREHOUSE_DB, f"SELECT {dim_key} FROM core.{table}")}
        assert core_keys == source_keys, f"{table}: key sets differ"
    fact_dates = {
        r[0]
        for r in _query(
            WAREHOUSE_DB,
            "SELECT created_date FROM core.fact_sales_order "
            "UNION SELECT last_updated_date FROM core.fact_sales_order "
            "UNION SELECT agreed_payment_date FROM core.fact_sales_order "
            "UNION SELECT agreed_delivery_date FROM core.fact_sales_order "
            "UNION SELECT created_date FROM core.fact_purchase_order "
            "UNION SELECT agreed_delivery_date FROM core.fact_purchase_order "
            "UNION SELECT payment_date FROM core.fact_payment "
            "UNION SELECT created_date FROM core.fact_payment",
        )
        if r[0] is not None
    }
    dates = {r[0] for r in _query(WAREHOUSE_DB, "SELECT date_id FROM core.dim_date")}
    assert fact_dates <= dates, f"dim_date misses {sorted(fact_dates - dates)[:5]}"


def test_first_run_lands_a_full_snapshot_and_every_core_table_reconciles(pipeline):
    run_chain(pipeline, FIRST_INTERVAL_END)

    counts = {t: _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM core.{t}") for t in [*FACTS, *DIMENSIONS]}
    assert counts == {
        "fact_sales_order": 11187,
        "fact_purchase_order": 4649,
        "fact_payment": 15836,
        "dim_design": 473,
        "dim_currency": 3,
        "dim_payment_type": 4,
        "dim_transaction": 15836,
        "dim_location": 30,
        "dim_counterparty": 20,
        "dim_staff": 20,
    }
    assert_core_reconciles_with_source()
    names = dict(_query(WAREHOUSE_DB, "SELECT currency_code, currency_name FROM core.dim_currency"))
    assert names == {"GBP": "Pound Sterling", "USD": "US Dollar", "EUR": "Euro"}


def test_a_rerun_of_the_same_interval_changes_nothing_and_overwrites_no_object(pipeline):
    before = snapshot()

    run_chain(pipeline, FIRST_INTERVAL_END, reconcile=True)

    assert_nothing_changed_since(before)


def test_the_next_snapshot_brings_new_rows_and_silently_changed_versions_and_nothing_else(pipeline):
    before = {t: _query(WAREHOUSE_DB, f"SELECT * FROM core.{t}") for t in FACTS}
    seed("2025-02-25", dsn(SOURCE_DB))

    run_chain(pipeline, SECOND_INTERVAL_END, reconcile=True)

    # New rows, plus one more version for each row changed without moving last_updated.
    counts = {t: _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM core.{t}") for t in FACTS}
    assert counts == {
        "fact_sales_order": 11187 + 1649 + 21,
        "fact_purchase_order": 4649 + 651 + 20,
        "fact_payment": 15836,
    }
    versions = _scalar(
        WAREHOUSE_DB,
        "SELECT count(*) FROM (SELECT sales_order_id FROM core.fact_sales_order "
        "GROUP BY 1 HAVING count(*) > 1) AS v",
    )
    assert versions == 21
    # Nothing else changed: every fact row of the first load is still there, as it was.
    for table, rows in before.items():
        after = set(_query(WAREHOUSE_DB, f"SELECT * FROM core.{table}"))
        assert set(rows) <= after, f"{table}: rows of the first load changed or vanished"
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_design") == 535
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_transaction") == 18136
    # Dimensions hold the latest values, including the 19 designs changed in place.
    changed = _query(SOURCE_DB, "SELECT design_id, file_location FROM design ORDER BY 1")
    assert _query(WAREHOUSE_DB, "SELECT design_id, file_location FROM core.dim_design ORDER BY 1") == changed
    assert_core_reconciles_with_source()


def test_running_everything_again_changes_nothing(pipeline):
    before = snapshot()

    run_chain(pipeline, SECOND_INTERVAL_END, reconcile=True)

    assert_nothing_changed_since(before)


def test_an_address_change_reaches_the_counterparties_that_use_it(pipeline):
    counterparty_id, address_id = _query(
        SOURCE_DB, "SELECT counterparty_id, legal_address_id FROM counterparty ORDER BY 1 LIMIT 1"
    )[0]
    with psycopg.connect(dsn(SOURCE_DB), autocommit=True) as conn:
        conn.execute(
            "UPDATE address SET city = 'Newtown', last_updated = '2025-02-25 15:10:00' WHERE address_id = %s",
            (address_id,),
        )

    run_chain(pipeline, datetime(2025, 2, 25, 15, 30, tzinfo=UTC))

    city = _scalar(
        WAREHOUSE_DB,
        "SELECT counterparty_legal_city FROM core.dim_counterparty WHERE counterparty_id = %s",
        (counterparty_id,),
    )
    assert city == "Newtown"
    assert _scalar(
        WAREHOUSE_DB, "SELECT city FROM core.dim_location WHERE location_id = %s", (address_id,)
    ) == ("Newtown")
    assert_core_reconciles_with_source()


def test_a_failed_quality_check_fails_the_load_and_says_which_check(pipeline):
    # A fact version goes missing from core: the facts no longer reconcile with what was landed.
    with psycopg.connect(dsn(WAREHOUSE_DB), autocommit=True) as conn:
        conn.execute(
            "DELETE FROM core.fact_payment WHERE payment_record_id = (SELECT max(payment_record_id) "
            "FROM core.fact_payment)"
        )

    result = pipeline["totesys_load"].test()

    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    assert result.state == "failed"
    assert states["quality_checks.reconcile_fact_payment"] == "failed"
    assert states["quality_checks.reconcile_fact_sales_order"] == "success"
    assert states["publish_marts"] != "success"  # nothing is published from a warehouse that fails its checks
    error = _scalar(
        WAREHOUSE_DB,
        "SELECT error FROM etl.task_log WHERE dag_id = 'totesys_load' AND run_id = %s "
        "AND task_id = 'quality_checks.reconcile_fact_payment'",
        (result.run_id,),
    )
    assert "Test failed" in error and "fact_payment" in error

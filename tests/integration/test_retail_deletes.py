"""Rows deleted in retail's MySQL source end deleted in the warehouse (issue 10: retail reconciles).

After a full retail run (the end-to-end module's fixture: MariaDB, the rates API, FTP and S3 drops,
every DAG with ``dag.test()``), rows of each reconciled MySQL table are deleted in MariaDB (a
customer, a product, a store and its sales team). ``retail_ingest`` (the next hour) cannot see a deletion;
``retail_reconcile`` lands the deleted keys as tombstones (``<feed>.deleted``), ``retail_transform``
hands them to the load and ``retail_load`` sets ``deleted_at`` on exactly those dimension rows,
which are kept; every other row of every dimension and fact is untouched. A second reconciliation
finds nothing more to delete, and the warehouse does not move.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from include.etlkit.control.store import ControlStore
from infra.local import settings
from tests.conftest import load_dag
from tests.integration import test_retail_end_to_end as end_to_end
from tests.integration.test_retail_end_to_end import INTERVAL, _query, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The end-to-end module's fixture: fresh sources, warehouse, ledger and buckets, every DAG run once.
pipeline = end_to_end.pipeline

DAGS = Path(__file__).resolve().parents[2] / "dags"
RECONCILE_AT = datetime(2024, 11, 9, 2, 35, tzinfo=UTC)
# MySQL table -> (its key, the warehouse dimension it is loaded into).
DIMENSIONS = {
    "store": ("store_id", "dim_store"),
    "customer": ("customer_id", "dim_customer"),
    "product": ("product_id", "dim_product"),
    "sales_team": ("sales_person_id", "dim_sales_person"),
}


def _mysql(sql: str, params: tuple = ()) -> list[tuple]:
    import MySQLdb

    conn = MySQLdb.connect(
        host=settings.MYSQL_HOST,
        port=settings.MYSQL_PORT,
        user=settings.MYSQL_USER,
        database=settings.database("retail"),
    )
    try:
        cur = conn.cursor()
        cur.execute(sql, params)
        rows = list(cur.fetchall())
        conn.commit()
        return rows
    finally:
        conn.close()


def _dimension(table: str, key: str) -> dict[int, tuple]:
    """Every row of ``core.<table>`` by key, ``deleted_at`` apart (the last column)."""
    rows = _query(f"SELECT {key}, to_jsonb(t) - 'deleted_at' - '{key}', deleted_at FROM core.{table} AS t")
    return {k: (str(values), deleted_at) for k, values, deleted_at in rows}


def _tombstones() -> dict[str, int]:
    return dict(
        ControlStore().query(
            "SELECT table_name, sum(rows) FROM etl.landed_object "
            "WHERE source = 'retail' AND mode = 'delete' GROUP BY table_name"
        )
    )


@pytest.fixture(scope="module")
def reconcile(pipeline):
    dag = load_dag("retail_reconcile", DAGS)
    for task in dag.tasks:
        task.retries = 0
    ControlStore().set_enabled("retail_reconcile", None, True)
    return dag


def test_a_row_deleted_in_mysql_ends_with_deleted_at_in_its_dimension_and_nothing_else_moves(
    pipeline, reconcile
):
    dags, _files = pipeline
    before = {table: _dimension(table, key) for key, table in DIMENSIONS.values()}
    assert all(before.values()), "the end-to-end run loaded no dimension rows"
    assert all(deleted_at is None for rows in before.values() for _, deleted_at in rows.values())
    sales = _query("SELECT count(*), sum(quantity * unit_price) FROM core.fact_sale")

    # Deleted in the source: the customer and the product with the highest keys, and a store with
    # its sales team (sales_team.store_id references store: the team goes first).
    gone: dict[str, set[int]] = {}
    for source_table in ("customer", "product"):
        key = DIMENSIONS[source_table][0]
        ((top,),) = _mysql(f"SELECT max({key}) FROM {source_table}")
        _mysql(f"DELETE FROM {source_table} WHERE {key} = %s", (top,))
        gone[source_table] = {top}
    ((store,),) = _mysql("SELECT max(store_id) FROM store")
    gone["sales_team"] = {
        p for (p,) in _mysql("SELECT sales_person_id FROM sales_team WHERE store_id = %s", (store,))
    }
    _mysql("DELETE FROM sales_team WHERE store_id = %s", (store,))
    _mysql("DELETE FROM store WHERE store_id = %s", (store,))
    gone["store"] = {store}

    # The incremental ingest cannot see a deletion; the reconciliation does, then transform and load.
    run(dags["retail_ingest"], INTERVAL + timedelta(hours=1))
    run(reconcile, RECONCILE_AT)
    assert _tombstones() == {f"{t}.deleted": len(keys) for t, keys in gone.items()}
    run(dags["retail_transform"])
    run(dags["retail_load"])

    for source_table, (key, table) in DIMENSIONS.items():
        after = _dimension(table, key)
        assert after.keys() == before[table].keys(), f"{table}: a row was removed or added"
        deleted = {k for k, (_, deleted_at) in after.items() if deleted_at is not None}
        assert deleted == gone[source_table], table
        # Every value of every row, the deleted one included, is what it was.
        assert {k: values for k, (values, _) in after.items()} == {
            k: values for k, (values, _) in before[table].items()
        }, table
    assert _query("SELECT count(*), sum(quantity * unit_price) FROM core.fact_sale") == sales
    # The deletion flowed through the ledger: nothing of retail is left pending.
    pending = ControlStore().query(
        "SELECT (SELECT count(*) FROM etl.landed_object WHERE source = 'retail' AND transformed_at IS NULL),"
        " (SELECT count(*) FROM etl.processed_object WHERE source = 'retail' AND loaded_at IS NULL)"
    )[0]
    assert pending == (0, 0)

    # A second reconciliation finds nothing more to delete; the warehouse does not move.
    settled = {table: _dimension(table, key) for key, table in DIMENSIONS.values()}
    run(reconcile, RECONCILE_AT + timedelta(days=1))
    assert _tombstones() == {f"{t}.deleted": len(keys) for t, keys in gone.items()}
    run(dags["retail_transform"])
    run(dags["retail_load"])
    assert {table: _dimension(table, key) for key, table in DIMENSIONS.values()} == settled

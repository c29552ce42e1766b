"""Rows deleted in the source reach the warehouse as a queryable state, end to end on totesys.

After the first full snapshot, a payment (a fact) and a design no order uses (a dimension) are
deleted in the source. The daily reconciliation finds them gone and lands their tombstones; the
transform turns them into deletions of fact_payment and dim_design; the load gives the payment a
deletion version and marks the design ``deleted_at``; the marts no longer count the payment; the
quality checks still pass; and a second reconciliation finds nothing more to delete.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.integration.airflow_server import dsn
from tests.integration.test_totesys_end_to_end import (
    FIRST_INTERVAL_END,
    SOURCE_DB,
    WAREHOUSE_DB,
    _query,
    _scalar,
    pipeline,  # noqa: F401 - the module's fixture: fresh source, warehouse, buckets, DAGs
    run,
    run_chain,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _deleted_in_source() -> tuple[int, int]:
    payment_id = _scalar(SOURCE_DB, "SELECT max(payment_id) FROM payment")
    design_id = _scalar(
        SOURCE_DB,
        "SELECT min(design_id) FROM design d WHERE NOT EXISTS "
        "(SELECT 1 FROM sales_order s WHERE s.design_id = d.design_id)",
    )
    with psycopg.connect(dsn(SOURCE_DB), autocommit=True) as conn:
        conn.execute("DELETE FROM payment WHERE payment_id = %s", (payment_id,))
        conn.execute("DELETE FROM design WHERE design_id = %s", (design_id,))
    return payment_id, design_id


def test_deleted_rows_are_marked_in_core_and_left_out_of_the_marts(pipeline):  # noqa: F811
    run_chain(pipeline, FIRST_INTERVAL_END)
    payment_id, design_id = _deleted_in_source()
    assert design_id is not None, "the snapshot has a design no order uses"
    payments_before = _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.fact_payment")
    in_mart = "SELECT count(*) FROM mart.current_payment WHERE payment_id = %s"
    assert _scalar(WAREHOUSE_DB, in_mart, (payment_id,)) == 1

    run(pipeline["totesys_reconcile"], FIRST_INTERVAL_END)
    run(pipeline["totesys_transform"])
    run(pipeline["totesys_load"])  # its quality checks (keys, foreign keys, versions) run too

    versions = _query(
        WAREHOUSE_DB,
        "SELECT deleted_at IS NOT NULL FROM core.fact_payment WHERE payment_id = %s "
        "ORDER BY payment_record_id",
        (payment_id,),
    )
    assert [deleted for (deleted,) in versions] == [False, True]  # its history, then its deletion
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.fact_payment") == payments_before + 1
    assert _scalar(WAREHOUSE_DB, in_mart, (payment_id,)) == 0
    assert _scalar(
        WAREHOUSE_DB, "SELECT deleted_at IS NOT NULL FROM core.dim_design WHERE design_id = %s", (design_id,)
    )
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.dim_design WHERE deleted_at IS NOT NULL") == 1

    # Each deletion lands once: the next reconciliation finds nothing more, the warehouse holds still.
    run(pipeline["totesys_reconcile"], FIRST_INTERVAL_END)
    run(pipeline["totesys_transform"])
    run(pipeline["totesys_load"])
    assert _scalar(WAREHOUSE_DB, "SELECT count(*) FROM core.fact_payment") == payments_before + 1
    tombstones = _query(
        WAREHOUSE_DB,
        "SELECT table_name, rows FROM etl.landed_object "
        "WHERE source = 'totesys' AND mode = 'delete' ORDER BY 1",
    )
    assert tombstones == [("design.deleted", 1), ("payment.deleted", 1)]

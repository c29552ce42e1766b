"""The daily reconciliation of a MySQL feed, on the real MariaDB and S3 (issue 10, defect 9).

A row changed in place (its ``updated_at`` untouched) and a row committed by a transaction that ran
longer than the overlap (its ``updated_at`` already behind the window) are invisible to the
incremental extract; the reconciliation finds both by their hashes and lands them, and only them.
A row deleted in the source is landed once as a tombstone.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.etlkit.control.accounting import take_outcome
from include.etlkit.extract.mysql_reconcile import MySqlReconcileOperator
from tests.conftest import TaskInstanceStub
from tests.integration import test_mysql_extract as mysql_extract
from tests.integration.test_mysql_extract import (
    CONN_ID,
    CUSTOMER_COLUMNS,
    FIRST_INTERVAL,
    HALF_HOUR,
    _query,
    insert_customers,
    read_parquet,
)

# The MySQL extract tests' fixtures: a seeded throwaway source database, S3 and the control plane.
databases = mysql_extract.databases
source_db = mysql_extract.source_db
source = mysql_extract.source
s3 = mysql_extract.s3
control = mysql_extract.control
extract = mysql_extract.extract

pytestmark = pytest.mark.integration


def reconcile(n: int, *, source_name: str, bucket: str) -> dict:
    operator = MySqlReconcileOperator(
        task_id="reconcile_customer",
        table={"name": "customer", "key": "customer_id"},
        source=source_name,
        conn_id=CONN_ID,
        bucket=bucket,
    )
    start = FIRST_INTERVAL + n * HALF_HOUR
    run_id = f"scheduled__{start.isoformat()}"
    context = {
        "data_interval_start": start,
        "data_interval_end": start + HALF_HOUR,
        "run_id": run_id,
        "ti": TaskInstanceStub(dag_id="mysql_reconcile_test", task_id=operator.task_id, run_id=run_id),
    }
    result = operator.execute(context)
    result["reported"] = take_outcome(context["ti"])
    return result


def row_versions(control, source_name: str) -> dict[str, str]:
    return dict(
        control.query(
            "SELECT row_key, row_hash FROM etl.row_version WHERE source = %s AND table_name = 'customer'",
            (source_name,),
        )
    )


def test_the_reconciliation_lands_rows_changed_in_place_or_committed_late_and_nothing_else(
    extract, s3, bucket, source, source_name, control
):
    before = reconcile(0, source_name=source_name, bucket=bucket)
    assert (before["rows"], before["changed"]) == (0, 0)  # never landed: the extract takes a snapshot

    first = extract(0)
    versions = row_versions(control, source_name)
    assert len(versions) == first["rows"] == 202  # the extract records every landed row's hash
    assert (reconcile(0, source_name=source_name, bucket=bucket)["changed"]) == 0

    # Changed in place: updated_at untouched. Committed late: updated_at an hour behind the window.
    _query(source, "UPDATE customer SET last_name = 'Silently-Changed' WHERE customer_id = 1")
    late = (FIRST_INTERVAL - timedelta(hours=1)).replace(tzinfo=None)
    late_row = {"customer_id": 5000, "first_name": "Late", "last_name": "Row", "updated_at": late}
    insert_customers(source, [dict.fromkeys(CUSTOMER_COLUMNS) | late_row])
    assert extract(1)["rows"] == 0  # the incremental extract sees neither

    result = reconcile(1, source_name=source_name, bucket=bucket)

    assert (result["mode"], result["changed"], result["rows"]) == ("reconcile", 2, 2)
    assert (result["reported"].rows_in, result["reported"].rows_out) == (2, 2)
    landed = read_parquet(s3, bucket, result["key"])
    assert landed.column_names == CUSTOMER_COLUMNS  # the hash is recorded, never landed
    assert [(r["customer_id"], r["last_name"]) for r in landed.to_pylist()] == [
        (1, "Silently-Changed"),
        (5000, "Row"),
    ]
    after = row_versions(control, source_name)
    assert after["1"] != versions["1"] and "5000" in after
    assert {k: v for k, v in after.items() if k not in ("1", "5000")} == {
        k: v for k, v in versions.items() if k != "1"
    }
    # Once landed, they are reconciled: nothing more to land.
    assert reconcile(2, source_name=source_name, bucket=bucket)["changed"] == 0

    # A row deleted in the source is landed once as a tombstone (its key, when it was seen).
    _query(source, "DELETE FROM customer WHERE customer_id = 3")
    gone = reconcile(3, source_name=source_name, bucket=bucket)
    assert (gone["changed"], gone["deleted"], gone["reported"].rows_out) == (0, 1, 1)
    ((key, rows),) = control.query(
        "SELECT key, rows FROM etl.landed_object WHERE source = %s AND table_name = 'customer.deleted' "
        "AND mode = 'delete'",
        (source_name,),
    )
    tombstones = read_parquet(s3, bucket, key)
    assert rows == 1 and tombstones.column("customer_id").to_pylist() == ["3"]
    assert reconcile(4, source_name=source_name, bucket=bucket)["deleted"] == 0

"""The daily reconciliation of a MySQL feed, on the real MariaDB and S3 (issue 10, defect 9).

A row changed in place (its ``updated_at`` untouched) and a row committed by a transaction that ran
longer than the overlap (its ``updated_at`` already behind the window) are invisible to the
incremental extract; the reconciliation finds both by their hashes and lands them, and only them.
A row deleted in the source is landed once as a tombstone.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from include.etlkit.control.ledger import DELETED_VERSION, Ledger
from include.etlkit.extract.mysql_reconcile import MySqlReconcileOperator
from include.etlkit.row_identity import ROW_HASH
from tests.conftest import TaskTry
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
    task = TaskTry(
        operator, "mysql_reconcile_test", f"scheduled__{start.isoformat()}", (start, start + HALF_HOUR)
    )
    result = task.execute()
    result["reported"] = task.outcome
    return result


def row_versions(source_name: str, table: str = "customer") -> dict[str, str]:
    """The latest landed version of every key: the baseline object's, with etl.row_version's over it."""
    return Ledger().row_hashes(source_name, table)


def source_hashes(database: str, table: str, key: str) -> dict[str, str]:
    """Every row's hash as the server computes it (the reconciliation's own SQL)."""
    operator = MySqlReconcileOperator(
        task_id="hashes", table={"name": table, "key": key}, source="x", conn_id=CONN_ID, bucket="x"
    )
    return operator._current_hashes()


def test_the_reconciliation_lands_rows_changed_in_place_or_committed_late_and_nothing_else(
    extract, s3, bucket, source, source_name, control
):
    before = reconcile(0, source_name=source_name, bucket=bucket)
    assert (before["rows"], before["changed"]) == (0, 0)  # never landed: the extract takes a snapshot

    first = extract(0)
    versions = row_versions(source_name)
    assert len(versions) == first["rows"] == 202  # the extract records every landed row's hash
    # ... as the baseline: the landed snapshot itself, one ledger row, none per row (as PostgreSQL's).
    assert control.query(
        "SELECT key, key_column, hash_column, cursor_column FROM etl.row_version_base "
        "WHERE source = %s AND table_name = 'customer'",
        (source_name,),
    ) == [(first["key"], "customer_id", ROW_HASH, "updated_at")]
    assert not control.query("SELECT 1 FROM etl.row_version WHERE source = %s", (source_name,))
    assert versions == source_hashes(source, "customer", "customer_id")
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
    landed = read_parquet(s3, bucket, result["key"], row_hash=True)
    assert landed.column_names == [*CUSTOMER_COLUMNS, ROW_HASH]  # each row's hash lands with it
    assert [(r["customer_id"], r["last_name"]) for r in landed.to_pylist()] == [
        (1, "Silently-Changed"),
        (5000, "Row"),
    ]
    after = row_versions(source_name)
    assert control.query(  # only the reconciled rows' versions are folded in, the baseline stays
        "SELECT row_key FROM etl.row_version WHERE source = %s ORDER BY row_key", (source_name,)
    ) == [("1",), ("5000",)]
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
    assert "3" not in row_versions(source_name)  # its version in the baseline, overridden by the deletion
    assert control.query(
        "SELECT row_hash FROM etl.row_version WHERE source = %s AND row_key = '3'", (source_name,)
    ) == [(DELETED_VERSION,)]
    assert reconcile(4, source_name=source_name, bucket=bucket)["deleted"] == 0


def test_a_row_changed_in_place_and_back_is_reconciled_each_time_over_the_baseline(
    extract, s3, bucket, source, source_name, control
):
    """v1 -> v2 -> v1 with the cursor untouched: each change is found and landed (issue 11). The
    baseline holds v1; v2 and then v1 again are later landings at the same cursor, which win."""
    extract(0)
    v1 = row_versions(source_name)["7"]
    ((city,),) = _query(source, "SELECT city FROM customer WHERE customer_id = 7")

    # updated_at = updated_at: the column's ON UPDATE would move it otherwise.
    _query(source, "UPDATE customer SET city = 'Elsewhere', updated_at = updated_at WHERE customer_id = 7")
    changed = reconcile(1, source_name=source_name, bucket=bucket)
    v2 = row_versions(source_name)["7"]
    assert (changed["changed"], v2 != v1) == (1, True)

    _query(source, "UPDATE customer SET city = %s, updated_at = updated_at WHERE customer_id = 7", (city,))
    back = reconcile(2, source_name=source_name, bucket=bucket)
    assert back["changed"] == 1
    assert [r["city"] for r in read_parquet(s3, bucket, back["key"]).to_pylist()] == [city]
    assert row_versions(source_name)["7"] == v1
    assert reconcile(3, source_name=source_name, bucket=bucket)["changed"] == 0
    assert row_versions(source_name) == source_hashes(source, "customer", "customer_id")


@pytest.mark.parametrize(
    ("table", "ddl", "values", "baseline"),
    [
        (  # the server's text 2024-11-01 00:00:01.500, not Arrow's: versions row by row
            "readings",
            "at datetime(3) PRIMARY KEY",
            "('2024-11-01 00:00:01.500', 1, '2024-11-01 00:00:02'), "
            "('2024-11-01 00:00:03', 2, '2024-11-01 00:00:04')",
            False,
        ),
        # The server sends 00042; the reconciliation (MySQLdb's int) and Arrow both say 42: a baseline.
        ("tickets", "at int(5) ZEROFILL PRIMARY KEY", "(42, 1, '2024-11-01 00:00:02')", True),
    ],
)
def test_keys_whose_text_arrow_writes_otherwise_keep_their_versions_per_row(
    extract, s3, bucket, source, source_name, control, table, ddl, values, baseline
):
    """A key Arrow would write otherwise than the reconciliation (a datetime) has its versions recorded
    row by row, with the reconciliation's text (no baseline); either way, it finds nothing changed."""
    _query(source, f"DROP TABLE IF EXISTS {table}")
    _query(source, f"CREATE TABLE {table} ({ddl}, value int, updated_at timestamp(3) NOT NULL)")
    _query(source, f"INSERT INTO {table} VALUES {values}")
    spec = {"name": table, "key": "at"}
    assert extract(0, spec)["rows"] > 0
    assert (
        bool(
            control.query(
                "SELECT 1 FROM etl.row_version_base WHERE source = %s AND table_name = %s",
                (source_name, table),
            )
        )
        == baseline
    )
    assert row_versions(source_name, table) == source_hashes(source, table, "at")
    operator = MySqlReconcileOperator(
        task_id=f"reconcile_{table}", table=spec, source=source_name, conn_id=CONN_ID, bucket=bucket
    )
    start = FIRST_INTERVAL + HALF_HOUR
    task = TaskTry(
        operator, "mysql_reconcile_test", f"scheduled__{start.isoformat()}", (start, start + HALF_HOUR)
    )
    result = task.execute()
    assert (result["changed"], result["deleted"]) == (0, 0)

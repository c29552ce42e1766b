"""The load under bad data and overlapping runs, on the real local S3 and PostgreSQL.

- An object whose data the warehouse refuses is rejected with the reason; the objects before and
  after it load, the task succeeds and counts it rejected, and no later load trips over it again.
- Two loads of one source at once (the schedule and a manual run, say) take turns: every object
  is loaded once, and landing holds one copy of each.
- Two transactions loading the same object at once (what the turn-taking prevents, forced here)
  still leave one landing copy of it.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from include.etlkit.control.ledger import Ledger
from include.etlkit.load.operators import LoadProcessedOperator
from include.etlkit.load.postgres import PostgresWarehouse
from include.etlkit.load.warehouse import TableLoad
from include.etlkit.storage import ImmutableStore
from infra.local import settings
from tests.conftest import TaskTry

pytestmark = pytest.mark.integration

CONN_ID = "wh_isolation"
SCHEMA = pa.schema([("id", pa.int32()), ("code", pa.string()), ("amount", pa.decimal128(10, 2))])


def _connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname, autocommit=True
    )


@pytest.fixture(scope="module")
def warehouse_db() -> str:
    name = f"wh_iso_{uuid.uuid4().hex[:12]}"
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _connect(name) as conn:
        conn.execute("CREATE SCHEMA landing; CREATE SCHEMA core")
    yield name
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def table(warehouse_db, monkeypatch, control_plane) -> str:
    """A core table whose code is at most 3 characters and whose amount may not be negative."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{warehouse_db}",
    )
    name = f"dim_thing_{uuid.uuid4().hex[:8]}"
    with _connect(warehouse_db) as conn:
        conn.execute(
            f"CREATE TABLE core.{name} (id integer PRIMARY KEY, code varchar(3) NOT NULL, "
            "amount numeric(10,2) CHECK (amount >= 0))"
        )
    return name


def _processed(bucket: str, source: str, table: str, rows: list[tuple], label: str) -> Any:
    records = [{"id": i, "code": c, "amount": Decimal(a)} for i, c, a in rows]
    data = pa.Table.from_pylist(records, schema=SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(data, buffer)
    stored = ImmutableStore().create_bytes(
        bucket, f"{source}/{table}/{label}", table, buffer.getvalue(), ".parquet"
    )
    Ledger().record_transform(
        source=source, run_id=f"transform_{label}", taken=[], produced=[(table, stored, len(rows))]
    )
    return stored


def _load(source: str, table: str) -> tuple[dict, Any]:
    operator = LoadProcessedOperator(
        task_id="load_processed",
        source=source,
        tables=[TableLoad(table, ("id",), "upsert")],
        conn_id=CONN_ID,
    )
    task = TaskTry(operator, "isolation_load", f"manual__{uuid.uuid4().hex[:8]}")
    result = task.execute()
    return result, task.outcome


def _rows(db: str, query: str) -> list[tuple]:
    with _connect(db) as conn:
        return conn.execute(query).fetchall()


def test_an_object_the_warehouse_refuses_is_rejected_alone(bucket, source_name, table, warehouse_db):
    first = _processed(bucket, source_name, table, [(1, "AAA", "1.00")], "a")
    refused = _processed(bucket, source_name, table, [(2, "TOO-LONG", "2.00"), (3, "CCC", "3.00")], "b")
    negative = _processed(bucket, source_name, table, [(4, "DDD", "-4.00")], "c")
    last = _processed(bucket, source_name, table, [(5, "EEE", "5.00")], "d")

    merged, outcome = _load(source_name, table)

    assert merged == {table: 2}
    assert (outcome.rows_in, outcome.rows_out, outcome.rows_rejected) == (5, 2, 3)
    assert _rows(warehouse_db, f"SELECT id FROM core.{table} ORDER BY id") == [(1,), (5,)]
    rejected = {obj.key: reason for obj, reason in Ledger().rejected_processed(source_name)}
    assert set(rejected) == {refused.key, negative.key}
    assert "value too long for type character varying(3)" in rejected[refused.key]
    assert "violates check constraint" in rejected[negative.key]
    # Nothing is left pending to fail the next load the same way.
    assert Ledger().pending_processed(source_name) == []
    assert _load(source_name, table)[0] == {}
    assert {first.key, last.key} == {
        k for (k,) in _rows(warehouse_db, f"SELECT DISTINCT _load_id FROM landing.{table}")
    }


def test_two_loads_of_one_source_at_once_take_turns(bucket, source_name, table, warehouse_db):
    for n in range(6):
        _processed(bucket, source_name, table, [(n, f"C{n}", f"{n}.00")], f"obj{n}")
    results: list[Any] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            results.append(_load(source_name, table))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sorted(outcome.rows_in for _, outcome in results) == [0, 6]  # one loaded all, one found none
    assert _rows(warehouse_db, f"SELECT count(*), count(DISTINCT _load_id) FROM landing.{table}") == [(6, 6)]
    assert _rows(warehouse_db, f"SELECT count(*) FROM core.{table}") == [(6,)]


def test_two_transactions_landing_one_object_leave_one_copy(bucket, source_name, table, warehouse_db):
    """Both transactions are made to overlap for certain: a lock on the core table holds each one at
    its merge (or, with the landing registry, the second one earlier) until both are waiting."""
    stored = _processed(bucket, source_name, table, [(n, "X", "1.00") for n in range(1000)], "same")
    warehouse = PostgresWarehouse(CONN_ID)
    spec = TableLoad(table, ("id",), "upsert")
    warehouse.ensure_landing(spec, SCHEMA)
    errors: list[BaseException] = []

    rows = pq.read_table(io.BytesIO(ImmutableStore().get_bytes(stored.bucket, stored.key)))

    def load() -> None:
        try:  # the landing copy and merge alone (load_object's DDL would take turns by itself)
            warehouse.load(spec, rows, stored.key)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=warehouse_db
    ) as blocker:
        blocker.execute(f"LOCK TABLE core.{table} IN SHARE ROW EXCLUSIVE MODE")
        threads = [threading.Thread(target=load) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while _rows(warehouse_db, WAITING)[0][0] < 2:
            assert time.monotonic() < deadline and not errors, errors
            time.sleep(0.1)
        blocker.commit()  # both wait now: let them go
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert _rows(warehouse_db, f"SELECT count(*) FROM landing.{table}") == [(1000,)]
    assert _rows(warehouse_db, f"SELECT count(*) FROM core.{table}") == [(1000,)]


WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
)

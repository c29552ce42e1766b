"""PostgresTableExtractOperator against the real PostgreSQL source, S3 (moto) and the etl ledger.

Each test gets a fresh table in a throwaway source database, a source name of its own (so its ledger
rows and S3 keys are its own) and runs the operator's ``execute`` directly, interval by interval.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg import sql

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.postgres import ROW_HASH, PostgresTableExtractOperator, TableSpec, row_identity
from infra.local import settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

CONN_ID = "extract_src"
TABLE = "customer"
HALF_HOUR = timedelta(minutes=30)
FIRST_INTERVAL = datetime(2024, 11, 15, 10, 0, tzinfo=UTC)  # every seeded row is older than 09:45

COLUMNS = [
    "customer_id",
    "name",
    "note",
    "postcode",
    "address",
    "balance",
    "active",
    "loyalty_points",
    "created_at",
    "signup_date",
    "last_updated",
]

SEED_ROWS: list[dict[str, Any]] = [
    {
        "customer_id": 1,
        "name": "O'Keefe",
        "note": "",
        "postcode": "01234",
        "address": 'line one\nline two, "the quoted bit"',
        "balance": Decimal("3.94"),
        "active": True,
        "loyalty_points": None,
        "created_at": datetime(2024, 1, 2, 3, 4, 5, 678000),
        "signup_date": "2024-11-15",
        "last_updated": datetime(2024, 11, 14, 8, 0, 0, 123000),
    },
    {
        "customer_id": 2,
        "name": "Zoë Smith",
        "note": None,
        "postcode": "00007",
        "address": "  padded, with spaces  ",
        "balance": Decimal("0.10"),
        "active": False,
        "loyalty_points": 0,
        "created_at": datetime(2024, 2, 29, 23, 59, 59, 999000),
        "signup_date": "2024-02-29",
        "last_updated": datetime(2024, 11, 15, 9, 0, 0, 1000),
    },
    {
        "customer_id": 3,
        "name": 'Mc\'Donald "Mac"',
        "note": "a note",
        "postcode": None,
        "address": None,
        "balance": Decimal("-12345678.90"),
        "active": None,
        "loyalty_points": 2147483647,
        "created_at": datetime(2023, 12, 31, 0, 0, 0, 1000),
        "signup_date": "",
        "last_updated": datetime(2024, 11, 1, 0, 0, 0, 999000),
    },
]


def _admin() -> psycopg.Connection:
    return _connect("postgres")


def _connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname, autocommit=True
    )


@pytest.fixture(scope="module")
def source_db() -> str:
    name = f"extract_src_{uuid.uuid4().hex[:12]}"
    with _admin() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield name
    with _admin() as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def source(source_db, monkeypatch) -> psycopg.Connection:
    """A connection to the source database, with a freshly seeded ``customer`` table."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{source_db}",
    )
    conn = _connect(source_db)
    conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
    conn.execute(
        f"""CREATE TABLE {TABLE} (
            customer_id    integer PRIMARY KEY,
            name           text NOT NULL,
            note           text,
            postcode       varchar(10),
            address        text,
            balance        numeric(10, 2),
            active         boolean,
            loyalty_points integer,
            created_at     timestamp(3),
            signup_date    text,
            last_updated   timestamp NOT NULL
        )"""
    )
    insert_rows(conn, SEED_ROWS)
    yield conn
    conn.close()


def insert_rows(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                sql.Identifier(TABLE),
                sql.SQL(", ").join(map(sql.Identifier, COLUMNS)),
                sql.SQL(", ").join(sql.Placeholder(c) for c in COLUMNS),
            ),
            rows,
        )


@pytest.fixture
def s3(local_services):
    return s3_client()


@pytest.fixture
def extract(source, source_name, bucket):
    """Run the operator for the ``n``-th half-hour interval from FIRST_INTERVAL; returns its result."""

    def run(n: int, table: TableSpec | dict | None = None) -> dict[str, Any]:
        start = FIRST_INTERVAL + n * HALF_HOUR
        operator = PostgresTableExtractOperator(
            task_id=f"land_{TABLE}",
            table=table or TableSpec(name=TABLE, key="customer_id"),
            source=source_name,
            conn_id=CONN_ID,
            bucket=bucket,
        )
        task = TaskTry(
            operator, "extract_test", f"scheduled__{start.isoformat()}", (start, start + HALF_HOUR)
        )
        result = task.execute()
        result["reported"] = task.outcome
        return result

    return run


def landed_objects(store, source_name: str) -> list[tuple]:
    return store.query(
        "SELECT key, mode, rows, window_start, window_end FROM etl.landed_object "
        "WHERE source = %s ORDER BY landed_at, key",
        (source_name,),
    )


def read_parquet(s3, bucket: str, key: str):
    return pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))


def source_hashes(conn: psycopg.Connection) -> dict[str, str]:
    """Each source row's identity, read row by row through psycopg (not the extract's binary COPY)
    and hashed as the reconciliation hashes: the extract must have recorded exactly these."""
    cur = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM {TABLE} ORDER BY customer_id")
    landed_types = {
        "customer_id": pa.int32(),
        "balance": pa.decimal128(10, 2),
        "active": pa.bool_(),
        "loyalty_points": pa.int32(),
        "created_at": pa.timestamp("us"),
        "last_updated": pa.timestamp("us"),
    }
    columns = list(zip(*cur.fetchall(), strict=True))
    arrays = [
        pa.array(values, landed_types.get(name, pa.string()))
        for name, values in zip(COLUMNS, columns, strict=True)
    ]
    return dict(zip([str(k) for k in columns[0]], row_identity(arrays).to_pylist(), strict=True))


def test_row_identity_is_siphash_of_the_values_as_text_with_null_as_backslash_n():
    import numpy as np
    from pandas.util import hash_array

    expected = hash_array(np.array(["1\x1f\\N\x1f2.50"], dtype=object), categorize=False)[0]
    identity = row_identity([pa.array([1]), pa.array([None], pa.string()), pa.array([Decimal("2.50")])])
    assert identity.to_pylist() == [str(expected)]
    assert row_identity([pa.array([1]), pa.array([""]), pa.array([Decimal("2.50")])]) != identity


def test_first_run_lands_a_full_snapshot_whose_parquet_round_trips_every_value(
    extract, s3, bucket, source, source_name, control_plane
):
    result = extract(0)

    assert result["mode"] == "full"
    assert result["rows"] == len(SEED_ROWS)
    assert result["window_start"] is None
    assert result["window_end"] == "2024-11-15T10:30:00"
    assert result["key"].startswith(f"{source_name}/{TABLE}/2024/11/15/{TABLE}-")
    assert (result["reported"].rows_in, result["reported"].rows_out) == (3, 3)
    assert bucket_keys(s3, bucket, source_name) == [result["key"]]

    landed = read_parquet(s3, bucket, result["key"])
    assert landed.column_names == [*COLUMNS, ROW_HASH]
    rows = landed.to_pylist()
    hashes = {str(row["customer_id"]): row.pop(ROW_HASH) for row in rows}
    assert rows == SEED_ROWS  # NULL vs '', Decimal, leading zeros, quotes/newlines, ms timestamps
    assert hashes == source_hashes(source)
    assert landed_objects(control_plane, source_name) == [
        (result["key"], "full", 3, None, datetime(2024, 11, 15, 10, 30))
    ]
    assert Ledger().landed_until(source_name, TABLE) == datetime(2024, 11, 15, 10, 30)


def test_next_interval_without_changes_lands_no_object_but_moves_the_state(
    extract, s3, bucket, source_name, control_plane
):
    first = extract(0)

    second = extract(1)

    assert (second["rows"], second["key"], second["mode"]) == (0, None, "incremental")
    assert second["window_start"] == "2024-11-15T10:15:00"  # interval start minus the overlap
    assert bucket_keys(s3, bucket, source_name) == [first["key"]]
    assert [row[0] for row in landed_objects(control_plane, source_name)] == [first["key"]]
    assert Ledger().landed_until(source_name, TABLE) == datetime(2024, 11, 15, 11, 0)


def test_an_updated_row_is_landed_alone_by_the_next_run(extract, s3, bucket, source, source_name):
    extract(0)
    extract(1)
    source.execute(
        f"UPDATE {TABLE} SET name = 'O''Keefe-Jones', last_updated = '2024-11-15 11:10:00.250' "
        "WHERE customer_id = 1"
    )

    third = extract(2)

    assert third["rows"] == 1
    assert (third["window_start"], third["window_end"]) == ("2024-11-15T10:45:00", "2024-11-15T11:30:00")
    rows = read_parquet(s3, bucket, third["key"]).to_pylist()
    assert [(r["customer_id"], r["name"], r["last_updated"]) for r in rows] == [
        (1, "O'Keefe-Jones", datetime(2024, 11, 15, 11, 10, 0, 250000))
    ]
    assert len(bucket_keys(s3, bucket, source_name)) == 2


def test_rerunning_the_same_interval_reuses_its_content_addressed_object(
    extract, s3, bucket, source, source_name, control_plane
):
    extract(0)
    source.execute(
        f"UPDATE {TABLE} SET balance = 4.00, last_updated = '2024-11-15 10:40' WHERE customer_id = 2"
    )
    once = extract(1)
    objects_after_once = landed_objects(control_plane, source_name)

    again = extract(1)

    assert once["rows"] == again["rows"] == 1
    assert again["key"] == once["key"]
    assert landed_objects(control_plane, source_name) == objects_after_once
    assert len(bucket_keys(s3, bucket, source_name)) == 2  # the snapshot and the one increment


def test_landed_until_only_moves_forward_when_an_older_interval_runs_after_a_newer_one(
    extract, source_name, control_plane
):
    extract(0)
    extract(4)  # 12:00-12:30
    assert Ledger().landed_until(source_name, TABLE) == datetime(2024, 11, 15, 12, 30)

    backfill = extract(1)  # 10:30-11:00, after the state is already at 12:30

    assert backfill["window_start"] == "2024-11-15T10:15:00"
    assert backfill["window_end"] == "2024-11-15T11:00:00"
    assert Ledger().landed_until(source_name, TABLE) == datetime(2024, 11, 15, 12, 30)


def test_row_versions_are_the_first_snapshot_as_baseline_plus_one_row_per_later_object_folded(
    extract, source, source_name, control_plane
):
    first = extract(0)

    # The full snapshot is the baseline: one row naming the object, none per landed row.
    assert control_plane.query(
        "SELECT key, key_column, hash_column, cursor_column FROM etl.row_version_base "
        "WHERE source = %s AND table_name = %s",
        (source_name, TABLE),
    ) == [(first["key"], "customer_id", ROW_HASH, "last_updated")]
    assert not control_plane.query(
        "SELECT 1 FROM etl.row_version WHERE source = %s AND table_name = %s", (source_name, TABLE)
    )
    before = Ledger().row_hashes(source_name, TABLE)
    assert before == source_hashes(source)

    source.execute(
        f"UPDATE {TABLE} SET note = NULL, last_updated = '2024-11-15 10:50:00.5' WHERE customer_id = 3"
    )
    update = extract(2)
    # The increment waits as one row naming its object (issue 11), not one row per landed row...
    assert control_plane.query(
        "SELECT key, key_column, hash_column, cursor_column FROM etl.row_version_object "
        "WHERE source = %s AND table_name = %s",
        (source_name, TABLE),
    ) == [(update["key"], "customer_id", ROW_HASH, "last_updated")]
    assert not control_plane.query(
        "SELECT 1 FROM etl.row_version WHERE source = %s AND table_name = %s", (source_name, TABLE)
    )
    # ... until the versions are read (the reconciliation), which folds it into etl.row_version.
    after = Ledger().row_hashes(source_name, TABLE)
    assert not control_plane.query("SELECT 1 FROM etl.row_version_object WHERE source = %s", (source_name,))
    versions = control_plane.query(
        "SELECT row_key, row_hash, last_updated, landed_key FROM etl.row_version "
        "WHERE source = %s AND table_name = %s ORDER BY row_key",
        (source_name, TABLE),
    )

    assert [row[0] for row in versions] == ["3"]
    assert versions[0][2:] == (datetime(2024, 11, 15, 10, 50, 0, 500000), update["key"])
    assert after == source_hashes(source)
    assert after["3"] != before["3"] and {k: after[k] for k in "12"} == {k: before[k] for k in "12"}

    # A version landed later but older than the baseline's (a backfill of an old interval) never wins
    # over it: the newer cursor wins, as in the upsert.
    control_plane.query(
        "INSERT INTO etl.row_version (source, table_name, row_key, row_hash, last_updated, landed_key) "
        "VALUES (%s, %s, '1', 'stale', '2000-01-01', 'old') ",
        (source_name, TABLE),
    )
    assert Ledger().row_hashes(source_name, TABLE)["1"] == before["1"]


def test_table_without_its_cursor_column_raises_a_clear_lookup_error(
    extract, source, source_name, control_plane
):
    source.execute("CREATE TABLE IF NOT EXISTS no_cursor (id integer PRIMARY KEY, name text)")

    with pytest.raises(LookupError, match=r"public\.no_cursor has no column\(s\) \['last_updated'\]"):
        extract(0, {"name": "no_cursor", "key": "id"})

    assert landed_objects(control_plane, source_name) == []
    assert control_plane.query("SELECT 1 FROM etl.extract_state WHERE source = %s", (source_name,)) == []


def test_text_values_that_look_like_null_markers_are_landed_verbatim(extract, s3, bucket, source):
    markers = ["NA", "NULL", "null", "N/A", "nan"]
    insert_rows(
        source,
        [
            {
                **SEED_ROWS[1],
                "customer_id": 100 + i,
                "name": marker,
                "note": marker,
                "last_updated": datetime(2024, 11, 15, 9, 30),
            }
            for i, marker in enumerate(markers)
        ],
    )

    result = extract(0)

    rows = read_parquet(s3, bucket, result["key"]).to_pylist()
    assert [(r["name"], r["note"]) for r in rows if r["customer_id"] >= 100] == [(m, m) for m in markers]

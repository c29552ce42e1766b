"""The retail seeder and MySqlTableExtractOperator against the real MariaDB, S3 (moto) and etl ledger.

The source is a throwaway database ``retail_x_<hex>`` (dropped afterwards) reached through the Airflow
connection ``retail_x``; each test reseeds it, uses a source name of its own (its ledger rows, schema
records and S3 keys are its own) and runs the operator's ``execute`` directly, interval by interval.
"""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from pandas.util import hash_array

from include.etlkit.extract.mysql import (
    MySqlTableExtractOperator,
    SourceUnavailable,
    quote_identifier,
)
from include.etlkit.row_identity import ROW_HASH
from infra.local import seed_retail, settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

CONN_ID = "retail_x"
HALF_HOUR = timedelta(minutes=30)
FIRST_INTERVAL = datetime(2024, 11, 15, 10, 0, tzinfo=UTC)  # every seeded row is older than 09:45
CUSTOMER_COLUMNS = list(seed_retail.COLUMNS["customer"])

EDGE_CUSTOMERS: list[dict[str, Any]] = [
    {
        "customer_id": 1001,
        "first_name": "Seán",
        "last_name": "O'Brien",
        "address": "",  # an empty string, not NULL
        "city": None,
        "postcode": "01234",
        "phone_number": None,
        "email": "",
        "updated_at": datetime(2024, 11, 14, 8, 0, 0, 123000),
    },
    {
        "customer_id": 1002,
        "first_name": "NULL",  # a value that looks like a null marker, landed verbatim
        "last_name": 'Mc\'Donald "Mac"',
        "address": 'line one\nline two, "quoted"',
        "city": "Stoke-on-Trent",
        "postcode": None,
        "phone_number": "",
        "email": "mac@example.com",
        "updated_at": datetime(2024, 11, 15, 9, 0, 0, 1000),
    },
]
EDGE_PRODUCTS = [
    (
        1001,
        'Chef\'s Knife "Pro"',
        "Kitchen",
        Decimal("99999999.99"),
        0,
        datetime(2024, 11, 15, 9, 44, 59, 999000),
    ),
    (1002, "Penny Sweet", "Toys", Decimal("0.01"), 1, datetime(2024, 11, 1, 0, 0, 0, 1000)),
]


def _connect(database: str | None = None):
    return seed_retail._connect(database, autocommit=True)


def _query(database: str, statement: str, params: Any = None) -> list[tuple]:
    conn = _connect(database)
    try:
        cur = conn.cursor()
        cur.execute(statement, params)
        return list(cur.fetchall())
    finally:
        conn.close()


def _dump(database: str) -> dict[str, list[tuple]]:
    return {t: _query(database, f"SELECT * FROM `{t}` ORDER BY 1") for t in seed_retail.TABLES}


@pytest.fixture(scope="module")
def databases() -> Iterator[list[str]]:
    """Collects the throwaway databases the tests create, and drops them all at the end."""
    names: list[str] = []
    yield names
    conn = _connect()
    try:
        for name in names:
            conn.cursor().execute(f"DROP DATABASE IF EXISTS {quote_identifier(name)}")
    finally:
        conn.close()


def _new_database(databases: list[str]) -> str:
    name = f"retail_x_{uuid.uuid4().hex[:12]}"
    databases.append(name)
    return name


@pytest.fixture(scope="module")
def source_db(databases) -> str:
    return _new_database(databases)


@pytest.fixture
def source(source_db, monkeypatch) -> str:
    """The source database, freshly seeded (scale 1, seed 7) plus the edge-case rows."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"mysql://{settings.MYSQL_USER}@{settings.MYSQL_HOST}:{settings.MYSQL_PORT}/{source_db}",
    )
    conn = _connect()
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(source_db)}")
        for table in ("big", "sales_team", "product", "customer", "store"):
            cur.execute(f"DROP TABLE IF EXISTS {quote_identifier(source_db)}.{quote_identifier(table)}")
    finally:
        conn.close()
    seed_retail.seed(1, 7, database=source_db)
    insert_customers(source_db, EDGE_CUSTOMERS)
    conn = _connect(source_db)
    try:
        conn.cursor().executemany(
            "INSERT INTO product (product_id, name, category, unit_price, is_active, updated_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            EDGE_PRODUCTS,
        )
    finally:
        conn.close()
    return source_db


def insert_customers(database: str, rows: list[dict[str, Any]]) -> None:
    conn = _connect(database)
    try:
        conn.cursor().executemany(
            f"INSERT INTO customer ({', '.join(CUSTOMER_COLUMNS)}) "
            f"VALUES ({', '.join(f'%({c})s' for c in CUSTOMER_COLUMNS)})",
            rows,
        )
    finally:
        conn.close()


@pytest.fixture
def s3(local_services):
    return s3_client()


@pytest.fixture(scope="module")
def control(control_plane):
    # control_plane has applied every file of sql/postgres/control/, schema_drift.sql included.
    return control_plane


def run_extract(
    n: int, *, table: str | dict, source_name: str, bucket: str, conn_id: str = CONN_ID, **kwargs: Any
) -> dict[str, Any]:
    """Run the operator for the ``n``-th half-hour interval from FIRST_INTERVAL; returns its result."""
    spec = table if isinstance(table, dict) else {"name": table, "key": f"{table}_id"}
    start = FIRST_INTERVAL + n * HALF_HOUR
    operator = MySqlTableExtractOperator(
        task_id=f"land_{spec['name']}",
        table=spec,
        source=source_name,
        conn_id=conn_id,
        bucket=bucket,
        **kwargs,
    )
    task = TaskTry(
        operator, "mysql_extract_test", f"scheduled__{start.isoformat()}", (start, start + HALF_HOUR)
    )
    result = task.execute()
    result["reported"] = task.outcome
    result["operator"] = operator
    return result


@pytest.fixture
def extract(source, source_name, bucket):
    def run(n: int, table: str | dict = "customer", **kwargs: Any) -> dict[str, Any]:
        return run_extract(n, table=table, source_name=source_name, bucket=bucket, **kwargs)

    return run


def landed_objects(store, source_name: str) -> list[tuple]:
    return store.query(
        "SELECT key, mode, rows, window_start, window_end FROM etl.landed_object "
        "WHERE source = %s ORDER BY landed_at, key",
        (source_name,),
    )


def read_parquet(s3, bucket: str, key: str, *, row_hash: bool = False):
    """A landed object's source columns (and, with ``row_hash``, the row hash landed with them)."""
    table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
    return table if row_hash or ROW_HASH not in table.column_names else table.drop_columns([ROW_HASH])


def source_rows(database: str, table: str, columns: list[str]) -> list[dict[str, Any]]:
    rows = _query(database, f"SELECT {', '.join(columns)} FROM `{table}` ORDER BY 1")
    return [dict(zip(columns, row, strict=True)) for row in rows]


# -- the seeder -------------------------------------------------------------------------------------


def test_generator_is_deterministic_per_seed_and_scales():
    first = seed_retail.generate(1, 42)

    assert seed_retail.generate(1, 42) == first
    assert seed_retail.generate(1, 43) != first
    assert {t: len(rows) for t, rows in first.items()} == seed_retail.BASE_COUNTS
    assert {t: len(rows) for t, rows in seed_retail.generate(3, 42).items()} == {
        t: 3 * n for t, n in seed_retail.BASE_COUNTS.items()
    }
    customer = dict(zip(CUSTOMER_COLUMNS, first["customer"][0], strict=True))
    assert customer["email"].endswith("@example.com") and customer["updated_at"].microsecond % 1000 == 0
    with pytest.raises(ValueError, match="scale must be a positive integer"):
        seed_retail.generate(0, 1)


def test_seeding_is_deterministic_and_idempotent(databases):
    one, other = _new_database(databases), _new_database(databases)

    counts = seed_retail.seed(1, 42, database=one)
    first = _dump(one)
    checksums = _query(one, "CHECKSUM TABLE store, customer, product, sales_team")
    assert seed_retail.seed(1, 42, database=one) == counts
    seed_retail.seed(1, 43, database=other)

    assert counts == {"store": 5, "customer": 200, "product": 50, "sales_team": 20}
    assert {t: len(rows) for t, rows in first.items()} == counts
    assert _dump(one) == first  # every value, updated_at included: the second seed changed nothing
    assert _query(one, "CHECKSUM TABLE store, customer, product, sales_team") == checksums
    assert _dump(other) != first
    generated = seed_retail.generate(1, 42)
    assert first["customer"] == [tuple(row) for row in generated["customer"]]  # stored exactly
    assert [row[:4] for row in first["product"]] == [row[:4] for row in generated["product"]]


# -- the operator -----------------------------------------------------------------------------------


def test_quote_identifier_quotes_any_name_mysql_allows():
    assert quote_identifier("sales_team") == "`sales_team`"
    assert quote_identifier("order date") == "`order date`"
    assert quote_identifier("a`b") == "`a``b`"
    assert quote_identifier("customer; DROP TABLE x") == "`customer; DROP TABLE x`"
    for bad in ("", "x" * 65, "nul\x00", "trailing "):
        with pytest.raises(ValueError, match="not a MySQL identifier"):
            quote_identifier(bad)


def test_columns_whose_names_need_quoting_are_landed(extract, s3, bucket, source):
    _query(
        source,
        "CREATE TABLE order_lines (`line id` int PRIMARY KEY, `select` varchar(20), `we``ird` int, "
        "`updated at` timestamp(3) NOT NULL)",
    )
    _query(
        source,
        "INSERT INTO order_lines VALUES (1, 'a', 7, '2024-11-01 00:00:01'), "
        "(2, 'b', 8, '2024-11-01 00:00:02')",
    )

    result = extract(0, {"name": "order_lines", "key": "line id", "cursor": "updated at"})

    table = read_parquet(s3, bucket, result["key"])
    assert table.column_names == ["line id", "select", "we`ird", "updated at"]
    assert table.column("select").to_pylist() == ["a", "b"] and result["rows"] == 2


def test_first_run_lands_a_full_snapshot_whose_parquet_round_trips_every_value(
    extract, s3, bucket, source, source_name, control
):
    result = extract(0)

    assert (result["mode"], result["rows"], result["window_start"]) == ("full", 202, None)
    assert result["window_end"] == "2024-11-15T10:30:00"
    assert result["key"].startswith(f"{source_name}/customer/2024/11/15/customer-")
    assert result["schema_changes"] == []
    assert (result["reported"].rows_in, result["reported"].rows_out) == (202, 202)
    landed = read_parquet(s3, bucket, result["key"], row_hash=True)
    assert landed.column_names == [*CUSTOMER_COLUMNS, ROW_HASH]  # each row's hash, as PostgreSQL's
    # Each row's identity: SipHash of its values as the server's text, NULL as \\N, joined by \\x1f.
    texts = _query(
        source,
        "SELECT CONCAT_WS(CHAR(31), "
        + ", ".join(f"COALESCE(CAST({c} AS CHAR), '\\\\N')" for c in CUSTOMER_COLUMNS)
        + ") FROM customer ORDER BY customer_id",
    )
    expected_hashes = [str(h) for h in hash_array(np.array([t for (t,) in texts], object), categorize=False)]
    assert landed.column(ROW_HASH).to_pylist() == expected_hashes
    assert len(set(expected_hashes)) == 202
    landed = landed.drop_columns([ROW_HASH])
    assert str(landed.schema.field("updated_at").type) == "timestamp[ms]"
    rows = landed.to_pylist()
    assert rows == source_rows(source, "customer", CUSTOMER_COLUMNS)
    assert [r for r in rows if r["customer_id"] > 1000] == EDGE_CUSTOMERS  # '' vs NULL, quotes, ms
    assert landed_objects(control, source_name) == [
        (result["key"], "full", 202, None, datetime(2024, 11, 15, 10, 30))
    ]

    products = extract(0, {"name": "product", "key": "product_id"})
    landed = read_parquet(s3, bucket, products["key"])
    assert str(landed.schema.field("unit_price").type) == "decimal128(10, 2)"
    assert str(landed.schema.field("is_active").type) == "bool"
    expected = [
        {**row, "is_active": bool(row["is_active"])}
        for row in source_rows(source, "product", landed.column_names)
    ]
    assert landed.to_pylist() == expected
    assert [tuple(r.values()) for r in landed.to_pylist() if r["product_id"] > 1000] == [
        (*row[:4], bool(row[4]), row[5]) for row in EDGE_PRODUCTS
    ]


def test_every_mysql_type_lands_as_mysqldb_would_convert_it(extract, s3, bucket, source):
    """Arrow parses the server's text (issue 11): each type must land as MySQLdb's own conversion
    did, the ones Arrow cannot parse (TIME beyond a day, zero dates) included."""
    _query(source, "SET SESSION sql_mode = ''")  # let the zero date in, as old MySQL data has them
    _query(
        source,
        "CREATE TABLE every_type (id int PRIMARY KEY, tiny tinyint, small smallint, medium mediumint, "
        "big bigint, ubig bigint unsigned, flag tinyint(1), price decimal(10,2), huge decimal(40,5), "
        "f float, d double, day date, at datetime(3), at_us datetime(6), stamp timestamp(3) NULL, "
        "span time, yr year, name varchar(20), body text, doc json, raw varbinary(8), bits bit(3), "
        "choice enum('a','b'), updated_at timestamp(3) NOT NULL)",
    )
    _query(
        source,
        "INSERT INTO every_type VALUES "
        "(1, -128, -32768, -8388608, -9223372036854775808, 18446744073709551615, 1, -12.34, "
        "123456789012345678901234567890.12345, 1.5, 2.25, '2024-02-29', '2024-02-29 23:59:59.999', "
        "'2024-02-29 23:59:59.123456', '2024-02-29 12:00:00.001', '838:59:59', 2024, 'é ü', 'line\\nbreak', "
        "'{\"a\": [1, 2]}', x'00ff10', b'101', 'b', '2024-11-01 00:00:01'), "
        "(2, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, '0000-00-00', "
        "'0000-00-00 00:00:00', NULL, NULL, '-00:00:01', NULL, '', NULL, NULL, NULL, NULL, NULL, "
        "'2024-11-01 00:00:02')",
    )
    result = extract(0, {"name": "every_type", "key": "id"})

    landed = read_parquet(s3, bucket, result["key"]).to_pylist()
    expected = source_rows(source, "every_type", list(landed[0]))
    for row in expected:  # MySQL's BOOLEAN: MySQLdb gives 0/1, the extract a bool
        row["flag"] = None if row["flag"] is None else bool(row["flag"])
    assert landed == expected
    assert landed[1]["day"] is None and landed[1]["at"] is None  # zero dates: NULL, as MySQLdb reads them


def test_next_interval_without_changes_lands_nothing(extract, s3, bucket, source_name, control):
    first = extract(0)

    second = extract(1)

    assert (second["rows"], second["key"], second["mode"]) == (0, None, "incremental")
    assert second["window_start"] == "2024-11-15T10:15:00"  # interval start minus the overlap
    assert second["schema_changes"] == []
    assert bucket_keys(s3, bucket, source_name) == [first["key"]]
    assert [row[0] for row in landed_objects(control, source_name)] == [first["key"]]


def test_an_updated_row_is_landed_alone(extract, s3, bucket, source, source_name):
    extract(0)
    extract(1)
    _query(
        source,
        "UPDATE customer SET last_name = %s, updated_at = '2024-11-15 11:10:00.250' WHERE customer_id = 1",
        ("O'Keefe-Jones",),
    )

    third = extract(2)

    assert third["rows"] == 1
    assert (third["window_start"], third["window_end"]) == ("2024-11-15T10:45:00", "2024-11-15T11:30:00")
    rows = read_parquet(s3, bucket, third["key"]).to_pylist()
    assert [(r["customer_id"], r["last_name"], r["updated_at"]) for r in rows] == [
        (1, "O'Keefe-Jones", datetime(2024, 11, 15, 11, 10, 0, 250000))
    ]
    assert len(bucket_keys(s3, bucket, source_name)) == 2


def test_added_dropped_and_retyped_columns_are_detected_recorded_and_landed(
    extract, s3, bucket, source, source_name, control
):
    extract(0)
    _query(
        source,
        "ALTER TABLE customer ADD COLUMN loyalty_tier varchar(12) NULL AFTER email, "
        "MODIFY phone_number varchar(32) NULL, DROP COLUMN city",
    )
    _query(
        source,
        "UPDATE customer SET loyalty_tier = IF(customer_id = 1, 'gold', ''), "
        "updated_at = '2024-11-15 10:40:00.250' WHERE customer_id IN (1, 2)",
    )

    changed = extract(1)

    expected = [
        {"kind": "added", "column": "loyalty_tier", "old_type": None, "new_type": "varchar(12)"},
        {"kind": "dropped", "column": "city", "old_type": "varchar(60)", "new_type": None},
        {"kind": "retyped", "column": "phone_number", "old_type": "varchar(20)", "new_type": "varchar(32)"},
    ]
    assert changed["schema_changes"] == expected
    assert changed["rows"] == 2
    landed = read_parquet(s3, bucket, changed["key"])
    assert "city" not in landed.column_names and "loyalty_tier" in landed.column_names
    assert [(r["customer_id"], r["loyalty_tier"]) for r in landed.to_pylist()] == [(1, "gold"), (2, "")]
    recorded = control.query(
        "SELECT change_kind, column_name, old_type, new_type, run_id FROM etl.schema_change "
        "WHERE source = %s AND table_name = 'customer' ORDER BY change_id",
        (source_name,),
    )
    run_id = f"scheduled__{(FIRST_INTERVAL + HALF_HOUR).isoformat()}"
    assert recorded == [(c["kind"], c["column"], c["old_type"], c["new_type"], run_id) for c in expected]
    schema = control.query(
        "SELECT columns FROM etl.source_schema WHERE source = %s AND table_name = 'customer'",
        (source_name,),
    )[0][0]
    assert [c["name"] for c in schema] == landed.column_names

    assert extract(2)["schema_changes"] == []  # reported once, by the run that saw it


def test_a_source_that_is_down_fails_with_a_clear_error(source_name, bucket, control, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RETAIL_DOWN", f"mysql://root@{settings.MYSQL_HOST}:1/retail_x_down")

    where = f"{settings.MYSQL_HOST}:1/retail_x_down"
    clear = re.escape(f"cannot reach the MySQL source (Airflow connection 'retail_down', {where})")
    with pytest.raises(SourceUnavailable, match=clear):
        run_extract(0, table="customer", source_name=source_name, bucket=bucket, conn_id="retail_down")

    assert landed_objects(control, source_name) == []
    assert control.query("SELECT 1 FROM etl.extract_state WHERE source = %s", (source_name,)) == []


def test_a_large_table_streams_in_fetchmany_chunks(extract, s3, bucket, source, tmp_path):
    total = 200_000
    _query(
        source,
        "CREATE TABLE big (id int PRIMARY KEY, label varchar(40) NOT NULL, amount decimal(12,2), "
        "updated_at timestamp(3) NOT NULL)",
    )
    _query(
        source,
        f"INSERT INTO big SELECT seq, CONCAT('row ', seq), seq / 100, "
        f"TIMESTAMP'2024-11-01 00:00:00' + INTERVAL seq SECOND FROM seq_1_to_{total}",
    )

    result = extract(0, {"name": "big", "key": "id"})

    chunk = result["operator"].chunk_size
    assert chunk < total
    assert result["rows"] == total
    local = tmp_path / "big.parquet"
    s3.download_file(bucket, result["key"], str(local))
    metadata = pq.ParquetFile(local).metadata
    assert metadata.num_rows == total
    assert metadata.num_row_groups == -(-total // chunk)  # one row group per fetchmany chunk
    last = pq.read_table(local, columns=["id", "amount"]).slice(total - 1).to_pylist()
    assert last == [{"id": total, "amount": Decimal("2000.00")}]

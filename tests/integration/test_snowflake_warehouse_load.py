"""SnowflakeWarehouse through fakesnow: COPY into landing once, then one MERGE into core; the retail marts.

fakesnow (``fakesnow.patch()``) stands in for a Snowflake account: the loader gets its connection
from an Airflow connection through the provider's ``SnowflakeHook``, whose
``snowflake.connector.connect`` fakesnow answers with a DuckDB database that parses Snowflake SQL.
The landing DDL, the MERGE, the load history and the marts run as production writes them. The one
statement fakesnow cannot run, the COPY from the external stage, is replaced by the tests' landing
copy (``tests/integration/fakesnow_support.py``), which COPYs the same processed Parquet object
from a local folder; its SQL text is unit-tested in ``tests/unit/test_snowflake_sql.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import fakesnow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.etlkit.load import warehouse as warehouse_module
from include.etlkit.load.postgres import PostgresWarehouse
from include.etlkit.load.snowflake import (
    ExternalStageCopy,
    SnowflakeWarehouse,
    parquet_schema,
    quote,
    snowflake_type,
)
from include.etlkit.load.warehouse import LOAD_ID, TableLoad, Warehouse, warehouse_for
from include.etlkit.paths import SQL_DIR
from tests.conftest import s3_client
from tests.integration.fakesnow_support import (
    LocalParquetCopy,
    fakesnow_warehouse,
    fix_merge_counts,
    snowflake_connection,
)

pytestmark = pytest.mark.integration

CONN_ID = "snowflake_wh_load"
DIM = TableLoad(name="dim_customer", key=("id",), merge="upsert")
FACT = TableLoad(name="fact_payment", key=("source_id", "row_hash"), merge="versions")

DIM_SCHEMA = pa.schema([("id", pa.int32()), ("name", pa.string()), ("city", pa.string())])
FACT_SCHEMA = pa.schema(
    [("source_id", pa.int32()), ("amount", pa.decimal128(10, 2)), ("row_hash", pa.string())]
)

H1 = "a" * 32
H1_NEW = "b" * 32
H2 = "c" * 32
CENT = Decimal("0.01")


def money(value) -> Decimal | None:
    """A NUMBER as Decimal cents: fakesnow returns some NUMBER expressions (sums, ROUND) as floats."""
    return None if value is None else Decimal(str(value)).quantize(CENT, ROUND_HALF_UP)


@pytest.fixture
def account(monkeypatch, tmp_path) -> Iterator[None]:
    """A fresh, empty fake Snowflake account behind the ``snowflake_wh_load`` connection.

    The connection's schema is CORE: fakesnow looks an IDENTITY column's sequence up in the current
    schema (a fakesnow quirk; Snowflake does not care), and the core tables live there.
    """
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", snowflake_connection(schema="CORE"))
    monkeypatch.setitem(warehouse_module.LOADERS, "snowflake", fakesnow_warehouse(tmp_path))
    fix_merge_counts(monkeypatch)
    with fakesnow.patch():
        yield


@pytest.fixture
def db(account):
    """A second session on the account, for arranging and checking, with the core tables created."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    conn = SnowflakeHook(snowflake_conn_id=CONN_ID).get_conn()
    conn.execute_string(
        """
        CREATE SCHEMA IF NOT EXISTS landing;
        CREATE SCHEMA IF NOT EXISTS core;
        USE SCHEMA core;
        CREATE TABLE core.dim_customer (id NUMBER(10,0) PRIMARY KEY, name VARCHAR NOT NULL, city VARCHAR);
        CREATE TABLE core.fact_payment (
            fact_id   NUMBER(19,0) IDENTITY,
            source_id NUMBER(10,0) NOT NULL,
            amount    NUMBER(10,2),
            row_hash  VARCHAR(32)  NOT NULL
        );
        """
    )
    yield conn
    conn.close()


@pytest.fixture
def warehouse(db) -> SnowflakeWarehouse:
    wh = warehouse_for(CONN_ID)
    assert isinstance(wh, SnowflakeWarehouse)
    return wh


@pytest.fixture
def put(bucket):
    """Write a table as a processed Parquet object in the local S3; returns its key (the load id)."""
    s3 = s3_client()
    prefix = uuid.uuid4().hex[:8]

    def write(table: pa.Table, name: str, row_group_size: int | None = None) -> str:
        buffer = io.BytesIO()
        pq.write_table(table, buffer, row_group_size=row_group_size)
        key = f"{prefix}/{name}.parquet"
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        return key

    return write


def dims(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(DIM_SCHEMA.names, r, strict=True)) for r in rows], schema=DIM_SCHEMA
    )


def facts(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(FACT_SCHEMA.names, r, strict=True)) for r in rows], schema=FACT_SCHEMA
    )


def rows_of(db, query: str) -> list[tuple]:
    cur = db.cursor()
    cur.execute(query)
    return [
        tuple(
            int(v)
            if isinstance(v, Decimal) and v == v.to_integral_value() and v.as_tuple().exponent == 0
            else v
            for v in row
        )
        for row in cur.fetchall()
    ]


def count(db, table: str) -> int:
    return rows_of(db, f"SELECT count(*) FROM {table}")[0][0]


def test_upsert_inserts_then_updates_only_changed_dimensions_and_latest_values_win(
    warehouse, db, bucket, put
):
    first = put(dims((1, "O'Keefe", "Leeds"), (2, "Smith", "Hull"), (3, "Jones", None)), "dims-1")
    assert warehouse.load_object(DIM, bucket, first) == (3, 3)

    second = put(
        dims((1, "O'Keefe", "Leeds"), (2, "Smith", "York"), (3, "Jones", None), (4, "New", "Hull")), "dims-2"
    )

    # one changed, one new: the two unchanged rows are not rewritten
    assert warehouse.load_object(DIM, bucket, second) == (4, 2)
    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "O'Keefe", "Leeds"),
        (2, "Smith", "York"),
        (3, "Jones", None),
        (4, "New", "Hull"),
    ]


def test_a_null_lands_and_merges_as_null_and_an_empty_string_stays_an_empty_string(
    warehouse, db, bucket, put
):
    warehouse.load_object(DIM, bucket, put(dims((1, "A", None), (2, "B", "York"), (3, "C", "")), "dims"))

    assert rows_of(db, "SELECT id, city FROM core.dim_customer ORDER BY id") == [
        (1, None),
        (2, "York"),
        (3, ""),
    ]
    assert rows_of(db, "SELECT id, city FROM landing.dim_customer ORDER BY id") == [
        (1, None),
        (2, "York"),
        (3, ""),
    ]


def test_loading_the_same_object_again_copies_and_merges_nothing(warehouse, db, bucket, put):
    key = put(dims((1, "A", "Leeds"), (2, "B", "York")), "dims-1")
    warehouse.load_object(DIM, bucket, key)

    assert warehouse.load_object(DIM, bucket, key) == (2, 0)  # the load history skips the file
    assert count(db, "landing.dim_customer") == 2
    assert count(db, "core.dim_customer") == 2


def test_versions_insert_each_distinct_version_once_and_a_reload_changes_nothing(warehouse, db, bucket, put):
    key = put(facts((1, Decimal("3.94"), H1), (2, Decimal("0.10"), H2), (1, Decimal("3.94"), H1)), "facts-1")

    assert warehouse.load_object(FACT, bucket, key) == (3, 2)
    assert (count(db, "landing.fact_payment"), count(db, "core.fact_payment")) == (3, 2)

    assert warehouse.load_object(FACT, bucket, key) == (3, 0)
    assert (count(db, "landing.fact_payment"), count(db, "core.fact_payment")) == (3, 2)
    assert rows_of(db, "SELECT source_id, amount, row_hash FROM core.fact_payment ORDER BY source_id") == [
        (1, Decimal("3.94"), H1),
        (2, Decimal("0.10"), H2),
    ]


def test_a_second_object_with_one_new_version_adds_exactly_one_fact_and_updates_none(
    warehouse, db, bucket, put
):
    warehouse.load_object(FACT, bucket, put(facts((1, Decimal("3.94"), H1), (2, Decimal("0.10"), H2)), "f1"))
    before = rows_of(
        db, "SELECT fact_id, source_id, amount, row_hash FROM core.fact_payment ORDER BY fact_id"
    )

    _, merged = warehouse.load_object(
        FACT, bucket, put(facts((1, Decimal("5.00"), H1_NEW), (2, Decimal("0.10"), H2)), "f2")
    )

    assert merged == 1
    after = rows_of(db, "SELECT fact_id, source_id, amount, row_hash FROM core.fact_payment ORDER BY fact_id")
    assert after[:2] == before
    assert [row[1:] for row in after[2:]] == [(1, Decimal("5.00"), H1_NEW)]


def test_landing_rows_carry_the_key_of_their_object_their_row_number_and_load_time(
    warehouse, db, bucket, put
):
    first = put(facts((1, Decimal("1.00"), H1), (2, Decimal("2.00"), H2)), "facts-1")
    second = put(facts((1, Decimal("5.00"), H1_NEW)), "facts-2")
    warehouse.load_object(FACT, bucket, first)
    warehouse.load_object(FACT, bucket, second)

    assert rows_of(
        db, f"SELECT {LOAD_ID}, _ordinal, source_id FROM landing.fact_payment ORDER BY {LOAD_ID}, _ordinal"
    ) == [(first, 1, 1), (first, 2, 2), (second, 1, 1)]
    assert count(db, "landing.fact_payment WHERE _loaded_at IS NULL") == 0


def _fail_a_merge_twice(warehouse, bucket, put) -> str:
    warehouse.load_object(DIM, bucket, put(dims((1, "A", "Leeds"), (2, "B", "York")), "dims-1"))
    bad = put(dims((1, "A2", "Leeds"), (3, None, "Hull")), "dims-2")
    # core.name is NOT NULL, which Snowflake enforces. (fakesnow raises DuckDB's error, Snowflake its
    # connector's; both name the NULL.)
    for _try in range(2):
        with pytest.raises(Exception, match=r"(?i)null"):
            warehouse.load_object(DIM, bucket, bad)
    return bad


def test_a_failing_merge_keeps_the_object_landed_once_for_the_retry(warehouse, db, bucket, put):
    bad = _fail_a_merge_twice(warehouse, bucket, put)

    # The retry's COPY was skipped (load history) and its MERGE read the same landing rows.
    assert rows_of(
        db, f"SELECT id, name FROM landing.dim_customer WHERE {LOAD_ID} = '{bad}' ORDER BY id"
    ) == [
        (1, "A2"),
        (3, None),
    ]
    assert rows_of(db, "SELECT id FROM core.dim_customer ORDER BY id") == [(1,), (2,)]  # nothing inserted


@pytest.mark.xfail(
    strict=True,
    reason="fakesnow runs a MERGE as an UPDATE then an INSERT, outside a transaction: the UPDATE stays "
    "when the INSERT fails. Snowflake's MERGE is one atomic statement.",
)
def test_a_failing_merge_leaves_core_as_it_was(warehouse, db, bucket, put):
    _fail_a_merge_twice(warehouse, bucket, put)

    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "A", "Leeds"),
        (2, "B", "York"),
    ]


def test_upsert_of_a_table_whose_columns_are_all_key_inserts_its_rows_once(warehouse, db, bucket, put):
    db.cursor().execute(
        "CREATE TABLE core.customer_region (customer_id NUMBER(10,0), region_id NUMBER(10,0), "
        "PRIMARY KEY (customer_id, region_id))"
    )
    spec = TableLoad(name="customer_region", key=("customer_id", "region_id"), merge="upsert")
    bridge = pa.table(
        {"customer_id": pa.array([1, 1], pa.int32()), "region_id": pa.array([7, 8], pa.int32())}
    )

    assert warehouse.load_object(spec, bucket, put(bridge, "bridge-1")) == (2, 2)
    assert warehouse.load_object(spec, bucket, put(bridge.slice(0, 1), "bridge-2")) == (1, 0)
    assert rows_of(db, "SELECT customer_id, region_id FROM core.customer_region ORDER BY 2") == [
        (1, 7),
        (1, 8),
    ]


def test_the_last_version_of_a_key_in_an_object_wins_across_row_groups(warehouse, db, bucket, put):
    table = dims(
        (1, "first", "Leeds"),
        (2, "only", "York"),
        (3, "x", "Hull"),
        (1, "second", "Bath"),
        (1, "latest", "Wells"),
    )

    assert warehouse.load_object(DIM, bucket, put(table, "many-groups", row_group_size=2)) == (5, 3)

    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "latest", "Wells"),
        (2, "only", "York"),
        (3, "x", "Hull"),
    ]


def test_an_upsert_with_a_version_column_never_goes_back_to_an_older_version(warehouse, db, bucket, put):
    db.cursor().execute(
        "CREATE TABLE core.dim_versioned (id NUMBER(10,0) PRIMARY KEY, name VARCHAR, seen NUMBER(10,0))"
    )
    spec = TableLoad(name="dim_versioned", key=("id",), merge="upsert", version="seen")
    schema = pa.schema([("id", pa.int32()), ("name", pa.string()), ("seen", pa.int32())])

    def rows(*values: tuple) -> pa.Table:
        return pa.Table.from_pylist([dict(zip(schema.names, v, strict=True)) for v in values], schema=schema)

    warehouse.load_object(spec, bucket, put(rows((1, "new", 2), (2, "b", 1)), "v2"))
    _, merged = warehouse.load_object(spec, bucket, put(rows((1, "old", 1), (2, "b2", 1)), "v1-late"))

    assert merged == 1  # id 2 at an equal version updates; id 1 stays at its newer version
    assert rows_of(db, "SELECT id, name, seen FROM core.dim_versioned ORDER BY id") == [
        (1, "new", 2),
        (2, "b2", 1),
    ]


def test_a_feed_loads_into_its_own_table_name_and_keeps_lineage_columns_in_landing_only(
    warehouse, db, bucket, put
):
    """``table`` renames the warehouse table; ``landing_only`` columns stay out of ``core``."""
    spec = TableLoad(
        name="customer", key=("id",), merge="upsert", table="dim_customer", landing_only=("source_row",)
    )
    rows = pa.table(
        {"id": [1, 2], "name": ["Ann", "Bob"], "city": ["Leeds", None], "source_row": [1, 2]},
        schema=pa.schema([*DIM_SCHEMA, ("source_row", pa.int64())]),
    )
    key = put(rows, "file-1")

    assert warehouse.load_object(spec, bucket, key) == (2, 2)
    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "Ann", "Leeds"),
        (2, "Bob", None),
    ]
    landed = rows_of(db, f"SELECT id, source_row, {LOAD_ID} FROM landing.dim_customer ORDER BY id")
    assert landed == [(1, 1, key), (2, 2, key)]
    assert rows_of(
        db,
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_name = 'CUSTOMER' AND table_schema IN ('LANDING', 'CORE')",
    ) == [(0,)]


def test_values_of_every_mapped_type_survive_landing_and_merge(warehouse, db, bucket, put):
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("label", pa.string()),
            ("amount", pa.decimal128(12, 4)),
            ("ratio", pa.float64()),
            ("flag", pa.bool_()),
            ("day", pa.date32()),
            ("at", pa.timestamp("us")),  # a reserved word: the loader quotes every identifier
            ("small", pa.int16()),
            ("instant", pa.timestamp("us", tz="UTC")),
            ("clock", pa.time64("us")),
        ]
    )
    tricky = 'comma, "quotes", back\\slash, it\'s\nnew line, ünïcode, \\N'
    rows = pa.Table.from_pylist(
        [
            {
                "id": 9_000_000_000,
                "label": tricky,
                "amount": Decimal("-12345678.9012"),
                "ratio": 0.125,
                "flag": False,
                "day": dt.date(2024, 2, 29),
                "at": dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
                "small": -7,
                "instant": dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC),
                "clock": dt.time(23, 59, 59, 999999),
            },
            {"id": 2, "label": "007", "amount": None, "ratio": None, "flag": None, "day": None, "at": None},
        ],
        schema=schema,
    )
    spec = TableLoad(name="typed", key=("id",), merge="upsert")
    columns = ", ".join(f"{quote(f.name)} {snowflake_type(f.type)}" for f in schema)
    db.cursor().execute(f"CREATE TABLE core.typed ({columns})")
    key = put(rows, "typed-1")

    assert warehouse.load_object(spec, bucket, key) == (2, 2)

    assert rows_of(
        db,
        'SELECT id, label, amount, ratio, flag, day, "AT", small, instant, clock FROM core.typed ORDER BY id',
    ) == [
        (2, "007", None, None, None, None, None, None, None, None),
        (
            9_000_000_000,
            tricky,
            Decimal("-12345678.9012"),
            0.125,
            False,
            dt.date(2024, 2, 29),
            dt.datetime(2024, 2, 29, 23, 59, 58, 123456),
            -7,
            dt.datetime(2024, 3, 31, 1, 30, tzinfo=dt.UTC),
            dt.time(23, 59, 59, 999999),
        ),
    ]


def test_the_landing_schema_is_read_from_the_parquet_footer_alone(bucket, put):
    table = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "amount": pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)),
        }
    )
    key = put(table, "footer")

    assert parquet_schema(bucket, key) == table.schema
    s3_client().put_object(Bucket=bucket, Key=f"{key}.csv", Body=b"id,amount\n1,1.5\n")
    with pytest.raises(ValueError, match="is not a Parquet file"):
        parquet_schema(bucket, f"{key}.csv")


def test_arrow_types_map_to_snowflake_types():
    assert [
        snowflake_type(t)
        for t in (
            pa.int16(),
            pa.int32(),
            pa.int64(),
            pa.uint64(),
            pa.decimal128(10, 2),
            pa.float64(),
            pa.bool_(),
            pa.date32(),
            pa.time64("us"),
            pa.timestamp("us"),
            pa.timestamp("us", tz="UTC"),
            pa.string(),
        )
    ] == [
        "NUMBER(5,0)",
        "NUMBER(10,0)",
        "NUMBER(19,0)",
        "NUMBER(20,0)",
        "NUMBER(10,2)",
        "FLOAT",
        "BOOLEAN",
        "DATE",
        "TIME",
        "TIMESTAMP_NTZ",
        "TIMESTAMP_LTZ",
        "VARCHAR",
    ]
    with pytest.raises(ValueError, match="at most 38 digits"):
        snowflake_type(pa.decimal256(40, 2))


def test_identifiers_are_quoted_as_snowflake_folds_unquoted_names():
    assert quote("dim_customer") == '"DIM_CUSTOMER"'
    assert quote('odd"name') == '"ODD""NAME"'


def test_the_warehouse_is_chosen_by_the_connection_type_and_the_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WH_PG", "postgresql://postgres@127.0.0.1:5432/warehouse")
    monkeypatch.setenv("AIRFLOW_CONN_WH_SF", snowflake_connection(processed_stage="etl.processed_zone"))
    monkeypatch.setenv("AIRFLOW_CONN_WH_HTTP", "http://example.invalid")

    postgres, snowflake = warehouse_for("wh_pg"), warehouse_for("wh_sf")

    assert isinstance(postgres, PostgresWarehouse) and (postgres.conn_id, postgres.dialect) == (
        "wh_pg",
        "postgres",
    )
    assert isinstance(snowflake, SnowflakeWarehouse) and (snowflake.conn_id, snowflake.dialect) == (
        "wh_sf",
        "snowflake",
    )
    assert isinstance(snowflake.landing_copy, ExternalStageCopy)
    assert isinstance(postgres, Warehouse) and isinstance(snowflake, Warehouse)  # one interface
    assert snowflake.landing_copy.stage == "etl.processed_zone"  # the connection's extra names the stage
    with pytest.raises(ValueError, match="'wh_http' is of type 'http'"):
        warehouse_for("wh_http")

    monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", "wh_sf")
    assert warehouse_for().conn_id == "wh_sf"  # no conn_id: the Variable, read now
    monkeypatch.delenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID")
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgresql://postgres@127.0.0.1:5432/warehouse")
    assert warehouse_for().conn_id == "warehouse"  # no Variable: the default


def test_key_pair_authentication_reaches_the_connector_through_the_provider_hook(monkeypatch, tmp_path):
    """A key-pair connection (no password, ``private_key_content`` in the extras) is the hook's business.

    Nothing in the warehouse code reads credentials: ``SnowflakeHook`` turns the extras into the
    connector's ``private_key``, which is what a deployment's secret holds.
    """
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH_KEYPAIR",
        snowflake_connection(private_key_content=pem).replace('"password": "fake", ', ""),
    )

    params = SnowflakeHook(snowflake_conn_id="wh_keypair")._get_conn_params()
    warehouse = warehouse_for("wh_keypair")

    assert isinstance(warehouse, SnowflakeWarehouse) and warehouse.conn_id == "wh_keypair"
    assert params["private_key"] == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert "password" not in params or not params["password"]


def test_the_tests_landing_copy_is_not_the_production_one():
    assert not isinstance(LocalParquetCopy(Path("/tmp")), ExternalStageCopy)


# --- The retail marts in the Snowflake dialect, on a few hand-made rows ---------------------------

RETAIL_SQL: Path = SQL_DIR / "snowflake" / "retail"


@pytest.fixture
def retail(account):
    """The Snowflake retail core and marts, applied twice (they are idempotent), on an empty account."""
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    warehouse = SnowflakeWarehouse(conn_id=CONN_ID)
    for _ in range(2):
        warehouse.run_script((RETAIL_SQL / "core.sql").read_text())
        warehouse.run_script((RETAIL_SQL / "marts.sql").read_text())
    conn = SnowflakeHook(snowflake_conn_id=CONN_ID).get_conn()
    conn.execute_string(
        """
        INSERT INTO core.dim_sales_person
            (sales_person_id, store_id, first_name, last_name, hired_on, updated_at)
        VALUES (10, 1, 'Ada', 'Stone', '2020-01-01', '2024-01-01'),
               (11, 1, 'Ben', 'Marsh', '2020-01-01', '2024-01-01'),
               (12, 1, 'Cy', 'Hale', '2020-01-01', '2024-01-01'),
               (20, 2, 'Dee', 'Ford', '2020-01-01', '2024-01-01'),
               (21, 2, 'Eli', 'Park', '2020-01-01', '2024-01-01');
        INSERT INTO core.dim_customer (customer_id, first_name, last_name, address, phone_number, updated_at)
        VALUES (100, 'Jo', 'Bloggs', '1 High St', '0113', '2024-01-01');
        -- EUR per GBP: a rate on the 1st and the 4th; none on the 2nd and 3rd (gaps in the API).
        INSERT INTO core.exchange_rate (date, base, currency, rate)
        VALUES ('2024-03-01', 'GBP', 'EUR', 1.25), ('2024-03-04', 'GBP', 'EUR', 1.20),
               ('2024-03-01', 'GBP', 'USD', 1.60);
        INSERT INTO core.fact_sale
            (sale_id, sold_at, store_id, sales_person_id, customer_id, product_id, quantity, unit_price,
             currency)
        VALUES
            -- store 1, March: Ada sells 100 GBP and 50 EUR (40 GBP at 1.25) = 140 GBP; Ben 130 GBP.
            (1, '2024-03-01 09:00', 1, 10, 100, 1, 2, 50.00, 'GBP'),
            (2, '2024-03-03 18:30', 1, 10, 100, 1, 1, 50.00, 'EUR'),
            (3, '2024-03-04 10:00', 1, 11, NULL, 1, 1, 130.00, 'GBP'),
            -- Cy sells 12 EUR on the 4th: 10 GBP at that day's 1.20.
            (4, '2024-03-04 11:00', 1, 12, NULL, 1, 1, 12.00, 'EUR'),
            -- store 2, March: Dee and Eli tie at 80 GBP (one in USD), so both get the incentive.
            (5, '2024-03-05 12:00', 2, 20, NULL, 1, 1, 80.00, 'GBP'),
            (6, '2024-03-05 12:00', 2, 21, NULL, 1, 1, 128.00, 'USD'),
            -- a sale before the first USD rate: no GBP amount (quality_checks fails on it)
            (7, '2024-02-28 12:00', 2, 21, NULL, 1, 1, 10.00, 'USD'),
            -- a sale with no sales person counts for the customer but not for a seller
            (8, '2024-04-02 08:00', 1, NULL, 100, 1, 3, 1.00, 'EUR');
        """
    )
    yield conn
    conn.close()


def test_retail_sale_converts_with_the_rate_of_the_sale_date_or_the_latest_earlier_one(retail):
    rows = rows_of(
        retail, "SELECT sale_id, rate_date, gbp_rate, amount, amount_gbp FROM mart.retail_sale ORDER BY 1"
    )
    got = [
        (sale, rate_date, None if rate is None else Decimal(str(rate)).normalize(), money(amount), money(gbp))
        for sale, rate_date, rate, amount, gbp in rows
    ]
    assert got == [
        (1, dt.date(2024, 3, 1), Decimal("1"), Decimal("100.00"), Decimal("100.00")),
        (2, dt.date(2024, 3, 1), Decimal("1.25"), Decimal("50.00"), Decimal("40.00")),  # gap: rate of the 1st
        (3, dt.date(2024, 3, 4), Decimal("1"), Decimal("130.00"), Decimal("130.00")),
        (4, dt.date(2024, 3, 4), Decimal("1.2"), Decimal("12.00"), Decimal("10.00")),
        (5, dt.date(2024, 3, 5), Decimal("1"), Decimal("80.00"), Decimal("80.00")),
        (6, dt.date(2024, 3, 1), Decimal("1.6"), Decimal("128.00"), Decimal("80.00")),
        (7, None, None, Decimal("10.00"), None),
        (8, dt.date(2024, 3, 4), Decimal("1.2"), Decimal("3.00"), Decimal("2.50")),
    ]


def test_the_top_seller_of_each_store_and_month_by_gbp_gets_one_percent_and_ties_share_it(retail):
    rows = rows_of(
        retail,
        "SELECT store_id, sales_person_id, full_name, sales_month, currency, total_sales, incentive, "
        "incentive_gbp FROM mart.sales_team_monthly ORDER BY 1, 4, 2, 5",
    )

    got = [(*row[:5], money(row[5]), money(row[6]), money(row[7])) for row in rows]
    march, february = dt.date(2024, 3, 1), dt.date(2024, 2, 1)
    assert got == [
        # Ada: 140 GBP beats Ben's 130; 1% of each currency's total, and of her GBP total.
        (1, 10, "Ada Stone", march, "EUR", Decimal("50.00"), Decimal("0.50"), Decimal("0.40")),
        (1, 10, "Ada Stone", march, "GBP", Decimal("100.00"), Decimal("1.00"), Decimal("1.00")),
        (1, 11, "Ben Marsh", march, "GBP", Decimal("130.00"), Decimal("0.00"), Decimal("0.00")),
        (1, 12, "Cy Hale", march, "EUR", Decimal("12.00"), Decimal("0.00"), Decimal("0.00")),
        # February in store 2: Eli's only sale has no rate, so no GBP amount, and he still ranks first.
        (2, 21, "Eli Park", february, "USD", Decimal("10.00"), Decimal("0.10"), None),
        (2, 20, "Dee Ford", march, "GBP", Decimal("80.00"), Decimal("0.80"), Decimal("0.80")),
        (2, 21, "Eli Park", march, "USD", Decimal("128.00"), Decimal("1.28"), Decimal("0.80")),
    ]


def test_the_dashboards_incentives_chart_reads_the_snowflake_marts(retail, monkeypatch):
    # The Dashboard page's query and panels on the Snowflake dialect (no read-only statement there).
    from include.etlkit.control.dashboard import CHARTS, chart

    monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", CONN_ID)
    [spec] = [spec for spec in CHARTS if spec.name == "sales_team_incentives"]
    drawn = chart(warehouse_for(), spec)
    assert drawn.error is None
    [panel] = drawn.panels
    assert panel.points == [
        ("Ada Stone · 1", 1.4),
        ("Dee Ford · 2", 0.8),  # tied with Eli on incentive and GBP sales: the lower id first
        ("Eli Park · 2", 0.8),
        ("Ben Marsh · 1", 0.0),
        ("Cy Hale · 1", 0.0),
    ]


def test_customer_monthly_totals_per_currency_and_in_gbp(retail):
    rows = rows_of(
        retail,
        "SELECT customer_id, full_name, address, phone_number, sales_month, currency, total_sales, "
        "total_sales_gbp FROM mart.customer_monthly ORDER BY sales_month, currency",
    )

    assert [(*row[:6], money(row[6]), money(row[7])) for row in rows] == [
        (
            100,
            "Jo Bloggs",
            "1 High St",
            "0113",
            dt.date(2024, 3, 1),
            "EUR",
            Decimal("50.00"),
            Decimal("40.00"),
        ),
        (
            100,
            "Jo Bloggs",
            "1 High St",
            "0113",
            dt.date(2024, 3, 1),
            "GBP",
            Decimal("100.00"),
            Decimal("100.00"),
        ),
        (100, "Jo Bloggs", "1 High St", "0113", dt.date(2024, 4, 1), "EUR", Decimal("3.00"), Decimal("2.50")),
    ]


def test_the_script_task_runs_the_sql_of_the_dialect_the_variable_chooses(account, monkeypatch):
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook

    from include.etlkit.load.operators import WarehouseScriptOperator

    monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE_CONN_ID", CONN_ID)
    task = WarehouseScriptOperator(
        task_id="ensure_core_tables", scripts=["retail/core.sql", "retail/dedup.sql"]
    )

    task.execute({})

    tables = SnowflakeHook(snowflake_conn_id=CONN_ID).get_records(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'CORE' ORDER BY 1"
    )
    assert {"DIM_STORE", "FACT_SALE", "CUSTOMER_XREF", "CUSTOMER_MATCH_REVIEW"} <= {
        name for (name,) in tables
    }


def test_the_mysql_fed_retail_dimensions_have_deleted_at_for_the_reconciliations_tombstones(retail):
    """retail_reconcile's tombstones set ``deleted_at`` on these tables (``deletion_sql``, whose
    text tests/unit/test_snowflake_sql.py checks; fakesnow cannot run its temporary table and
    update in one transaction): core.sql adds the column, and running it again keeps one."""
    for table in ("dim_store", "dim_customer", "dim_product", "dim_sales_person"):
        columns = rows_of(
            retail,
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = 'CORE' AND table_name = '{table.upper()}' AND column_name = 'DELETED_AT'",
        )
        assert len(columns) == 1, table
    rows = rows_of(retail, "SELECT count(*) FROM core.dim_sales_person WHERE deleted_at IS NULL")
    assert rows == [(5,)]

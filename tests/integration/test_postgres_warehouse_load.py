"""PostgresWarehouse against a throwaway PostgreSQL warehouse: landing copies, then core merged by key."""

from __future__ import annotations

import random
import string
import threading
import time
import uuid
from decimal import Decimal

import psycopg
import pyarrow as pa
import pytest
from psycopg import sql

from include.etlkit.load.postgres import PostgresWarehouse
from include.etlkit.load.warehouse import LOAD_ID, TableLoad
from infra.local import settings

pytestmark = pytest.mark.integration

CONN_ID = "wh_load"
DIM = TableLoad(name="dim_customer", key=("id",), merge="upsert")
FACT = TableLoad(name="fact_payment", key=("source_id", "row_hash"), merge="versions")

DIM_SCHEMA = pa.schema([("id", pa.int32()), ("name", pa.string()), ("city", pa.string())])
FACT_SCHEMA = pa.schema(
    [("source_id", pa.int32()), ("amount", pa.decimal128(10, 2)), ("row_hash", pa.string())]
)

H1 = "a" * 32
H1_NEW = "b" * 32
H2 = "c" * 32


def _connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname, autocommit=True
    )


@pytest.fixture(scope="module")
def warehouse_db() -> str:
    name = f"wh_load_{uuid.uuid4().hex[:12]}"
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _connect(name) as conn:
        conn.execute("CREATE SCHEMA landing; CREATE SCHEMA core")
    yield name
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db(warehouse_db, monkeypatch) -> psycopg.Connection:
    """A connection to the warehouse, with empty core tables and no landing tables."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{warehouse_db}",
    )
    conn = _connect(warehouse_db)
    conn.execute(
        """
        DROP TABLE IF EXISTS landing.dim_customer, landing.fact_payment, landing.customer_region,
            core.dim_customer, core.fact_payment, core.customer_region;
        CREATE TABLE core.dim_customer (id integer PRIMARY KEY, name text NOT NULL, city text);
        CREATE TABLE core.fact_payment (
            fact_id   serial PRIMARY KEY,
            source_id integer NOT NULL,
            amount    numeric(10, 2),
            row_hash  char(32) NOT NULL,
            UNIQUE (source_id, row_hash)
        );
        """
    )
    yield conn
    conn.close()


@pytest.fixture
def warehouse(db) -> PostgresWarehouse:
    wh = PostgresWarehouse(conn_id=CONN_ID)
    wh.ensure_landing(DIM, DIM_SCHEMA)
    wh.ensure_landing(FACT, FACT_SCHEMA)
    return wh


def dims(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(DIM_SCHEMA.names, r, strict=True)) for r in rows], schema=DIM_SCHEMA
    )


def facts(*rows: tuple) -> pa.Table:
    return pa.Table.from_pylist(
        [dict(zip(FACT_SCHEMA.names, r, strict=True)) for r in rows], schema=FACT_SCHEMA
    )


def rows_of(db: psycopg.Connection, query: str) -> list[tuple]:
    return db.execute(query).fetchall()


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_upsert_inserts_then_updates_only_changed_dimensions_and_latest_values_win(warehouse, db):
    first = warehouse.load(DIM, dims((1, "O'Keefe", "Leeds"), (2, "Smith", ""), (3, "Jones", None)), "dims-1")
    assert first == 3
    untouched_xmin = db.execute("SELECT xmin::text FROM core.dim_customer WHERE id = 1").fetchone()[0]

    second = warehouse.load(
        DIM,
        dims((1, "O'Keefe", "Leeds"), (2, "Smith", "York"), (3, "Jones", None), (4, "New", "Hull")),
        "dims-2",
    )

    assert second == 2  # one changed, one new: the two unchanged rows are not rewritten
    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "O'Keefe", "Leeds"),
        (2, "Smith", "York"),
        (3, "Jones", None),
        (4, "New", "Hull"),
    ]
    assert db.execute("SELECT xmin::text FROM core.dim_customer WHERE id = 1").fetchone()[0] == untouched_xmin


def test_upsert_keeps_null_and_empty_string_apart(warehouse, db):
    warehouse.load(DIM, dims((1, "A", ""), (2, "B", None)), "dims-1")

    assert rows_of(db, "SELECT id, city FROM core.dim_customer ORDER BY id") == [(1, ""), (2, None)]
    assert rows_of(db, "SELECT id, city FROM landing.dim_customer ORDER BY id") == [(1, ""), (2, None)]


def test_loading_the_same_dimension_object_again_merges_nothing(warehouse, db):
    batch = dims((1, "A", "Leeds"), (2, "B", "York"))
    warehouse.load(DIM, batch, "dims-1")

    assert warehouse.load(DIM, batch, "dims-1") == 0
    assert count(db, "landing.dim_customer") == 2
    assert count(db, "core.dim_customer") == 2


def test_versions_insert_each_distinct_version_once_and_a_reload_changes_nothing(warehouse, db):
    batch = facts((1, Decimal("3.94"), H1), (2, Decimal("0.10"), H2), (1, Decimal("3.94"), H1))

    merged = warehouse.load(FACT, batch, "facts-1")
    assert merged == 2
    assert (count(db, "landing.fact_payment"), count(db, "core.fact_payment")) == (3, 2)

    again = warehouse.load(FACT, batch, "facts-1")

    assert again == 0
    assert (count(db, "landing.fact_payment"), count(db, "core.fact_payment")) == (3, 2)
    assert rows_of(db, "SELECT source_id, amount, row_hash FROM core.fact_payment ORDER BY source_id") == [
        (1, Decimal("3.94"), H1),
        (2, Decimal("0.10"), H2),
    ]


def test_a_second_object_with_one_new_version_adds_exactly_one_fact(warehouse, db):
    warehouse.load(FACT, facts((1, Decimal("3.94"), H1), (2, Decimal("0.10"), H2)), "facts-1")
    before = rows_of(
        db, "SELECT fact_id, source_id, amount, row_hash FROM core.fact_payment ORDER BY fact_id"
    )

    merged = warehouse.load(FACT, facts((1, Decimal("5.00"), H1_NEW), (2, Decimal("0.10"), H2)), "facts-2")

    assert merged == 1
    after = rows_of(db, "SELECT fact_id, source_id, amount, row_hash FROM core.fact_payment ORDER BY fact_id")
    assert after[:2] == before
    assert [row[1:] for row in after[2:]] == [(1, Decimal("5.00"), H1_NEW)]


def test_landing_rows_carry_the_load_id_of_their_object(warehouse, db):
    warehouse.load(
        FACT, facts((1, Decimal("1.00"), H1), (2, Decimal("2.00"), H2)), "s3://bucket/facts-1.parquet"
    )
    warehouse.load(FACT, facts((1, Decimal("5.00"), H1_NEW)), "s3://bucket/facts-2.parquet")

    assert rows_of(
        db, f"SELECT {LOAD_ID}, count(*) FROM landing.fact_payment GROUP BY {LOAD_ID} ORDER BY {LOAD_ID}"
    ) == [("s3://bucket/facts-1.parquet", 2), ("s3://bucket/facts-2.parquet", 1)]
    assert db.execute("SELECT count(*) FROM landing.fact_payment WHERE _loaded_at IS NULL").fetchone()[0] == 0


def test_a_failing_core_merge_rolls_back_the_landing_copy_of_that_object(warehouse, db):
    good = dims((1, "A", "Leeds"), (2, "B", "York"))
    warehouse.load(DIM, good, "dims-1")

    for rows, load_id in (
        (dims((1, "A", "Leeds"), (3, None, "Hull")), "dims-1"),
        (dims((5, None, "Bath")), "dims-2"),
    ):
        with pytest.raises(Exception) as refused:  # core.name is NOT NULL
            warehouse.load(DIM, rows, load_id)
        assert refused.value.sqlstate == "23502"  # not_null_violation
        assert warehouse.refuses(refused.value)  # so the load operator rejects that object alone

    # The earlier copy of dims-1 was not replaced, and nothing of dims-2 was landed.
    assert rows_of(db, f"SELECT {LOAD_ID}, id, name FROM landing.dim_customer ORDER BY id") == [
        ("dims-1", 1, "A"),
        ("dims-1", 2, "B"),
    ]
    assert rows_of(db, "SELECT id, name, city FROM core.dim_customer ORDER BY id") == [
        (1, "A", "Leeds"),
        (2, "B", "York"),
    ]


def test_table_load_rejects_an_unknown_merge_mode():
    with pytest.raises(ValueError, match="merge must be 'upsert' or 'versions', not 'append'"):
        TableLoad(name="dim_customer", key=("id",), merge="append")


def test_upsert_of_a_table_whose_columns_are_all_key_inserts_its_rows(warehouse, db):
    db.execute(
        "CREATE TABLE core.customer_region (customer_id integer, region_id integer, "
        "PRIMARY KEY (customer_id, region_id))"
    )
    spec = TableLoad(name="customer_region", key=("customer_id", "region_id"), merge="upsert")
    bridge = pa.table(
        {"customer_id": pa.array([1, 1], pa.int32()), "region_id": pa.array([7, 8], pa.int32())}
    )
    warehouse.ensure_landing(spec, bridge.schema)

    assert warehouse.load(spec, bridge, "bridge-1") == 2
    assert rows_of(db, "SELECT customer_id, region_id FROM core.customer_region ORDER BY 2") == [
        (1, 7),
        (1, 8),
    ]


def test_upsert_of_a_batch_with_two_versions_of_a_key_keeps_the_last_one_after_a_vacuum(warehouse, db):
    rnd = random.Random(7)

    def blob(size: int) -> str:  # incompressible and below the TOAST threshold: the row stays in the page
        return "".join(rnd.choice(string.ascii_letters) for _ in range(size))

    # Page 0: a 1500-byte row (deleted below) and six 1000-byte rows; page 1: five 1100-byte rows.
    warehouse.load(
        DIM, dims((100, "gone", blob(1500)), *((101 + i, "p0", blob(1000)) for i in range(6))), "p0"
    )
    warehouse.load(DIM, dims(*((200 + i, "p1", blob(1100)) for i in range(5))), "p1")
    db.execute("DELETE FROM landing.dim_customer WHERE id = 100")
    db.execute("VACUUM landing.dim_customer")  # what autovacuum does on its own in production

    # One object with two versions of key 1: the first fills page 1, the last fits only in page 0.
    warehouse.load(DIM, dims((1, "older", blob(1900)), (1, "latest", blob(1200))), "batch")

    assert db.execute("SELECT name FROM core.dim_customer WHERE id = 1").fetchone()[0] == "latest"


def test_a_feed_loads_into_its_own_table_name_and_keeps_lineage_columns_in_landing_only(warehouse, db):
    """``table`` renames the warehouse table; ``landing_only`` columns stay out of ``core``."""
    spec = TableLoad(
        name="customer", key=("id",), merge="upsert", table="dim_customer", landing_only=("source_row",)
    )
    rows = pa.table(
        {"id": [1, 2], "name": ["Ann", "Bob"], "city": ["Leeds", None], "source_row": [1, 2]},
        schema=pa.schema([*DIM_SCHEMA, ("source_row", pa.int64())]),
    )
    db.execute("DROP TABLE landing.dim_customer")
    warehouse.ensure_landing(spec, rows.schema)
    assert warehouse.load(spec, rows, load_id="file-1") == 2
    assert db.execute("SELECT id, name, city FROM core.dim_customer ORDER BY id").fetchall() == [
        (1, "Ann", "Leeds"),
        (2, "Bob", None),
    ]
    landed = db.execute(f"SELECT id, source_row, {LOAD_ID} FROM landing.dim_customer ORDER BY id").fetchall()
    assert landed == [(1, 1, "file-1"), (2, 2, "file-1")]
    assert db.execute("SELECT to_regclass('landing.customer'), to_regclass('core.customer')").fetchone() == (
        None,
        None,
    )


def test_a_key_column_cannot_be_landing_only():
    with pytest.raises(ValueError, match="key column cannot be landing-only"):
        TableLoad(name="customer", key=("id",), merge="upsert", landing_only=("id",))


def test_with_a_version_column_an_object_loaded_late_never_brings_a_row_back_to_an_older_version(
    warehouse, db
):
    spec = TableLoad(name="dim_customer", key=("id",), merge="upsert", table="dim_versioned", version="seen")
    schema = pa.schema([("id", pa.int32()), ("name", pa.string()), ("seen", pa.int32())])
    db.execute("DROP TABLE IF EXISTS core.dim_versioned, landing.dim_versioned")
    db.execute("CREATE TABLE core.dim_versioned (id integer PRIMARY KEY, name text, seen integer NOT NULL)")
    warehouse.ensure_landing(spec, schema)

    def rows(*values: tuple) -> pa.Table:
        return pa.Table.from_pylist([dict(zip(schema.names, v, strict=True)) for v in values], schema=schema)

    warehouse.load(spec, rows((1, "Ann Newer", 2), (2, "Bob", 1)), load_id="newer")
    assert warehouse.load(spec, rows((1, "Ann Older", 1), (2, "Bob Newer", 2)), load_id="older-for-1") == 1
    assert db.execute("SELECT id, name, seen FROM core.dim_versioned ORDER BY id").fetchall() == [
        (1, "Ann Newer", 2),
        (2, "Bob Newer", 2),
    ]
    with pytest.raises(ValueError, match="only applies to merge='upsert'"):
        TableLoad(name="f", key=("id",), merge="versions", version="seen")


# -- objects in key order: no sort, no conflict arbitration (issue 11), same result -------------------


def test_key_order_is_watched_across_batches():
    from include.etlkit.load.postgres import KeyOrder

    rising = KeyOrder("id")
    for batch in ([1, 2, 5], [6], [9, 10]):
        rising.see(pa.array(batch))
    assert rising.rising
    for seen in (([1, 2], [2, 3]), ([1, 3, 2],), ([1, None],), ([3, 4], [1])):
        order = KeyOrder("id")
        for batch in seen:
            order.see(pa.array(batch))
        assert not order.rising, seen


def test_an_object_in_key_order_loads_like_any_other(warehouse, db):
    """Rising keys take the merge without ``ON CONFLICT``: versions core has are still skipped."""
    assert warehouse.load(FACT, facts((1, Decimal("1.00"), H1), (2, Decimal("2.00"), H2)), "f-1") == 2
    again = facts((1, Decimal("1.00"), H1), (2, Decimal("2.50"), H1_NEW), (3, Decimal("3.00"), H1))
    assert warehouse.load(FACT, again, "f-2") == 2  # (1, H1) is known: only the new versions
    assert warehouse.load(FACT, again, "f-2") == 0  # reloaded: nothing new
    assert rows_of(db, "SELECT source_id, amount FROM core.fact_payment ORDER BY fact_id") == [
        (1, Decimal("1.00")),
        (2, Decimal("2.00")),
        (2, Decimal("2.50")),
        (3, Decimal("3.00")),
    ]


@pytest.mark.parametrize("core_holds_the_range", [False, True], ids=["keys-unseen", "keys-seen"])
def test_a_version_committed_by_another_writer_mid_merge_is_skipped_not_refused(
    warehouse, db, warehouse_db, core_holds_the_range
):
    """The key-order merge meets a row another transaction inserted after it looked: it falls back
    to the general merge (``ON CONFLICT DO NOTHING``) instead of failing the object.

    Both key-order merges: core holding no key of the object's range (a plain insert, after one
    probe of core's index) and core holding one (the insert skips versions core has, row by row).
    """
    if core_holds_the_range:  # another version of key 1, committed before the load
        db.execute(
            "INSERT INTO core.fact_payment (source_id, amount, row_hash) VALUES (1, 0.50, %s)", (H1_NEW,)
        )
    other = _connect(warehouse_db)
    other.autocommit = False
    other.execute("INSERT INTO core.fact_payment (source_id, amount, row_hash) VALUES (2, 9.99, %s)", (H2,))
    result: dict[str, object] = {}

    def load() -> None:
        try:
            result["merged"] = warehouse.load(
                FACT, facts((1, Decimal("1.00"), H1), (2, Decimal("2.00"), H2)), "f-race"
            )
        except Exception as exc:
            result["error"] = exc

    loader = threading.Thread(target=load)
    loader.start()
    # The load's insert waits on the uncommitted (2, H2) of the other transaction; then it commits.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO \"core\".\"fact_payment\"%'"
        ).fetchone()[0]
        if waiting:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the load never waited on the other writer's row")
    other.commit()
    other.close()
    loader.join(timeout=30)
    assert "error" not in result, result.get("error")
    assert result["merged"] == 1
    expected = [(1, Decimal("1.00")), (2, Decimal("9.99"))]  # the other writer's row stays
    if core_holds_the_range:
        expected.insert(0, (1, Decimal("0.50")))
    assert (
        rows_of(db, "SELECT source_id, amount FROM core.fact_payment ORDER BY source_id, amount") == expected
    )


def test_landing_finds_a_load_by_a_brin_index_replacing_the_old_btree(warehouse, db):
    """``landing.<table>._load_id`` is indexed by BRIN (autosummarize on); a landing table made
    before that, with the btree ``<table>_load_id_idx``, has it replaced on its next ensure."""

    def load_id_indexes() -> list[tuple]:
        return rows_of(
            db,
            "SELECT c.relname, am.amname, array_to_string(c.reloptions, ',') FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam "
            "WHERE i.indrelid = 'landing.fact_payment'::regclass ORDER BY 1",
        )

    assert load_id_indexes() == [("fact_payment_load_id_brin", "brin", "autosummarize=on")]
    db.execute("DROP INDEX landing.fact_payment_load_id_brin")
    db.execute("CREATE INDEX fact_payment_load_id_idx ON landing.fact_payment (_load_id)")
    warehouse.ensure_landing(FACT, FACT_SCHEMA)
    assert load_id_indexes() == [("fact_payment_load_id_brin", "brin", "autosummarize=on")]


def test_loads_read_back_their_own_rows_whatever_the_brin_summaries(warehouse, db):
    """Many loads, a reload in the middle, a vacuum (free space reused): every merge reads exactly
    its object's landing rows, summarized ranges or not, and each object keeps one landing copy."""
    for n in range(1, 41):
        rows = [(k, Decimal(f"{n}.00"), f"{n:032d}") for k in range(n * 100, n * 100 + 50)]
        assert warehouse.load(FACT, facts(*rows), f"obj-{n:02d}") == 50
        if n == 20:  # obj-05 again, each row a new version: its landing rows are replaced
            again = [(k, Decimal("5.50"), f"{5:031d}x") for k in range(500, 550)]
            assert warehouse.load(FACT, facts(*again), "obj-05") == 50
            db.execute("VACUUM landing.fact_payment")
    assert rows_of(db, "SELECT count(*), count(DISTINCT _load_id) FROM landing.fact_payment") == [(2000, 40)]
    assert rows_of(
        db, "SELECT count(*), min(amount) FROM landing.fact_payment WHERE _load_id = 'obj-05'"
    ) == [(50, Decimal("5.50"))]
    assert count(db, "core.fact_payment") == 2050


def test_a_role_that_cannot_summarize_the_landing_index_still_loads(warehouse, db, warehouse_db, monkeypatch):
    """Summarizing a BRIN index takes its table's owner; a loading role that only has the rights to
    write loads all the same."""
    role = f"wh_loader_{uuid.uuid4().hex[:8]}"
    db.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        db.execute(
            sql.SQL(
                "GRANT USAGE ON SCHEMA landing, core TO {r}; "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA landing, core TO {r}; "
                "GRANT USAGE ON ALL SEQUENCES IN SCHEMA core TO {r}"
            ).format(r=sql.Identifier(role))
        )
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            f"postgres://{role}@{settings.PG_HOST}:{settings.PG_PORT}/{warehouse_db}",
        )
        assert warehouse.load(FACT, facts((1, Decimal("1.00"), H1)), "by-a-writer") == 1
        assert warehouse.load(FACT, facts((1, Decimal("1.00"), H1), (2, Decimal("2.00"), H2)), "again") == 1
    finally:
        db.execute(sql.SQL("DROP OWNED BY {r}; DROP ROLE {r}").format(r=sql.Identifier(role)))
    assert count(db, "core.fact_payment") == 2

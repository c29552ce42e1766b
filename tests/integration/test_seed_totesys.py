"""Integration tests of the totesys seeder and of the warehouse DDL, on the local PostgreSQL.

Each test works in its own throwaway database (``totesys_test_<random>``), dropped afterwards.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from include.etlkit.paths import sql_file
from include.etlkit.totesys import model
from include.etlkit.totesys.transform import LOAD_ORDER, build_tables
from infra.local import seed_totesys

pytestmark = pytest.mark.integration

FIRST, LATER = "2024-11-15", "2025-02-25"

# The data README's row counts.
FIRST_COUNTS = {
    "address": 30,
    "counterparty": 20,
    "currency": 3,
    "department": 8,
    "design": 473,
    "payment": 15836,
    "payment_type": 4,
    "purchase_order": 4649,
    "sales_order": 11187,
    "staff": 20,
    "transaction": 15836,
}
LATER_COUNTS = FIRST_COUNTS | {
    "design": 535,
    "purchase_order": 5300,
    "sales_order": 12836,
    "transaction": 18136,
}
# Rows that changed between the snapshots while last_updated stayed the same (data README).
SILENT_CHANGES = {"sales_order": 21, "purchase_order": 20, "design": 19}


@pytest.fixture
def dsn() -> Iterator[str]:
    name = f"totesys_test_{uuid.uuid4().hex[:10]}"
    yield seed_totesys.local_dsn(name)
    admin = psycopg2.connect(seed_totesys.local_dsn("postgres"))
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


def _query(dsn: str, query: sql.Composable | str, params: tuple = ()) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
    finally:
        conn.close()


def _row_counts(dsn: str) -> dict[str, int]:
    return {
        table: _query(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))[0][0]
        for table in seed_totesys.TABLES
    }


def _snapshot(snapshot: str, table: str) -> pd.DataFrame:
    return pq.read_table(seed_totesys.snapshot_dir(snapshot) / f"{table}.parquet").to_pandas()


def _silently_changed_ids(table: str) -> list[int]:
    """Ids whose values differ between the snapshots while last_updated is the same."""
    key = f"{table}_id"
    first = _snapshot(FIRST, table).set_index(key)
    later = _snapshot(LATER, table).set_index(key).loc[first.index]
    same = (first == later) | (first.isna() & later.isna())
    changed = ~same.all(axis=1) & same["last_updated"]
    return sorted(int(i) for i in first.index[changed])


def _rows(dsn: str, table: str, ids: list[int]) -> dict[int, dict]:
    key = f"{table}_id"
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s)").format(
                    sql.Identifier(table), sql.Identifier(key)
                ),
                (ids,),
            )
            names = [d.name for d in cur.description]
            return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
    finally:
        conn.close()


def test_first_snapshot_inserts_every_row(dsn):
    counts = seed_totesys.seed(FIRST, dsn)

    assert counts == {t: {"inserted": n, "updated": 0} for t, n in FIRST_COUNTS.items()}
    assert _row_counts(dsn) == FIRST_COUNTS
    # NULL stays NULL, text stays text, money stays exact.
    assert _query(dsn, "SELECT count(*) FROM address WHERE address_line_2 IS NULL")[0][0] == 20
    assert _query(dsn, "SELECT postal_code FROM address WHERE address_id = 6")[0][0] == "08841"
    assert str(_query(dsn, "SELECT sum(payment_amount) FROM payment")[0][0]) == "2866262649.80"
    assert _query(dsn, "SELECT count(*) FROM payment WHERE paid")[0][0] == 9648


def test_seeding_the_same_snapshot_again_changes_nothing(dsn):
    seed_totesys.seed(FIRST, dsn)
    before = _query(
        dsn, "SELECT md5(string_agg(t::text, '|' ORDER BY transaction_id)) FROM \"transaction\" t"
    )

    counts = seed_totesys.seed(FIRST, dsn)

    assert counts == {t: {"inserted": 0, "updated": 0} for t in FIRST_COUNTS}
    assert _row_counts(dsn) == FIRST_COUNTS
    assert (
        _query(dsn, "SELECT md5(string_agg(t::text, '|' ORDER BY transaction_id)) FROM \"transaction\" t")
        == before
    )


def test_later_snapshot_applies_new_and_silently_changed_rows(dsn):
    seed_totesys.seed(FIRST, dsn)
    changed_ids = {table: _silently_changed_ids(table) for table in SILENT_CHANGES}
    assert {table: len(ids) for table, ids in changed_ids.items()} == SILENT_CHANGES
    before = {table: _rows(dsn, table, ids) for table, ids in changed_ids.items()}
    payments_before = _query(
        dsn, "SELECT count(*), sum(payment_amount), count(*) FILTER (WHERE paid) FROM payment"
    )

    counts = seed_totesys.seed(LATER, dsn)

    assert "payment" not in counts
    assert counts["design"] == {"inserted": 62, "updated": 19}
    assert counts["sales_order"] == {"inserted": 1649, "updated": 21}
    assert counts["purchase_order"] == {"inserted": 651, "updated": 20}
    assert counts["transaction"] == {"inserted": 2300, "updated": 0}
    assert _row_counts(dsn) == LATER_COUNTS
    assert _query(dsn, "SELECT count(*), sum(payment_amount), count(*) FILTER (WHERE paid) FROM payment") == (
        payments_before
    )
    for table, ids in changed_ids.items():
        after = _rows(dsn, table, ids)
        for row_id in ids:
            old, new = before[table][row_id], after[row_id]
            assert new["last_updated"] == old["last_updated"], (table, row_id)
            assert new != old, (table, row_id)

    # Sequences were moved past the loaded keys: the next sales order gets a fresh id.
    next_id = _query(
        dsn,
        "INSERT INTO sales_order (design_id, staff_id, counterparty_id, units_sold, unit_price, currency_id,"
        " agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id)"
        " VALUES (1, 1, 1, 1, 1.00, 1, '2025-03-01', '2025-03-01', 1) RETURNING sales_order_id",
    )
    assert next_id == [(LATER_COUNTS["sales_order"] + 1,)]


def _copy_frame(cur, table: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    buffer.seek(0)
    columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        sql.Identifier("core", table), columns
    )
    cur.copy_expert(copy.as_string(cur), buffer)


def test_core_ddl_is_valid_idempotent_and_fits_the_model(dsn):
    seed_totesys.ensure_database(dsn)
    ddl = sql_file("postgres", "totesys", "core.sql").read_text()
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(ddl)
            cur.execute(ddl)  # idempotent
            cur.execute(
                "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
                " FROM information_schema.columns WHERE table_schema = 'core' GROUP BY table_name"
            )
            columns = dict(cur.fetchall())
        record_ids = {"fact_sales_order": "sales_record_id", "fact_purchase_order": "purchase_record_id"}
        record_ids["fact_payment"] = "payment_record_id"
        assert set(columns) == set(model.SCHEMAS)
        for table, schema in model.SCHEMAS.items():
            expected = [record_ids[table], *schema.names] if table in record_ids else list(schema.names)
            assert columns[table] == [*expected, "deleted_at"], table  # rows deleted in the source

        # The model's frames of the real snapshot load as they are (types, NOT NULLs, foreign keys).
        src = {t: _snapshot(FIRST, t) for t in FIRST_COUNTS}
        # The product's own assembly of the 11 tables, in load order (dimensions before facts).
        built = build_tables(src, src.__getitem__)
        frames = {table: built[table] for table in LOAD_ORDER}
        with conn, conn.cursor() as cur:
            for table, frame in frames.items():
                _copy_frame(cur, table, frame)
            loaded = {}
            for table in frames:
                cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("core", table)))
                loaded[table] = cur.fetchone()[0]
            cur.execute("SELECT sum(unit_price * units_sold) FROM core.fact_sales_order")
            (sales_value,) = cur.fetchone()
        assert loaded == {table: len(frame) for table, frame in frames.items()}
        sales = frames["fact_sales_order"]
        expected_value = sum(
            p * q for p, q in zip(sales["unit_price"].tolist(), sales["units_sold"].tolist(), strict=True)
        )
        assert sales_value == expected_value
    finally:
        conn.close()

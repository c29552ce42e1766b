"""Warehouses with data in their marts, seeded directly (no pipeline run): for mart and dashboard tests.

- :func:`load_totesys_snapshot`: totesys ``core`` and ``mart`` with a snapshot of the sample source,
  assembled by the product's own models (``build_tables``) and COPYed in load order, as the load does;
- :func:`load_retail_sample`: retail ``core`` and ``mart`` with a few sales in two stores and two
  currencies (and the rates that convert them), enough for every retail mart to have rows.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg2 import sql
from psycopg2.extensions import connection

from include.etlkit.paths import sql_file
from include.etlkit.totesys.transform import LOAD_ORDER, build_tables
from infra.local import seed_totesys

SNAPSHOT = "2024-11-15"
SOURCE_TABLES = (
    "address", "counterparty", "currency", "department", "design", "payment",
    "payment_type", "purchase_order", "sales_order", "staff", "transaction",
)  # fmt: skip


@contextmanager
def scratch_database(prefix: str) -> Iterator[tuple[str, connection]]:
    """A fresh database ``<prefix>_<random>`` on the local PostgreSQL and a connection to it;
    dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    dsn = seed_totesys.local_dsn(name)
    seed_totesys.ensure_database(dsn)
    conn = psycopg2.connect(dsn)
    try:
        yield name, conn
    finally:
        conn.close()
        admin = psycopg2.connect(seed_totesys.local_dsn("postgres"))
        try:
            admin.autocommit = True
            with admin.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        finally:
            admin.close()


def totesys_source(snapshot: str = SNAPSHOT) -> dict[str, pd.DataFrame]:
    """The snapshot's source tables, as read from its Parquet files."""
    folder = seed_totesys.snapshot_dir(snapshot)
    return {table: pq.read_table(folder / f"{table}.parquet").to_pandas() for table in SOURCE_TABLES}


def copy_frame(cur, table: str, frame: pd.DataFrame) -> None:
    """COPY a model frame into ``core.<table>`` (an in-memory CSV written by pyarrow)."""
    buffer = io.BytesIO()
    pa_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    buffer.seek(0)
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(
        sql.Identifier("core", table), sql.SQL(", ").join(map(sql.Identifier, frame.columns))
    )
    cur.copy_expert(copy.as_string(cur), buffer)


def apply_totesys_marts(conn: connection) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(sql_file("postgres", "totesys", "marts.sql").read_text())


def load_totesys_snapshot(conn: connection, source: dict[str, pd.DataFrame] | None = None) -> None:
    """Create totesys ``core`` and the marts in ``conn``'s database and load the snapshot into core."""
    source = source if source is not None else totesys_source()
    with conn, conn.cursor() as cur:
        cur.execute(sql_file("postgres", "totesys", "core.sql").read_text())
    apply_totesys_marts(conn)
    # The product's own assembly of the 11 tables, in load order (dimensions before facts).
    built = build_tables(source, source.__getitem__)
    with conn, conn.cursor() as cur:
        for table in LOAD_ORDER:
            copy_frame(cur, table, built[table])


RETAIL_ROWS = {
    "dim_sales_person": (
        ["sales_person_id", "store_id", "first_name", "last_name", "hired_on", "updated_at"],
        [
            (1, 10, "Ada", "Byron", "2024-01-01", "2024-01-01"),
            (2, 10, "Alan", "Turing", "2024-01-01", "2024-01-01"),
            (3, 20, "Grace", "Hopper", "2024-01-01", "2024-01-01"),
        ],
    ),
    "exchange_rate": (
        ["date", "base", "currency", "rate"],
        [("2024-11-01", "GBP", "EUR", 1.2), ("2024-12-01", "GBP", "EUR", 1.25)],
    ),
    "fact_sale": (
        [
            "sale_id",
            "sold_at",
            "store_id",
            "sales_person_id",
            "product_id",
            "quantity",
            "unit_price",
            "currency",
        ],
        [
            (1, "2024-11-03 10:00", 10, 1, 100, 2, 50.00, "GBP"),
            (2, "2024-11-04 11:00", 10, 2, 100, 1, 50.00, "GBP"),
            (3, "2024-11-05 12:00", 20, 3, 101, 3, 30.00, "EUR"),
            (4, "2024-12-02 09:00", 10, 2, 101, 4, 30.00, "GBP"),
            (5, "2024-12-03 15:00", 20, 3, 100, 1, 60.00, "EUR"),
        ],
    ),
}


def load_retail_sample(conn: connection) -> None:
    """Create retail ``core`` and the marts in ``conn``'s database, with :data:`RETAIL_ROWS` in core."""
    with conn, conn.cursor() as cur:
        cur.execute(sql_file("postgres", "retail", "core.sql").read_text())
        for table, (columns, rows) in RETAIL_ROWS.items():
            insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT DO NOTHING").format(
                sql.Identifier("core", table),
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            cur.executemany(insert.as_string(cur), rows)
        cur.execute(sql_file("postgres", "retail", "marts.sql").read_text())

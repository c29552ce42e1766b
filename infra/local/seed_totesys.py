"""Create the local totesys source database and load a Parquet snapshot into it.

Usage::

    python -m infra.local.seed_totesys [--snapshot 2024-11-15|2025-02-25] [--database totesys]

A snapshot is the *state* of the source at a moment, so applying one is an upsert, not an append:
new rows are inserted, rows whose values differ are updated (whatever their ``last_updated`` says:
the 2025-02-25 dump has rows that changed while ``last_updated`` stayed put, which is exactly what
the pipeline must learn to notice), and identical rows are left alone, so seeding twice is a no-op.
Tables absent from a snapshot (``payment`` in 2025-02-25) are not touched, and nothing is deleted.

Each table goes through ``COPY`` into a temporary table (fed from an in-memory CSV written by
pyarrow: thousands of rows in one round trip) and one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE
row differs``. Everything runs in one transaction: a failed seed leaves the database as it was.
"""

from __future__ import annotations

import argparse
import io
from decimal import Decimal
from pathlib import Path

import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg2 import sql
from psycopg2.extensions import connection, make_dsn, parse_dsn

from include.etlkit.paths import sql_file
from infra.local import settings

DATA_DIR = settings.PROJECT_ROOT / "infra" / "local" / "data" / "totesys"
DEFAULT_SNAPSHOT = "2024-11-15"

# Foreign-key order: a table is loaded after every table it references.
TABLES = (
    "currency",
    "payment_type",
    "department",
    "address",
    "design",
    "staff",
    "counterparty",
    "sales_order",
    "purchase_order",
    "transaction",
    "payment",
)

# Money is numeric(…, 2) in the source but double in the Parquet dumps: converted to this decimal
# type before the CSV is written, and refused if a value had more than 2 decimals.
_MONEY = pa.decimal128(18, 2)


def available_snapshots() -> list[str]:
    """The snapshot labels shipped in ``DATA_DIR`` (folder ``snapshot_<label>``)."""
    return sorted(p.name.removeprefix("snapshot_") for p in DATA_DIR.glob("snapshot_*") if p.is_dir())


def snapshot_dir(snapshot: str) -> Path:
    """The folder of a snapshot given by label (``2024-11-15``) or by path."""
    path = Path(snapshot)
    if not path.is_dir():
        path = DATA_DIR / f"snapshot_{snapshot}"
    if not path.is_dir():
        raise FileNotFoundError(f"no totesys snapshot {snapshot!r}; shipped: {available_snapshots()}")
    return path


def local_dsn(database: str = "totesys") -> str:
    """The libpq DSN of a database on the local PostgreSQL server (trust auth, no password)."""
    return make_dsn(host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=database)


def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` if missing (via the ``postgres`` database).

    Returns whether it was created. ``CREATE DATABASE`` cannot run in a transaction, hence the
    separate autocommit connection.
    """
    params = parse_dsn(dsn)
    name = params.get("dbname", "totesys")
    admin = psycopg2.connect(make_dsn(dsn, dbname="postgres"))
    try:
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone():
                return False
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    finally:
        admin.close()


def read_snapshot_table(path: Path) -> pa.Table:
    """One Parquet dump, converted to what COPY loads exactly.

    Doubles become 2-decimal decimals (through their shortest text form, so 57067.2 is 57067.20
    and never 57067.199999...), timestamps become microseconds (refused if that would truncate).
    """
    table = pq.read_table(path)
    for index, field in enumerate(table.schema):
        column = table.column(index)
        if pa.types.is_floating(field.type):
            decimals = [None if v is None else Decimal(repr(v)) for v in column.to_pylist()]
            try:
                column = pa.array(decimals, type=_MONEY)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"{path.name}: {field.name} has values with more than 2 decimals") from exc
        elif pa.types.is_timestamp(field.type):
            column = pc.cast(column, pa.timestamp("us"))
        else:
            continue
        table = table.set_column(index, field.name, column)
    return table


def _table_columns(cur, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )
    return [name for (name,) in cur.fetchall()]


def _to_csv(table: pa.Table) -> io.BytesIO:
    # pyarrow quotes every string and writes NULL as an empty unquoted field: COPY's CSV format
    # reads exactly that, so NULL and '' stay distinct.
    buffer = io.BytesIO()
    pa_csv.write_csv(table, buffer, pa_csv.WriteOptions(include_header=True))
    buffer.seek(0)
    return buffer


def upsert_table(cur, table: str, data: pa.Table) -> dict[str, int]:
    """Apply ``data`` as the state of ``table``: insert new keys, update rows that differ.

    Returns ``{"inserted": n, "updated": m}``. The primary key is the first column, ``<table>_id``.
    """
    columns = _table_columns(cur, table)
    if set(columns) != set(data.column_names):
        raise ValueError(
            f"snapshot table {table!r} has columns {sorted(data.column_names)}, "
            f"the database has {sorted(columns)}"
        )
    key = f"{table}_id"
    stage = f"stage_{table}"
    target, stage_id, key_id = sql.Identifier(table), sql.Identifier(stage), sql.Identifier(key)
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    non_key = [c for c in columns if c != key]

    cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(stage_id, target))
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true)").format(stage_id, cols)
    cur.copy_expert(copy.as_string(cur), _to_csv(data.select(columns)))

    cur.execute(
        sql.SQL(
            "SELECT count(*) FROM {s} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{k} = {s}.{k})"
        ).format(s=stage_id, t=target, k=key_id)
    )
    inserted = cur.fetchone()[0]
    # IS DISTINCT FROM on the whole row: NULL-safe, and blind to last_updated on purpose (a row
    # whose values changed under an unchanged last_updated is updated too).
    upsert = sql.SQL(
        "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} ORDER BY {k}"
        " ON CONFLICT ({k}) DO UPDATE SET {assign}"
        " WHERE ({old}) IS DISTINCT FROM ({new})"
    ).format(
        t=target,
        cols=cols,
        s=stage_id,
        k=key_id,
        assign=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in non_key),
        old=sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in non_key),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in non_key),
    )
    cur.execute(upsert)
    return {"inserted": inserted, "updated": cur.rowcount - inserted}


def reset_sequence(cur, table: str) -> None:
    """Point the table's serial sequence past its largest key, so new inserts do not collide."""
    key = sql.Identifier(f"{table}_id")
    cur.execute(
        sql.SQL(
            "SELECT setval(pg_get_serial_sequence(%s, %s), COALESCE(max({k}), 1), max({k}) IS NOT NULL)"
            " FROM {t}"
        ).format(k=key, t=sql.Identifier(table)),
        (sql.Identifier(table).as_string(cur), f"{table}_id"),
    )


def apply_schema(conn: connection) -> None:
    """Create the source tables (``sql/postgres/totesys/source.sql``, idempotent)."""
    with conn.cursor() as cur:
        cur.execute(sql_file("postgres", "totesys", "source.sql").read_text())


def seed(snapshot: str, dsn: str) -> dict[str, dict[str, int]]:
    """Create the database if needed, apply the schema and load ``snapshot`` as the source state.

    Returns ``{table: {"inserted": n, "updated": m}}`` for the tables the snapshot holds.
    """
    folder = snapshot_dir(snapshot)
    ensure_database(dsn)
    conn = psycopg2.connect(dsn)
    try:
        with conn:  # one transaction: commit on success, roll back on any error
            apply_schema(conn)
            counts: dict[str, dict[str, int]] = {}
            with conn.cursor() as cur:
                for table in TABLES:
                    path = folder / f"{table}.parquet"
                    if not path.is_file():
                        continue
                    counts[table] = upsert_table(cur, table, read_snapshot_table(path))
                    reset_sequence(cur, table)
        return counts
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", default=DEFAULT_SNAPSHOT, help=f"one of {available_snapshots()}")
    parser.add_argument("--database", default="totesys", help="database to create and load")
    args = parser.parse_args(argv)
    counts = seed(args.snapshot, local_dsn(args.database))
    print(f"totesys snapshot {args.snapshot} -> database {args.database}")
    print(f"{'table':<16}{'inserted':>10}{'updated':>10}")
    for table, count in counts.items():
        print(f"{table:<16}{count['inserted']:>10}{count['updated']:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Create the local retail source database (MariaDB / MySQL) and fill it with generated reference data.

Usage::

    python -m infra.local.seed_retail [--scale N] [--seed S] [--database retail]

The rows come from ``random.Random(seed)`` and small built-in lists of names, streets and towns, so
the same ``seed`` and ``scale`` always give the same rows (no Faker, nothing downloaded) and another
seed gives other rows. ``scale`` multiplies the row counts (scale 1: 200 customers, 5 stores,
50 products, 20 sales people).

Seeding is an upsert by key (``INSERT ... ON DUPLICATE KEY UPDATE``): seeding twice with the same
seed and scale changes nothing, not even ``updated_at``, because the server leaves identical rows
alone. Rows are sent in multi-row statements (mysqlclient's ``executemany`` folds them into one
``INSERT`` per batch), never one round trip per row, and all in one transaction.
"""

from __future__ import annotations

import argparse
import random
import re
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from include.etlkit.paths import sql_file
from infra.local import settings

BASE_COUNTS = {"store": 5, "customer": 200, "product": 50, "sales_team": 20}
BATCH_ROWS = 5_000  # rows per multi-row INSERT: well under max_allowed_packet
# Every generated updated_at is in [EPOCH, EPOCH + SPAN): before the pipelines' first interval.
EPOCH = datetime(2024, 1, 1)
SPAN = timedelta(days=300)

FIRST_NAMES = (
    "Oliver", "Amelia", "George", "Isla", "Harry", "Ava", "Noah", "Mia", "Jack", "Ivy", "Leo", "Freya",
    "Arthur", "Lily", "Muhammad", "Florence", "Oscar", "Sophia", "Theo", "Grace", "Chloé", "Zoë",
    "Seán", "Aoife", "Priya", "Rhys", "Siobhán", "Kwame", "Mei", "Jürgen",
)
LAST_NAMES = (
    "Smith", "Jones", "Williams", "Taylor", "Brown", "Davies", "Evans", "Wilson", "Thomas", "Johnson",
    "O'Brien", "O'Neill", "D'Arcy", "McDonald", "Patel", "Khan", "Nguyen", "Okafor", "Hughes", "Walker",
    "Wright", "Robinson", "Thompson", "White", "Edwards", "Green", "Hall", "Wood", "Clarke", "Lewis",
)
STREETS = (
    "High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane", "Manor Road",
    "Park Avenue", "Queen's Road", "King's Parade", "Mill Lane", "St John's Close", "The Crescent",
)
# (town, postcode area) pairs, so a postcode matches its town.
TOWNS = (
    ("London", "E"), ("Leeds", "LS"), ("Manchester", "M"), ("Bristol", "BS"), ("Glasgow", "G"),
    ("Cardiff", "CF"), ("Belfast", "BT"), ("Norwich", "NR"), ("York", "YO"), ("Brighton", "BN"),
    ("Newcastle upon Tyne", "NE"), ("Stoke-on-Trent", "ST"),
)
STORE_KINDS = ("Central", "Retail Park", "Outlet", "Market Place", "Riverside", "Arcade")
CATEGORIES = {
    "Homeware": ("Mug", "Teapot", "Cushion", "Throw", "Candle", "Vase"),
    "Garden": ("Trowel", "Planter", "Watering Can", "Bird Feeder", "Hose"),
    "Stationery": ("Notebook", "Fountain Pen", "Diary", "Pencil Case"),
    "Kitchen": ("Chef's Knife", "Chopping Board", "Saucepan", "Colander", "Whisk"),
    "Toys": ("Jigsaw", "Kite", "Building Blocks", "Teddy Bear"),
}
ADJECTIVES = ("Classic", "Deluxe", "Large", "Small", "Vintage", "Eco", "Premium", "Children's", "Striped")


# -- generation -------------------------------------------------------------------------------------


def _moment(rng: random.Random) -> datetime:
    """A millisecond-precision timestamp in the seeded period (timestamp(3) keeps exactly this)."""
    return EPOCH + timedelta(milliseconds=rng.randrange(int(SPAN.total_seconds() * 1000)))


def _postcode(rng: random.Random, area: str) -> str:
    letters = "ABDEFGHJLNPQRSTUWXYZ"
    return f"{area}{rng.randint(1, 28)} {rng.randint(1, 9)}{rng.choice(letters)}{rng.choice(letters)}"


def _address(rng: random.Random) -> str:
    return f"{rng.randint(1, 240)} {rng.choice(STREETS)}"


def _phone(rng: random.Random) -> str:
    return f"+44 7700 {rng.randint(900000, 900999)}"  # Ofcom's range reserved for drama: never real


def _email(first: str, last: str, number: int) -> str:
    def plain(name: str) -> str:  # "Zoë" -> "zoe", "O'Brien" -> "obrien"
        ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
        return re.sub(r"[^a-z]", "", ascii_name.lower())

    return f"{plain(first)}.{plain(last)}{number}@example.com"


def generate(scale: int = 1, seed: int = 1) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows (tuples in ``source.sql`` column order), the same for the same arguments."""
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    rng = random.Random(seed)
    counts = {table: base * scale for table, base in BASE_COUNTS.items()}

    stores = []
    for store_id in range(1, counts["store"] + 1):
        town, area = rng.choice(TOWNS)
        stores.append(
            (
                store_id,
                f"{town} {rng.choice(STORE_KINDS)}",
                _address(rng),
                town,
                _postcode(rng, area),
                f"+44 {rng.randint(1100, 1999)} {rng.randint(100000, 999999)}",
                date(2005, 1, 1) + timedelta(days=rng.randrange(6000)),
                _moment(rng),
            )
        )

    customers = []
    for customer_id in range(1, counts["customer"] + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        town, area = rng.choice(TOWNS)
        roll = rng.random()
        customers.append(
            (
                customer_id,
                first,
                last,
                None if roll < 0.05 else _address(rng),  # some customers never gave an address
                town,
                _postcode(rng, area),
                None if roll > 0.9 else _phone(rng),
                _email(first, last, customer_id),
                _moment(rng),
            )
        )

    products = []
    for product_id in range(1, counts["product"] + 1):
        category = rng.choice(sorted(CATEGORIES))
        products.append(
            (
                product_id,
                f"{rng.choice(ADJECTIVES)} {rng.choice(CATEGORIES[category])}",
                category,
                Decimal(rng.randrange(99, 25_000)).scaleb(-2),  # 0.99 to 249.99, exact pennies
                rng.random() > 0.1,
                _moment(rng),
            )
        )

    sales_team = []
    for person_id in range(1, counts["sales_team"] + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        sales_team.append(
            (
                person_id,
                rng.randint(1, counts["store"]),
                first,
                last,
                _email(first, last, person_id).replace("@example.com", "@retail.example.com"),
                date(2015, 1, 1) + timedelta(days=rng.randrange(3400)),
                _moment(rng),
            )
        )
    return {"store": stores, "customer": customers, "product": products, "sales_team": sales_team}


# -- loading ----------------------------------------------------------------------------------------

COLUMNS = {
    "store": ("store_id", "name", "address", "city", "postcode", "phone_number", "opened_on", "updated_at"),
    "customer": (
        "customer_id", "first_name", "last_name", "address", "city", "postcode", "phone_number", "email",
        "updated_at",
    ),
    "product": ("product_id", "name", "category", "unit_price", "is_active", "updated_at"),
    "sales_team": (
        "sales_person_id", "store_id", "first_name", "last_name", "email", "hired_on", "updated_at",
    ),
}
TABLES = tuple(COLUMNS)  # foreign-key order: store before sales_team


def _connect(database: str | None = None, **conn_kwargs: Any):
    import MySQLdb

    params: dict[str, Any] = {
        "host": settings.MYSQL_HOST,
        "port": settings.MYSQL_PORT,
        "user": settings.MYSQL_USER,
        "password": "",
        "charset": "utf8mb4",
        "connect_timeout": 10,
        # UTC, like the extract: timestamp columns are stored and read without any local-time shift.
        "init_command": "SET time_zone = '+00:00'",
    } | conn_kwargs
    if database:
        params["database"] = database
    return MySQLdb.connect(**params)


def _statements(script: str) -> list[str]:
    """The statements of a DDL file (no semicolons inside its literals), comments removed."""
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]


def _upsert_sql(table: str) -> str:
    columns = COLUMNS[table]
    names = ", ".join(f"`{c}`" for c in columns)
    updates = ", ".join(f"`{c}` = VALUES(`{c}`)" for c in columns[1:])
    placeholders = ", ".join(["%s"] * len(columns))
    # One VALUES group: mysqlclient's executemany expands it into multi-row INSERTs.
    return f"INSERT INTO `{table}` ({names}) VALUES ({placeholders}) ON DUPLICATE KEY UPDATE {updates}"


def seed(scale: int = 1, seed: int = 1, *, database: str | None = None, **conn_kwargs: Any) -> dict[str, int]:
    """Create ``database`` if missing, apply ``source.sql`` and upsert the generated rows.

    ``conn_kwargs`` go to ``MySQLdb.connect`` (host, port, user, password...; local defaults otherwise).
    Returns the number of rows generated per table (all present in the database afterwards).
    """
    database = database or settings.database("retail")
    rows = generate(scale, seed)
    admin = _connect(**conn_kwargs)
    try:
        quoted = "`" + database.replace("`", "``") + "`"
        admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
    finally:
        admin.close()

    conn = _connect(database, **conn_kwargs)
    try:
        cur = conn.cursor()
        for statement in _statements(sql_file("mysql", "retail", "source.sql").read_text()):
            cur.execute(statement)  # DDL commits implicitly: done before the data transaction
        conn.begin()
        for table in TABLES:
            statement = _upsert_sql(table)
            data: Sequence[tuple[Any, ...]] = rows[table]
            for start in range(0, len(data), BATCH_ROWS):
                cur.executemany(statement, data[start : start + BATCH_ROWS])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()
    return {table: len(rows[table]) for table in TABLES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="multiplies every table's row count")
    parser.add_argument("--seed", type=int, default=1, help="random seed: same seed, same rows")
    parser.add_argument(
        "--database", default=settings.database("retail"), help="database to create and fill"
    )
    args = parser.parse_args(argv)
    counts = seed(args.scale, args.seed, database=args.database)
    print(f"retail (scale {args.scale}, seed {args.seed}) -> MariaDB database {args.database}")
    for table, count in counts.items():
        print(f"{table:<12}{count:>10} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark: N totesys-shaped ``sales_order`` rows through the extract and load paths; prints a table.

``python -m bench.run [--rows N]`` (``make bench``; default 1,000,000 rows). A figure, never a
test: it measures and prints, it does not pass or fail on speed. ``python -m bench.run --dedup``
times customer matching instead (``bench/dedup.py``: 10,000 partner records against 100,000 known
customers, with precision and recall; no server needed).

What it does, and why that way:

- Everything it touches is its own and thrown away at the end, also on failure: a source database
  ``bench_src_<hex>``, a warehouse database ``bench_wh_<hex>`` holding the ``etl`` control tables (the
  extract's ledger writes are part of what is measured, and must never reach the real control plane),
  and a bucket ``bench-<hex>`` on the local S3 server. The bench's own Airflow connections
  (``bench_source``, ``bench_warehouse``, ``bench_s3``, and ``etl_control`` overridden) point at them.
- The rows are generated inside PostgreSQL (``INSERT ... SELECT ... FROM generate_series``) into the
  ``sales_order`` DDL of ``sql/postgres/totesys/source.sql``, so the column types are the source's.
  The table is then vacuumed: the first reader of fresh rows pays for setting hint bits, which would
  otherwise be charged to whichever step happens to run first.
- Each step runs in a fresh Python process, so its peak memory is its own. The peak is the process's
  ``VmHWM`` (high-water RSS of its own address space), not ``getrusage().ru_maxrss``: on Linux a
  child started by fork/vfork + exec inherits the parent's ``ru_maxrss``, so that figure would show
  this driver's footprint instead of the step's. Imports and set-up happen before the clock starts;
  the RSS at that moment is reported too, so ``peak - start`` is what the step itself needed.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from include.etlkit.paths import sql_file
from infra.local import settings

DEFAULT_ROWS = 1_000_000
TABLE = "sales_order"
KEY = "sales_order_id"
SOURCE = "bench"  # the ledger's source name and the first part of landed keys
SOURCE_CONN_ID = "bench_source"
WAREHOUSE_CONN_ID = "bench_warehouse"
S3_CONN_ID = "bench_s3"
CONTROL_CONN_ID = "etl_control"  # the name ControlStore and the Ledger always use

# The team's reference figures for 1M totesys-shaped rows (DESIGN.md, "Speed, measured here"), copied
# here because the project never reads ../shared at run time. Shown beside each step for context.
REFERENCE = {
    "copy_plain": "COPY (SELECT ...) ~1.1 s",
    "copy": "",
    "extract": "~2.0 s, ~270 MB (COPY→Parquet part)",
    "transform": "(no figure; issue 9: peak < 1 GB at 5M)",
    "pandas": "~11.5 s, ~1.2 GB",
    "load": "(no figure)",
    "pandas_load": "",
    "psql_out": "~1.5 s (issue 11)",
    "psql_in": "~3.1 s (issue 11)",
    "dlt": "~17 s",
    "incremental": "issue 11: <= 5% of the full extract",
    "incremental_indexed": "(the same, cursor indexed)",
    "mysql_raw": "",
    "mysql_extract": "",
}
# Measured outside a Python step process (psql, the bench-only dlt virtualenv), timed by the driver
# with GNU time's maximum RSS of the command.
EXTERNAL = {
    "psql_out": "limit: psql \\copy (SELECT *) to /dev/null",
    "psql_in": "limit: psql \\copy from CSV, unindexed table",
    "dlt": "peer: dlt sql_table (pyarrow) → Parquet",
    "mysql_raw": "MySQL limit: mysql --quick SELECT * > /dev/null",
}

# Generated rows: deterministic (same data every run) and shaped like the totesys dumps: millisecond
# timestamps, text 'YYYY-MM-DD' dates, 2-decimal prices of 2.00-399.99, ids within small dimensions.
GENERATE_SQL = """
INSERT INTO sales_order (
    sales_order_id, created_at, last_updated, design_id, staff_id, counterparty_id, units_sold,
    unit_price, currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id
)
SELECT g, c.created, c.created + (g % 5) * interval '1 day 3 hours 17.341 seconds',
       1 + (g * 7) % 400, 1 + (g * 11) % 20, 1 + (g * 13) % 20, 1000 + (g * 7919) % 99001,
       ((200 + (g * 104729) % 39800) / 100.0)::numeric(10, 2), 1 + g % 3,
       to_char(c.created::date + (2 + g % 7)::int, 'YYYY-MM-DD'),
       to_char(c.created::date + (3 + g % 8)::int, 'YYYY-MM-DD'),
       1 + (g * 17) % 30
FROM generate_series(1, {rows}::bigint) AS g,
     -- spread over two years whatever N is (so every row is older than the run's window end)
     LATERAL (SELECT timestamp '2022-11-03 14:20:52.186' + (g * 63072000000 / {rows}) * interval '1 ms'
              AS created) AS c
"""

# The same rows in MySQL / MariaDB (its Sequence engine's seq_1_to_N in place of generate_series).
MYSQL_DDL = """
CREATE TABLE sales_order (
    sales_order_id int PRIMARY KEY, created_at datetime(3) NOT NULL, last_updated datetime(3) NOT NULL,
    design_id int NOT NULL, staff_id int NOT NULL, counterparty_id int NOT NULL, units_sold int NOT NULL,
    unit_price decimal(10, 2) NOT NULL, currency_id int NOT NULL, agreed_delivery_date varchar(10) NOT NULL,
    agreed_payment_date varchar(10) NOT NULL, agreed_delivery_location_id int NOT NULL
)
"""
MYSQL_GENERATE = """
INSERT INTO sales_order
SELECT seq, c, c + INTERVAL ((seq % 5) * 98237341000) MICROSECOND,
       1 + (seq * 7) % 400, 1 + (seq * 11) % 20, 1 + (seq * 13) % 20, 1000 + (seq * 7919) % 99001,
       (200 + (seq * 104729) % 39800) / 100.0, 1 + seq % 3,
       DATE_FORMAT(DATE(c) + INTERVAL (2 + seq % 7) DAY, '%Y-%m-%d'),
       DATE_FORMAT(DATE(c) + INTERVAL (3 + seq % 8) DAY, '%Y-%m-%d'),
       1 + (seq * 17) % 30
FROM (SELECT seq, TIMESTAMP'2022-11-03 14:20:52.186'
                  + INTERVAL (seq * 63072000000 DIV {rows}) * 1000 MICROSECOND AS c
      FROM seq_1_to_{rows}) AS s
"""
MYSQL_CONN_ID = "bench_mysql"


# The core table the load merges into: the landed columns, one row per (key, row version).
CORE_DDL = """
CREATE SCHEMA IF NOT EXISTS landing;
CREATE SCHEMA IF NOT EXISTS core;
CREATE TABLE core.sales_order (
    sales_order_id              integer        NOT NULL,
    created_at                  timestamp      NOT NULL,
    last_updated                timestamp      NOT NULL,
    design_id                   integer        NOT NULL,
    staff_id                    integer        NOT NULL,
    counterparty_id             integer        NOT NULL,
    units_sold                  integer        NOT NULL,
    unit_price                  numeric(10, 2) NOT NULL,
    currency_id                 integer        NOT NULL,
    agreed_delivery_date        text           NOT NULL,
    agreed_payment_date         text           NOT NULL,
    agreed_delivery_location_id integer        NOT NULL,
    _row_hash                   text           NOT NULL,
    UNIQUE (sales_order_id, _row_hash)
);
"""


class BenchError(RuntimeError):
    """A step failed; the message carries the end of its output."""


@dataclass(frozen=True)
class Plan:
    """What a step process needs to know: passed to it as JSON."""

    rows: int
    source_db: str
    warehouse_db: str
    bucket: str
    workdir: str
    landed_key: str | None = None  # set once the extract has landed its object


@dataclass(frozen=True)
class BenchTaskInstance:
    """The few task-instance attributes the operator reads (row accounting keys on them)."""

    dag_id: str = "bench"
    task_id: str = "land_sales_order"
    run_id: str = "bench__manual"
    map_index: int = -1
    try_number: int = 1


# -- the steps: each prepares in its own process, then returns the work the clock measures ---------

Work = Callable[[], dict[str, Any]]


def _conninfo(dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname
    )


def _extract_operator(plan: Plan) -> Any:
    from include.etlkit.extract.postgres import PostgresTableExtractOperator, TableSpec

    return PostgresTableExtractOperator(
        task_id="land_sales_order",
        table=TableSpec(name=TABLE, key=KEY),
        source=SOURCE,
        conn_id=SOURCE_CONN_ID,
        bucket=plan.bucket,
        aws_conn_id=S3_CONN_ID,
    )


def _drain(conn: psycopg.Connection, query: sql.Composable) -> Work:
    """Stream a ``COPY ... TO STDOUT`` and throw the bytes away: what the database side alone costs."""

    def work() -> dict[str, Any]:
        size = 0
        try:
            with conn.cursor() as cur, cur.copy(query) as copy:
                for chunk in copy:
                    size += len(chunk)
        finally:
            conn.close()
        return {"csv_mb": size / 2**20}

    return work


def prepare_copy_plain(plan: Plan) -> Work:
    """``COPY (SELECT * ...)``: the raw export speed, the figure DESIGN.md quotes for COPY."""
    query = sql.SQL("COPY (SELECT * FROM {}) TO STDOUT WITH (FORMAT csv, HEADER true)").format(
        sql.Identifier(TABLE)
    )
    drain = _drain(psycopg.connect(_conninfo(plan.source_db)), query)
    return lambda: {"rows": plan.rows, **drain()}


def prepare_copy(plan: Plan) -> Work:
    """The extract's own query (catalogue columns, ordered by key) as binary COPY, drained."""
    from include.etlkit.extract.postgres import TableSpec

    operator = _extract_operator(plan)
    spec = TableSpec(name=TABLE, key=KEY)
    conn = psycopg.connect(_conninfo(plan.source_db))
    with conn.cursor() as cur:
        select = operator._select(spec, operator._columns(cur, spec), sql.SQL("t.last_updated < now()"))
    query = sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT binary)").format(select)
    drain = _drain(conn, query)
    return lambda: {"rows": plan.rows, **drain()}


def prepare_extract(plan: Plan) -> Work:
    """``PostgresTableExtractOperator.execute``: a first run, so a full snapshot, landed and recorded."""
    # Imported before the clock starts: the operator imports them lazily on first use.
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    operator = _extract_operator(plan)
    end = datetime.now(UTC).replace(microsecond=0)
    ti = BenchTaskInstance(run_id=f"bench__{end.isoformat()}")
    context = {
        "data_interval_start": end - timedelta(days=1),
        "data_interval_end": end,
        "run_id": ti.run_id,
        "ti": ti,
    }

    def work() -> dict[str, Any]:
        result = operator.execute(context)
        return {"rows": result["rows"], "key": result["key"], "mode": result["mode"]}

    return work


def prepare_incremental(plan: Plan) -> Work:
    """The extract's next run after 1% of the rows changed: an incremental window, landed and recorded.

    Not timed: 1% of the rows (every 100th key) get a new ``units_sold`` and a ``last_updated`` just
    before the last run's ``landed_until``, inside the next window's overlap, so the next interval
    lands exactly those rows. The source has no index on ``last_updated`` (totesys has none), so
    PostgreSQL scans the whole table for them.
    """
    return _incremental(plan, residue=0)


def prepare_incremental_indexed(plan: Plan) -> Work:
    """The same as ``incremental``, another 1% of the rows (keys ending in 50), after an index on the
    cursor column was created (untimed): what a source whose DBA indexed ``last_updated`` costs."""
    with psycopg.connect(_conninfo(plan.source_db), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} (last_updated)").format(
                i=sql.Identifier(f"{TABLE}_last_updated_bench"), t=sql.Identifier(TABLE)
            )
        )
    return _incremental(plan, residue=50)


def _incremental(plan: Plan, *, residue: int) -> Work:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.postgres.hooks.postgres import PostgresHook  # noqa: F401

    from include.etlkit.control.ledger import Ledger

    landed_until = Ledger().landed_until(SOURCE, TABLE)  # the bench's control plane (its warehouse)
    with psycopg.connect(_conninfo(plan.source_db), autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {t} SET units_sold = units_sold + 1, last_updated = %s WHERE {k} %% 100 = %s"
            ).format(t=sql.Identifier(TABLE), k=sql.Identifier(KEY)),
            (landed_until - timedelta(minutes=1), residue),
        )
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(TABLE)))
    operator = _extract_operator(plan)
    start = landed_until.replace(tzinfo=UTC)
    ti = BenchTaskInstance(run_id=f"bench__{start.isoformat()}")
    context = {
        "data_interval_start": start,
        "data_interval_end": start + timedelta(hours=1),
        "run_id": ti.run_id,
        "ti": ti,
    }

    def work() -> dict[str, Any]:
        result = operator.execute(context)
        return {"rows": result["rows"], "key": result["key"], "mode": result["mode"]}

    return work


def prepare_mysql_extract(plan: Plan) -> Work:
    """``MySqlTableExtractOperator.execute`` on the same rows in MariaDB: a first run (full snapshot)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook  # noqa: F401
    from airflow.providers.mysql.hooks.mysql import MySqlHook  # noqa: F401

    from include.etlkit.extract.mysql import MySqlTableExtractOperator

    operator = MySqlTableExtractOperator(
        task_id="land_sales_order_mysql",
        table={"name": TABLE, "key": KEY, "cursor": "last_updated"},
        source=f"{SOURCE}_mysql",
        conn_id=MYSQL_CONN_ID,
        bucket=plan.bucket,
        aws_conn_id=S3_CONN_ID,
    )
    end = datetime.now(UTC).replace(microsecond=0)
    ti = BenchTaskInstance(task_id="land_sales_order_mysql", run_id=f"bench_mysql__{end.isoformat()}")
    context = {
        "data_interval_start": end - timedelta(days=1),
        "data_interval_end": end,
        "run_id": ti.run_id,
        "ti": ti,
    }

    def work() -> dict[str, Any]:
        result = operator.execute(context)
        return {"rows": result["rows"], "key": result["key"], "mode": result["mode"]}

    return work


def prepare_transform(plan: Plan) -> Work:
    """``TransformLandedOperator.execute`` on the extract's first snapshot: the totesys models.

    The landed ``sales_order`` object is pending for the bench's source, so the run builds what a
    first snapshot of that table builds in production: ``fact_sales_order`` and ``dim_date``, each
    streamed to Parquet and stored in the bucket, and the ledger updated.
    """
    import polars  # noqa: F401  (imported before the clock, as RUN_TIME_MODULES are)

    from include.etlkit.totesys import model
    from include.etlkit.transform.operators import TransformLandedOperator

    operator = TransformLandedOperator(
        task_id="transform_landed",
        source=SOURCE,
        models=model.models(),
        targets=model.TARGETS,
        bucket=plan.bucket,
        aws_conn_id=S3_CONN_ID,
    )
    ti = BenchTaskInstance(task_id="transform_landed", run_id="bench__transform")
    context = {"run_id": ti.run_id, "ti": ti}

    def work() -> dict[str, Any]:
        built = operator.execute(context)
        return {"rows": built.get("fact_sales_order", 0), "tables": built}

    return work


def prepare_pandas(plan: Plan) -> Work:
    """The naive path for comparison: the whole table into a DataFrame, then one Parquet file."""
    import pandas as pd
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{quote(settings.PG_USER)}@{settings.PG_HOST}:{settings.PG_PORT}/"
        f"{plan.source_db}"
    )
    path = Path(plan.workdir) / "pandas.parquet"

    def work() -> dict[str, Any]:
        frame = pd.read_sql(f"SELECT * FROM {TABLE}", engine)
        frame.to_parquet(path)
        engine.dispose()
        return {"rows": len(frame), "parquet_mb": path.stat().st_size / 2**20}

    return work


def prepare_pandas_load(plan: Plan) -> Work:
    """The naive load for comparison: the landed Parquet into a DataFrame, ``to_sql`` into a new table."""
    import pandas as pd
    import sqlalchemy

    if plan.landed_key is None:
        raise BenchError("the pandas load needs the object the extract step landed")
    from include.etlkit.storage import ImmutableStore

    local = Path(plan.workdir) / "pandas-load.parquet"
    ImmutableStore(S3_CONN_ID).download(plan.bucket, plan.landed_key, local)
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://{quote(settings.PG_USER)}@{settings.PG_HOST}:{settings.PG_PORT}/"
        f"{plan.warehouse_db}"
    )

    def work() -> dict[str, Any]:
        frame = pd.read_parquet(local)
        frame.to_sql("pandas_sales_order", engine, if_exists="replace", index=False, chunksize=10_000)
        engine.dispose()
        return {"rows": len(frame)}

    return work


DLT_SCRIPT = """
import json, sys, dlt
from dlt.sources.sql_database import sql_table
uri, table, workdir = sys.argv[1:4]
pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.filesystem("file://" + workdir),
                        dataset_name="bench", pipelines_dir=workdir + "/.dlt")
info = pipeline.run(sql_table(credentials=uri, table=table, backend="pyarrow", chunk_size=100_000),
                    loader_file_format="parquet")
print(json.dumps({"rows": pipeline.last_trace.last_normalize_info.row_counts.get(table, 0)}))
"""


def dlt_python() -> Path | None:
    """The bench-only virtualenv holding dlt (``.venv-bench``, made on first use); None if pip fails.

    dlt is never installed in the project's environment nor in the MWAA requirements.
    """
    venv = settings.PROJECT_ROOT / ".venv-bench"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import dlt, sqlalchemy, psycopg2"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    base = Path(sys.base_prefix) / "bin" / "python3"
    steps = [
        [str(base), "-m", "venv", str(venv)],
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "dlt[parquet,sql_database]",
            "sqlalchemy",
            "psycopg2-binary",
        ],
    ]
    for command in steps:
        if subprocess.run(command, capture_output=True, check=False).returncode != 0:
            return None
    return python


def prepare_load(plan: Plan) -> Work:
    """The landed object, from S3 to ``landing.sales_order`` and merged into ``core`` as versions."""
    from include.etlkit.extract.postgres import ROW_HASH
    from include.etlkit.load.postgres import PostgresWarehouse, TableLoad
    from include.etlkit.storage import ImmutableStore

    if plan.landed_key is None:
        raise BenchError("the load step needs the object the extract step landed")
    # The S3 client is created inside the timed work, as each task process does (the extract's too).
    store = ImmutableStore(S3_CONN_ID)
    warehouse = PostgresWarehouse(WAREHOUSE_CONN_ID)
    spec = TableLoad(name=TABLE, key=(KEY, ROW_HASH), merge="versions")
    local = Path(plan.workdir) / "landed.parquet"

    def work() -> dict[str, Any]:
        # The operator's own path: download to disk, then COPY in record batches.
        store.download(plan.bucket, plan.landed_key, local)
        rows, merged = warehouse.load_parquet(spec, local, load_id=plan.landed_key)
        return {"rows": rows, "merged": merged}

    return work


@dataclass(frozen=True)
class Step:
    """One measured path: ``prepare`` runs in the step's own process and returns the timed work."""

    name: str
    label: str
    prepare: Callable[[Plan], Work]


STEPS = {
    step.name: step
    for step in (
        Step("copy_plain", "COPY (SELECT *) TO STDOUT, discarded", prepare_copy_plain),
        Step("copy", "COPY (extract query) TO STDOUT, discarded", prepare_copy),
        Step("extract", "extract: operator.execute → S3 + ledger", prepare_extract),
        Step("incremental", "extract, next run: 1% of rows changed", prepare_incremental),
        Step(
            "incremental_indexed",
            "the same, last_updated indexed in the source",
            prepare_incremental_indexed,
        ),
        Step("mysql_extract", "MySQL extract: operator.execute → S3 + ledger", prepare_mysql_extract),
        Step("transform", "transform: landed → models (polars) → S3", prepare_transform),
        Step("pandas", "naive: pandas read_sql + to_parquet", prepare_pandas),
        Step("load", "load: S3 Parquet → landing → core", prepare_load),
        Step("pandas_load", "naive load: read_parquet + pandas to_sql", prepare_pandas_load),
    )
}


def _psql(dbname: str, command: str) -> list[str]:
    return [
        "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", settings.PG_HOST, "-p", str(settings.PG_PORT),
        "-U", settings.PG_USER, "-d", dbname, "-c", command,
    ]  # fmt: skip


def run_external(name: str, plan: Plan) -> dict[str, Any]:
    """Time a command outside Python (psql's limits, dlt in its own virtualenv); peak from GNU time."""
    work = Path(plan.workdir)
    if name == "psql_out":
        command = _psql(plan.source_db, f"\\copy (SELECT * FROM {TABLE}) to /dev/null")
    elif name == "psql_in":
        csv_path = work / "raw.csv"
        subprocess.run(_psql(plan.source_db, f"\\copy {TABLE} to '{csv_path}' csv"), check=True)
        ddl = sales_order_ddl().replace(f"TABLE IF NOT EXISTS {TABLE}", "TABLE raw_sales_order")
        with psycopg.connect(_conninfo(plan.warehouse_db), autocommit=True) as conn:
            conn.execute(ddl)
            conn.execute("ALTER TABLE raw_sales_order DROP CONSTRAINT IF EXISTS raw_sales_order_pkey")
        command = _psql(plan.warehouse_db, f"\\copy raw_sales_order from '{csv_path}' csv")
    elif name == "mysql_raw":
        mysql_source(plan)
        command = [
            "sh", "-c",
            f"mysql --quick -h {settings.MYSQL_HOST} -P {settings.MYSQL_PORT} -u {settings.MYSQL_USER} "
            f"{plan.source_db} -e 'SELECT * FROM {TABLE}' > /dev/null",
        ]  # fmt: skip
    elif name == "dlt":
        python = dlt_python()
        if python is None:
            return {"not_measured": "pip could not install dlt[parquet,sql_database] into .venv-bench"}
        uri = f"postgresql+psycopg2://{quote(settings.PG_USER)}@{settings.PG_HOST}:{settings.PG_PORT}/{plan.source_db}"
        command = [str(python), "-c", DLT_SCRIPT, uri, TABLE, str(work / "dlt")]
    else:
        raise BenchError(f"unknown external step {name}")
    timed = ["/usr/bin/time", "-f", "%M", "-o", str(work / f"{name}.time"), *command]
    started = time.perf_counter()
    done = subprocess.run(timed, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"not_measured": (done.stdout + done.stderr).strip().splitlines()[-1:]}
    peak_kb = int((work / f"{name}.time").read_text().split()[-1])
    return {"rows": plan.rows, "seconds": seconds, "peak_mb": peak_kb / 1024, "start_mb": 0.0}


def mysql_source(plan: Plan) -> None:
    """The same rows in a throwaway MariaDB database named as the PostgreSQL source (made once)."""
    import MySQLdb

    conn = MySQLdb.connect(host=settings.MYSQL_HOST, port=settings.MYSQL_PORT, user=settings.MYSQL_USER)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{plan.source_db}`")
        cur.execute(f"USE `{plan.source_db}`")
        cur.execute("SHOW TABLES LIKE %s", (TABLE,))
        if not cur.fetchall():
            cur.execute(MYSQL_DDL)
            cur.execute(MYSQL_GENERATE.format(rows=plan.rows))
            cur.execute(f"ANALYZE TABLE {TABLE}")
            cur.fetchall()
        conn.commit()
        _settle_innodb(cur)
    finally:
        conn.close()


def _settle_innodb(cur: Any, timeout: float = 120.0) -> None:
    """Wait (bounded) until InnoDB has written the freshly generated rows' pages: its background
    flush would otherwise run on the same 2 cores during the timed steps (as VACUUM FREEZE spares the
    PostgreSQL steps the hint-bit writes), and moved the MySQL figures by up to 2x from run to run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
        if int(cur.fetchone()[1]) < 100:
            return
        time.sleep(0.5)


def drop_mysql_source(name: str) -> None:
    import MySQLdb

    with suppress(Exception):
        conn = MySQLdb.connect(host=settings.MYSQL_HOST, port=settings.MYSQL_PORT, user=settings.MYSQL_USER)
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def _status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"{field} not in /proc/self/status")


# What a step's work imports on first use. The framework imports these lazily (a DAG file parses
# without them); here they are imported before the clock, as the module docstring promises.
RUN_TIME_MODULES = (
    "airflow.sdk",
    "airflow.providers.postgres.hooks.postgres",
    "airflow.providers.amazon.aws.hooks.s3",
    "adbc_driver_postgresql.dbapi",
    "numpy",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.parquet",
    "psycopg",
)


# The transform's own: no ADBC (whose DB-API module imports pandas, ~40 MB the transform never uses).
STEP_MODULES = {
    "transform": (
        "airflow.sdk",
        "airflow.providers.postgres.hooks.postgres",
        "airflow.providers.amazon.aws.hooks.s3",
        "pyarrow.compute",
        "pyarrow.parquet",
        "psycopg",
        "polars",
    ),
}


def run_step_here(name: str, plan_path: Path, result_path: Path) -> None:
    """Inside the step's process: prepare, then time only the work, and write the figures as JSON."""
    for module in STEP_MODULES.get(name, RUN_TIME_MODULES):
        importlib.import_module(module)
    plan = Plan(**json.loads(plan_path.read_text()))
    work = STEPS[name].prepare(plan)
    start_mb = _status_mb("VmRSS")
    profile_dir = os.environ.get("BENCH_PROFILE")  # a folder: each step's cProfile stats go there
    profiler = cProfile.Profile() if profile_dir else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    outcome = work()
    seconds = time.perf_counter() - started
    if profiler:
        profiler.disable()
        profiler.dump_stats(Path(profile_dir) / f"{name}.prof")
    outcome |= {"seconds": seconds, "start_mb": start_mb, "peak_mb": _status_mb("VmHWM")}
    result_path.write_text(json.dumps(outcome))


def run_step(name: str, plan: Plan) -> dict[str, Any]:
    """Run one step in a fresh Python process; its output is shown only if it fails."""
    work = Path(plan.workdir)
    plan_path, result_path = work / f"{name}.plan.json", work / f"{name}.result.json"
    plan_path.write_text(json.dumps(asdict(plan)))
    command = [sys.executable, "-m", "bench.run", "--step", name, str(plan_path), str(result_path)]
    done = subprocess.run(
        command, cwd=settings.PROJECT_ROOT, env=os.environ, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise BenchError(f"step {name} failed (exit {done.returncode}):\n{tail}")
    return json.loads(result_path.read_text())


# -- the throwaway source, warehouse and bucket ---------------------------------------------------


def _admin() -> psycopg.Connection:
    return psycopg.connect(_conninfo("postgres"), autocommit=True)


def _postgres_uri(dbname: str) -> str:
    return f"postgres://{quote(settings.PG_USER)}@{settings.PG_HOST}:{settings.PG_PORT}/{dbname}"


def _s3_client() -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint(),
        region_name=settings.S3_REGION,
        aws_access_key_id=settings.S3_ACCESS_KEY,
        aws_secret_access_key=settings.S3_SECRET_KEY,
    )


def sales_order_ddl() -> str:
    """``sales_order``'s statement from the totesys source DDL, without its foreign keys.

    The parent tables are not created: no step reads them, and checking a million references would
    only slow the set-up.
    """
    text = sql_file("postgres", "totesys", "source.sql").read_text()
    match = re.search(r"CREATE TABLE IF NOT EXISTS sales_order \(.*?\n\);", text, re.DOTALL)
    if match is None:
        raise BenchError("sales_order is not in sql/postgres/totesys/source.sql")
    return re.sub(r"\s+REFERENCES \w+ \(\w+\)", "", match.group(0))


@contextmanager
def throwaway(tag: str) -> Iterator[tuple[str, str, str]]:
    """Source and warehouse databases and a bucket that exist only for this run, and the connections.

    Airflow connections are environment variables here, so the step processes inherit them.
    """
    source_db, warehouse_db, bucket = f"bench_src_{tag}", f"bench_wh_{tag}", f"bench-{tag}"
    s3 = _s3_client()
    try:
        with _admin() as admin:
            for name in (source_db, warehouse_db):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
        os.environ |= {
            f"AIRFLOW_CONN_{SOURCE_CONN_ID.upper()}": _postgres_uri(source_db),
            f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": _postgres_uri(warehouse_db),
            f"AIRFLOW_CONN_{CONTROL_CONN_ID.upper()}": _postgres_uri(warehouse_db),
            f"AIRFLOW_CONN_{MYSQL_CONN_ID.upper()}": (
                f"mysql://{quote(settings.MYSQL_USER)}@{settings.MYSQL_HOST}:{settings.MYSQL_PORT}/{source_db}"
            ),
            f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(
                {
                    "conn_type": "aws",
                    "login": settings.S3_ACCESS_KEY,
                    "password": settings.S3_SECRET_KEY,
                    "extra": {"endpoint_url": settings.s3_endpoint(), "region_name": settings.S3_REGION},
                }
            ),
        }
        yield source_db, warehouse_db, bucket
    finally:
        with suppress(Exception):
            listing = s3.list_objects_v2(Bucket=bucket)
            for item in listing.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
            s3.delete_bucket(Bucket=bucket)
        with _admin() as admin:
            for name in (source_db, warehouse_db):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        drop_mysql_source(source_db)


def generate_source(source_db: str, rows: int) -> float:
    """Create and fill ``sales_order``; returns its size in MiB."""
    with psycopg.connect(_conninfo(source_db), autocommit=True) as conn:
        conn.execute(sales_order_ddl())
        conn.execute(sql.SQL(GENERATE_SQL).format(rows=sql.Literal(rows)))
        conn.execute("SELECT setval(pg_get_serial_sequence('sales_order', 'sales_order_id'), %s)", (rows,))
        conn.execute("VACUUM (FREEZE, ANALYZE) sales_order")  # hint bits set now, not in a step
        (size,) = conn.execute("SELECT pg_total_relation_size('sales_order')").fetchone()
    return size / 2**20


def prepare_warehouse(warehouse_db: str) -> None:
    """The control tables (the extract's ledger) and the core table the load merges into."""
    from include.etlkit.control.store import ControlStore

    ControlStore().ensure_tables()  # AIRFLOW_CONN_ETL_CONTROL names the bench warehouse here
    with psycopg.connect(_conninfo(warehouse_db), autocommit=True) as conn:
        conn.execute(CORE_DDL)


# -- the report -----------------------------------------------------------------------------------


def machine_facts() -> list[str]:
    import pyarrow

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    with _admin() as admin:
        (server,) = admin.execute("SHOW server_version").fetchone()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return [
        f"cores: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), {cpu}, {memory:.0f} GiB RAM",
        f"Python {platform.python_version()}, pyarrow {pyarrow.__version__}, "
        f"psycopg {psycopg.__version__}, PostgreSQL {server} (same machine)",
    ]


ORDER = [
    "copy_plain",
    "psql_out",
    "copy",
    "extract",
    "pandas",
    "dlt",
    "transform",
    "psql_in",
    "load",
    "pandas_load",
    "incremental",  # after the others: it changes the source they read
    "incremental_indexed",  # adds an index on last_updated to the source
    "mysql_raw",  # makes the MariaDB copy of the rows first (untimed)
    "mysql_extract",
]
# Each of our steps against its limit and its peers: (ours, other).
RATIOS = [
    ("extract", "copy_plain"),
    ("extract", "psql_out"),
    ("extract", "pandas"),
    ("extract", "dlt"),
    ("load", "psql_in"),
    ("load", "pandas_load"),
    ("incremental", "extract"),
    ("incremental_indexed", "extract"),
    ("mysql_extract", "mysql_raw"),
    ("mysql_extract", "extract"),
]


def label(name: str) -> str:
    return STEPS[name].label if name in STEPS else EXTERNAL[name]


def format_ratios(results: dict[str, dict[str, Any]]) -> list[str]:
    """``ours / other`` in speed (rows/s): above 1 is faster than the other, 0.5 is half its speed."""
    lines = []
    for ours, other in RATIOS:
        a, b = results.get(ours, {}), results.get(other, {})
        if "seconds" in a and "seconds" in b and ours.startswith("incremental"):
            what = "incremental" if ours == "incremental" else "incremental, cursor indexed"
            lines.append(
                f"{what} / full extract: time {a['seconds'] / b['seconds']:.1%} (rows {a['rows']:,})"
            )
        elif "seconds" in a and "seconds" in b:
            lines.append(
                f"{ours} / {label(other)}: speed {b['seconds'] / a['seconds']:.2f}x, "
                f"peak MB {a['peak_mb'] / b['peak_mb']:.2f}x"
            )
    return lines


def format_table(results: dict[str, dict[str, Any]]) -> str:
    header = ("step", "rows", "seconds", "rows/s", "peak MB", "start MB", "reference, 1M rows")
    lines = [header]
    for name, result in results.items():
        if "not_measured" in result:
            lines.append((label(name), "", "", "", "", "", f"not measured: {result['not_measured']}"))
            continue
        lines.append(
            (
                label(name),
                f"{result['rows']:,}",
                f"{result['seconds']:.2f}",
                f"{result['rows'] / result['seconds']:,.0f}",
                f"{result['peak_mb']:.0f}",
                f"{result['start_mb']:.0f}",
                REFERENCE[name],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = range(1, 6)

    def render(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def _progress(message: str) -> None:
    print(message, flush=True)


def bench(rows: int, steps: list[str] | None = None) -> int:
    from infra.local.services import ensure_running

    os.environ |= settings.airflow_environment()  # as under `python -m infra.local.run`
    ensure_running(["s3"])
    tag = uuid.uuid4().hex[:10]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir, throwaway(tag) as (src, wh, bucket):
        _progress(f"bench {tag}: source {src}, warehouse {wh}, bucket {bucket}")
        started = time.perf_counter()
        size_mb = generate_source(src, rows)
        seconds = time.perf_counter() - started
        _progress(f"generated {rows:,} {TABLE} rows in {seconds:.1f} s ({size_mb:.0f} MB)")
        prepare_warehouse(wh)
        plan = Plan(rows=rows, source_db=src, warehouse_db=wh, bucket=bucket, workdir=workdir)
        for name in steps or ORDER:
            _progress(f"measuring {name} ...")
            results[name] = run_external(name, plan) if name in EXTERNAL else run_step(name, plan)
            if name == "extract":
                plan = replace(plan, landed_key=results[name]["key"])
        landed_mb = (
            _s3_client().head_object(Bucket=bucket, Key=plan.landed_key)["ContentLength"] / 2**20
            if plan.landed_key
            else 0.0
        )

    print()
    print(format_table(results))
    print()
    for line in format_ratios(results):
        print(line)
    print()
    for fact in machine_facts():
        print(fact)
    figures = [f"source table {size_mb:.0f} MB"]
    if "copy_plain" in results:
        figures.append(f"COPY CSV {results['copy_plain']['csv_mb']:.0f} MB")
    if landed_mb:
        figures.append(f"landed Parquet (zstd) {landed_mb:.1f} MB")
    if "transform" in results:
        figures.append(f"transform built {results['transform']['tables']}")
    if "pandas" in results:
        figures.append(f"pandas Parquet {results['pandas']['parquet_mb']:.1f} MB")
    if "load" in results:
        figures.append(f"rows merged into core {results['load']['merged']:,}")
    print("; ".join(figures))
    print(
        "peak MB: the step process's high-water RSS (VmHWM), imports included; start MB: its RSS when "
        "the clock started."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="rows to generate (default 1,000,000)")
    parser.add_argument(
        "--dedup", action="store_true", help="time customer matching instead (see bench/dedup.py)"
    )
    parser.add_argument(
        "--steps",
        help=f"comma-separated steps to run, in order (default all: {','.join(ORDER)}); the transform "
        "and load need the extract. E.g. --rows 5000000 --steps extract,transform",
    )
    parser.add_argument(
        "--parse", action="store_true", help="time each DAG file's parse against an empty DAG file"
    )
    parser.add_argument("--step", nargs=3, metavar=("NAME", "PLAN", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dedup:
        from bench.dedup import bench_dedup

        return bench_dedup()
    if args.parse:
        from bench.parse import bench_parse

        return bench_parse()
    if args.step:
        name, plan_path, result_path = args.step
        run_step_here(name, Path(plan_path), Path(result_path))
        return 0
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    steps = args.steps.split(",") if args.steps else None
    unknown = sorted(set(steps or ()) - set(ORDER))
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps are {ORDER}")
    needs_extract = {"transform", "load", "pandas_load", "incremental", "incremental_indexed"}
    if steps and needs_extract & set(steps) and "extract" not in steps:
        parser.error("the transform, load and incremental steps need the extract step before them")
    if steps and "mysql_extract" in steps and "mysql_raw" not in steps:
        parser.error("the MySQL extract needs the mysql_raw step before it (it makes the MariaDB rows)")
    try:
        return bench(args.rows, steps)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

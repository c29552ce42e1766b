"""Create what the connections and variables in force name: databases, schemas, control tables, buckets.

Run by ``make airflow``, ``make demo`` and the test fixtures, after the local services are up. It
reads the Airflow connections (so an ``AIRFLOW_CONN_WAREHOUSE`` set by the caller is honoured), not
the local defaults, and it is idempotent: a second run changes nothing.

PostgreSQL and MariaDB are the machine's own services. When one is not answering, the error says
how to start it on this kind of machine instead of a bare connection traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from infra.local import settings

HOW_TO_START = {
    "postgres": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "mysql": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


class ServiceDown(RuntimeError):
    pass


def _connection(conn_id: str):
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def ensure_postgres_database(conn_id: str) -> str:
    """Create the database a PostgreSQL connection names, if missing; returns its name."""
    import psycopg
    from psycopg import sql

    conn = _connection(conn_id)
    target = conn.schema or "postgres"
    try:
        admin = psycopg.connect(
            host=conn.host, port=conn.port or 5432, user=conn.login, password=conn.password or None,
            dbname="postgres", autocommit=True, connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        raise ServiceDown(
            f"PostgreSQL at {conn.host}:{conn.port} (connection {conn_id!r}) is not answering: {exc}\n"
            f"Start it with: {HOW_TO_START['postgres']}"
        ) from exc
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone()
        if not exists:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
            print(f"created PostgreSQL database {target}")
    return target


def ensure_mysql_database(conn_id: str) -> str:
    import MySQLdb

    conn = _connection(conn_id)
    target = conn.schema
    try:
        admin = MySQLdb.connect(
            host=conn.host, port=conn.port or 3306, user=conn.login or "root",
            password=conn.password or "", connect_timeout=10,
        )
    except MySQLdb.OperationalError as exc:
        raise ServiceDown(
            f"MariaDB/MySQL at {conn.host}:{conn.port} (connection {conn_id!r}) is not answering: {exc}\n"
            f"Start it with: {HOW_TO_START['mysql']}"
        ) from exc
    try:
        cur = admin.cursor()
        # Identifiers cannot be bound as parameters; the name comes from the connection, quoted.
        quoted = "`" + target.replace("`", "``") + "`"
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {quoted} CHARACTER SET utf8mb4")
    finally:
        admin.close()
    return target


def ensure_warehouse_schemas(conn_id: str = "warehouse") -> None:
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    hook.run([f'CREATE SCHEMA IF NOT EXISTS "{schema}"' for schema in settings.WAREHOUSE_SCHEMAS])


def ensure_buckets() -> list[str]:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Variable

    hook = S3Hook(aws_conn_id="aws_default")
    names = [Variable.get(name) for name in settings.BUCKETS]
    for name in names:
        if not hook.check_for_bucket(name):
            hook.create_bucket(bucket_name=name, region_name=settings.S3_REGION)
            print(f"created bucket s3://{name}")
    return names


def ensure_airflow_db() -> None:
    """Migrate Airflow's metadata database once per AIRFLOW_HOME and Airflow version."""
    import airflow

    home = Path(os.environ["AIRFLOW_HOME"])
    stamp = home / f".migrated-{airflow.__version__}"
    if stamp.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL)
    stamp.touch()


def bootstrap(*, with_services: bool = True, sync_audit: bool = True) -> None:
    from include.etlkit.control.cli import dag_tasks
    from include.etlkit.control.store import ControlStore

    for conn_id in ("totesys", "warehouse", "etl_control"):
        ensure_postgres_database(conn_id)
    ensure_mysql_database("retail_mysql")
    ensure_warehouse_schemas("warehouse")
    store = ControlStore()
    store.ensure_tables()
    if with_services:
        ensure_buckets()
    ensure_airflow_db()
    if sync_audit:
        added = store.register(dag_tasks())
        if added:
            print(f"registered {added} new task(s) in etl.audit")


def main() -> int:
    try:
        bootstrap()
    except ServiceDown as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""PostgreSQL through ADBC: Arrow record batches in and out over binary COPY.

The ADBC PostgreSQL driver (pinned by MWAA's constraints) reads ``COPY ... TO STDOUT (FORMAT
binary)`` straight into Arrow and writes Arrow with binary ``COPY ... FROM STDIN``: no text is
rendered or parsed in Python on either side. The extract reads with it and the warehouse load
writes with it. Connections still come from the Airflow connection through the postgres provider's
hook, so its host, credentials and extras (``sslmode``...) are the ones the rest of the project uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adbc_driver_postgresql.dbapi import Connection


def conninfo(conn: Any) -> str:
    """The libpq conninfo an open psycopg connection was made with (its password too: never log it)."""
    import psycopg

    params = conn.info.get_parameters()
    if conn.info.password:
        params["password"] = conn.info.password
    return psycopg.conninfo.make_conninfo(**params)


def hook_conninfo(postgres_conn_id: str) -> str:
    """The conninfo of an Airflow PostgreSQL connection, as the postgres provider's hook connects."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn = PostgresHook(postgres_conn_id=postgres_conn_id).get_conn()
    try:
        return conninfo(conn)
    finally:
        conn.close()


@contextmanager
def connect(info: str) -> Iterator[Connection]:
    """An ADBC connection, closed when the block ends; statements commit one by one unless they
    run in :func:`transaction`.

    The driver's own transaction handling (DB-API autocommit off) refuses every statement after
    one fails, a ``ROLLBACK TO SAVEPOINT`` included, so transactions are spelled out in SQL.
    """
    import adbc_driver_postgresql.dbapi as adbc

    with adbc.connect(info, autocommit=True) as conn:
        yield conn


@contextmanager
def transaction(cursor: Any) -> Iterator[Any]:
    """``BEGIN`` ... ``COMMIT`` on an ADBC cursor; ``ROLLBACK`` when the block raises."""
    cursor.execute("BEGIN")
    try:
        yield cursor
    except BaseException:
        with suppress(Exception):  # a dead connection cannot roll back: the original error matters
            cursor.execute("ROLLBACK")
        raise
    cursor.execute("COMMIT")

"""Which warehouse a load writes to: chosen by the Airflow connection's type, at run time.

The ``warehouse_conn_id`` Variable names the connection (``warehouse`` for PostgreSQL,
``snowflake_default`` for Snowflake); the connection's ``conn_type`` says which loader speaks to it.
Both loaders have the same methods and semantics (see :mod:`include.etlkit.load.postgres` and
:mod:`include.etlkit.load.snowflake`), so an operator holds whichever this returns.
"""

from __future__ import annotations

from include.etlkit.load.postgres import PostgresWarehouse
from include.etlkit.load.snowflake import SnowflakeWarehouse

Warehouse = PostgresWarehouse | SnowflakeWarehouse

LOADERS: dict[str, type[PostgresWarehouse] | type[SnowflakeWarehouse]] = {
    "postgres": PostgresWarehouse,
    "postgresql": PostgresWarehouse,  # the type a postgresql:// URI gives
    "snowflake": SnowflakeWarehouse,
}


def warehouse_for(conn_id: str) -> Warehouse:
    """The loader for the warehouse behind Airflow connection ``conn_id``.

    Looks the connection up (so call it when the task runs, never when a DAG is parsed) and raises
    ``ValueError`` naming the connection when its type has no loader.
    """
    from airflow.sdk import BaseHook

    conn_type = (BaseHook.get_connection(conn_id).conn_type or "").lower()
    try:
        loader = LOADERS[conn_type]
    except KeyError:
        raise ValueError(
            f"connection {conn_id!r} is of type {conn_type or 'unset'!r}; a warehouse connection "
            f"must be one of {sorted(set(LOADERS))}"
        ) from None
    return loader(conn_id)

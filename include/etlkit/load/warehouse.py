"""The warehouse interface: one ``Warehouse`` per SQL dialect, chosen by the connection's type at run time.

The load, the checks, the marts and the customer unification speak to "the warehouse" through this
module only. The ``warehouse_conn_id`` Variable names the Airflow connection (``warehouse`` for
PostgreSQL, ``snowflake_default`` for Snowflake); the connection's ``conn_type`` picks the
implementation, and the implementation's ``dialect`` picks the folder of ``sql/`` its scripts come
from. Everything is resolved when a task runs, never when a DAG file is parsed, so switching the
warehouse is one Variable, with no redeploy.

``TableLoad`` (how a processed table is merged) and ``LOAD_ID`` (the landing column naming the
object a row came from, dlt's ``_dlt_load_id``) are dialect-neutral, so they live here, beside the
interface, and every implementation honours them with the same semantics:

- one object is landed once, each landing row tagged with the object's key;
- ``merge="upsert"``: the object's last row per key inserts or updates the core row (never back
  to an older ``version`` when the spec names one);
- ``merge="versions"``: each (key..., row_hash) not in core yet is appended, nothing is updated;
- loading the same object again changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")


LOAD_ID = "_load_id"
# A landing column: each row's place in its object, so the last version of a key in an object wins
# and fact versions get their record ids in the object's order, whatever the physical row order.
ORDINAL = "_ordinal"
# A landing-only column of JSON: what a source row holds beyond its table's columns (a retail file's
# extra columns; a column added to a source after its models were written). Kept in ``landing``,
# never merged into ``core``, so nothing the source sent is dropped on the way to the warehouse.
ADDITIONAL_COLUMN = "additional_column"
# A quarantined or validated file row's line in its landed file (the lineage a row carries to core).
SOURCE_ROW = "source_row"
# landing.<LOAD_REGISTRY>: one row per (table, load id) loaded, which also serialises two loads of one
# object (PostgreSQL; Snowflake's COPY load history keeps a file loaded once by itself).
LOAD_REGISTRY = "_load"
BATCH_ROWS = 100_000  # rows per batch wherever an object is streamed: bounds memory, not the object
# The warehouse session's sort memory for a merge (PostgreSQL work_mem): beyond it, the sort spills.
LOAD_WORK_MEM_MB = 256

WAREHOUSE_CONN_ID_VARIABLE = "warehouse_conn_id"
DEFAULT_WAREHOUSE_CONN_ID = "warehouse"
# The same choice for templated fields (common-sql's ``conn_id`` is one): rendered when the task runs.
WAREHOUSE_CONN_ID = "{{ var.value.get('warehouse_conn_id', 'warehouse') }}"


@dataclass(frozen=True)
class TableLoad:
    """How one processed table is loaded: its key columns and ``upsert`` or ``versions``.

    ``name`` is the processed objects' table name (the ledger's); ``table`` the warehouse table in
    both ``landing`` and ``core`` when it differs (a feed ``store`` loaded as ``dim_store``, say).
    ``landing_only`` columns are kept in ``landing`` for lineage (a file's row number, say) but not
    merged into ``core``. ``version`` names a column that orders a row's versions: an upsert then
    never replaces a row with an older version of it, whatever order the objects are loaded in.
    ``record_id`` (versions) is the column the warehouse numbers a table's rows by on insert; a
    deletion version copies the row it numbered last.
    """

    name: str
    key: tuple[str, ...]
    merge: str  # "upsert" (dimensions) or "versions" (facts keeping history)
    landing_schema: str = "landing"
    core_schema: str = "core"
    table: str | None = None
    landing_only: tuple[str, ...] = ()
    version: str | None = None  # upsert only: a column ordering versions (``updated_at``, say)
    record_id: str | None = None  # versions: the column the warehouse numbers rows by on insert

    def __post_init__(self) -> None:
        if self.merge not in ("upsert", "versions"):
            raise ValueError(f"{self.name}: merge must be 'upsert' or 'versions', not {self.merge!r}")
        if set(self.key) & set(self.landing_only):
            raise ValueError(f"{self.name}: a key column cannot be landing-only")
        if self.version is not None and self.merge != "upsert":
            raise ValueError(f"{self.name}: a version column only applies to merge='upsert'")

    @property
    def warehouse_table(self) -> str:
        return self.table or self.name


@runtime_checkable
class Warehouse(Protocol):
    """What the pipelines need from a warehouse, whatever its dialect."""

    conn_id: str
    dialect: str  # the folder of sql/ holding this warehouse's DDL, dim_date, dedup tables and marts

    def ensure_landing(self, spec: TableLoad, schema: pa.Schema) -> None:
        """Create ``landing.<table>`` for objects of this Arrow schema (plus the load columns)."""
        ...

    def load_object(self, spec: TableLoad, bucket: str, key: str) -> tuple[int, int]:
        """Land processed object ``s3://bucket/key`` once and merge it into core.

        Returns (rows of the object, core rows inserted or updated). The load id is ``key``.
        """
        ...

    def run_script(self, script: str) -> None:
        """Run a script of several statements (a file of ``sql/<dialect>/``)."""
        ...

    def session(self) -> AbstractContextManager[Any]:
        """A DB-API cursor in one transaction: committed on success, rolled back on an error."""
        ...

    def apply_deletions(self, spec: TableLoad, rows: pa.Table) -> int:
        """Mark the rows whose first key column is in ``rows`` (with ``_deleted_at``) deleted in core:
        ``deleted_at`` on an upsert table, a deletion version on a versions table. Returns rows
        changed; applying the same deletions again changes nothing."""
        ...

    def refuses(self, error: BaseException) -> bool:
        """Whether ``error`` is the warehouse refusing an object's data (not being unavailable)."""
        ...


def warehouse_conn_id() -> str:
    """The connection the warehouse tasks use: the ``warehouse_conn_id`` Variable, read at run time."""
    from airflow.sdk import Variable

    return Variable.get(WAREHOUSE_CONN_ID_VARIABLE, default=DEFAULT_WAREHOUSE_CONN_ID)


def _postgres(conn: Any) -> Warehouse:
    from include.etlkit.load.postgres import PostgresWarehouse

    return PostgresWarehouse(conn.conn_id)


def _snowflake(conn: Any) -> Warehouse:
    from include.etlkit.load.snowflake import SnowflakeWarehouse

    return SnowflakeWarehouse.from_connection(conn)


# conn_type -> the implementation, built from the Airflow connection. (Tests of the Snowflake path
# replace the "snowflake" entry to hand the loader the landing copy fakesnow can run.)
LOADERS: dict[str, Callable[[Any], Warehouse]] = {
    "postgres": _postgres,
    "postgresql": _postgres,  # the type a postgresql:// URI gives
    "snowflake": _snowflake,
}


def warehouse_for(conn_id: str | None = None) -> Warehouse:
    """The warehouse behind Airflow connection ``conn_id`` (default: the ``warehouse_conn_id`` Variable).

    Looks the connection up (so call it when the task runs, never when a DAG is parsed) and raises
    ``ValueError`` naming the connection when its type has no implementation.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id or warehouse_conn_id())
    conn_type = (conn.conn_type or "").lower()
    try:
        loader = LOADERS[conn_type]
    except KeyError:
        raise ValueError(
            f"connection {conn.conn_id!r} is of type {conn_type or 'unset'!r}; a warehouse connection "
            f"must be one of {sorted(set(LOADERS))}"
        ) from None
    return loader(conn)


def fetch_all(cur: Any, query: str, parameters: Sequence[Any] = ()) -> tuple[list[str], list[tuple]]:
    """Run a query on a warehouse cursor; returns (lower-cased column names, rows).

    Lower-cased because Snowflake reports unquoted names upper-case and PostgreSQL lower-case.
    """
    cur.execute(query, tuple(parameters) or None)
    names = [d[0].lower() for d in cur.description]
    return names, [tuple(row) for row in cur.fetchall()]

"""OpenLineage for the framework's operators: the datasets each task read and wrote, with row counts.

Airflow's OpenLineage provider (``apache-airflow-providers-openlineage``, pinned by MWAA's
constraints) emits a START and a COMPLETE (or FAIL) event for every task; what a task read and wrote
it asks the operator through ``get_openlineage_facets_on_start`` / ``_on_complete`` /
``_on_failure``. The framework's operators get those from :class:`ReportsLineage`, and fill a
:class:`RunLineage` while they work, so the events name what really moved:

- a source table, ``postgres://host:port`` + ``database.schema.table`` (``mysql://host:port`` +
  ``database.table``), an API (``https://host`` + its endpoint), an FTP/SFTP directory or an S3
  drop prefix;
- the landed and processed data in S3, ``s3://<bucket>`` + ``<source>/<table>`` (one dataset per
  table, as OpenLineage names a directory of files, not one per immutable object: a graph of
  millions of one-off objects would show nothing);
- the warehouse tables, ``postgres://host:port`` + ``warehouse.core.<table>`` (or
  ``snowflake://<account>`` + ``DB.SCHEMA.TABLE``).

Row counts travel as the standard input and output statistics facets (rows, files, bytes).
Namespaces come from the connection's host and port through the provider hooks' own
``get_openlineage_database_info``, never from its URI with credentials: no password, login or token
reaches an event. Everything here runs when the task runs, never when a DAG file is parsed, and the
OpenLineage classes are imported only then (the provider does nothing unless a transport is set).
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from include.etlkit.storage import StoredObject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRef:
    """An OpenLineage dataset's identity: where it lives (``namespace``) and what it is (``name``)."""

    namespace: str
    name: str


@dataclass(frozen=True)
class TableRef:
    """A table behind an Airflow connection, named as a :class:`DatasetRef` only when an event is built.

    Naming it (:func:`database_location`) imports the OpenLineage provider's SQL parser module, which
    costs 1-2 s in a fresh task process (``bench/README.md``: more than a whole incremental extract).
    The provider asks for the facets only when it emits events, so a deployment without an
    OpenLineage transport never pays it, and one with a transport pays it in the listener, not in
    the data's own work.
    """

    conn_id: str
    schema: str | None
    table: str


LineageRef = DatasetRef | TableRef


@dataclass
class Counts:
    """What a task read from or wrote to one dataset: rows, files and bytes (None: not known)."""

    rows: int | None = None
    files: int | None = None
    size: int | None = None

    def add(self, rows: int | None, files: int | None, size: int | None) -> None:
        self.rows = _plus(self.rows, rows)
        self.files = _plus(self.files, files)
        self.size = _plus(self.size, size)


def _plus(current: int | None, more: int | None) -> int | None:
    return current if more is None else (current or 0) + more


Size = int | None


@dataclass
class RunLineage:
    """The datasets one task try read and wrote, in the order it touched them, with their counts."""

    inputs: dict[LineageRef, Counts] = field(default_factory=dict)
    outputs: dict[LineageRef, Counts] = field(default_factory=dict)

    def read(self, dataset: LineageRef, *, rows: Size = None, files: Size = None, size: Size = None) -> None:
        self.inputs.setdefault(dataset, Counts()).add(rows, files, size)

    def wrote(self, dataset: LineageRef, *, rows: Size = None, files: Size = None, size: Size = None) -> None:
        self.outputs.setdefault(dataset, Counts()).add(rows, files, size)

    def read_object(self, bucket: str, key: str, *, rows: Size, size: Size = None) -> None:
        """One immutable object read, counted in its table's dataset (:func:`object_dataset`)."""
        self.read(object_dataset(bucket, key), rows=rows, files=1, size=size)

    def wrote_object(self, stored: StoredObject, *, rows: Size) -> None:
        """One immutable object written, counted in its table's dataset (:func:`object_dataset`)."""
        self.wrote(object_dataset(stored.bucket, stored.key), rows=rows, files=1, size=stored.size)

    def operator_lineage(
        self,
        known_inputs: Iterable[LineageRef] = (),
        resolve: Callable[[LineageRef], DatasetRef] | None = None,
    ) -> Any:
        """The provider's ``OperatorLineage`` of these datasets (``known_inputs`` first, uncounted
        unless the task read them). ``resolve`` names a :class:`TableRef` (default:
        :func:`table_dataset`); references naming the same dataset count together."""
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import InputDataset, OutputDataset
        from openlineage.client.facet_v2 import input_statistics_input_dataset as input_stats
        from openlineage.client.facet_v2 import output_statistics_output_dataset as output_stats

        resolve = resolve or named
        inputs = _resolved({dataset: Counts() for dataset in known_inputs} | self.inputs, resolve)
        outputs = _resolved(self.outputs, resolve)
        return OperatorLineage(
            inputs=[
                InputDataset(
                    namespace=ref.namespace,
                    name=ref.name,
                    inputFacets={
                        "inputStatistics": input_stats.InputStatisticsInputDatasetFacet(
                            rowCount=counts.rows, fileCount=counts.files, size=counts.size
                        )
                    }
                    if counts != Counts()
                    else {},
                )
                for ref, counts in inputs.items()
            ],
            outputs=[
                OutputDataset(
                    namespace=ref.namespace,
                    name=ref.name,
                    outputFacets={
                        "outputStatistics": output_stats.OutputStatisticsOutputDatasetFacet(
                            rowCount=counts.rows, fileCount=counts.files, size=counts.size
                        )
                    },
                )
                for ref, counts in outputs.items()
            ],
        )


def named(ref: LineageRef) -> DatasetRef:
    """The dataset a reference names (a :class:`TableRef` looked up by :func:`table_dataset`)."""
    return table_dataset(ref.conn_id, ref.schema, ref.table) if isinstance(ref, TableRef) else ref


def _resolved(
    counted: dict[LineageRef, Counts], resolve: Callable[[LineageRef], DatasetRef]
) -> dict[DatasetRef, Counts]:
    result: dict[DatasetRef, Counts] = {}
    for ref, counts in counted.items():
        result.setdefault(resolve(ref), Counts()).add(counts.rows, counts.files, counts.size)
    return result


class ReportsLineage:
    """Mixin for an operator: the provider's facet methods over the :class:`RunLineage` it fills.

    ``execute`` records with ``self.lineage.read(...)`` / ``.wrote(...)``; :meth:`lineage_inputs`
    names what the task reads whatever happens (a source table), for the START event and for a run
    that found nothing new. The record lives on the operator object the task runner executes (a
    copy per try, ``prepare_for_execution``), which is the object the provider's listener asks.
    """

    @property
    def lineage(self) -> RunLineage:
        found = self.__dict__.get("_run_lineage")
        if found is None:
            found = RunLineage()
            self.__dict__["_run_lineage"] = found
        return found

    def lineage_inputs(self) -> list[LineageRef]:
        """Datasets this task reads on every run (resolved when the task runs); none by default."""
        return []

    def lineage_table(self, conn_id: str, schema: str | None, table: str) -> TableRef:
        """A table of ``conn_id``'s database: named (:func:`table_dataset`) only when the provider asks
        for the facets, the connection looked up once per task try, not per table."""
        return TableRef(conn_id, schema, table)

    def lineage_dataset(self, ref: LineageRef) -> DatasetRef:
        """The dataset ``ref`` names; a connection that cannot be looked up is named by its id."""
        if not isinstance(ref, TableRef):
            return ref
        locations = self.__dict__.setdefault("_lineage_locations", {})
        conn_id = ref.conn_id
        if conn_id not in locations:
            try:
                locations[conn_id] = database_location(conn_id)
            except Exception as exc:  # lineage must never fail the data's own work
                log.warning("lineage names connection %r by its id: %s", conn_id, exc)
                locations[conn_id] = DatabaseLocation(f"airflow-connection://{conn_id}", "unknown", None)
        return locations[conn_id].table(ref.schema, ref.table)

    def get_openlineage_facets_on_start(self) -> Any:
        return RunLineage().operator_lineage(self.lineage_inputs(), self.lineage_dataset)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return self.lineage.operator_lineage(self.lineage_inputs(), self.lineage_dataset)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """What a failed try did before failing (a file drop lands the files it can, say)."""
        return self.lineage.operator_lineage(self.lineage_inputs(), self.lineage_dataset)


# -- datasets ----------------------------------------------------------------------------------


def s3_dataset(bucket: str, prefix: str) -> DatasetRef:
    """A prefix (or object) of a bucket, as OpenLineage names S3 data."""
    return DatasetRef(f"s3://{bucket}", prefix.strip("/"))


def object_dataset(bucket: str, key: str) -> DatasetRef:
    """The dataset an immutable object belongs to: ``<source>/<table>``, the first two parts of its
    key (``<source>/<table>/YYYY/MM/DD/<name>-<digest>.parquet``, ``<source>/<table>/run=.../``)."""
    parts = key.split("/")
    return s3_dataset(bucket, "/".join(parts[:2]) if len(parts) > 2 else posixpath.dirname(key) or key)


@dataclass(frozen=True)
class DatabaseLocation:
    """Where a connection's tables live for OpenLineage: ``scheme://host:port`` and its database."""

    namespace: str
    scheme: str
    database: str | None
    uppercase: bool = False

    def table(self, schema: str | None, table: str) -> DatasetRef:
        """``database.schema.table`` (MySQL has no schema level: ``database.table``)."""
        parts = [self.database, table] if self.scheme == "mysql" else [self.database, schema, table]
        name = ".".join(part for part in parts if part)
        return DatasetRef(self.namespace, name.upper() if self.uppercase else name)


def database_location(conn_id: str) -> DatabaseLocation:
    """The location of Airflow connection ``conn_id``'s database, by OpenLineage's conventions.

    The hook of the connection's type says its scheme, ``host:port`` and database
    (``get_openlineage_database_info``, as the provider's own SQL operators use it), so only the
    host and port of the connection are used: its login and password never reach an event.
    """
    from airflow.providers.openlineage.sqlparser import SQLParser
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    info = conn.get_hook().get_openlineage_database_info(conn)
    database = conn.schema if info.scheme == "mysql" else (info.database or conn.schema)
    uppercase = bool(getattr(info, "is_uppercase_names", False))
    return DatabaseLocation(SQLParser.create_namespace(info), info.scheme, database, uppercase)


def table_dataset(conn_id: str, schema: str | None, table: str) -> DatasetRef:
    """A table of the database behind ``conn_id`` (see :func:`database_location`)."""
    return database_location(conn_id).table(schema, table)


def remote_dataset(conn_id: str, scheme: str, path: str) -> DatasetRef:
    """A directory or endpoint of a file or HTTP server: ``<scheme>://host[:port]`` + ``path``.

    Only the host and port of the connection are used, so its login and password never appear.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    host = conn.host or ""
    if "://" in host:  # an HTTP connection may carry its base URL in host
        parsed = urlsplit(host)
        scheme, host = parsed.scheme or scheme, parsed.hostname or ""
        port = parsed.port or conn.port
    else:
        port = conn.port
    authority = f"{host}:{port}" if port else host
    return DatasetRef(f"{scheme}://{authority}", path.strip("/") or "/")


def http_scheme(conn_schema: str | None) -> str:
    """The scheme an HTTP connection speaks (its ``schema`` field, https when unset)."""
    return conn_schema if conn_schema in ("http", "https") else "https"


def sql_tables(sql: str, dialect: str, default_schema: str | None = None) -> tuple[list[str], list[str]]:
    """``(read, written)`` tables of a script as ``schema.table``, from OpenLineage's SQL parser."""
    from airflow.providers.openlineage.sqlparser import SQLParser
    from openlineage_sql import parse

    # Statement by statement (the parser reads nothing from one long string); a statement it cannot
    # read (COMMENT ON ... with adjacent literals, say) is skipped, the others still count.
    meta = parse(SQLParser.split_sql_string(sql), dialect=dialect, default_schema=default_schema)
    if meta is None:
        return [], []

    def names(tables: Any) -> list[str]:
        return list(dict.fromkeys(f"{t.schema}.{t.name}" if t.schema else t.name for t in tables))

    return names(meta.in_tables), names(meta.out_tables)

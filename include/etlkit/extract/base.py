"""What every table extract shares: its parameters, its window, and landing one Parquet file once.

A source-specific operator only says how to stream its rows into a local Parquet file; putting that
file in the ingestion bucket (created once, content-addressed), recording it in the ledger with the
window it covers, and reporting its rows go through :mod:`include.etlkit.extract.landing`, the one
landing path the API and file-drop extracts use too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import LineageRef, ReportsLineage
from include.etlkit.windows import DEFAULT_OVERLAP, ExtractWindow

if TYPE_CHECKING:
    import pyarrow as pa

    from include.etlkit.control.ledger import VersionColumns
    from include.etlkit.extract.landing import Landing
    from include.etlkit.storage import ImmutableStore
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")


@dataclass(frozen=True)
class TableSpec:
    """A source table as the pipeline knows it: its key and the column that moves on every change."""

    name: str
    key: str
    cursor: str = "last_updated"
    schema: str = "public"


class TableExtractOperator(ReportsLineage, BaseOperator):
    """Base of the table extracts: land the rows of one table that changed in the run's window.

    Lineage: the source table in, its landed objects out, with the rows of each.

    :param table: the table to land (a :class:`TableSpec`, or its ``dict`` form when mapped).
    :param source: the source name: the first part of every landed key and of the ledger's records.
    :param conn_id: the Airflow connection of the source database.
    :param bucket: the ingestion bucket (templated; e.g. ``{{ var.value.ingestion_bucket }}``).
    :param overlap: how far before the last landed point to look again, for late commits.
    """

    template_fields: Sequence[str] = ("bucket",)
    default_cursor = "last_updated"

    def __init__(
        self,
        *,
        table: TableSpec | dict,
        source: str,
        conn_id: str,
        bucket: str,
        aws_conn_id: str = "aws_default",
        overlap: timedelta = DEFAULT_OVERLAP,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.source = source
        self.conn_id = conn_id
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.overlap = overlap

    @property
    def spec(self) -> TableSpec:
        if isinstance(self.table, TableSpec):
            return self.table
        return TableSpec(**{"cursor": self.default_cursor, **self.table})

    def lineage_inputs(self) -> list[LineageRef]:
        return [self.source_table()]

    def source_table(self) -> LineageRef:
        """The source table as an OpenLineage dataset (the connection's host, port and database)."""
        spec = self.spec
        return self.lineage_table(self.conn_id, spec.schema, spec.name)

    def window(self, context: Any) -> ExtractWindow:
        # The control plane's modules are imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.run_params import refresh_from
        from include.etlkit.windows import incremental_window, run_interval, source_clock

        spec = self.spec
        window = incremental_window(
            *run_interval(context),
            Ledger().landed_until(self.source, spec.name),
            self.overlap,
        )
        refresh, since = refresh_from(context)
        if refresh:  # a person asked to re-land (run params full_refresh / since)
            lower = source_clock(since) if since is not None else None
            window = ExtractWindow(lower, window.upper, refresh=context["run_id"])
        self.log.info(
            "landing %s.%s rows with %s in %s", self.source, spec.name, spec.cursor, window.describe()
        )
        return window

    def landing(self, context: Any, window: ExtractWindow, objects: ImmutableStore | None = None) -> Landing:
        """Where this run lands the table (:mod:`include.etlkit.extract.landing`), through ``objects``
        when given (see :meth:`~include.etlkit.storage.ImmutableStore.prepare`)."""
        from include.etlkit.extract.landing import Landing

        return Landing(
            source=self.source,
            name=self.spec.name,
            bucket=self.bucket,
            window=window,
            run_id=context["run_id"],
            log=self.log,
            aws_conn_id=self.aws_conn_id,
            lineage=self.lineage,
            objects=objects,
        )

    def land_parquet(
        self,
        context: Any,
        local: Path,
        rows: int,
        window: ExtractWindow,
        *,
        mode: str,
        advance_state: bool,
        row_versions: Iterable[pa.RecordBatch] | None = None,
        version_columns: VersionColumns | None = None,
        objects: ImmutableStore | None = None,
    ) -> dict[str, Any]:
        """Land ``local`` (if it has rows) through the one landing path, and report its rows.

        ``version_columns``: ``local`` carries each row's version in these columns; they are read
        from it (``row_versions`` not given), and a table's first landing is their baseline.
        """
        if row_versions is None and version_columns is not None and rows:
            from include.etlkit.control.ledger import landed_versions

            row_versions = landed_versions(local, version_columns)  # a generator: read only if needed
        landing = self.landing(context, window, objects)
        stored = landing.land(
            local if rows else None,
            rows=rows,
            mode=mode,
            advance_state=advance_state,
            suffix=".parquet",
            row_versions=row_versions,
            version_columns=version_columns,
        )
        landing.report(context, rows_in=rows, rows_out=rows)
        if mode != "reconcile":  # a reconciliation reports the whole table it compared
            self.lineage.read(self.source_table(), rows=rows)
        return {
            "table": self.spec.name,
            "rows": rows,
            "key": stored.key if stored else None,
            "mode": mode,
            "window_start": window.lower.isoformat() if window.lower else None,
            "window_end": window.upper.isoformat(),
        }

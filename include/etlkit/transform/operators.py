"""The transform step of any declared pipeline: landed objects in, its models' tables out, as Parquet.

Landed objects are downloaded to local disk and scanned lazily (``pl.scan_parquet``); every model is
built by :mod:`include.etlkit.transform.engine`, streaming, and its output stored once in the
processed bucket through :class:`~include.etlkit.storage.ImmutableStore`.

Why a processed key carries the transform run: the load takes what ``etl.processed_object`` says
is pending, and a dimension can legitimately produce the very bytes it produced before (an address
v1 -> v2 -> v1). Under a content key alone the third object would be the first one, already marked
loaded, and the warehouse would keep v2. With ``<source>/<table>/run=<run id>/`` in the key, each run's
output is its own object, while a retry of the same run still finds its own object (same bytes,
same key) and never overwrites anything.

Joined models (``rows: current``) read a current-state snapshot per source table: the previous
snapshot plus the new rows, latest per key, written as a new immutable object and recorded in
``etl.current_state`` in the same transaction that marks the landed objects transformed. The first
time (or after an upgrade from a version without snapshots) the snapshot is built once from every
object landed for the table.

A model that fails does not stop the others: its error is logged, the landed objects of its source
tables stay pending (so the next run retries them: loads of dimensions and of fact versions are
idempotent), what succeeded is recorded, and the task fails at the end naming the failed models.
"""

from __future__ import annotations

import functools
import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.schema_changes import SchemaRegistry
from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import ReportsLineage
from include.etlkit.pipelines.models import Model, ModelInput
from include.etlkit.transform.batch import affected
from include.etlkit.transform.deletions import deleting_models, deletions
from include.etlkit.transform.drift import describe_drift
from include.etlkit.transform.engine import (
    BATCH_ROWS,
    ModelError,
    Targets,
    batch_rows,
    build,
    empty_frame,
    input_frame,
    latest,
    processed_schema,
    resolve_targets,
    row_by_row,
    scan,
    write_parquet,
)

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from include.etlkit.control.ledger import Ledger, LedgerObject
    from include.etlkit.storage import ImmutableStore, StoredObject
else:  # imported on first use, not while a DAG file is parsed
    pq = lazy_module("pyarrow.parquet")

STATE_PREFIX = "_current"


def run_prefix(source: str, table: str, run_id: str) -> str:
    """``<source>/<table>/run=<run id>``, the run id made safe for an S3 key."""
    return f"{source}/{table}/run={re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}"


class TransformLandedOperator(ReportsLineage, BaseOperator):
    """Build every model that a source's landed and not yet transformed objects affect.

    Lineage: the landed tables it took (rows) in, the processed tables it built (rows) out.

    :param source: the ledger's source name (``totesys``).
    :param models: the pipeline's models (:func:`include.etlkit.pipelines.models.parse_models`).
    :param targets: their target schemas, seeds and checks, or the ``<module>:<attribute>`` that
        names them (the pipeline's ``targets:``), imported when the task runs.
    :param bucket: the processed bucket (templated).
    :param batch_size: rows per batch of a row-by-row model, and per output row group: with the
        joined dimensions' current state, what bounds the task's memory.
    """

    template_fields = ("bucket",)
    ui_color = "#fdf1d6"

    def __init__(
        self,
        *,
        source: str,
        models: Sequence[Model],
        targets: Targets | str,
        bucket: str,
        aws_conn_id: str = "aws_default",
        batch_size: int = BATCH_ROWS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.source = source
        self.models = tuple(models)
        self.targets_reference = targets
        self.batch_size = batch_size
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id

    @functools.cached_property
    def targets(self) -> Targets:
        """The models' target schemas, resolved from their reference at run time (pyarrow types)."""
        reference = self.targets_reference
        targets = resolve_targets(reference) if isinstance(reference, str) else reference
        untyped = sorted({m.name for m in self.models} - set(targets.schemas))
        if untyped:
            raise ValueError(f"{self.source}: model(s) {untyped} have no target schema")
        return targets

    def execute(self, context: Any) -> dict[str, int]:
        # The control plane and the object store: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.storage import ImmutableStore

        self.targets  # noqa: B018  (a model without a target schema fails before anything is read)
        ledger = Ledger()
        pending = ledger.pending_landed(self.source)
        if not pending:
            self.log.info("nothing landed and not yet transformed for %s", self.source)
            report_rows(context, rows_in=0, rows_out=0)
            return {}
        with tempfile.TemporaryDirectory(prefix="transform-") as tmp:
            run = _TransformRun(
                self, ledger, ImmutableStore(self.aws_conn_id), pending, context["run_id"], Path(tmp)
            )
            run.build_all()
            taken = run.record()
        rows_in = sum(obj.rows for obj in taken)
        rows_out = sum(rows for _, _, rows in run.produced)
        for obj in taken:
            self.lineage.read_object(obj.bucket, obj.key, rows=obj.rows)
        for _, stored, rows in run.produced:
            self.lineage.wrote_object(stored, rows=rows)
        report_rows(context, rows_in=rows_in, rows_out=rows_out)
        summary = {name: rows for name, _, rows in run.produced}
        self.log.info("transformed %d landed rows into %s", rows_in, summary)
        if run.failures:
            raise AirflowException(
                f"{len(run.failures)} model(s) of {self.source} failed (the others were built and recorded; "
                f"their landed objects stay pending): " + "; ".join(run.failures.values())
            )
        return summary


class _TransformRun:
    """One execution of :class:`TransformLandedOperator`: its pending objects, work dir and outcome."""

    def __init__(
        self,
        operator: TransformLandedOperator,
        ledger: Ledger,
        store: ImmutableStore,
        pending: list[LedgerObject],
        run_id: str,
        work: Path,
    ) -> None:
        from include.etlkit.control.ledger import DELETIONS

        self.operator = operator
        self.source = operator.source
        self.targets = operator.targets
        self.log = operator.log
        self.ledger = ledger
        self.store = store
        self.pending = pending
        self.run_id = run_id
        self.work = work
        self.by_table: dict[str, list[LedgerObject]] = defaultdict(list)
        self.tombstones: dict[str, list[LedgerObject]] = defaultdict(list)  # rows deleted in the source
        for obj in pending:
            if obj.table_name.endswith(DELETIONS):
                self.tombstones[obj.table_name.removesuffix(DELETIONS)].append(obj)
            else:
                self.by_table[obj.table_name].append(obj)
        self.plan = affected(operator.models, self.by_table)
        self.landed: dict[str, list[Path]] = {}
        self.current: dict[str, Path] = {}
        self.outputs: dict[str, Path | None] = {}
        self.produced: list[tuple[str, StoredObject, int]] = []
        self.states: dict[str, tuple[StoredObject, int]] = {}
        self.failures: dict[str, str] = {}
        self.failed_tables: set[str] = set()  # their landed objects stay pending
        self.added: dict[str, list[str]] = {}  # columns added to each source table (schema drift)

    def build_all(self) -> None:
        """Download what the plan reads, update the current states, then build each model in order."""
        from include.etlkit.control.ledger import deletions_of

        for table, objects in self.by_table.items():
            if any(table in model.source_tables for model in self.plan):
                self.landed[table] = [
                    self._download(obj, self.work / "landed" / table, i) for i, obj in enumerate(objects)
                ]
        current_inputs = {i.name: i for m in self.plan for i in m.inputs if i.rows == "current"}
        for item in current_inputs.values():
            try:
                self.current[item.name] = self._current_state(item)
            except Exception as exc:  # reported at the end; the other tables go on
                self._fail(f"current state of {item.name}", (item.name,), exc)
        for model in self.plan:
            blocked = [i.name for i in model.inputs if i.rows == "current" and i.name not in self.current]
            if blocked:
                self.failures[model.name] = f"{model.name}: no current state of {blocked}"
                self.failed_tables.update(model.source_tables)
                continue
            try:
                self._build(model)
            except Exception as exc:  # reported at the end; the other models go on
                self._fail(model.name, model.source_tables, exc)
        for table, objects in self.tombstones.items():
            try:
                self._delete(table, objects)
            except Exception as exc:  # the tombstones stay pending; the rest is recorded
                self.failures[deletions_of(table)] = f"deletions of {table}: {exc}"
                self.failed_tables.add(deletions_of(table))
                self.log.error("deletions of %s: %s", table, exc)

    def record(self) -> list[LedgerObject]:
        """Record what was built and mark the landed objects it came from; returns those objects."""
        taken = [obj for obj in self.pending if obj.table_name not in self.failed_tables]
        self.ledger.record_transform(
            source=self.source,
            run_id=self.run_id,
            taken=taken,
            produced=self.produced,
            states=[
                (t, stored, rows) for t, (stored, rows) in self.states.items() if t not in self.failed_tables
            ],
        )
        return taken

    # -- steps --------------------------------------------------------------------------------------

    def _download(self, obj: LedgerObject, directory: Path, index: int) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return self.store.download(obj.bucket, obj.key, directory / f"{index:06d}.parquet")

    def _build(self, model: Model) -> None:
        frames = {}
        for item in model.inputs:
            if item.rows == "model":
                output = self.outputs.get(item.name)
                frames[item.name] = (
                    scan([output]) if output is not None else empty_frame(self.targets.schemas[item.name])
                )
            elif item.rows == "current":
                frames[item.name] = scan([self.current[item.name]])  # already one row per key
            else:
                frames[item.name] = input_frame(item, scan(self.landed[item.name]))
        # One landed object holds each row once (one SELECT): de-duplicating versions across objects
        # is needed only when several were landed, and would hold a whole first snapshot otherwise.
        distinct = any(len(self.landed.get(t, [])) > 1 for t in model.source_tables)
        path = self.work / "processed" / f"{model.name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = processed_schema(model, self.targets)
        added = {table: self._added(table) for table in model.source_tables} if model.carries else {}
        if row_by_row(model) and not distinct:
            batches = batch_rows(
                model, self.landed[model.inputs[0].name], self.targets, self.operator.batch_size, added
            )
            rows = write_parquet(batches, schema, path)
        else:
            rows = write_parquet(
                build(model, frames, self.targets, distinct=distinct, added=added),
                schema,
                path,
                self.operator.batch_size,
            )
        self.outputs[model.name] = path if rows else None
        if rows:
            prefix = run_prefix(self.source, model.name, self.run_id)
            stored = self.store.create_file(self.operator.bucket, prefix, model.name, path, ".parquet")
            self.produced.append((model.name, stored, rows))

    def _delete(self, table: str, objects: list[LedgerObject]) -> None:
        """Rows deleted from ``table`` in the source, as deletions of the models built from it."""
        from include.etlkit.control.ledger import deletions_of

        models = deleting_models(self.operator.models, table)
        if not models:
            deleted = sum(o.rows for o in objects)
            self.log.info("%d deletion(s) of %s: no model is built from it", deleted, table)
            return
        paths = [self._download(obj, self.work / "deleted" / table, i) for i, obj in enumerate(objects)]
        # The tombstones' first column is the table's key (the reconciliation writes key, then time).
        source_key = pq.read_schema(paths[0]).names[0]
        for model in models:
            rows = deletions(model, paths, self.targets.schemas, source_key)
            path = self.work / "deleted" / f"{model.name}.parquet"
            pq.write_table(rows, path, compression="zstd")
            prefix = run_prefix(self.source, model.name, self.run_id)
            stored = self.store.create_file(
                self.operator.bucket, prefix, f"{model.name}-deleted", path, ".parquet"
            )
            self.produced.append((deletions_of(model.name), stored, rows.num_rows))
            self.log.info("%s: %d row(s) deleted in the source (%s)", model.name, rows.num_rows, stored.uri)

    def _current_state(self, item: ModelInput) -> Path:
        """The table's snapshot after this run's new rows (a new snapshot is stored when it changed)."""
        directory = self.work / "state" / item.name
        directory.mkdir(parents=True, exist_ok=True)
        new = self.landed.get(item.name, [])
        recorded = self.ledger.current_state(self.source, item.name)
        if recorded is not None:
            base = [self.store.download(recorded.bucket, recorded.key, directory / "previous.parquet")]
            if not new:
                return base[0]
        else:
            # No snapshot yet: built once from everything landed before the pending objects.
            base = [
                self._download(obj, directory / "earlier", i)
                for i, obj in enumerate(self._earlier(item.name))
            ]
        assert item.key is not None  # parse_models requires it for rows: current
        if not base and not new:
            raise ModelError(f"nothing of {item.name} was landed yet: it has no current state")
        path = directory / f"{item.name}.parquet"
        latest(scan([*base, *new]), item.key, item.cursor).sink_parquet(path, compression="zstd")
        rows = pq.ParquetFile(path).metadata.num_rows
        prefix = f"{self.source}/{STATE_PREFIX}/{item.name}"
        stored = self.store.create_file(self.operator.bucket, prefix, item.name, path, ".parquet")
        self.states[item.name] = (stored, rows)
        self.log.info("current state of %s: %d rows in %s", item.name, rows, stored.uri)
        return path

    def _added(self, table: str) -> list[str]:
        """The columns added to ``table`` in the source since it was first extracted (cached per run)."""
        if table not in self.added:
            self.added[table] = SchemaRegistry(self.ledger.store).added_columns(self.source, table)
        return self.added[table]

    def _earlier(self, table: str) -> list[LedgerObject]:
        """The table's objects landed before this run's pending ones, oldest first."""
        pending = {obj.key for obj in self.by_table.get(table, [])}
        return [obj for obj in self.ledger.landed(self.source, [table]) if obj.key not in pending]

    def _fail(self, name: str, tables: tuple[str, ...], exc: Exception) -> None:
        """Keep the error, with the schema changes of the inputs (what changed is usually why).

        The pending objects are compared with each other and with the table's last object landed
        before them (downloaded only here, on the failure path).
        """
        drift: list[str] = []
        for table in tables:
            paths = list(self.landed.get(table, []))
            earlier = self._earlier(table)
            try:
                if earlier:
                    paths.insert(0, self._download(earlier[-1], self.work / "drift" / table, 0))
                drift += describe_drift(table, paths)
            except Exception as drift_exc:  # the model's own error matters more than this one
                self.log.warning("could not compare the schemas of %s: %s", table, drift_exc)
        message = f"{name}: {exc}"
        if drift:
            message += f" (schema changes in the landed objects: {'; '.join(drift)})"
        self.failures[name] = message
        self.failed_tables.update(tables)
        self.log.error("%s", message)

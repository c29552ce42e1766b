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

import re
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.ledger import Ledger, LedgerObject
from include.etlkit.pipelines.models import Model, ModelInput
from include.etlkit.storage import ImmutableStore, StoredObject
from include.etlkit.transform.batch import affected
from include.etlkit.transform.drift import describe_drift
from include.etlkit.transform.engine import (
    Targets,
    build,
    empty_frame,
    input_frame,
    latest,
    scan,
    write_parquet,
)

STATE_PREFIX = "_current"


def run_prefix(source: str, table: str, run_id: str) -> str:
    """``<source>/<table>/run=<run id>``, the run id made safe for an S3 key."""
    return f"{source}/{table}/run={re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}"


class TransformLandedOperator(BaseOperator):
    """Build every model that a source's landed and not yet transformed objects affect.

    :param source: the ledger's source name (``totesys``).
    :param models: the pipeline's models (:func:`include.etlkit.pipelines.models.parse_models`).
    :param targets: their target schemas, seeds and checks.
    :param bucket: the processed bucket (templated).
    """

    template_fields = ("bucket",)
    ui_color = "#fdf1d6"

    def __init__(
        self,
        *,
        source: str,
        models: Sequence[Model],
        targets: Targets,
        bucket: str,
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.models = tuple(models)
        self.targets = targets
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id

    def execute(self, context: Any) -> dict[str, int]:
        ledger = Ledger()
        store = ImmutableStore(self.aws_conn_id)
        pending = ledger.pending_landed(self.source)
        if not pending:
            self.log.info("nothing landed and not yet transformed for %s", self.source)
            report_rows(context, rows_in=0, rows_out=0)
            return {}
        run_id = context["run_id"]
        by_table: dict[str, list[LedgerObject]] = defaultdict(list)
        for obj in pending:
            by_table[obj.table_name].append(obj)
        plan = affected(self.models, by_table)
        failures: dict[str, str] = {}
        failed_tables: set[str] = set()  # their landed objects stay pending
        produced: list[tuple[str, StoredObject, int]] = []
        states: dict[str, tuple[StoredObject, int]] = {}
        with tempfile.TemporaryDirectory(prefix="transform-") as tmp:
            work = Path(tmp)
            landed = {
                table: [
                    self._download(store, obj, work / "landed" / table, i) for i, obj in enumerate(objects)
                ]
                for table, objects in by_table.items()
                if any(table in m.source_tables for m in plan)
            }
            current: dict[str, Path] = {}
            for item in {i.name: i for m in plan for i in m.inputs if i.rows == "current"}.values():
                try:
                    current[item.name], state = self._current_state(
                        ledger, store, item, landed.get(item.name, []), by_table, work, run_id
                    )
                    if state is not None:
                        states[item.name] = state
                except Exception as exc:  # reported below; the other tables go on
                    failures[f"current state of {item.name}"] = self._failure(
                        item.name, exc, landed, ledger=ledger, store=store, pending=by_table, work=work
                    )
                    failed_tables.add(item.name)
            outputs: dict[str, Path | None] = {}
            for model in plan:
                blocked = [i.name for i in model.inputs if i.rows == "current" and i.name not in current]
                if blocked:
                    failures[model.name] = f"{model.name}: no current state of {blocked}"
                    failed_tables.update(model.source_tables)
                    continue
                try:
                    path = work / "processed" / f"{model.name}.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    rows = self._build(model, landed, current, outputs, path)
                except Exception as exc:  # reported below; the other models go on
                    failures[model.name] = self._failure(
                        model.name,
                        exc,
                        landed,
                        model,
                        ledger=ledger,
                        store=store,
                        pending=by_table,
                        work=work,
                    )
                    self.log.error("model %s failed: %s", model.name, failures[model.name])
                    failed_tables.update(model.source_tables)
                    continue
                outputs[model.name] = path if rows else None
                if rows:
                    prefix = run_prefix(self.source, model.name, run_id)
                    stored = store.create_file(self.bucket, prefix, model.name, path, ".parquet")
                    produced.append((model.name, stored, rows))
            taken = [obj for obj in pending if obj.table_name not in failed_tables]
            ledger.record_transform(
                source=self.source,
                run_id=run_id,
                taken=taken,
                produced=produced,
                states=[(t, stored, rows) for t, (stored, rows) in states.items() if t not in failed_tables],
            )
        rows_in = sum(obj.rows for obj in taken)
        rows_out = sum(rows for _, _, rows in produced)
        report_rows(context, rows_in=rows_in, rows_out=rows_out)
        summary = {name: rows for name, _, rows in produced}
        self.log.info("transformed %d landed rows into %s", rows_in, summary)
        if failures:
            raise AirflowException(
                f"{len(failures)} model(s) of {self.source} failed (the others were built and recorded; "
                f"their landed objects stay pending): " + "; ".join(failures.values())
            )
        return summary

    # -- steps --------------------------------------------------------------------------------------

    @staticmethod
    def _download(store: ImmutableStore, obj: LedgerObject, directory: Path, index: int) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        return store.download(obj.bucket, obj.key, directory / f"{index:06d}.parquet")

    def _build(
        self,
        model: Model,
        landed: dict[str, list[Path]],
        current: dict[str, Path],
        outputs: dict[str, Path | None],
        path: Path,
    ) -> int:
        frames = {}
        for item in model.inputs:
            if item.rows == "model":
                output = outputs.get(item.name)
                frames[item.name] = (
                    scan([output]) if output is not None else empty_frame(self.targets.schemas[item.name])
                )
            elif item.rows == "current":
                frames[item.name] = scan([current[item.name]])  # already one row per key
            else:
                frames[item.name] = input_frame(item, scan(landed[item.name]))
        # One landed object holds each row once (one SELECT): de-duplicating versions across objects
        # is needed only when several were landed, and would hold a whole first snapshot otherwise.
        distinct = any(len(landed.get(t, [])) > 1 for t in model.source_tables)
        rows = build(model, frames, self.targets, distinct=distinct)
        return write_parquet(rows, self.targets.schemas[model.name], path)

    def _current_state(
        self,
        ledger: Ledger,
        store: ImmutableStore,
        item: ModelInput,
        new: list[Path],
        by_table: dict[str, list[LedgerObject]],
        work: Path,
        run_id: str,
    ) -> tuple[Path, tuple[StoredObject, int] | None]:
        """The table's snapshot after this run's new rows, and the new snapshot to record (if any)."""
        directory = work / "state" / item.name
        directory.mkdir(parents=True, exist_ok=True)
        recorded = ledger.current_state(self.source, item.name)
        if recorded is not None:
            base = [store.download(recorded.bucket, recorded.key, directory / "previous.parquet")]
            if not new:
                return base[0], None
        else:
            # No snapshot yet: built once from everything landed before the pending objects.
            pending_keys = {obj.key for obj in by_table.get(item.name, [])}
            earlier = [o for o in ledger.landed(self.source, [item.name]) if o.key not in pending_keys]
            base = [self._download(store, obj, directory / "earlier", i) for i, obj in enumerate(earlier)]
        assert item.key is not None
        path = directory / f"{item.name}.parquet"
        latest(scan([*base, *new]), item.key, item.cursor).sink_parquet(path, compression="zstd")
        rows = pq.ParquetFile(path).metadata.num_rows
        prefix = f"{self.source}/{STATE_PREFIX}/{item.name}"
        stored = store.create_file(self.bucket, prefix, item.name, path, ".parquet")
        self.log.info("current state of %s: %d rows in %s", item.name, rows, stored.uri)
        return path, (stored, rows)

    def _failure(
        self,
        name: str,
        exc: Exception,
        landed: dict[str, list[Path]],
        model: Model | None = None,
        *,
        ledger: Ledger,
        store: ImmutableStore,
        pending: dict[str, list[LedgerObject]],
        work: Path,
    ) -> str:
        """The error, with the schema changes of the inputs (what changed is usually why).

        The pending objects are compared with each other and with the table's last object landed
        before them (downloaded only here, on the failure path).
        """
        message = f"{name}: {exc}"
        drift: list[str] = []
        for table in model.source_tables if model is not None else (name,):
            pending_keys = {obj.key for obj in pending.get(table, [])}
            earlier = [o for o in ledger.landed(self.source, [table]) if o.key not in pending_keys]
            paths = list(landed.get(table, []))
            if earlier:
                directory = work / "drift" / table
                paths.insert(0, self._download(store, earlier[-1], directory, 0))
            drift += describe_drift(table, paths)
        return f"{message} (schema changes in the landed objects: {'; '.join(drift)})" if drift else message

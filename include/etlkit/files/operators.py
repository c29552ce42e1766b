"""The validation step of file datasets: landed files in, valid rows as Parquet out, the rest set aside.

For each landed object of the source not yet transformed whose ``table_name`` is one of the
operator's datasets, in landing order:

1. download it and read it (:mod:`.readers`), validate it against its schema (:mod:`.validate`),
   given the remote path(s) ``etl.source_file`` says it came from when the schema has
   ``path_values`` (a partner's file may only speak for that partner);
2. valid rows -> Parquet in the processed bucket under ``<source>/<dataset>/YYYY/MM/DD/``, recorded
   with :meth:`Ledger.record_transform` so the load sees a pending processed object of the dataset;
3. quarantined rows -> Parquet (raw strings, ``source_row``, ``reason``, ``landed_key``) in the
   ingestion bucket under ``quarantine/<source>/<dataset>/YYYY/MM/DD/``;
4. a rejected file (unreadable, or missing required columns) -> a copy of its bytes under
   ``errors/<source>/<dataset>/YYYY/MM/DD/`` (the same name it landed under) and, beside it,
   ``<that key>.reason.json`` saying why. The original is never moved or changed: the ingestion
   bucket is immutable, so "moving to the error prefix" is a new object;
5. its ``etl.file_status`` row, then the landed object marked transformed.

Tombstones of a dataset (``<dataset>.deleted``, landed by a reconciliation for rows deleted in a
database source: their keys and ``_deleted_at``) are not files to validate: each is copied as it is
to the processed bucket as ``<dataset>.deleted``, which the load turns into ``deleted_at`` on the
rows of the dataset's table.

Every object is created once under a content-addressed key (:class:`ImmutableStore`) and the
validation is deterministic, so a rerun after a crash at any point finds the same keys, creates
nothing new and rewrites the same status row. A file that cannot be read is rejected, it does not
fail the task; a file whose processing fails for another reason (S3 or the database answering an
error) is left pending, the others go on, and the task fails at the end so a retry takes it again.
"""

from __future__ import annotations

import functools
import io
import json
import posixpath
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.extract.files import SourceFileLedger
from include.etlkit.files.readers import FileReadError, read_file
from include.etlkit.files.schema import FileSchema
from include.etlkit.files.status import FileStatusStore
from include.etlkit.files.validate import REJECTED, ValidationResult, validate
from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import ReportsLineage, s3_dataset
from include.etlkit.row_identity import ROW_HASH

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from include.etlkit.control.ledger import Ledger, LedgerObject
    from include.etlkit.storage import ImmutableStore, StoredObject
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")

QUARANTINE_PREFIX = "quarantine"
ERROR_PREFIX = "errors"
REASON_SUFFIX = ".reason.json"
LANDED_KEY = "landed_key"
CONTENT_SUFFIX = re.compile(r"-[0-9a-f]{16}$")  # the digest ImmutableStore appends to a name


class FileValidationError(RuntimeError):
    """Some landed files could not be processed (not: were invalid); a retry takes them again."""


@dataclass(frozen=True)
class FileOutcome:
    """What became of one landed file."""

    landed: LedgerObject
    dataset: str
    status: str
    rows_read: int
    rows_loaded: int
    rows_rejected: int
    reason: str | None = None
    processed: StoredObject | None = None
    quarantine: StoredObject | None = None
    error: StoredObject | None = None


def _quarantine_reason(result: ValidationResult) -> str | None:
    """``"2 of 5 row(s) quarantined, first: row 3: amount='x' is not a decimal(12,2)"``."""
    if not result.rows_quarantined:
        return None
    first = result.quarantined.slice(0, 1).to_pylist()[0]
    return (
        f"{result.rows_quarantined} of {result.rows_read} row(s) quarantined, "
        f"first: row {first['source_row']}: {first['reason'][:300]}"
    )


def _source_columns(table: pa.Table) -> pa.Table:
    """A landed file's columns without the row hash a table extract lands with each row (the
    ledger's, not the source's: it is not an additional column of the feed)."""
    return table.drop_columns([ROW_HASH]) if ROW_HASH in table.column_names else table


def _schema(value: FileSchema | Mapping[str, Any], dataset: str) -> FileSchema:
    if isinstance(value, FileSchema):
        return value
    return FileSchema.from_dict({"name": dataset, **value})


def dataset_prefix(source: str, dataset: str, landed_key: str) -> str:
    """``<source>/<dataset>/YYYY/MM/DD``: the landed object's folder (or under it, if it differs)."""
    folder = posixpath.dirname(landed_key)
    base = f"{source}/{dataset}"
    return folder if folder == base or folder.startswith(base + "/") else f"{base}/{folder}".rstrip("/")


def local_name(landed_key: str, limit: int = 120) -> str:
    """The landed file's name, cut to ``limit`` bytes (suffix kept) so any name fits a local path."""
    path = PurePosixPath(landed_key)
    suffix = path.suffix if len(path.suffix.encode()) <= 16 else ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    stem = stem.encode()[: limit - len(suffix.encode())].decode(errors="ignore")
    return (stem or "landed") + suffix


def landed_name(landed_key: str) -> tuple[str, str]:
    """``(name, suffix)`` of a landed key, the name without the content digest the store added."""
    path = PurePosixPath(landed_key)
    return CONTENT_SUFFIX.sub("", path.stem), path.suffix


class ValidateLandedFilesOperator(ReportsLineage, BaseOperator):
    """Validate the source's pending landed files of the given datasets against their schemas.

    Lineage: each dataset's landed files in (rows read); its valid rows in the processed bucket, its
    quarantined rows and its rejected files in the ingestion bucket out.

    :param source: the source name (the first part of the landed keys, the ledger's ``source``).
    :param datasets: dataset name (the landed objects' ``table_name``) -> its :class:`FileSchema`,
        or the plain dict :meth:`FileSchema.from_dict` takes (its ``name`` defaults to the dataset).
        Landed objects of other tables are left for other transforms.
    :param ingestion_bucket: where the quarantine and error objects go (templated).
    :param processed_bucket: where the valid rows go (templated).
    :param aws_conn_id: the Airflow connection of S3.
    """

    template_fields = ("ingestion_bucket", "processed_bucket")
    ui_color = "#f6e3d3"

    def __init__(
        self,
        *,
        source: str,
        datasets: Mapping[str, FileSchema | Mapping[str, Any]],
        ingestion_bucket: str,
        processed_bucket: str,
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not datasets:
            raise ValueError("ValidateLandedFilesOperator needs at least one dataset")
        self.source = source
        self.declared = dict(datasets)
        self.ingestion_bucket = ingestion_bucket
        self.processed_bucket = processed_bucket
        self.aws_conn_id = aws_conn_id

    @functools.cached_property
    def datasets(self) -> dict[str, FileSchema]:
        """The declared schemas, built when the task runs (bounds and choices become pyarrow values)."""
        return {name: _schema(schema, name) for name, schema in self.declared.items()}

    def execute(self, context: Any) -> dict[str, Any]:
        # The control plane and the object store: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.storage import ImmutableStore

        run_id = context["run_id"]
        ledger = Ledger()
        statuses = FileStatusStore(ledger.store)
        source_files = SourceFileLedger(ledger.store)
        store = ImmutableStore(self.aws_conn_id)
        pending = [o for o in ledger.pending_landed(self.source) if o.table_name in self.datasets]
        self._pass_deletions(store, ledger, run_id)
        self.log.info(
            "%d landed file(s) of %s to validate (%s)", len(pending), self.source, ", ".join(self.datasets)
        )
        report_rows(context, rows_in=0, rows_out=0, rows_rejected=0)  # nothing pending is 0, not unknown
        summary: dict[str, Any] = {"validated": [], "partially_quarantined": [], "rejected": [], "failed": []}
        with tempfile.TemporaryDirectory(prefix=f"validate-{self.source}-") as tmp:
            for landed in pending:
                # Named as landed, so a read error quotes the landed name, not a temporary one.
                local = Path(tmp) / local_name(landed.key)
                try:
                    outcome = self._process(store, source_files, landed, local, run_id)
                    self._record(statuses, ledger, outcome, run_id)
                    self._trace(outcome)
                except Exception as exc:  # one file's trouble must not lose the others
                    self.log.exception("could not process s3://%s/%s", landed.bucket, landed.key)
                    summary["failed"].append({"key": landed.key, "reason": f"{type(exc).__name__}: {exc}"})
                    continue
                finally:
                    local.unlink(missing_ok=True)
                report_rows(
                    context,
                    rows_in=outcome.rows_read,
                    rows_out=outcome.rows_loaded,
                    rows_rejected=outcome.rows_rejected,
                )
                summary[outcome.status].append(landed.key)
                self.log.info(
                    "%s %s: %s, %d read, %d valid, %d set aside%s",
                    outcome.dataset,
                    landed.key,
                    outcome.status,
                    outcome.rows_read,
                    outcome.rows_loaded,
                    outcome.rows_rejected,
                    f" ({outcome.reason})" if outcome.reason else "",
                )
        if summary["failed"]:
            details = "; ".join(f"{f['key']}: {f['reason']}" for f in summary["failed"])
            raise FileValidationError(
                f"{len(summary['failed'])} of {len(pending)} landed file(s) of {self.source} could not be "
                f"processed and stay pending for a retry: {details}"
            )
        return summary

    def _pass_deletions(self, store: ImmutableStore, ledger: Ledger, run_id: str) -> None:
        """Hand each pending tombstone object of a dataset to the load, as it landed.

        The tombstones are the reconciliation's own Parquet (key as text, ``_deleted_at``): nothing
        in them is a partner's value to validate. Same bytes, same processed key on a rerun.
        """
        from include.etlkit.control.ledger import DELETIONS, deletions_of

        tombstones = [
            o
            for o in ledger.pending_landed(self.source)
            if o.table_name.endswith(DELETIONS) and o.table_name.removesuffix(DELETIONS) in self.datasets
        ]
        for landed in tombstones:
            data = store.get_bytes(landed.bucket, landed.key)
            name, suffix = landed_name(landed.key)
            prefix = dataset_prefix(self.source, landed.table_name, landed.key)
            processed = store.create_bytes(self.processed_bucket, prefix, name, data, suffix)
            dataset = landed.table_name.removesuffix(DELETIONS)
            ledger.record_transform(
                source=self.source,
                run_id=run_id,
                taken=[landed],
                produced=[(deletions_of(dataset), processed, landed.rows)],
            )
            self.log.info(
                "%s: %d row(s) deleted in the source, handed to the load as %s",
                dataset,
                landed.rows,
                processed.uri,
            )

    # -- one file ---------------------------------------------------------------------------------

    def _process(
        self,
        store: ImmutableStore,
        source_files: SourceFileLedger,
        landed: LedgerObject,
        local: Path,
        run_id: str,
    ) -> FileOutcome:
        dataset = landed.table_name
        schema = self.datasets[dataset]
        store.download(landed.bucket, landed.key, local)
        prefix = dataset_prefix(self.source, dataset, landed.key)
        name, suffix = landed_name(landed.key)
        # Only a schema that takes values from the path needs it (and the query).
        remote_paths = source_files.remote_paths(landed.bucket, landed.key) if schema.path_values else []
        try:
            table = _source_columns(read_file(local, schema.read))
            result: ValidationResult | None = validate(table, schema, remote_paths)
        except FileReadError as exc:
            result, reason, missing = None, f"unreadable: {exc}", ()
        except Exception as exc:
            # Reading and validating touch nothing but the local copy, so whatever they raise is this
            # file's doing (a parser's own error, say): it is rejected, never left to block the others.
            self.log.exception("%s could not be read or validated", landed.key)
            result, reason, missing = None, f"unreadable: {type(exc).__name__}: {str(exc)[:500]}", ()
        else:
            reason, missing = result.rejected_reason, result.missing_columns
        if result is None or result.status == REJECTED:
            error = store.create_file(self.ingestion_bucket, f"{ERROR_PREFIX}/{prefix}", name, local, suffix)
            self._write_reason(store, error, landed, reason, missing, run_id, remote_paths)
            rows_read = result.rows_read if result else 0
            return FileOutcome(landed, dataset, REJECTED, rows_read, 0, rows_read, reason, error=error)

        processed = quarantine = None
        if result.rows_valid:
            processed = self._create_parquet(store, self.processed_bucket, prefix, name, result.valid)
        if result.rows_quarantined:
            rows = result.quarantined.append_column(
                LANDED_KEY, pa.array([landed.key] * result.rows_quarantined, pa.string())
            )
            quarantine = self._create_parquet(
                store, self.ingestion_bucket, f"{QUARANTINE_PREFIX}/{prefix}", name, rows
            )
        return FileOutcome(
            landed,
            dataset,
            result.status,
            result.rows_read,
            result.rows_valid,
            result.rows_rejected,
            _quarantine_reason(result),
            processed=processed,
            quarantine=quarantine,
        )

    def _trace(self, outcome: FileOutcome) -> None:
        """The file's datasets and rows for the task's OpenLineage events."""
        landed, lineage = outcome.landed, self.lineage
        lineage.read_object(landed.bucket, landed.key, rows=outcome.rows_read)
        if outcome.processed:
            lineage.wrote_object(outcome.processed, rows=outcome.rows_loaded)
        for prefix, stored in ((QUARANTINE_PREFIX, outcome.quarantine), (ERROR_PREFIX, outcome.error)):
            if stored is not None:
                where = s3_dataset(stored.bucket, f"{prefix}/{self.source}/{outcome.dataset}")
                lineage.wrote(where, rows=outcome.rows_rejected, files=1, size=stored.size)

    @staticmethod
    def _create_parquet(
        store: ImmutableStore, bucket: str, prefix: str, name: str, table: pa.Table
    ) -> StoredObject:
        # Same rows, same bytes (pyarrow writes no timestamps), hence the same key on a rerun.
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return store.create_bytes(bucket, prefix, name, buffer.getvalue(), ".parquet")

    def _write_reason(
        self,
        store: ImmutableStore,
        error: StoredObject,
        landed: LedgerObject,
        reason: str | None,
        missing: tuple[str, ...],
        run_id: str,
        remote_paths: list[str],
    ) -> None:
        from include.etlkit.storage import ImmutableObjectConflict

        document = {
            "reason": reason,
            "source": self.source,
            "dataset": landed.table_name,
            "landed_bucket": landed.bucket,
            "landed_key": landed.key,
            "error_key": error.key,
            "missing_columns": list(missing),
            "run_id": run_id,
        }
        if remote_paths:
            document["remote_paths"] = remote_paths
        data = json.dumps(document, indent=2, sort_keys=True).encode()
        try:
            store.put_bytes(error.bucket, error.key + REASON_SUFFIX, data)
        except ImmutableObjectConflict:
            # Written by an earlier try of this same file (only the run id differs): it stands.
            self.log.info(
                "s3://%s/%s%s already written by an earlier try", error.bucket, error.key, REASON_SUFFIX
            )

    def _record(self, statuses: FileStatusStore, ledger: Ledger, outcome: FileOutcome, run_id: str) -> None:
        """The status row first, then the ledger: a crash between the two is redone by the rerun."""
        statuses.record(
            bucket=outcome.landed.bucket,
            key=outcome.landed.key,
            source=self.source,
            dataset=outcome.dataset,
            status=outcome.status,
            rows_read=outcome.rows_read,
            rows_loaded=outcome.rows_loaded,
            rows_rejected=outcome.rows_rejected,
            run_id=run_id,
            reason=outcome.reason,
            processed_bucket=outcome.processed.bucket if outcome.processed else None,
            processed_key=outcome.processed.key if outcome.processed else None,
            quarantine_key=outcome.quarantine.key if outcome.quarantine else None,
            error_key=outcome.error.key if outcome.error else None,
        )
        produced = [(outcome.dataset, outcome.processed, outcome.rows_loaded)] if outcome.processed else []
        ledger.record_transform(source=self.source, run_id=run_id, taken=[outcome.landed], produced=produced)

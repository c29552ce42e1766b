"""The one landing path of every extract kind: store once, record in the ledger, report rows.

A table extract (PostgreSQL, MySQL, the reconciliation), an API listing and a dropped file (FTP, S3)
differ only in how they produce a local file. What happens to that file is the same for all, and
happens here:

1. it is created once in the ingestion bucket under ``<source>/<name>/YYYY/MM/DD/`` (the run
   window's upper bound), with a content-addressed key (:class:`ImmutableStore`): a retry that
   produces the same bytes finds the same key and overwrites nothing;
2. it is recorded in ``etl.landed_object`` with the window it covers, together (one transaction)
   with the row versions it carries (for a table extract, one row naming the object: the table's
   baseline, or an object waiting to be folded into ``etl.row_version``), the table's advanced
   ``extract_state`` and, for a dropped file, the remote version's ``etl.source_file`` row, so a
   crash never leaves a landed file whose sender is unknown, nor a state moved past rows that were
   not recorded;
3. the try's rows in/out/rejected are reported for its ``etl.task_log`` row.

The object is created before it is recorded: a crash between the two leaves an object that no
ledger row names, and the retry lands the same bytes under the same key and records them then.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.ledger import (
    DELETED_AT,
    FOLD_AFTER_WAITING,
    Ledger,
    VersionColumns,
    deletions_of,
)
from include.etlkit.control.source_files import LANDED, FileVersion, SourceFileRecord
from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import RunLineage
from include.etlkit.storage import ImmutableStore, StoredObject
from include.etlkit.windows import ExtractWindow

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")


class Landing:
    """Where one extract run lands the files of one feed (a table, an API listing, a file drop).

    :param source: the first part of every landed key, and the ledger's ``source``.
    :param name: the feed (table) name: the second part of the key, the ledger's ``table_name``.
    :param bucket: the ingestion bucket.
    :param window: the run's window; its ``upper`` dates the keys and is the state it advances to.
    :param run_id: the Airflow run the ledger records.
    :param log: the operator's logger, so every line appears in the task's log.
    :param lineage: the operator's :class:`~include.etlkit.lineage.RunLineage`: each landed object is
        an output of the task (its table's dataset in the bucket, with rows, files and bytes).
    :param objects: the store to land through (one the caller already made, and may have
        prepared, :meth:`~include.etlkit.storage.ImmutableStore.prepare`); else one for ``aws_conn_id``.
    """

    def __init__(
        self,
        *,
        source: str,
        name: str,
        bucket: str,
        window: ExtractWindow,
        run_id: str,
        log: logging.Logger | Any,
        aws_conn_id: str = "aws_default",
        ledger: Ledger | None = None,
        lineage: RunLineage | None = None,
        objects: ImmutableStore | None = None,
    ) -> None:
        self.source = source
        self.name = name
        self.bucket = bucket
        self.window = window
        self.run_id = run_id
        self.log = log
        self.objects = objects or ImmutableStore(aws_conn_id)
        self.ledger = ledger or Ledger()
        self.lineage = lineage

    @property
    def prefix(self) -> str:
        base = f"{self.source}/{self.name}/{self.window.upper:%Y/%m/%d}"
        # A re-landing a person asked for is new objects, never the earlier ones found again.
        return f"{base}/refresh={self.window.refresh}" if self.window.refresh else base

    def land(
        self,
        local: Path | None,
        *,
        rows: int,
        mode: str,
        advance_state: bool,
        suffix: str = "",
        file_name: str | None = None,
        sha256: str | None = None,
        row_versions: Iterable[pa.RecordBatch] | None = None,
        version_columns: VersionColumns | None = None,
        remote: FileVersion | None = None,
        version_id: str | None = None,
        detail: str = "",
        forget_versions: tuple[str, Sequence[str]] | None = None,
    ) -> StoredObject | None:
        """Store ``local`` once (None: nothing to store) and record it, in one transaction.

        :param rows: the rows the file holds (recorded in the ledger).
        :param mode: the ledger's ``mode``: ``full``, ``incremental``, ``reconcile`` or ``file``.
        :param advance_state: move the feed's ``extract_state`` to the window's upper bound (not
            for the reconciliation, whose window is not a range of the cursor, nor for file drops).
        :param suffix: the key's extension (``.parquet``, ``.ndjson``, the dropped file's own).
        :param file_name: the key's file name before its digest; the feed's name by default.
        :param sha256: the file's digest when the caller computed it while writing.
        :param row_versions: batches of ``row_key``, ``row_hash``, ``last_updated`` for
            ``etl.row_version`` (table extracts).
        :param version_columns: the columns of ``local`` holding each row's key, identity and cursor:
            a table's first landing is then the baseline of its row versions, not copied row by row.
        :param remote: the dropped file's remote version, recorded ``landed`` in ``etl.source_file``.
        :param version_id: the remote object's version id, where the source has versions (S3).
        :param detail: more to say in the log line (pages fetched, bytes downloaded).
        :param forget_versions: ``(table, keys)`` of rows deleted in the source (tombstones).
        """
        stored = None
        if local is not None:
            stored = self.objects.create_file(
                self.bucket, self.prefix, file_name or self.name, local, suffix, sha256=sha256
            )
            self.log.info(
                "%s %s (%d rows%s)",
                "landed" if stored.created else "already landed",
                stored.uri,
                rows,
                f", {detail}" if detail else "",
            )
        if stored is not None and (
            forget_versions is not None or (row_versions is not None and not version_columns)
        ):
            # Versions written straight into etl.row_version (tombstones, versions given row by row)
            # come after every object already waiting to be folded there, as they were landed after.
            self.ledger.fold_versions(
                self.source,
                forget_versions[0] if forget_versions is not None else self.name,
                objects=self.objects,
            )
        source_file = None
        if remote is not None:
            if stored is None:
                raise ValueError(f"{remote.path}: a dropped file is recorded landed only with its object")
            source_file = SourceFileRecord(
                self.source, remote, LANDED, self.run_id, stored=stored, version_id=version_id
            )
        waiting = self.ledger.record_landing(
            source=self.source,
            table_name=self.name,
            window=self.window,
            run_id=self.run_id,
            stored=stored,
            rows=rows,
            mode=mode,
            row_versions=row_versions if stored is not None else None,  # nothing landed, no versions
            version_columns=version_columns,
            advance_state=advance_state,
            source_file=source_file,
            forget_versions=forget_versions,
        )
        if waiting > FOLD_AFTER_WAITING:
            self._fold(waiting)
        if stored is not None and self.lineage is not None:
            self.lineage.wrote_object(stored, rows=rows)
        return stored

    def _fold(self, waiting: int) -> None:
        """Fold the table's waiting objects into ``etl.row_version``: a table no reconciliation reads
        (which folds them first) would otherwise gather one waiting row per landed object.

        The landing is recorded already: a fold that fails leaves the objects waiting (a later
        landing, or the reconciliation, folds them) and is logged, not raised.
        """
        try:
            folded = self.ledger.fold_versions(self.source, self.name, objects=self.objects)
        except Exception:
            self.log.warning(
                "%s.%s: %d landed objects wait for their row versions; folding them failed, "
                "a later landing or the reconciliation will",
                self.source,
                self.name,
                waiting,
                exc_info=True,
            )
        else:
            self.log.info(
                "%s.%s: folded the row versions of %d landed objects", self.source, self.name, folded
            )

    @staticmethod
    def report(context: Any, *, rows_in: int, rows_out: int, rows_rejected: int | None = None) -> None:
        """The try's counts for its ``etl.task_log`` row (a table: rows; a file drop: files)."""
        report_rows(context, rows_in=rows_in, rows_out=rows_out, rows_rejected=rows_rejected)


def land_deletions(
    *,
    source: str,
    table: str,
    key: str,
    keys: Sequence[str],
    bucket: str,
    window: ExtractWindow,
    run_id: str,
    log: logging.Logger | Any,
    aws_conn_id: str = "aws_default",
    lineage: RunLineage | None = None,
) -> StoredObject | None:
    """Land the tombstones of rows of ``table`` deleted in the source: their ``key`` values (text)
    and the moment the deletion was seen (``_deleted_at``, the window's upper bound), as
    ``<table>.deleted`` (mode ``delete``), with the rows' versions marked deleted in the same
    transaction, so each deletion lands once. Every reconciliation (PostgreSQL, MySQL) lands them
    this way; the transforms and the load turn them into ``deleted_at`` in the warehouse."""
    tombstones = pa.table(
        {
            key: pa.array(list(keys), pa.string()),
            DELETED_AT: pa.array([window.upper] * len(keys), pa.timestamp("us")),
        }
    )
    landing = Landing(
        source=source,
        name=deletions_of(table),
        bucket=bucket,
        window=window,
        run_id=run_id,
        log=log,
        aws_conn_id=aws_conn_id,
        lineage=lineage,
    )
    with tempfile.TemporaryDirectory(prefix=f"deleted-{table}-") as tmp:
        local = Path(tmp) / "deleted.parquet"
        pq.write_table(tombstones, local, compression="zstd")
        return landing.land(
            local,
            rows=len(keys),
            mode="delete",
            advance_state=False,
            suffix=".parquet",
            file_name=f"{table}-deleted",
            forget_versions=(table, list(keys)),
        )

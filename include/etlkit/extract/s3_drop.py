"""Land the files partners drop under an S3 prefix in the ingestion bucket, each version exactly once.

Partners write CSV, Excel (``.xlsx``), JSON / NDJSON and delimited text files under a landing prefix,
by default in the ingestion bucket itself (``drops/<partner>/...``), possibly in a bucket of their own.
The drop is read, never changed: no dropped object is modified or deleted, and every landed copy is
created once under a content-addressed key (:mod:`include.etlkit.storage`).

A version of a dropped object is (``s3://bucket/key``, size, LastModified, ETag), recorded in
``etl.source_file`` like an FTP file (:mod:`include.etlkit.extract.files`, whose UNIQUE constraint
makes "landed once" hold under races). The ETag is in the identity because LastModified has one-second
resolution; LastModified is in it so that every upload is a delivery of its own, as on FTP: the same
bytes uploaded again are recorded again and land under the key they already have (nothing new is
created). When the drop bucket is versioned, the VersionId that was downloaded is recorded as lineage.

S3 shows an object only once its upload has completed, so there are no half-written objects to
read; what partners do leave are markers and temporary names, hence ``ignore_patterns`` (``*.tmp``,
``*.part``, ``*.partial``, hidden ``.*`` and ``_*`` names such as ``_SUCCESS``) and zero-byte
"folder" keys ending in ``/``. ``settle_seconds`` still applies against LastModified, for partners
who upload a set of files over a few seconds and for copies still being made.

Each object streams to a local temporary file (never whole in memory) while its SHA-256 and line
count are computed. The download is conditional on the listed ETag (``If-Match``), so an object
replaced since the listing is refused rather than landed under the wrong identity, and its size is
checked. An object gone or replaced between listing and download fails only itself; the task fails
at the end, after every other file has landed, naming it.

**A bounded listing** (opt-in per feed, ``listing:`` in the pipeline YAML): without it every run lists
the whole drop prefix and asks the ledger about every object in it, which grows with every file
ever delivered. With ``listing_margin_hours`` the feed keeps a LastModified high-water mark
(``etl.extract_state``, :meth:`~include.etlkit.control.ledger.Ledger.advance_listing_mark`) and looks at
objects modified at or after ``mark - margin``. S3 cannot filter a listing by time, so on a flat
layout the LIST calls still page through the prefix; what is bounded is what follows (the ledger
lookups, the sensor's trigger state). With ``date_folders`` (the strftime format of date folders right
under the prefix, e.g. ``%Y/%m/%d``) the listing itself starts at the floor's folder (``StartAfter``),
so older folders are not listed at all.

The mark never skips a file the listing saw: it moves forward only, and never past the oldest
version that is listed but not landed (still settling, failed), so that version stays in every later
listing until it lands. LastModified is not arrival order (a multipart upload keeps the time it
started; objects written within the same second come in any order), hence the margin: a version
whose LastModified is older than the mark by more than the margin when it appears is not listed
(nor by a run an S3 event woke: that run lists the same way), so keep the margin above the longest
upload a partner makes (24 hours by default). Exactly-once never depends on the mark: the ledger
(``etl.source_file``) decides it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any

from airflow.sdk import BaseOperator

from include.etlkit.extract.files import (
    BLOCK_SIZE,
    DigestingWriter,
    Download,
    FileDropRun,
    RemoteFile,
    unsettled,
)
from include.etlkit.lineage import DatasetRef, ReportsLineage, s3_dataset
from include.etlkit.windows import ExtractWindow, run_interval, source_clock

DEFAULT_PATTERNS = ("*.csv", "*.xlsx", "*.json", "*.ndjson", "*.jsonl", "*.txt")
# Temporary names and markers partners' tools leave beside the real files (Hadoop's _SUCCESS and
# _temporary, editors' dotfiles, resumable uploaders' .part / .partial / .tmp).
DEFAULT_IGNORE_PATTERNS = ("*.tmp", "*.part", "*.partial", ".*", "_*")
DEFAULT_SETTLE_SECONDS = 60.0


class S3DropError(RuntimeError):
    """The S3 drop could not be listed, or some of its objects could not be landed (see the message)."""


@dataclass(frozen=True)
class DropObject(RemoteFile):
    """One version of a dropped object; ``path`` is ``s3://bucket/key``."""

    @property
    def bucket(self) -> str:
        return self.path.removeprefix("s3://").split("/", 1)[0]

    @property
    def key(self) -> str:
        return self.path.removeprefix("s3://").split("/", 1)[1]

    @property
    def fingerprint(self) -> str:
        """A short digest of the version, for handing many versions to a trigger compactly."""
        raw = "\x1f".join(str(part) for part in self.version)
        return hashlib.sha256(raw.encode()).hexdigest()[:20]


def normalise_prefix(prefix: str) -> str:
    """``drops/acme`` -> ``drops/acme/``, so a drop never takes ``drops/acme-other/``'s files."""
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else f"{prefix}/"


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether a file name matches any ``fnmatch`` pattern, ignoring case (``.CSV`` is a CSV)."""
    name = name.lower()
    return any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in patterns)


def drop_object(
    bucket: str, item: Mapping[str, Any], patterns: Sequence[str], ignore_patterns: Sequence[str]
) -> DropObject | None:
    """The version a ``ListObjectsV2`` entry stands for, or None when it is not a file to land."""
    key = item["Key"]
    name = posixpath.basename(key)
    if key.endswith("/") or not name:  # a "folder" marker the console or a sync tool made
        return None
    if matches(name, ignore_patterns) or not matches(name, patterns):
        return None
    return DropObject(
        path=f"s3://{bucket}/{key}",
        size=int(item["Size"]),
        modified_at=source_clock(item["LastModified"]),
        etag=str(item["ETag"]).strip('"'),
    )


@dataclass(frozen=True)
class ListingBound:
    """Where a bounded listing starts: objects modified at or after ``since`` (naive UTC), and, for a
    drop laid out in date folders (``date_folders``, a strftime format), the first key to list."""

    since: datetime | None = None
    date_folders: str | None = None

    def start_after(self, prefix: str) -> str | None:
        """``StartAfter`` for ``ListObjectsV2``: every key of the floor's date folder sorts after it."""
        if self.since is None or not self.date_folders:
            return None
        return f"{prefix}{self.since.strftime(self.date_folders)}"

    def admits(self, remote: DropObject) -> bool:
        return self.since is None or remote.modified_at >= self.since


def listing_bound(
    mark: datetime | None, margin_hours: float | None, date_folders: str | None = None
) -> ListingBound:
    """The bound of a feed's next listing: ``margin_hours`` behind its high-water ``mark``.

    No mark yet (a feed's first run, or a feed without ``listing``): the whole prefix.
    """
    if mark is None or margin_hours is None:
        return ListingBound()
    return ListingBound(since=mark - timedelta(hours=margin_hours), date_folders=date_folders)


def next_listing_mark(seen: Sequence[DropObject], not_landed: Sequence[DropObject]) -> datetime | None:
    """Where the high-water mark may move after a run that listed ``seen``.

    At most to the oldest version left unlanded (settling, failed), so it stays inside the next
    listings until it lands; else to the newest version seen. None: nothing listed, nothing to move.
    The ledger keeps the greater of this and the mark it had (the mark only moves forward).
    """
    if not_landed:
        return min(remote.modified_at for remote in not_landed)
    if seen:
        return max(remote.modified_at for remote in seen)
    return None


def list_drop(
    client: Any,
    bucket: str,
    prefix: str,
    patterns: Sequence[str],
    ignore_patterns: Sequence[str],
    bound: ListingBound | None = None,
) -> list[DropObject]:
    """The files under ``prefix`` (recursively) to land, oldest first; within ``bound`` when given."""
    bound = bound or ListingBound()
    arguments = {"Bucket": bucket, "Prefix": prefix}
    start_after = bound.start_after(prefix)
    if start_after:
        arguments["StartAfter"] = start_after
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(**arguments):
        for item in page.get("Contents", []):
            remote = drop_object(bucket, item, patterns, ignore_patterns)
            if remote is not None and bound.admits(remote):
                found.append(remote)
    return sorted(found, key=lambda f: (f.modified_at, f.path))


def client_error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(code or type(exc).__name__)


class S3DropExtractOperator(ReportsLineage, BaseOperator):
    """Land every settled object of an S3 drop prefix matching ``patterns`` that is not landed yet.

    :param source: the source name: the first part of every landed key and of the ledger's records.
    :param name: the feed name: the second part of the key, the ledger's ``table_name``.
    :param drop_prefix: the prefix partners write to, e.g. ``drops/acme/`` (templated; read
        recursively: ``drops/acme/2024-11-15/sales.csv`` is in it).
    :param drop_bucket: the bucket of the drop (templated); default the ingestion ``bucket``.
    :param patterns: ``fnmatch`` patterns for the file names to take (case-insensitive).
    :param ignore_patterns: names never taken, even when they match ``patterns``.
    :param bucket: the ingestion bucket (templated; e.g. ``{{ var.value.ingestion_bucket }}``).
    :param aws_conn_id: the Airflow connection of S3 (the local moto endpoint comes from its extras).
    :param settle_seconds: an object modified less than this long ago (LastModified against UTC now)
        is left for a later run.
    :param listing_margin_hours: bound the listing by the feed's LastModified high-water mark, this
        many hours behind it (see the module docstring); None lists the whole prefix every run.
    :param date_folders: with ``listing_margin_hours``, the strftime format of the date folders right
        under ``drop_prefix`` (e.g. ``%Y/%m/%d``): the listing starts at the floor's folder.
    """

    template_fields: Sequence[str] = ("bucket", "drop_bucket", "drop_prefix")
    ui_color = "#e8f0d8"

    def __init__(
        self,
        *,
        source: str,
        name: str,
        drop_prefix: str,
        bucket: str,
        drop_bucket: str | None = None,
        patterns: Sequence[str] = DEFAULT_PATTERNS,
        ignore_patterns: Sequence[str] = DEFAULT_IGNORE_PATTERNS,
        aws_conn_id: str = "aws_default",
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        listing_margin_hours: float | None = None,
        date_folders: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if date_folders and listing_margin_hours is None:
            raise ValueError("date_folders needs listing_margin_hours (the mark bounds the listing)")
        if settle_seconds < 0:
            raise ValueError("settle_seconds cannot be negative")
        if not patterns:
            raise ValueError("patterns cannot be empty: say which files to take")
        self.source = source
        self.name = name
        self.drop_prefix = drop_prefix
        self.bucket = bucket
        self.drop_bucket = drop_bucket
        self.patterns = tuple(patterns)
        self.ignore_patterns = tuple(ignore_patterns)
        self.aws_conn_id = aws_conn_id
        self.settle_seconds = settle_seconds
        self.listing_margin_hours = listing_margin_hours
        self.date_folders = date_folders

    # -- the run ----------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        drop_bucket = self.drop_bucket or self.bucket
        prefix = normalise_prefix(self.drop_prefix)
        self._check_layout(drop_bucket, prefix)
        where = f"s3://{drop_bucket}/{prefix}"
        run = FileDropRun(
            source=self.source,
            name=self.name,
            bucket=self.bucket,
            aws_conn_id=self.aws_conn_id,
            run_id=context["run_id"],
            window=ExtractWindow(None, source_clock(run_interval(context)[1])),
            log=self.log,
            lineage=self.lineage,
            origin=s3_dataset(drop_bucket, prefix),
        )
        client = self.get_client()
        bounded = self.listing_margin_hours is not None
        mark = run.landing.ledger.landed_until(self.source, self.name) if bounded else None
        bound = listing_bound(mark, self.listing_margin_hours, self.date_folders)
        seen = self._list(client, drop_bucket, prefix, bound)
        self.log.info(
            "%d object(s) under %s match %s%s",
            len(seen),
            where,
            list(self.patterns),
            f" (modified since {bound.since:%Y-%m-%d %H:%M:%S} UTC)" if bound.since else "",
        )
        done = run.landed_versions(seen)
        to_land, not_landed = [], []
        for remote in seen:
            if remote.version in done:
                run.already_landed(remote)
            elif reason := unsettled(remote, self.settle_seconds):
                run.skip(remote, reason)
                not_landed.append(remote)
            else:
                to_land.append(remote)

        with tempfile.TemporaryDirectory(prefix=f"s3drop-{self.name}-") as tmp:
            for index, remote in enumerate(to_land):
                local = Path(tmp) / f"{index:06d}{PurePosixPath(remote.name).suffix}"
                try:
                    download, version_id = self._download(client, remote, local)
                except S3DropError as exc:
                    run.fail(remote, str(exc))
                    not_landed.append(remote)
                    continue
                try:
                    if run.land_or_fail(remote, download, version_id=version_id) is None:
                        not_landed.append(remote)
                finally:
                    local.unlink(missing_ok=True)
        moved = next_listing_mark(seen, not_landed)
        if bounded and moved is not None:
            run.landing.ledger.advance_listing_mark(self.source, self.name, moved, context["run_id"])
        return run.finish(context, len(seen), where, S3DropError)

    def lineage_inputs(self) -> list[DatasetRef]:
        return [s3_dataset(self.drop_bucket or self.bucket, normalise_prefix(self.drop_prefix))]

    def get_client(self) -> Any:
        from include.etlkit.storage import s3_client

        return s3_client(self.aws_conn_id)

    def _check_layout(self, drop_bucket: str, prefix: str) -> None:
        """Refuse a drop that would contain the landed copies: they would be landed again, forever."""
        landing = f"{self.source}/{self.name}/"
        if drop_bucket == self.bucket and (landing.startswith(prefix) or prefix.startswith(landing)):
            raise ValueError(
                f"the drop s3://{drop_bucket}/{prefix} overlaps the landing prefix s3://{self.bucket}/"
                f"{landing}: give the drop a prefix of its own (e.g. drops/<partner>/)"
            )

    # -- listing ----------------------------------------------------------------------------------

    def _list(self, client: Any, bucket: str, prefix: str, bound: ListingBound) -> list[DropObject]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return list_drop(client, bucket, prefix, self.patterns, self.ignore_patterns, bound)
        except (ClientError, BotoCoreError) as exc:
            raise S3DropError(
                f"cannot list s3://{bucket}/{prefix} (connection {self.aws_conn_id!r}): {exc}"
            ) from exc

    # -- landing ----------------------------------------------------------------------------------

    def _download(self, client: Any, remote: DropObject, local: Path) -> tuple[Download, str | None]:
        """Stream the listed version to ``local``; returns it with its VersionId (versioned buckets)."""
        from botocore.exceptions import BotoCoreError, ClientError

        with local.open("wb") as out:
            writer = DigestingWriter(out)
            try:
                # If-Match: the bytes are those of the listed version, or S3 answers 412.
                response = client.get_object(Bucket=remote.bucket, Key=remote.key, IfMatch=f'"{remote.etag}"')
                for block in _chunks(response["Body"]):
                    writer.write(block)
            except ClientError as exc:
                code = client_error_code(exc)
                if code in ("PreconditionFailed", "412"):
                    reason = f"replaced since the listing (ETag {remote.etag} no longer current, {code})"
                elif code in ("NoSuchKey", "404"):
                    reason = f"gone since the listing ({code})"
                else:
                    reason = f"download failed after {writer.size} of {remote.size} bytes: {exc}"
                raise S3DropError(reason) from exc
            except (BotoCoreError, OSError) as exc:
                raise S3DropError(
                    f"download failed after {writer.size} of {remote.size} bytes: {exc}"
                ) from exc
        if writer.size != remote.size:
            raise S3DropError(
                f"downloaded {writer.size} bytes but the listing said {remote.size}: the object changed "
                "during the download"
            )
        return writer.download(local), response.get("VersionId")


def _chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(BLOCK_SIZE)
    finally:
        body.close()

"""Tasks from a declared pipeline: one extract per feed, the validation step and the load.

The DAG files call these and stay thin: adding a feed to ``include/config/<source>.yaml`` adds its
tasks everywhere without touching a DAG file. Each builder maps a feed's kind to the framework's
operator for that kind; there is exactly one operator per kind of source.

Each builder imports its operator's module when it builds the task, so a DAG file parses only the
operators it uses (issue 11: DAG parse time).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from include.etlkit.pipelines.config import (
    DEFAULT_LISTING_MARGIN_HOURS,
    KIND_OPTIONS,
    Feed,
    PipelineConfig,
)

if TYPE_CHECKING:
    from include.etlkit.extract.base import TableSpec
    from include.etlkit.files.schema import FileSchema

INGESTION_BUCKET = "{{ var.value.ingestion_bucket }}"
PROCESSED_BUCKET = "{{ var.value.processed_bucket }}"


def _table_options(feed: Feed) -> dict[str, Any]:
    """What a table feed (postgres, mysql) says about late commits."""
    if feed.option("overlap_minutes") is None:
        return {}
    return {"overlap": timedelta(minutes=feed.option("overlap_minutes"))}


def _postgres_table(feed: Feed) -> TableSpec:
    from include.etlkit.extract.base import TableSpec

    return TableSpec(
        feed.name,
        feed.option("key"),
        cursor=feed.option("cursor", "last_updated"),
        schema=feed.option("schema_name", "public"),
    )


def _postgres(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.postgres import PostgresTableExtractOperator

    return PostgresTableExtractOperator(
        table=_postgres_table(feed),
        source=config.source,
        conn_id=feed.option("conn_id"),
        bucket=INGESTION_BUCKET,
        **_table_options(feed),
        **kwargs,
    )


def _mysql_table(feed: Feed) -> TableSpec:
    from include.etlkit.extract.base import TableSpec

    return TableSpec(feed.name, feed.option("key"), cursor=feed.option("cursor", "updated_at"))


def _mysql_options(feed: Feed) -> dict[str, Any]:
    return {"chunk_size": feed.option("chunk_size")} if feed.option("chunk_size") else {}


def _mysql(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.mysql import MySqlTableExtractOperator

    return MySqlTableExtractOperator(
        table=_mysql_table(feed),
        source=config.source,
        conn_id=feed.option("conn_id"),
        bucket=INGESTION_BUCKET,
        **_mysql_options(feed),
        **_table_options(feed),
        **kwargs,
    )


def _pagination(options: dict[str, Any] | None) -> Any:
    from include.etlkit.extract.http import NextLinkPagination, OffsetPagination, PageNumberPagination

    options = dict(options or {"style": "page"})
    style = options.pop("style", "page")
    if style == "page":
        return PageNumberPagination(size=options.pop("page_size", 100), **options)
    if style == "offset":
        return OffsetPagination(**options)
    if style == "next_link":
        return NextLinkPagination(**options)
    raise ValueError(f"unknown pagination style {style!r}: page, offset or next_link")


def _http(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.http import HttpApiExtractOperator

    extra = {k: feed.option(k) for k in ("timeout", "max_retries") if feed.option(k) is not None}
    return HttpApiExtractOperator(
        http_conn_id=feed.option("conn_id"),
        endpoint=feed.option("endpoint"),
        query_params=feed.option("query_params", {}),
        pagination=_pagination(feed.option("pagination")),
        records_path=tuple(feed.option("records_path", ("data",))),
        source=config.source,
        name=feed.name,
        bucket=INGESTION_BUCKET,
        **extra,
        **kwargs,
    )


def _file_drop(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    """FTP, FTPS and SFTP drops: one operator family, the kind picks the wire (and TLS for FTPS)."""
    from include.etlkit.extract.ftp import FtpFileExtractOperator
    from include.etlkit.extract.sftp import SftpFileExtractOperator

    extra = {k: feed.option(k) for k in sorted(KIND_OPTIONS[feed.kind][1]) if feed.option(k) is not None}
    if feed.kind == "ftps":
        extra["secure"] = True
    operator = SftpFileExtractOperator if feed.kind == "sftp" else FtpFileExtractOperator
    return operator(
        ftp_conn_id=feed.option("conn_id"),
        remote_dir=feed.option("remote_dir"),
        pattern=feed.option("pattern"),
        source=config.source,
        name=feed.name,
        bucket=INGESTION_BUCKET,
        **extra,
        **kwargs,
    )


def _drop_location(feed: Feed) -> dict[str, Any]:
    location: dict[str, Any] = {
        "drop_bucket": feed.option("drop_bucket", INGESTION_BUCKET),
        "drop_prefix": feed.option("drop_prefix"),
    }
    if feed.option("patterns"):
        location["patterns"] = tuple(feed.option("patterns"))
    # The sensor and the extract must agree on when a file is settled, or the sensor would wake a
    # run that lands nothing.
    if feed.option("settle_seconds") is not None:
        location["settle_seconds"] = feed.option("settle_seconds")
    # The same bounded listing for both, from the feed's LastModified high-water mark.
    listing = feed.option("listing")
    if listing is not None:
        location["listing_margin_hours"] = listing.get("margin_hours", DEFAULT_LISTING_MARGIN_HOURS)
        if listing.get("date_folders"):
            location["date_folders"] = listing["date_folders"]
    return location


def _s3_drop(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.s3_drop import S3DropExtractOperator

    return S3DropExtractOperator(
        source=config.source, name=feed.name, bucket=INGESTION_BUCKET, **_drop_location(feed), **kwargs
    )


EXTRACTS: dict[str, Callable[..., BaseOperator]] = {
    "postgres": _postgres,
    "mysql": _mysql,
    "http": _http,
    "ftp": _file_drop,
    "ftps": _file_drop,
    "sftp": _file_drop,
    "s3_drop": _s3_drop,
}


def extract(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    """The extract task of one feed: ``land_<feed>``."""
    return EXTRACTS[feed.kind](config, feed, task_id=f"land_{feed.name}", **kwargs)


def _postgres_reconcile(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.reconcile import PostgresReconcileOperator

    return PostgresReconcileOperator(
        table=_postgres_table(feed),
        source=config.source,
        conn_id=feed.option("conn_id"),
        bucket=INGESTION_BUCKET,
        **kwargs,
    )


def _mysql_reconcile(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    from include.etlkit.extract.mysql_reconcile import MySqlReconcileOperator

    return MySqlReconcileOperator(
        table=_mysql_table(feed),
        source=config.source,
        conn_id=feed.option("conn_id"),
        bucket=INGESTION_BUCKET,
        **_mysql_options(feed),
        **kwargs,
    )


RECONCILES: dict[str, Callable[..., BaseOperator]] = {
    "postgres": _postgres_reconcile,
    "mysql": _mysql_reconcile,
}


def reconcile(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    """The daily reconciliation task of one feed: ``reconcile_<feed>``."""
    if feed.kind not in RECONCILES:
        raise ValueError(f"feed {feed.name!r}: a {feed.kind} feed has no reconciliation")
    return RECONCILES[feed.kind](config, feed, task_id=f"reconcile_{feed.name}", **kwargs)


def wait_for_drop(config: PipelineConfig, feed: Feed, **kwargs: Any) -> BaseOperator:
    """A deferrable sensor that ends when the feed's drop location has a file not landed yet."""
    from include.etlkit.sensors.s3_drop import S3DropSensor

    return S3DropSensor(
        task_id=f"wait_for_{feed.name}",
        source=config.source,
        name=feed.name,
        **_drop_location(feed),
        deferrable=True,
        **kwargs,
    )


def schemas(config: PipelineConfig) -> dict[str, FileSchema]:
    """The file schemas of the pipeline's validated feeds (built with pyarrow: not at DAG parse time)."""
    from include.etlkit.files.schema import FileSchema

    return {feed.name: FileSchema.from_dict(dict(feed.schema)) for feed in config.validated_feeds}


def validate(config: PipelineConfig, **kwargs: Any) -> BaseOperator:
    """Validate every landed file of every feed against its schema (quarantine and errors apart)."""
    from include.etlkit.files.operators import ValidateLandedFilesOperator

    return ValidateLandedFilesOperator(
        task_id="validate_landed",
        source=config.source,
        datasets={feed.name: dict(feed.schema) for feed in config.validated_feeds},
        ingestion_bucket=INGESTION_BUCKET,
        processed_bucket=PROCESSED_BUCKET,
        **kwargs,
    )


def transform(config: PipelineConfig, **kwargs: Any) -> BaseOperator:
    """Build the warehouse tables of the pipeline's models from everything landed and not yet modelled."""
    from include.etlkit.transform.operators import TransformLandedOperator

    return TransformLandedOperator(
        task_id="transform_landed",
        source=config.source,
        models=config.models,
        targets=config.targets,
        bucket=PROCESSED_BUCKET,
        **kwargs,
    )


def load(config: PipelineConfig, conn_id: str | None = None, **kwargs: Any) -> BaseOperator:
    """Load every processed object not loaded yet into ``landing`` and ``core``, feed by feed.

    The warehouse is the one ``warehouse_conn_id`` names when the task runs, unless ``conn_id`` says.
    """
    from include.etlkit.load.operators import LoadProcessedOperator

    extra = {"conn_id": conn_id} if conn_id else {}
    return LoadProcessedOperator(
        task_id="load_processed", source=config.source, tables=config.table_loads, **extra, **kwargs
    )

"""Pipelines declared in YAML (``include/config/<name>.yaml``): sources, feeds, models and loads.

A feed is one thing a source delivers (a table, an API listing, a family of files). Its ``kind``
picks the extract operator. What becomes of its rows is declared one of two ways:

- a feed with a ``schema`` and a ``load`` is validated file by file against the schema and loaded as
  the warehouse table the load names (retail's feeds);
- a feed without them is an input of the pipeline's ``models``: each model builds one warehouse table
  from the feeds it names, and declares the table's key, merge and foreign keys (totesys' star schemas).

The file is read when a DAG file is parsed, so it is checked here, strictly and with messages that
name the feed: a typo should fail the DAG import with a clear error, not a task at 3 a.m.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from include.etlkit.load.warehouse import SOURCE_ROW, TableLoad
from include.etlkit.pipelines.models import Model, ModelConfigError, load_order, parse_models

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# What each kind of feed must and may say (besides name, kind, schema and load).
KIND_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "postgres": (
        frozenset({"conn_id", "key"}),
        frozenset({"cursor", "overlap_minutes", "reconcile", "schema_name"}),
    ),
    "mysql": (
        frozenset({"conn_id", "key"}),
        frozenset({"cursor", "chunk_size", "overlap_minutes", "reconcile"}),
    ),
    "http": (
        frozenset({"conn_id", "endpoint"}),
        frozenset({"pagination", "records_path", "query_params", "timeout", "max_retries"}),
    ),
    "ftp": (
        frozenset({"conn_id", "remote_dir", "pattern"}),
        frozenset({"settle_seconds", "stable_check_seconds", "server_timezone"}),
    ),
    "s3_drop": (
        frozenset({"drop_prefix"}),
        frozenset({"drop_bucket", "patterns", "settle_seconds", "listing", "events"}),
    ),
}
# FTPS: the FTP kind over explicit TLS (control and data encrypted, the server's certificate verified).
KIND_OPTIONS["ftps"] = KIND_OPTIONS["ftp"]
# SFTP: the same drop over SSH (times are UTC by the protocol: no server_timezone).
KIND_OPTIONS["sftp"] = (KIND_OPTIONS["ftp"][0], frozenset({"settle_seconds", "stable_check_seconds"}))
# An S3 drop's bounded listing: ``margin_hours`` behind the LastModified high-water mark, and
# ``date_folders``, the strftime format of the date folders right under the drop prefix (opt-in).
LISTING_OPTIONS = frozenset({"margin_hours", "date_folders"})
DEFAULT_LISTING_MARGIN_HOURS = 24
# An S3 drop woken by S3 event notifications sent to an SQS queue (``include/etlkit/pipelines/events.py``).
EVENT_OPTIONS = frozenset({"queue_url", "aws_conn_id", "wait_time_seconds", "waiter_delay"})
QUEUE_URL = re.compile(r"^https?://[^\s/]+/\S+$")
ENV_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
# What any feed may say: how stale it may get before the etl_freshness DAG alerts.
COMMON_OPTIONS = frozenset({"freshness_hours"})
LOAD_OPTIONS = frozenset({"table", "key", "merge", "version"})
WAREHOUSE_OPTIONS = frozenset({"ddl", "after_load", "marts"})
# Top-level keys every pipeline file may have; anything else is a setting of the pipeline's own.
TOP_LEVEL = frozenset(
    {
        "source",
        "start",
        "ingest_schedule",
        "drops_schedule",
        "reconcile_schedule",
        "feeds",
        "models",
        "targets",
        "warehouse",
        "checks",
    }
)
# Columns the validation step adds to every processed file: kept in ``landing`` for lineage only.
LINEAGE_COLUMNS = (SOURCE_ROW,)


class PipelineConfigError(ValueError):
    """The pipeline's YAML is not valid; the message names the file and the feed."""


@dataclass(frozen=True)
class Feed:
    """One thing a source delivers. ``schema`` and ``load`` are ``None`` for a model's input."""

    name: str
    kind: str
    options: Mapping[str, Any]
    schema: Mapping[str, Any] | None
    load: TableLoad | None

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass(frozen=True)
class WarehouseSteps:
    """The SQL the load runs in the warehouse, as paths under ``sql/<dialect>/``.

    ``ddl`` before the load, ``after_load`` as ``(task_id, script)`` steps after it (and after any step
    a DAG file adds), ``marts`` last, once the quality checks pass.
    """

    ddl: tuple[str, ...] = ()
    after_load: tuple[tuple[str, str], ...] = ()
    marts: str | None = None


@dataclass(frozen=True)
class PipelineConfig:
    source: str
    start: datetime
    ingest_schedule: str
    drops_schedule: str
    feeds: tuple[Feed, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)
    models: tuple[Model, ...] = ()  # each after the models it reads (the order they are built in)
    targets: str | None = None  # "module:attribute" of the models' Targets (types, seeds, checks)
    reconcile_schedule: str | None = None
    warehouse: WarehouseSteps = field(default_factory=WarehouseSteps)
    checks: Mapping[str, str] = field(default_factory=dict)  # name -> SQL that is true when right

    def feeds_of(self, *kinds: str) -> tuple[Feed, ...]:
        return tuple(feed for feed in self.feeds if feed.kind in kinds)

    def feed(self, name: str) -> Feed:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(f"{self.source} has no feed {name!r}")

    @property
    def table_loads(self) -> tuple[TableLoad, ...]:
        """Every feed's and model's load, in load order: feeds as declared (dimensions first), then
        the models, each after the tables its foreign keys name."""
        return tuple(feed.load for feed in self.feeds if feed.load) + tuple(
            m.load for m in load_order(self.models)
        )

    @property
    def validated_feeds(self) -> tuple[Feed, ...]:
        """The feeds whose landed files are validated against a schema and loaded as they are."""
        return tuple(feed for feed in self.feeds if feed.schema is not None)

    @property
    def reconciled_feeds(self) -> tuple[Feed, ...]:
        """The feeds the daily reconciliation compares with their source (``reconcile: true``)."""
        return tuple(feed for feed in self.feeds if feed.option("reconcile"))


def _feed(where: str, name: str, body: Mapping[str, Any], source: str) -> Feed:
    if not isinstance(body, Mapping):
        raise PipelineConfigError(f"{where}: feed {name!r} must be a mapping")
    kind = body.get("kind")
    if kind not in KIND_OPTIONS:
        raise PipelineConfigError(
            f"{where}: feed {name!r} has kind {kind!r}; expected one of {sorted(KIND_OPTIONS)}"
        )
    required, optional = KIND_OPTIONS[kind]
    options = {k: v for k, v in body.items() if k not in ("kind", "schema", "load")}
    missing = sorted(required - options.keys())
    unknown = sorted(options.keys() - required - optional - COMMON_OPTIONS)
    if missing or unknown:
        raise PipelineConfigError(
            f"{where}: feed {name!r} ({kind}): missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )
    freshness = options.get("freshness_hours")
    if freshness is not None and not (isinstance(freshness, int | float) and freshness > 0):
        raise PipelineConfigError(f"{where}: feed {name!r}: freshness_hours must be a number of hours > 0")
    if "overlap_minutes" in options and not (
        isinstance(options["overlap_minutes"], int) and options["overlap_minutes"] >= 0
    ):
        raise PipelineConfigError(f"{where}: feed {name!r}: overlap_minutes must be a whole number >= 0")
    _check_drop_options(where, name, options)
    if "schema" not in body and "load" not in body:
        return Feed(name=name, kind=kind, options=options, schema=None, load=None)  # a model's input
    schema = body.get("schema")
    if not isinstance(schema, Mapping) or not schema.get("columns"):
        raise PipelineConfigError(f"{where}: feed {name!r} needs a schema with columns")
    load = body.get("load")
    if not isinstance(load, Mapping) or not {"table", "key", "merge"} <= load.keys():
        raise PipelineConfigError(f"{where}: feed {name!r} needs load: {{table, key, merge}}")
    unknown_load = sorted(load.keys() - LOAD_OPTIONS)
    if unknown_load:
        raise PipelineConfigError(f"{where}: feed {name!r}: unknown load option(s) {unknown_load}")
    if load.get("version") and load["version"] not in {column["name"] for column in schema["columns"]}:
        raise PipelineConfigError(
            f"{where}: feed {name!r}: load version {load['version']!r} not in its schema"
        )
    declared = {column["name"] for column in schema["columns"]}
    if not set(load["key"]) <= declared:
        raise PipelineConfigError(f"{where}: feed {name!r}: load key {load['key']} not all in its schema")
    try:
        table_load = TableLoad(
            name=name,
            key=tuple(load["key"]),
            merge=load["merge"],
            table=load["table"],
            landing_only=LINEAGE_COLUMNS,
            version=load.get("version"),
        )
    except ValueError as exc:
        raise PipelineConfigError(f"{where}: feed {name!r}: {exc}") from exc
    # The load key is the file's key too: the validation quarantines a key repeated within a file
    # rather than letting the merge keep one of the rows silently.
    file_schema = {"name": name, "key": list(load["key"]), **schema}
    return Feed(name=name, kind=kind, options=options, schema=file_schema, load=table_load)


def _check_drop_options(where: str, name: str, options: Mapping[str, Any]) -> None:
    """``listing`` (the bounded polling listing) and ``events`` (S3 events through SQS) of an S3 drop.

    Both are read when the DAG file is parsed, so a typo fails the import naming the feed.
    """
    listing = options.get("listing")
    if listing is not None:
        if not isinstance(listing, Mapping) or listing.keys() - LISTING_OPTIONS:
            raise PipelineConfigError(
                f"{where}: feed {name!r}: listing may only say {sorted(LISTING_OPTIONS)}"
            )
        margin = listing.get("margin_hours", DEFAULT_LISTING_MARGIN_HOURS)
        if not (isinstance(margin, int | float) and not isinstance(margin, bool) and margin > 0):
            raise PipelineConfigError(f"{where}: feed {name!r}: listing.margin_hours must be a number > 0")
        folders = listing.get("date_folders")
        if folders is not None and not _sorts_by_date(folders):
            raise PipelineConfigError(
                f"{where}: feed {name!r}: listing.date_folders must be a strftime format that sorts "
                f"by date, year first (e.g. '%Y/%m/%d' or 'dt=%Y-%m-%d'), not {folders!r}"
            )
    events = options.get("events")
    if events is not None:
        if not isinstance(events, Mapping) or events.keys() - EVENT_OPTIONS or "queue_url" not in events:
            raise PipelineConfigError(
                f"{where}: feed {name!r}: events needs queue_url and may say {sorted(EVENT_OPTIONS)}"
            )
        queue = events["queue_url"]
        if not isinstance(queue, str) or not (QUEUE_URL.match(queue) or ENV_REFERENCE.fullmatch(queue)):
            raise PipelineConfigError(
                f"{where}: feed {name!r}: events.queue_url must be an SQS queue URL (http[s]://...) "
                "or ${ENVIRONMENT_VARIABLE} naming one"
            )
        for number in ("wait_time_seconds", "waiter_delay"):
            value = events.get(number, 0)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                raise PipelineConfigError(
                    f"{where}: feed {name!r}: events.{number} must be a whole number >= 0"
                )


def _sorts_by_date(fmt: Any) -> bool:
    """Whether ``fmt`` names folders whose text order is their date order (year, then month, then day)."""
    if not isinstance(fmt, str) or fmt.startswith("/"):
        return False
    positions = [fmt.find(code) for code in ("%Y", "%m", "%d")]
    return min(positions) >= 0 and positions == sorted(positions)


def _warehouse(where: str, body: Any) -> WarehouseSteps:
    body = body or {}
    if not isinstance(body, Mapping) or body.keys() - WAREHOUSE_OPTIONS:
        raise PipelineConfigError(f"{where}: warehouse may only say {sorted(WAREHOUSE_OPTIONS)}")
    after_load = []
    for step in body.get("after_load") or ():
        if not isinstance(step, Mapping) or set(step) != {"task_id", "script"}:
            raise PipelineConfigError(f"{where}: warehouse.after_load steps are {{task_id, script}}")
        after_load.append((step["task_id"], step["script"]))
    return WarehouseSteps(tuple(body.get("ddl") or ()), tuple(after_load), body.get("marts"))


# libyaml's safe loader where PyYAML was built with it (the wheels are): the same documents and types
# as yaml.SafeLoader, a tenth of its time, which counts because every DAG file parse reads its YAML.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_pipeline(text: str, where: str = "<string>") -> PipelineConfig:
    body = yaml.load(text, Loader=_YAML_LOADER)
    if not isinstance(body, Mapping):
        raise PipelineConfigError(f"{where}: expected a mapping at the top")
    missing = sorted({"source", "start", "ingest_schedule", "feeds"} - body.keys())
    if missing:
        raise PipelineConfigError(f"{where}: missing {missing}")
    start = body["start"]
    if not isinstance(start, date):
        raise PipelineConfigError(f"{where}: start must be a date (YYYY-MM-DD), got {start!r}")
    source = body["source"]
    feeds = tuple(_feed(where, name, feed, source) for name, feed in (body["feeds"] or {}).items())
    if not feeds:
        raise PipelineConfigError(f"{where}: no feeds")
    by_name = {feed.name: feed for feed in feeds}
    try:
        models = parse_models(body["models"], where, source) if body.get("models") else ()
    except ModelConfigError as exc:
        raise PipelineConfigError(str(exc)) from exc
    for model in models:
        strangers = sorted(set(model.source_tables) - by_name.keys())
        if strangers:
            raise PipelineConfigError(f"{where}: model {model.name!r} reads {strangers}, which are not feeds")
        loaded = sorted(t for t in model.source_tables if by_name[t].load is not None)
        if loaded:
            raise PipelineConfigError(
                f"{where}: model {model.name!r} reads {loaded}, feeds loaded as they are (they have a load)"
            )
    if models and not body.get("targets"):
        raise PipelineConfigError(f"{where}: models need targets: <module>:<attribute> (their exact types)")
    unused = sorted(
        feed.name
        for feed in feeds
        if feed.load is None and not any(feed.name in m.source_tables for m in models)
    )
    if unused:
        raise PipelineConfigError(
            f"{where}: feed(s) {unused} have neither schema + load nor a model that reads them"
        )
    if models and any(feed.schema is not None for feed in feeds):
        # Both would claim the same landed objects: validation and modelling are one step each.
        raise PipelineConfigError(f"{where}: a pipeline validates its feeds or models them, not both")
    tables = [feed.load.warehouse_table for feed in feeds if feed.load] + [m.name for m in models]
    if len(set(tables)) != len(tables):
        raise PipelineConfigError(f"{where}: two feeds load the same table: {tables}")
    checks = body.get("checks") or {}
    if not isinstance(checks, Mapping) or not all(isinstance(v, str) for v in checks.values()):
        raise PipelineConfigError(
            f"{where}: checks map a name to SQL that is true when the warehouse is right"
        )
    return PipelineConfig(
        source=source,
        start=datetime(start.year, start.month, start.day, tzinfo=UTC),
        ingest_schedule=body["ingest_schedule"],
        drops_schedule=body.get("drops_schedule", body["ingest_schedule"]),
        feeds=feeds,
        settings={k: v for k, v in body.items() if k not in TOP_LEVEL},
        models=models,
        targets=body.get("targets"),
        reconcile_schedule=body.get("reconcile_schedule"),
        warehouse=_warehouse(where, body.get("warehouse")),
        checks=dict(checks),
    )


@functools.cache
def load_pipeline(name: str, directory: Path = CONFIG_DIR) -> PipelineConfig:
    path = directory / f"{name}.yaml"
    return parse_pipeline(path.read_text(encoding="utf-8"), where=str(path))

"""Pipelines declared in YAML (``include/config/<name>.yaml``): sources, feeds, schemas and loads.

A feed is one thing a source delivers (a table, an API listing, a family of files). Its ``kind``
picks the extract operator, its ``schema`` is what each landed file is validated against, and its
``load`` names the warehouse table it becomes. The file is read when a DAG file is parsed, so it is
checked here, strictly and with messages that name the feed: a typo should fail the DAG import with
a clear error, not a task at 3 a.m.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from include.etlkit.files.schema import SOURCE_ROW
from include.etlkit.load.warehouse import TableLoad

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

# What each kind of feed must and may say (besides name, kind, schema and load).
KIND_OPTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "mysql": (frozenset({"conn_id", "key"}), frozenset({"cursor", "chunk_size"})),
    "http": (
        frozenset({"conn_id", "endpoint"}),
        frozenset({"pagination", "records_path", "query_params", "timeout", "max_retries"}),
    ),
    "ftp": (
        frozenset({"conn_id", "remote_dir", "pattern"}),
        frozenset({"settle_seconds", "stable_check_seconds"}),
    ),
    "s3_drop": (frozenset({"drop_prefix"}), frozenset({"drop_bucket", "patterns", "settle_seconds"})),
}
LOAD_OPTIONS = frozenset({"table", "key", "merge", "version"})
# Columns the validation step adds to every processed file: kept in ``landing`` for lineage only.
LINEAGE_COLUMNS = (SOURCE_ROW,)


class PipelineConfigError(ValueError):
    """The pipeline's YAML is not valid; the message names the file and the feed."""


@dataclass(frozen=True)
class Feed:
    name: str
    kind: str
    options: Mapping[str, Any]
    schema: Mapping[str, Any]
    load: TableLoad

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass(frozen=True)
class PipelineConfig:
    source: str
    start: datetime
    ingest_schedule: str
    drops_schedule: str
    feeds: tuple[Feed, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def feeds_of(self, *kinds: str) -> tuple[Feed, ...]:
        return tuple(feed for feed in self.feeds if feed.kind in kinds)

    def feed(self, name: str) -> Feed:
        for feed in self.feeds:
            if feed.name == name:
                return feed
        raise KeyError(f"{self.source} has no feed {name!r}")

    @property
    def table_loads(self) -> tuple[TableLoad, ...]:
        """Every feed's load, in the order the file declares them (dimensions first)."""
        return tuple(feed.load for feed in self.feeds)


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
    unknown = sorted(options.keys() - required - optional)
    if missing or unknown:
        raise PipelineConfigError(
            f"{where}: feed {name!r} ({kind}): missing {missing or 'nothing'}, unknown {unknown or 'nothing'}"
        )
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


def parse_pipeline(text: str, where: str = "<string>") -> PipelineConfig:
    body = yaml.safe_load(text)
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
    tables = [feed.load.warehouse_table for feed in feeds]
    if len(set(tables)) != len(tables):
        raise PipelineConfigError(f"{where}: two feeds load the same table: {tables}")
    known = {"source", "start", "ingest_schedule", "drops_schedule", "feeds"}
    return PipelineConfig(
        source=source,
        start=datetime(start.year, start.month, start.day, tzinfo=UTC),
        ingest_schedule=body["ingest_schedule"],
        drops_schedule=body.get("drops_schedule", body["ingest_schedule"]),
        feeds=feeds,
        settings={k: v for k, v in body.items() if k not in known},
    )


@functools.cache
def load_pipeline(name: str, directory: Path = CONFIG_DIR) -> PipelineConfig:
    path = directory / f"{name}.yaml"
    return parse_pipeline(path.read_text(encoding="utf-8"), where=str(path))

"""Models declared in a pipeline's YAML: each warehouse table, the SQL that builds it, and how it merges.

The ``models:`` mapping of ``include/config/<source>.yaml`` names one model per warehouse table::

    models:
      dim_location:
        inputs:
          address: {key: address_id, rows: latest}
        key: [location_id]
        merge: upsert
      dim_counterparty:
        inputs:
          counterparty: {key: counterparty_id, rows: current}
          address: {key: address_id, rows: current}
        references:
          - {from: counterparty.legal_address_id, to: address.address_id}
        key: [counterparty_id]
        merge: upsert
      fact_sales_order:
        inputs: {sales_order: all}
        key: [sales_order_id, row_hash]
        merge: versions
      dim_date:
        inputs: {fact_sales_order: model}
        key: [date_id]
        merge: upsert

The SQL of a model is ``sql/models/<source>/<model>.sql`` (or ``sql:``, relative to ``sql/``), run by
polars' SQL engine over one lazy frame per input, named after the input. What an input's frame holds
(``rows``) is the engine's business, not the SQL's, so every SQL file stays a plain column mapping:

- ``all``: every row version landed since the last run (facts keep each distinct version);
- ``latest``: of those, the latest version of each ``key`` by ``cursor`` (a later landing wins a tie);
- ``current``: the latest version of each ``key`` over the table's whole history, read from the
  table's current-state snapshot (joined dimensions: a new address reaches the counterparties that
  use it although no counterparty row moved), never by re-reading every object ever landed;
- ``model``: the output of another model of the same run (``dim_date`` from the facts).

``merge`` is what the load does with the table: ``upsert`` (one row per key, the latest wins) or
``versions`` (each distinct version once; the key then includes ``row_hash``, which the engine
computes). ``references`` are checked before the model runs: a child row whose parent is missing
fails the model with the values named, instead of loading NULLs or dropping the row.

Two options concern the warehouse table rather than the SQL: ``record_id`` names a column the
warehouse numbers on insert (a fact's serial id, checked unique after each load), and
``foreign_keys`` (``{column: table.key}``) are checked after each load, and order the loads so a
table is loaded after the tables its foreign keys name.

A column added to a source table after its models were written reaches the warehouse's ``landing``
table through ``additional_column``: every source input's frame has that column (JSON of the row's
values of the columns ``etl.schema_change`` recorded as added and the SQL does not name, NULL when
there are none), and a model whose SQL selects it (``SELECT ..., additional_column FROM address``)
carries it into its processed objects and ``landing``, never into ``core`` (landing-only).

Parsed strictly, at DAG-parse time: an error names the file and the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from include.etlkit.load.warehouse import ADDITIONAL_COLUMN, TableLoad
from include.etlkit.paths import SQL_DIR

ROW_MODES = frozenset({"all", "latest", "current", "model"})
MERGES = frozenset({"upsert", "versions"})
MODEL_OPTIONS = frozenset({"inputs", "key", "merge", "references", "sql", "record_id", "foreign_keys"})
INPUT_OPTIONS = frozenset({"key", "rows", "cursor"})
DEFAULT_CURSOR = "last_updated"
ROW_HASH = "row_hash"


class ModelConfigError(ValueError):
    """The ``models:`` section is not valid; the message says where."""


@dataclass(frozen=True)
class ModelInput:
    """One frame a model's SQL reads: a source table (or another model), and which of its rows."""

    name: str
    rows: str
    key: str | None = None
    cursor: str = DEFAULT_CURSOR


@dataclass(frozen=True)
class Reference:
    """``child.column`` must find its parent in ``parent.key`` (both inputs of the model)."""

    child: str
    column: str
    parent: str
    key: str


@dataclass(frozen=True)
class ForeignKey:
    """A column of the model's warehouse table that holds values of ``table.key`` (another table)."""

    column: str
    table: str
    key: str


@dataclass(frozen=True)
class Model:
    name: str
    sql_path: Path
    inputs: tuple[ModelInput, ...]
    key: tuple[str, ...]
    merge: str
    references: tuple[Reference, ...] = ()
    record_id: str | None = None
    foreign_keys: tuple[ForeignKey, ...] = ()

    @property
    def load(self) -> TableLoad:
        """How the load merges this model's table into the warehouse."""
        return TableLoad(
            name=self.name,
            key=self.key,
            merge=self.merge,
            record_id=self.record_id,
            landing_only=(ADDITIONAL_COLUMN,) if self.carries else (),
        )

    @property
    def sql(self) -> str:
        return self.sql_path.read_text()

    @cached_property
    def names(self) -> frozenset[str]:
        """Every word of the model's SQL outside comments: the columns it can use (and keywords)."""
        return frozenset(re.findall(r"\w+", re.sub(r"--[^\n]*", "", self.sql).lower()))

    @property
    def carries(self) -> bool:
        """Whether the SQL passes ``additional_column`` on (to the processed objects and ``landing``)."""
        return ADDITIONAL_COLUMN in self.names

    @property
    def source_tables(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.rows != "model")

    @property
    def upstream_models(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs if i.rows == "model")


def _fail(where: str, message: str) -> ModelConfigError:
    return ModelConfigError(f"{where}: {message}")


def _input(name: str, spec: Any, where: str) -> ModelInput:
    if isinstance(spec, str):
        spec = {"rows": spec}
    if not isinstance(spec, Mapping):
        raise _fail(where, f"input {name!r} must be a mode ({sorted(ROW_MODES)}) or a mapping")
    unknown = set(spec) - INPUT_OPTIONS
    if unknown:
        raise _fail(where, f"input {name!r}: unknown option(s) {sorted(unknown)}")
    rows = spec.get("rows", "all")
    if rows not in ROW_MODES:
        raise _fail(where, f"input {name!r}: rows must be one of {sorted(ROW_MODES)}, not {rows!r}")
    key = spec.get("key")
    if rows in ("latest", "current") and not key:
        raise _fail(where, f"input {name!r}: rows {rows!r} needs the table's key")
    return ModelInput(name, rows, key, spec.get("cursor", DEFAULT_CURSOR))


def _reference(spec: Any, inputs: Mapping[str, ModelInput], where: str) -> Reference:
    if not isinstance(spec, Mapping) or set(spec) != {"from", "to"}:
        raise _fail(where, "a reference is {from: <input>.<column>, to: <input>.<key>}")
    try:
        child, column = str(spec["from"]).split(".")
        parent, key = str(spec["to"]).split(".")
    except ValueError:
        raise _fail(where, f"reference {dict(spec)} must name <input>.<column> on both sides") from None
    for name in (child, parent):
        if name not in inputs:
            raise _fail(where, f"reference names {name!r}, which is not an input of the model")
    return Reference(child, column, parent, key)


def parse_model(name: str, spec: Any, source: str, where: str) -> Model:
    where = f"{where}, model {name!r}"
    if not isinstance(spec, Mapping):
        raise _fail(where, "must be a mapping")
    unknown = set(spec) - MODEL_OPTIONS
    if unknown:
        raise _fail(where, f"unknown option(s) {sorted(unknown)}")
    missing = {"inputs", "key", "merge"} - set(spec)
    if missing:
        raise _fail(where, f"missing {sorted(missing)}")
    if not isinstance(spec["inputs"], Mapping) or not spec["inputs"]:
        raise _fail(where, "inputs must be a non-empty mapping of input name to rows")
    inputs = {n: _input(str(n), s, where) for n, s in spec["inputs"].items()}
    sources = [i for i in inputs.values() if i.rows != "model"]
    if len(sources) > 1 and any(i.rows != "current" for i in sources):
        # Built when any of its tables changed: the unchanged ones must still be whole, so current.
        raise _fail(where, "a model joining several source tables must read each one as rows: current")
    key = spec["key"]
    if isinstance(key, str):
        key = [key]
    if not isinstance(key, list) or not key or not all(isinstance(k, str) for k in key):
        raise _fail(where, "key must be a column or a list of columns")
    merge = spec["merge"]
    if merge not in MERGES:
        raise _fail(where, f"merge must be one of {sorted(MERGES)}, not {merge!r}")
    if merge == "versions" and ROW_HASH not in key:
        raise _fail(where, f"merge: versions keeps each distinct version: its key must include {ROW_HASH}")
    references = tuple(_reference(r, inputs, where) for r in spec.get("references") or ())
    foreign_keys = []
    for column, target in (spec.get("foreign_keys") or {}).items():
        table, _, target_key = str(target).partition(".")
        if not table or not target_key:
            raise _fail(where, f"foreign key {column} -> {target!r} must name table.key")
        foreign_keys.append(ForeignKey(str(column), table, target_key))
    sql_path = SQL_DIR / (spec.get("sql") or f"models/{source}/{name}.sql")
    if not sql_path.is_file():
        raise _fail(where, f"SQL file {sql_path} not found")
    record_id = spec.get("record_id")
    return Model(
        name=str(name),
        sql_path=sql_path,
        inputs=tuple(inputs.values()),
        key=tuple(key),
        merge=merge,
        references=references,
        record_id=record_id,
        foreign_keys=tuple(foreign_keys),
    )


def parse_models(mapping: Any, where: str, source: str | None = None) -> tuple[Model, ...]:
    """Every model of a ``models:`` mapping, in an order where each comes after the models it reads.

    ``where`` names the file in messages; ``source`` picks ``sql/models/<source>/`` (default: the
    file's stem, e.g. ``totesys`` for ``totesys.yaml``).
    """
    source = source or Path(where).stem
    if not isinstance(mapping, Mapping) or not mapping:
        raise _fail(where, "models must be a non-empty mapping of model name to model")
    models = {str(n): parse_model(str(n), s, source, where) for n, s in mapping.items()}
    keys: dict[str, str] = {}
    for model in models.values():
        for upstream in model.upstream_models:
            if upstream not in models:
                raise _fail(where, f"model {model.name!r} reads model {upstream!r}, which is not declared")
        for item in model.inputs:
            if item.rows != "model" and item.key and keys.setdefault(item.name, item.key) != item.key:
                raise _fail(where, f"table {item.name!r} has keys {keys[item.name]!r} and {item.key!r}")
    ordered: list[Model] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if any(m.name == name for m in ordered):
            return
        if name in visiting:
            raise _fail(where, f"models read each other in a cycle through {name!r}")
        visiting.add(name)
        for upstream in models[name].upstream_models:
            visit(upstream)
        visiting.discard(name)
        ordered.append(models[name])

    for name in models:
        visit(name)
    return tuple(ordered)


def load_order(models: tuple[Model, ...]) -> tuple[Model, ...]:
    """The models in the order the load merges them: each after the tables its foreign keys name,
    otherwise as declared (so dimensions load before the facts that reference them)."""
    by_name = {m.name: m for m in models}
    ordered: list[Model] = []

    def visit(model: Model, path: tuple[str, ...]) -> None:
        if model in ordered:
            return
        if model.name in path:
            raise ModelConfigError(f"foreign keys form a cycle through {model.name!r}")
        for fk in model.foreign_keys:
            if fk.table in by_name:
                visit(by_name[fk.table], (*path, model.name))
        ordered.append(model)

    for model in models:
        visit(model, ())
    return tuple(ordered)

"""Run a declared model (:mod:`include.etlkit.pipelines.models`) on polars' streaming engine.

A model's SQL is a plain mapping from source columns to target columns; everything every model
needs is done here, once:

- **Inputs.** Each input is a ``LazyFrame`` over landed Parquet files, concatenated with
  ``how="diagonal_relaxed"``: a column added to the source (missing from older files) is NULL in the
  older rows, a widened type is promoted, so additive schema drift never halts a model.
  ``latest``/``current`` inputs keep the latest version of each key (by the cursor, parsed when it
  is text; a later landing wins a tie).
- **New source columns.** Each source input gets ``additional_column``
  (:func:`with_additional`): the row's values of the columns added to the source after the model
  was written, as JSON. A model whose SQL selects it carries them into ``landing``.
- **Integrity.** The model's ``references`` are anti-joined before it runs: a missing parent fails
  the model with the values named, rather than loading NULLs or silently dropping rows.
- **Types.** Each output column is converted to the Arrow type of the target table (``int32``,
  ``string``, ``bool``, ``date32``, ``time64[us]``, ``decimal128(p, 2)``): a timestamp becomes its
  date or its time of day, a text date is parsed, money becomes an exact decimal from its shortest
  text (3.94, never 3.93999...) and a value with more decimals than the column holds is refused,
  not rounded. A value that does not convert, or a NULL in a NOT NULL column, fails the model with
  the table and column named (one streaming pass that counts, before anything is written).
- **Output.** Batches stream out of polars (``collect_batches``), are cast to the exact target
  schema and written to Parquet batch by batch, with each fact row's ``row_hash``: the MD5 of its
  converted values as text joined by ``\\x1f`` (NULL as ``\\N``), computed with the very Arrow casts
  the warehouse's existing rows were hashed with, so versions landed before keep matching.

Memory is bounded by the batch size and by what polars' streaming engine holds (the joins' build
sides, the ``latest`` de-duplication), never by whole landed objects in pandas.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import ADDITIONAL_COLUMN
from include.etlkit.parquet import stream_batches
from include.etlkit.pipelines.models import ROW_HASH, Model, ModelInput

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pq = lazy_module("pyarrow.parquet")

# Rows per batch of a row-by-row model and per output batch (and Parquet row group): what bounds the
# transform's memory. 50,000 rather than 100,000: each batch passes through polars SQL, the checks,
# Arrow casts and the row hash, and the transform's peak RSS fell by 45-65 MB at 1M and 5M landed
# rows (bench/README.md, 2026-12-05).
BATCH_ROWS = 50_000
HASH_ROWS = 10_000  # rows hashed per pass through Python (row_hash)
ORDER = "__landing_order"
_TIMESTAMP_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f")


class ModelError(ValueError):
    """A model could not be built from its inputs; the message says which table and why."""


@dataclass(frozen=True)
class Targets:
    """What a pipeline's models produce: the target schemas, lookup seeds and table-specific checks.

    ``seeds`` are small static tables every model's SQL can join (e.g. ISO currency names);
    ``checks`` run on a model's SQL output before the generic ones, to raise a domain error with a
    better message than "NULL in a NOT NULL column".
    """

    schemas: Mapping[str, pa.Schema]
    seeds: Mapping[str, pa.Table] = field(default_factory=dict)
    checks: Mapping[str, Callable[[pl.LazyFrame], None]] = field(default_factory=dict)


def resolve_targets(reference: str) -> Targets:
    """The ``Targets`` a pipeline's ``targets: <module>:<attribute>`` names (imported, no I/O).

    Resolved when the transform runs, not while its DAG file is parsed: target schemas are pyarrow
    types and seeds pyarrow tables.
    """
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"targets must be '<module>:<attribute>', not {reference!r}")
    found = getattr(importlib.import_module(module), attribute)
    if not isinstance(found, Targets):
        raise TypeError(f"{reference} is a {type(found).__name__}, not Targets")
    return found


# -- inputs -----------------------------------------------------------------------------------------


def scan(paths: Sequence[Path]) -> pl.LazyFrame:
    """Landed Parquet files as one frame, oldest first, schemas promoted (``diagonal_relaxed``)."""
    if not paths:
        raise ModelError("no landed objects to read")
    frames = [pl.scan_parquet(path) for path in paths]
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")


def _as_datetime(column: str, dtype: pl.DataType) -> pl.Expr:
    """A timestamp column, parsed when it was landed as ISO text (explicit formats: no guessing)."""
    expr = pl.col(column)
    if dtype == pl.String:
        return pl.coalesce(
            *(expr.str.to_datetime(fmt, time_unit="us", strict=False) for fmt in _TIMESTAMP_FORMATS),
            expr.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us")),
        )
    if dtype == pl.Date:
        return expr.cast(pl.Datetime("us"))
    return expr


def latest(frame: pl.LazyFrame, key: str, cursor: str) -> pl.LazyFrame:
    """One row per ``key``: the latest by ``cursor``, the later row of the frame on a tie; by key."""
    dtype = frame.collect_schema()[cursor]
    return (
        frame.with_row_index(ORDER)
        .sort([_as_datetime(cursor, dtype), pl.col(ORDER)], nulls_last=False)
        .unique(subset=[key], keep="last", maintain_order=True)
        .drop(ORDER)
        .sort(key)
    )


def input_frame(item: ModelInput, rows: pl.LazyFrame) -> pl.LazyFrame:
    """What a model sees of one input: every version (``all``), or the latest per key."""
    if item.rows in ("latest", "current"):
        assert item.key is not None  # parse_models requires it
        return latest(rows, item.key, item.cursor)
    return rows


def empty_frame(schema: pa.Schema) -> pl.LazyFrame:
    return pl.from_arrow(pa.Table.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)).lazy()


def strings(values: Sequence[str | None]) -> pa.Array:
    """Python strings as an Arrow ``string`` array, made by polars.

    Not ``pa.array(values)``: before converting a Python object pyarrow asks whether it is a pandas
    one, and so imports pandas (~40 MB of RSS and ~0.5 s; ``Schema.empty_table()`` does the same),
    which the transform's process otherwise never loads (bench/README.md, transform memory).
    """
    return pl.Series(values, dtype=pl.String).to_arrow().cast(pa.string())


def with_additional(frame: pl.LazyFrame, extras: Sequence[str]) -> pl.LazyFrame:
    """``frame`` with ``additional_column``: its ``extras`` columns as one JSON object per row.

    ``extras`` are the columns added to the source table after its models were written (recorded in
    ``etl.schema_change``) that the model does not use; those the frame lacks (dropped again, or
    only in newer objects) are left out. NULL where none of them has a value, and always present,
    so a model's SQL may select it whether or not its source has drifted yet.
    """
    present = [name for name in extras if name in frame.collect_schema()]
    if not present:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias(ADDITIONAL_COLUMN))
    has_value = pl.any_horizontal(pl.col(name).is_not_null() for name in present)
    document = pl.struct(present).struct.json_encode()
    return frame.with_columns(pl.when(has_value).then(document).otherwise(None).alias(ADDITIONAL_COLUMN))


def processed_schema(model: Model, targets: Targets) -> pa.Schema:
    """The schema of the model's processed objects: its target table's, plus ``additional_column``
    when the model carries it (landing-only: the warehouse's ``core`` table does not have it)."""
    schema = targets.schemas[model.name]
    if model.carries and ADDITIONAL_COLUMN not in schema.names:
        schema = schema.append(pa.field(ADDITIONAL_COLUMN, pa.string(), nullable=True))
    return schema


# -- conversion to the target types -------------------------------------------------------------------


def _decimal_pattern(scale: int) -> str:
    # At most ``scale`` significant decimals (trailing zeros beyond are harmless): refuse, never round.
    return rf"^[+-]?\d+(\.\d{{0,{scale}}}0*)?$"


def _converted(name: str, source: pl.DataType, target: pa.DataType) -> pl.Expr:
    """``name`` converted to ``target``; NULL where a value does not convert (counted by the checks)."""
    expr = pl.col(name)
    if pa.types.is_decimal(target):
        text = expr.cast(pl.String)
        return (
            pl.when(text.str.contains(_decimal_pattern(target.scale)))
            .then(text.cast(pl.Decimal(target.precision, target.scale), strict=False))
            .otherwise(None)
        )
    if pa.types.is_date32(target):
        return expr if source == pl.Date else _as_datetime(name, source).dt.date()
    if pa.types.is_time64(target):
        return expr if source == pl.Time else _as_datetime(name, source).dt.time()
    if pa.types.is_boolean(target) and source == pl.String:
        return expr.str.to_lowercase().replace_strict(
            {"true": True, "t": True, "false": False, "f": False}, default=None, return_dtype=pl.Boolean
        )
    dtype = pl.from_arrow(pa.nulls(0, target)).dtype  # not pa.array([]): see strings()
    if pa.types.is_integer(target) and source.is_float():
        # 3.0 is the id 3; 3.7 is no id at all (a cast would truncate it silently)
        return pl.when(expr == expr.floor()).then(expr.cast(dtype, strict=False)).otherwise(None)
    return expr.cast(dtype, strict=False)


def conform(model: Model, sql_output: pl.LazyFrame, schema: pa.Schema) -> pl.LazyFrame:
    """The SQL output as the target table's columns and types, after checking every value converts.

    Raises :class:`ModelError` naming ``table.column`` for a value that does not convert (a price
    with three decimals, a date that is not one) or a NULL in a NOT NULL column.
    """
    table = model.name
    available = sql_output.collect_schema()
    fields = [f for f in schema if f.name != ROW_HASH]
    missing = [f.name for f in fields if f.name not in available]
    if missing:
        raise ModelError(f"{table}: the model's SQL does not produce column(s) {missing}")
    converted = {f.name: _converted(f.name, available[f.name], f.type) for f in fields}
    counts: list[pl.Expr] = []
    for f in fields:
        failed = pl.col(f.name).is_not_null() & converted[f.name].is_null()
        counts.append(failed.sum().alias(f"bad:{f.name}"))
        counts.append(pl.col(f.name).filter(failed).first().cast(pl.String).alias(f"first:{f.name}"))
        if not f.nullable:
            counts.append(converted[f.name].is_null().sum().alias(f"null:{f.name}"))
    found = sql_output.select(counts).collect(engine="streaming").row(0, named=True)
    for f in fields:
        if found[f"bad:{f.name}"]:
            raise ModelError(
                f"{table}.{f.name}: cannot convert {found[f'bad:{f.name}']} value(s) to {f.type} "
                f"(first: {found[f'first:{f.name}']!r})"
            )
    for f in fields:
        if not f.nullable and found[f"null:{f.name}"]:
            nulls = found[f"null:{f.name}"]
            raise ModelError(f"{table}.{f.name}: {nulls} NULL value(s) in a NOT NULL column")
    return sql_output.select(converted[f.name].alias(f.name) for f in fields)


# -- running a model ----------------------------------------------------------------------------------


def check_references(model: Model, frames: Mapping[str, pl.LazyFrame]) -> None:
    for ref in model.references:
        parent = frames[ref.parent].select(pl.col(ref.key))
        missing = (
            frames[ref.child]
            .select(pl.col(ref.column))
            .drop_nulls()
            .unique()
            .join(parent, left_on=ref.column, right_on=ref.key, how="anti")
            .sort(ref.column)
            .collect(engine="streaming")
            .to_series()
            .to_list()
        )
        if missing:
            raise ModelError(f"{model.name}: {ref.column} value(s) {missing} not found in {ref.key}")


def build(
    model: Model,
    frames: Mapping[str, pl.LazyFrame],
    targets: Targets,
    *,
    distinct: bool = True,
    added: Mapping[str, Sequence[str]] | None = None,
) -> pl.LazyFrame:
    """The model's rows, typed as its processed schema (without ``row_hash``), checked, lazily.

    ``frames`` holds each input as the model sees it (see :func:`input_frame`). ``distinct=False``
    skips the de-duplication of versions when the caller knows its input holds each row once (one
    landed object per table): de-duplicating a first snapshot of millions of rows would hold them all.
    ``added[table]``: the columns added to a source table since its models were written.
    """
    check_references(model, frames)
    added = added or {}
    frames = {
        name: (
            with_additional(frame, [c for c in added.get(name, ()) if c.lower() not in model.names])
            if name in model.source_tables
            else frame
        )
        for name, frame in frames.items()
    }
    context = pl.SQLContext(
        frames={**{name: pl.from_arrow(seed).lazy() for name, seed in targets.seeds.items()}, **frames},
        eager=False,
    )
    try:
        output = context.execute(model.sql)
        output.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise ModelError(f"{model.name}: its SQL ({model.sql_path.name}) fails on its inputs: {exc}") from exc
    if model.name in targets.checks:
        targets.checks[model.name](output)
    rows = conform(model, output, processed_schema(model, targets))
    if model.merge == "versions" and distinct:
        rows = rows.unique(keep="first", maintain_order=True)
    return rows


@functools.cache
def _separator() -> pa.Scalar:
    """``row_hash``'s separator as an Arrow scalar (a Python ``str`` argument would be converted by
    ``pa.scalar``, which imports pandas: see :func:`strings`)."""
    return strings(["\x1f"])[0]


def row_hash(columns: Sequence[pa.Array | pa.ChunkedArray]) -> pa.Array:
    """MD5 of a row's values as text (NULL as ``\\N``), separated by a unit separator.

    Computed on the converted values, so 3.9 and '3.90' hash alike; stable across runs and hosts.
    The rows pass through Python (``hashlib``) :data:`HASH_ROWS` at a time, so only that many
    Python strings exist at once, not a whole batch's.
    """
    text = pc.binary_join_element_wise(
        *(pc.cast(column, pa.string()) for column in columns),
        _separator(),
        null_handling="replace",
        null_replacement="\\N",
    )
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    text = text.cast(pa.binary())  # bytes for hashlib, without a str per row first
    digests: list[str] = []
    for start in range(0, len(text), HASH_ROWS):
        digests += [
            hashlib.md5(row, usedforsecurity=False).hexdigest()
            for row in text.slice(start, HASH_ROWS).to_pylist()
        ]
    return strings(digests)


def arrow_batches(
    rows: pl.LazyFrame, schema: pa.Schema, batch_size: int = BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The model's rows as record batches of exactly ``schema`` (with ``row_hash`` when it has one)."""
    for frame in rows.collect_batches(chunk_size=batch_size, engine="streaming"):
        yield from _target_batches(frame, schema)


def _target_batches(frame: pl.DataFrame, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Collected rows as record batches of exactly ``schema``, with their ``row_hash``."""
    if not frame.height:
        return
    table = frame.to_arrow()
    arrays = {f.name: table.column(f.name).cast(f.type) for f in schema if f.name != ROW_HASH}
    if ROW_HASH in schema.names:  # a version is its table's values: what the source added is not hashed
        arrays[ROW_HASH] = row_hash([a for name, a in arrays.items() if name != ADDITIONAL_COLUMN])
    yield from pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema).to_batches()


def row_by_row(model: Model) -> bool:
    """Whether the model maps each row of its one ``rows: all`` input on its own (the facts).

    Such a model runs batch by batch (:func:`batch_rows`), memory bounded by the batch, whatever the
    input's size; its SQL must then be a row mapping (no aggregate over the whole input), which is
    what a versions model of one source table is.
    """
    return len(model.inputs) == 1 and model.inputs[0].rows == "all" and not model.references


def batch_rows(
    model: Model,
    paths: Sequence[Path],
    targets: Targets,
    batch_size: int = BATCH_ROWS,
    added: Mapping[str, Sequence[str]] | None = None,
) -> Iterator[pa.RecordBatch]:
    """A row-by-row model over landed files, one input batch at a time, as target record batches.

    Each batch is aligned to the schema the files promote to (a column added later is NULL in older
    batches), then built, checked and converted like any model. The caller keeps what it writes
    until the last batch passed: a failure in any batch fails the model.
    """
    (item,) = model.inputs
    schema = scan(paths).collect_schema()
    target = processed_schema(model, targets)
    for path in paths:
        for batch in stream_batches(path, batch_size):
            frame = pl.from_arrow(batch)
            assert isinstance(frame, pl.DataFrame)
            aligned = frame.lazy().select(
                (pl.col(name) if name in frame.columns else pl.lit(None)).cast(dtype).alias(name)
                for name, dtype in schema.items()
            )
            rows = build(model, {item.name: aligned}, targets, distinct=False, added=added).collect()
            yield from _target_batches(rows, target)


def write_parquet(
    rows: pl.LazyFrame | Iterator[pa.RecordBatch], schema: pa.Schema, path: Path, batch_size: int = BATCH_ROWS
) -> int:
    """Write the model's rows to a Parquet file (zstd), batch by batch; returns the count (0: no file).

    ``rows``: the model's lazy frame (streamed out of polars), or batches from :func:`batch_rows`.
    """
    count = 0
    batches = arrow_batches(rows, schema, batch_size) if isinstance(rows, pl.LazyFrame) else rows
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
            count += batch.num_rows
    if not count:
        path.unlink(missing_ok=True)
    return count


def to_table(rows: pl.LazyFrame, schema: pa.Schema) -> pa.Table:
    """The model's rows in memory (tests, small tables): the same batches :func:`write_parquet` writes."""
    return pa.Table.from_batches(list(arrow_batches(rows, schema)), schema=schema)

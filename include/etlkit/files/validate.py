"""Validate a file's raw table against its :class:`FileSchema`: typed valid rows, quarantined rows.

Three outcomes, per file:

- **rejected**: the file as a whole does not fit (no header, a required column missing, two headers
  that are the same column once case, spaces and dashes are ignored). No row is valid; every row is
  in ``quarantined`` with the file's reason, so the accounting below still holds.
- **partially quarantined**: some (or all) rows have a bad value. Each such row is in
  ``quarantined`` with its raw values, its 1-based ``source_row`` and a ``reason`` naming every bad
  column and value; the other rows are valid.
- **validated**: every row is valid.

Invariant, whatever the input: ``len(valid) + len(quarantined) == rows_read``.

Valid rows are typed per the schema: its columns in order, then ``additional_column`` (the file's
columns the schema does not name, packed per row into one JSON object of raw strings keyed by
their header names; null when the file has none) and ``source_row``.

Columns a schema takes from the file's remote path (``path_values``) are held to it: a row whose
value differs is quarantined (``partner='brightmail' does not match the drop folder value 'acme'``),
a file without the column gets the path's value in every row, and a file whose remote path is unknown
or does not match is rejected: whoever sent a file may only speak for themselves.

Typing is vectorised with ``pyarrow.compute``: a regular expression admits the values of the right
shape, a cast types them, and a cast that fails on a well-shaped but impossible value (30 February,
an overflowing decimal) is retried on halves until the bad values are isolated, so a few bad values
cost a few more casts, not a Python loop over the column. Python runs per failing cell only, to
write the reasons.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include.etlkit.files.schema import (
    BOOL,
    DATE,
    DECIMAL,
    FALSE_TEXTS,
    FLOAT,
    INT,
    SOURCE_ROW,
    STRING,
    TRUE_TEXTS,
    Column,
    FileSchema,
    PathValueError,
    normalise_name,
    typed_values,
)
from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # imported on first use, not while a DAG file is parsed
    np = lazy_module("numpy")
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

VALIDATED = "validated"
PARTIALLY_QUARANTINED = "partially_quarantined"
REJECTED = "rejected"

REASON = "reason"
SHOWN_CHARS = 80  # how much of a bad value a reason quotes

INT_SHAPE = r"^[+-]?\d{1,18}$"  # 18 digits always fit int64; longer ones are quarantined
DECIMAL_SHAPE = r"^[+-]?(\d+(\.\d*)?|\.\d+)$"
FLOAT_SHAPE = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
DATE_SHAPE = r"^\d{4}-\d{2}-\d{2}$"
TIMESTAMP_SHAPE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
# Nanosecond text whose last three digits are zeros (Parquet's timestamp[ns] cast to text) is
# microsecond text; other sub-microsecond digits are kept, so the cast refuses them.
NANO_ZEROS = (r"(\.\d{6})0{1,3}", r"\1")
ZONED = r"(Z|[+-]\d{2}:?\d{2})$"
CONTROL_CHARS = r"[\x00-\x1f]"


@dataclass(frozen=True)
class ValidationResult:
    """What validation made of one file (see the module's docstring)."""

    schema: FileSchema
    rows_read: int
    valid: pa.Table
    quarantined: pa.Table
    rejected_reason: str | None = None
    missing_columns: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.valid.num_rows + self.quarantined.num_rows != self.rows_read:
            raise AssertionError(
                f"{self.valid.num_rows} valid + {self.quarantined.num_rows} quarantined rows "
                f"!= {self.rows_read} read"
            )

    @property
    def status(self) -> str:
        if self.rejected_reason is not None:
            return REJECTED
        return PARTIALLY_QUARANTINED if self.quarantined.num_rows else VALIDATED

    @property
    def rows_valid(self) -> int:
        return self.valid.num_rows

    @property
    def rows_quarantined(self) -> int:
        """Rows set aside one by one (0 for a rejected file: there, the file is set aside)."""
        return 0 if self.rejected_reason is not None else self.quarantined.num_rows

    @property
    def rows_rejected(self) -> int:
        """Rows not loaded, whether quarantined or in a rejected file: ``rows_read - rows_valid``."""
        return self.quarantined.num_rows


@dataclass
class _Problems:
    """Bad cells found so far: per check, a mask over the rows and how to describe a bad value."""

    checks: list[tuple[pa.Array, pa.Array, Callable[[Any], str]]] = field(default_factory=list)

    def add(self, mask: pa.Array, raw: pa.Array, describe: Callable[[Any], str]) -> None:
        mask = pc.fill_null(mask, False)
        if pc.any(mask).as_py():
            self.checks.append((mask, raw, describe))

    def any_bad(self, rows: int) -> pa.Array:
        bad = pa.array(np.zeros(rows, dtype=bool))
        for mask, _, _ in self.checks:
            bad = pc.or_(bad, mask)
        return bad

    def reasons(self, rows: pa.Array) -> list[str]:
        """The reason of each bad row (``rows``: their indices, ascending), checks in schema order."""
        texts: dict[int, list[str]] = {}
        for mask, raw, describe in self.checks:
            where = pc.indices_nonzero(mask)
            for index, value in zip(where.to_pylist(), raw.take(where).to_pylist(), strict=True):
                texts.setdefault(index, []).append(describe(value))
        return ["; ".join(texts[i]) for i in rows.to_pylist()]


def validate(
    table: pa.Table, schema: FileSchema, remote_path: str | Sequence[str] | None = None
) -> ValidationResult:
    """Split ``table`` (raw strings, as :func:`readers.read_file` returns) into valid and quarantined rows.

    :param remote_path: where the file came from (``s3://bucket/key`` for an S3 drop), or the paths
        when one landed object arrived under several: needed only by a schema with ``path_values``
        (without it, such a schema rejects the file).
    """
    table = table.combine_chunks()
    rows = table.num_rows
    names = table.column_names
    if table.num_columns == 0:
        return _rejected(table, schema, "the file has no header row (it is empty)")
    positions: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        positions.setdefault(normalise_name(name), []).append(index)
    clashes = [[names[i] for i in found] for found in positions.values() if len(found) > 1]
    if clashes:
        text = "; ".join(" and ".join(repr(n) for n in group) for group in clashes)
        return _rejected(
            table, schema, f"ambiguous header: {text} are one column once case, spaces and dashes are ignored"
        )
    try:
        from_path = schema.values_from_path(remote_path)
    except PathValueError as exc:
        return _rejected(table, schema, str(exc))
    for column in schema.columns:
        if column.key in from_path:
            try:
                typed_values(column, [from_path[column.key]], "the value of the remote path")
            except ValueError as exc:
                return _rejected(table, schema, f"{exc} (remote path {remote_path!r})")
    # A column the path gives need not be in the file: it is filled with the path's value.
    missing = tuple(
        c.name for c in schema.columns if c.required and c.key not in positions and c.key not in from_path
    )
    wanted = {c.key for c in schema.columns}
    extras = tuple(name for name in names if normalise_name(name) not in wanted)
    if missing:
        return _rejected(
            table,
            schema,
            f"missing required column(s): {', '.join(missing)} (the file has: {', '.join(names)})",
            missing=missing,
            extras=extras,
        )

    problems = _Problems()
    typed: list[pa.Array] = []
    key_names = {c.key for c in schema.key_columns}
    for column in schema.columns:
        expected = from_path.get(column.key)
        if column.key in positions:
            raw = _column(table, positions[column.key][0])
        elif expected is not None:
            # Checked like a value of the file, so the path's value meets the column's type and rules.
            raw = pa.array([expected] * rows, pa.string())
        else:
            typed.append(pa.nulls(rows, column.arrow_type))
            continue
        typed.append(
            _check_column(
                raw, column, schema.null_values, problems, is_key=column.key in key_names, expected=expected
            )
        )

    # PostgreSQL's text (and jsonb) cannot hold a NUL byte: a row with one would fail the whole load.
    for index, name in enumerate(names):
        raw = _column(table, index)
        problems.add(
            pc.fill_null(pc.match_substring(raw, "\x00"), False),
            raw,
            lambda v, name=name: f"{name} holds a NUL byte, which the warehouse cannot store ({_show(v)})",
        )

    source_row = pa.array(np.arange(1, rows + 1, dtype=np.int64))
    if schema.key and rows:
        _check_duplicate_keys(schema, typed, source_row, problems)
    additional = (
        _json_objects([(name, _column(table, names.index(name))) for name in extras])
        if extras
        else pa.nulls(rows, pa.string())
    )
    bad = problems.any_bad(rows)
    full = pa.Table.from_arrays([*typed, additional, source_row], schema=schema.arrow_schema)
    valid = full.filter(pc.invert(bad))
    bad_rows = pc.indices_nonzero(bad)
    quarantined = _quarantine_table(
        table.take(bad_rows), source_row.take(bad_rows), problems.reasons(bad_rows)
    )
    return ValidationResult(schema, rows, valid, quarantined, extra_columns=extras)


# -- whole-file rejection ---------------------------------------------------------------------------


def _rejected(
    table: pa.Table,
    schema: FileSchema,
    reason: str,
    *,
    missing: tuple[str, ...] = (),
    extras: tuple[str, ...] = (),
) -> ValidationResult:
    rows = table.num_rows
    quarantined = _quarantine_table(table, pa.array(np.arange(1, rows + 1, dtype=np.int64)), [reason] * rows)
    return ValidationResult(
        schema,
        rows,
        schema.arrow_schema.empty_table(),
        quarantined,
        rejected_reason=reason,
        missing_columns=missing,
        extra_columns=extras,
    )


def _quarantine_table(raw: pa.Table, source_row: pa.Array, reasons: Sequence[str]) -> pa.Table:
    """``source_row``, ``reason``, then the file's columns as raw strings (renamed ``raw_<name>``
    on the off chance a header is itself called source_row or reason)."""
    names = [f"raw_{n}" if n in (SOURCE_ROW, REASON) else n for n in raw.column_names]
    return pa.Table.from_arrays(
        [source_row, pa.array(reasons, pa.string()), *raw.columns],
        names=[SOURCE_ROW, REASON, *names],
    )


def _column(table: pa.Table, index: int) -> pa.Array:
    """One column of a table whose chunks were combined, as an array (none for no rows)."""
    column = table.column(index)
    return column.chunk(0) if column.num_chunks else pa.array([], column.type)


# -- typing and rules -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is None:
        return "null"
    text = str(value)
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def _check_column(
    raw: pa.Array,
    column: Column,
    null_values: Sequence[str],
    problems: _Problems,
    *,
    is_key: bool,
    expected: str | None = None,
) -> pa.Array:
    """The column typed; its bad cells recorded in ``problems`` (first failed rule per cell).

    ``expected``: the value the file's remote path gives the column (``path_values``); any other,
    an empty one included, is a row the file had no right to send.
    """
    name = column.name
    trimmed = pc.utf8_trim_whitespace(raw)
    # is_in answers false, not null, for a null: a missing value (JSON, xlsx) is tested apart.
    declared_null = pc.is_in(trimmed, value_set=pa.array(list(null_values), pa.string()))
    empty = pc.or_(pc.is_null(raw), declared_null)
    text = trimmed if column.trim or column.kind != STRING else raw
    candidate = pc.if_else(empty, pa.scalar(None, pa.string()), text)
    if not column.nullable or is_key:
        problems.add(empty, raw, lambda v: f"{name} is empty ({_show(v)}) and may not be")

    parsed = _parse(candidate, column)
    unparsed = pc.and_(pc.invert(empty), pc.is_null(parsed))
    problems.add(unparsed, raw, lambda v: f"{name}={_show(v)} is not {column.type_name}")

    failed = pc.or_(empty if not column.nullable or is_key else pa.array(np.zeros(len(raw), bool)), unparsed)
    for mask, describe in _rules(parsed, column):
        mask = pc.and_(pc.fill_null(mask, False), pc.invert(failed))
        problems.add(mask, raw, describe)
        failed = pc.or_(failed, mask)
    if expected is not None:
        _check_path_value(parsed, raw, column, expected, failed, problems)
    return parsed


def _check_path_value(
    parsed: pa.Array, raw: pa.Array, column: Column, expected: str, failed: pa.Array, problems: _Problems
) -> None:
    """Quarantine the rows whose ``column`` is not the value the remote path gives (``expected``,
    of the column's type: :func:`validate` rejected the file otherwise)."""
    value = typed_values(column, [expected], "the value of the remote path")[0]
    differs = pc.fill_null(pc.not_equal(parsed, value), True)  # an empty value is not the path's
    problems.add(
        pc.and_(differs, pc.invert(failed)),
        raw,
        lambda v: f"{column.name}={_show(v)} does not match the drop folder value {_show(expected)}",
    )


def _rules(parsed: pa.Array, column: Column) -> list[tuple[pa.Array, Callable[[Any], str]]]:
    name = column.name
    rules: list[tuple[pa.Array, Callable[[Any], str]]] = []
    if column.min is not None:
        low = typed_values(column, [column.min], "min")[0]
        rules.append((pc.less(parsed, low), lambda v: f"{name}={_show(v)} is below the minimum {column.min}"))
    if column.max is not None:
        high = typed_values(column, [column.max], "max")[0]
        rules.append(
            (pc.greater(parsed, high), lambda v: f"{name}={_show(v)} is above the maximum {column.max}")
        )
    if column.choices is not None:
        allowed = typed_values(column, column.choices, "choices")
        shown = ", ".join(str(c) for c in column.choices[:10]) + (", ..." if len(column.choices) > 10 else "")
        rules.append(
            (
                pc.and_(pc.is_valid(parsed), pc.invert(pc.is_in(parsed, value_set=allowed))),
                lambda v: f"{name}={_show(v)} is not one of [{shown}]",
            )
        )
    if column.max_length is not None:
        rules.append(
            (
                pc.greater(pc.utf8_length(parsed), column.max_length),
                lambda v: f"{name}={_show(v)} is longer than {column.max_length} characters",
            )
        )
    if column.pattern is not None:
        full = f"^(?:{column.pattern})$"
        rules.append(
            (
                pc.invert(pc.match_substring_regex(parsed, pattern=full)),
                lambda v: f"{name}={_show(v)} does not match {column.pattern!r}",
            )
        )
    return rules


def _shaped(values: pa.Array, pattern: str) -> pa.Array:
    """``values`` where they match ``pattern``, null elsewhere."""
    fits = pc.fill_null(pc.match_substring_regex(values, pattern=pattern), False)
    return pc.if_else(fits, values, pa.scalar(None, pa.string()))


def _unsigned(values: pa.Array) -> pa.Array:
    """Without a leading '+', which Arrow's casts refuse."""
    if not pc.any(pc.fill_null(pc.starts_with(values, "+"), False)).as_py():
        return values
    return pc.replace_substring_regex(values, r"^\+", "")


def _parse(values: pa.Array, column: Column) -> pa.Array:
    """``values`` (trimmed strings, null where empty) typed; null where they are not the type."""
    kind = column.kind
    if kind == STRING:
        return values
    if kind == INT:
        return pc.cast(_unsigned(_shaped(values, INT_SHAPE)), pa.int64())
    if kind == DECIMAL:
        return cast_or_null(_unsigned(_shaped(values, DECIMAL_SHAPE)), column.arrow_type)
    if kind == FLOAT:
        numbers = pc.cast(_shaped(values, FLOAT_SHAPE), pa.float64())
        return pc.if_else(pc.fill_null(pc.is_finite(numbers), False), numbers, pa.scalar(None, pa.float64()))
    if kind == BOOL:
        lower = pc.utf8_lower(values)
        truth = pc.is_in(lower, value_set=pa.array(TRUE_TEXTS))
        falsity = pc.is_in(lower, value_set=pa.array(FALSE_TEXTS))
        return pc.if_else(truth, True, pc.if_else(falsity, False, pa.scalar(None, pa.bool_())))
    if column.format:
        stamps = _strptime(values, column.format)
        return stamps.cast(pa.date32(), safe=False) if kind == DATE else stamps
    if kind == DATE:
        return cast_or_null(_shaped(values, DATE_SHAPE), pa.date32())
    return _iso_timestamps(_shaped(values, TIMESTAMP_SHAPE))


def cast_or_null(values: pa.Array, to: pa.DataType) -> pa.Array:
    """Cast ``values``; those that cannot be cast become null (found by halving, not by looping)."""
    try:
        return pc.cast(values, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(values) <= 1:
            return pa.nulls(len(values), to)
        middle = len(values) // 2
        return pa.concat_arrays(
            [cast_or_null(values.slice(0, middle), to), cast_or_null(values.slice(middle), to)]
        )


def _iso_timestamps(values: pa.Array) -> pa.Array:
    """ISO 8601 text -> naive UTC ``timestamp[us]``; values with an offset are converted to UTC."""
    values = pc.replace_substring_regex(values, NANO_ZEROS[0], NANO_ZEROS[1])
    zoned = pc.fill_null(pc.match_substring_regex(values, pattern=ZONED), False)
    none = pa.scalar(None, pa.string())
    naive = cast_or_null(pc.if_else(zoned, none, values), pa.timestamp("us"))
    if not pc.any(zoned).as_py():
        return naive
    utc = cast_or_null(pc.if_else(zoned, values, none), pa.timestamp("us", tz="UTC"))
    return pc.coalesce(naive, utc.cast(pa.timestamp("us")))


def _strptime(values: pa.Array, formats: Sequence[str]) -> pa.Array:
    """Parse with each format in turn (values the earlier ones took are kept) into ``timestamp[us]``.

    Formats are C ``strptime`` ones, as Arrow takes them. Arrow rolls impossible dates over (30
    February becomes 1 or 2 March), so a parse landing on day 1 to 3 is only taken when formatting
    it back gives the input; one that does not (no zero padding, say '2/1/2024') is parsed again
    strictly by Python's ``datetime.strptime``. Formatting is slow in Arrow, hence only those.
    """
    micros = pa.timestamp("us")
    result = pa.nulls(len(values), micros)
    for fmt in formats:
        todo = pc.if_else(pc.is_null(result), values, pa.scalar(None, pa.string()))
        # Seconds, not microseconds: Arrow's strftime writes %S with the unit's fraction.
        stamps = pc.strptime(todo, format=fmt, unit="s", error_is_null=True)
        suspect = pc.indices_nonzero(pc.fill_null(pc.less_equal(pc.day(stamps), 3), False))
        if len(suspect):
            echoed = pc.equal(pc.strftime(stamps.take(suspect), format=fmt), todo.take(suspect))
            doubtful = suspect.filter(pc.invert(pc.fill_null(echoed, False)))
            if len(doubtful):
                strict = [_strict_strptime(v, fmt) for v in todo.take(doubtful).to_pylist()]
                mask = np.zeros(len(values), dtype=bool)
                mask[doubtful.to_numpy()] = True
                stamps = pc.replace_with_mask(stamps.cast(micros), pa.array(mask), pa.array(strict, micros))
        result = pc.coalesce(result, stamps.cast(micros))
    return result


def _strict_strptime(value: str, fmt: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(value, fmt)
    except ValueError:
        return None


# -- keys -------------------------------------------------------------------------------------------


def _check_duplicate_keys(
    schema: FileSchema, typed: list[pa.Array], source_row: pa.Array, problems: _Problems
) -> None:
    """A key seen again (among rows otherwise valid) quarantines every row after its first."""
    bad = problems.any_bad(len(source_row))
    index = {c.key: i for i, c in enumerate(schema.columns)}
    names = [f"k{n}" for n in range(len(schema.key_columns))]
    keys = pa.Table.from_arrays(
        [*(typed[index[c.key]] for c in schema.key_columns), source_row], names=[*names, SOURCE_ROW]
    ).filter(pc.invert(bad))
    firsts = keys.group_by(names, use_threads=False).aggregate([(SOURCE_ROW, "min")])
    if firsts.num_rows == keys.num_rows:
        return
    repeats = keys.filter(pc.invert(pc.is_in(keys[SOURCE_ROW], value_set=firsts[f"{SOURCE_ROW}_min"])))
    repeats = repeats.join(firsts, keys=names).sort_by(SOURCE_ROW)
    key_values = zip(*(repeats[n].to_pylist() for n in names), strict=True)
    first_of = {
        row: (
            first,
            ", ".join(f"{c.name}={_show(v)}" for c, v in zip(schema.key_columns, values, strict=True)),
        )
        for row, first, values in zip(
            repeats[SOURCE_ROW].to_pylist(), repeats[f"{SOURCE_ROW}_min"].to_pylist(), key_values, strict=True
        )
    }
    mask = pc.is_in(source_row, value_set=repeats[SOURCE_ROW].combine_chunks())
    problems.add(
        mask,
        source_row,
        lambda row: f"duplicate key {first_of[row][1]}: first seen at row {first_of[row][0]}",
    )


# -- additional columns -----------------------------------------------------------------------------


def _json_escape(values: pa.Array) -> pa.Array:
    """Strings as the inside of JSON string literals (backslash, quote and control characters)."""
    values = pc.replace_substring(values, "\\", "\\\\")
    values = pc.replace_substring(values, '"', '\\"')
    if pc.any(pc.fill_null(pc.match_substring_regex(values, pattern=CONTROL_CHARS), False)).as_py():
        for code in range(0x20):
            values = pc.replace_substring(values, chr(code), json.dumps(chr(code))[1:-1])
    return values


def _json_objects(columns: Sequence[tuple[str, pa.Array]]) -> pa.Array:
    """One JSON object per row, ``{"<header>": "<raw value>" | null, ...}``, built column-wise."""
    parts: list[Any] = []
    for position, (name, values) in enumerate(columns):
        parts.append(("," if position else "") + json.dumps(name) + ":")
        quoted = pc.binary_join_element_wise('"', _json_escape(values), '"', "")
        parts.append(pc.if_else(pc.is_null(values), "null", quoted))
    return pc.binary_join_element_wise("{", *parts, "}", "")

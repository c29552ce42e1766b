"""What a dataset's files must hold: columns, their types and rules, and the dataset's key.

A schema is declared, not programmed: :meth:`FileSchema.from_dict` takes the plain dict a pipeline's
configuration holds, e.g.::

    FileSchema.from_dict({
        "name": "sales",
        "key": ["order_id"],
        "read": {"delimiter": "|"},            # optional, see readers.ReaderOptions
        "null_values": ["", "NULL", "n/a"],     # optional; compared after trimming
        "columns": [
            {"name": "order_id", "type": "int", "min": 1},
            {"name": "amount", "type": "decimal(12,2)", "min": 0},
            {"name": "sold_on", "type": "date", "format": "%d/%m/%Y"},
            {"name": "channel", "type": "string", "choices": ["web", "shop"]},
            {"name": "note", "type": "string", "required": False, "nullable": True},
        ],
    })

File headers are matched to column names case-insensitively, after trimming and turning runs of
spaces and dashes into one underscore (``" Order-ID "`` is ``order_id``): see :func:`normalise_name`.

Who sent a file can be part of its schema: ``path_values`` maps a column to a regular expression
searched in the file's remote path (e.g. ``s3://bucket/drops/partners/acme/customers.csv``) whose
named group of the column's name is the value every row must have::

    "path_values": {"partner": "drops/partners/(?P<partner>[^/]+)/"}

so a file dropped in acme's folder may only speak for acme (see :meth:`FileSchema.values_from_path`
and the validation, which quarantines the other rows and fills the column when the file lacks it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from include.etlkit.files.readers import ReaderOptions
from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import ADDITIONAL_COLUMN, SOURCE_ROW

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

STRING, INT, DECIMAL, FLOAT, DATE, TIMESTAMP, BOOL = (
    "string",
    "int",
    "decimal",
    "float",
    "date",
    "timestamp",
    "bool",
)
TYPE_ALIASES = {
    "string": STRING,
    "str": STRING,
    "text": STRING,
    "int": INT,
    "integer": INT,
    "bigint": INT,
    "float": FLOAT,
    "double": FLOAT,
    "date": DATE,
    "timestamp": TIMESTAMP,
    "datetime": TIMESTAMP,
    "bool": BOOL,
    "boolean": BOOL,
}
DECIMAL_TYPE = re.compile(r"^(?:decimal|numeric)\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)$", re.IGNORECASE)
# Columns the validation adds to every valid table: no schema column may take their names.
RESERVED_NAMES = frozenset({ADDITIONAL_COLUMN, SOURCE_ROW})
# How booleans are spelled (compared in lower case, after trimming).
TRUE_TEXTS = ("true", "t", "yes", "y", "1")
FALSE_TEXTS = ("false", "f", "no", "n", "0")
COLUMN_OPTIONS = frozenset(
    {
        "name",
        "type",
        "required",
        "nullable",
        "min",
        "max",
        "choices",
        "format",
        "max_length",
        "pattern",
        "trim",
    }
)


def normalise_name(name: str) -> str:
    """``" Order - ID "`` -> ``"order_id"``: trimmed, lower case, spaces and dashes to one ``_``."""
    return re.sub(r"[\s\-]+", "_", str(name).strip()).lower()


@dataclass(frozen=True)
class Column:
    """One column of a file schema.

    :param name: the column's name in the output (its normalised form matches file headers).
    :param type: ``string``, ``int``, ``decimal(p,s)``, ``float``, ``date``, ``timestamp`` or
        ``bool`` (aliases: integer, bigint, double, datetime, boolean, text).
    :param required: the file must have this column, or it is rejected as a whole. An optional
        column the file lacks is all nulls (and ``nullable`` is not held against it).
    :param nullable: an empty value (see :attr:`FileSchema.null_values`) is allowed; otherwise the
        row is quarantined.
    :param min: / :param max: inclusive bounds for numbers, dates and timestamps (values of the
        column's type, or strings in its input format, e.g. ``"2020-01-01"``).
    :param choices: the allowed values (compared after typing: ``["1", "2"]`` matches ``01`` in an
        int column).
    :param format: for dates and timestamps, one C ``strptime`` format (as Arrow's ``strptime``
        takes it: no ``%f``) or a list tried in order;
        None accepts ISO 8601 (``2024-01-05``, ``2024-01-05 10:00:00[.ffffff]``, ``T`` separator,
        a ``Z`` or ``+hh:mm`` offset converted to UTC).
    :param max_length: the most characters a string may have.
    :param pattern: a regular expression (RE2 syntax) a string must match in full.
    :param trim: strip surrounding whitespace before typing (strings keep it when False).
    """

    name: str
    type: str = STRING
    required: bool = True
    nullable: bool = False
    min: Any = None
    max: Any = None
    choices: Sequence[Any] | None = None
    format: str | Sequence[str] | None = None
    max_length: int | None = None
    pattern: str | None = None
    trim: bool = True
    kind: str = field(init=False, repr=False)
    precision: int | None = field(init=False, repr=False, default=None)
    scale: int | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise ValueError("a column needs a name")
        text = str(self.type).strip()
        match = DECIMAL_TYPE.match(text)
        if match:
            precision, scale = int(match.group(1)), int(match.group(2))
            if not 1 <= precision <= 38 or scale > precision:
                raise ValueError(
                    f"column {self.name}: {text} needs 1 <= precision <= 38 and scale <= precision"
                )
            object.__setattr__(self, "kind", DECIMAL)
            object.__setattr__(self, "precision", precision)
            object.__setattr__(self, "scale", scale)
        elif text.lower() in TYPE_ALIASES:
            object.__setattr__(self, "kind", TYPE_ALIASES[text.lower()])
        else:
            raise ValueError(
                f"column {self.name}: unknown type {self.type!r} "
                "(string, int, decimal(p,s), float, date, timestamp, bool)"
            )
        if isinstance(self.format, str):
            object.__setattr__(self, "format", (self.format,))
        elif self.format is not None:
            object.__setattr__(self, "format", tuple(self.format))
        if self.format is not None and self.kind not in (DATE, TIMESTAMP):
            raise ValueError(f"column {self.name}: format applies to dates and timestamps only")
        if (self.min is not None or self.max is not None) and self.kind in (STRING, BOOL):
            raise ValueError(f"column {self.name}: min/max apply to numbers, dates and timestamps")
        if (self.max_length is not None or self.pattern is not None) and self.kind != STRING:
            raise ValueError(f"column {self.name}: max_length and pattern apply to strings only")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
        # Bounds and choices become typed values now, so a bad declaration fails at parse time.
        for bound in ("min", "max"):
            if getattr(self, bound) is not None:
                typed_values(self, [getattr(self, bound)], bound)
        if self.choices is not None:
            typed_values(self, self.choices, "choices")

    @property
    def key(self) -> str:
        """The normalised name: what file headers are matched against."""
        return normalise_name(self.name)

    @property
    def arrow_type(self) -> pa.DataType:
        if self.kind == DECIMAL:
            return pa.decimal128(self.precision, self.scale)
        return {
            STRING: pa.string(),
            INT: pa.int64(),
            FLOAT: pa.float64(),
            DATE: pa.date32(),
            TIMESTAMP: pa.timestamp("us"),
            BOOL: pa.bool_(),
        }[self.kind]

    @property
    def type_name(self) -> str:
        """How reasons name the type: ``an int``, ``a decimal(12,2)``, ``a date (%d/%m/%Y)``."""
        name = f"decimal({self.precision},{self.scale})" if self.kind == DECIMAL else self.kind
        article = "an" if name[0] in "aeiou" else "a"
        if self.kind in (DATE, TIMESTAMP):
            name += f" ({' or '.join(self.format)})" if self.format else " (ISO 8601)"
        return f"{article} {name}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Column:
        unknown = sorted(set(data) - COLUMN_OPTIONS)
        if unknown:
            raise ValueError(f"column {data.get('name')!r}: unknown option(s) {unknown}")
        return cls(**data)


def typed_values(column: Column, values: Sequence[Any], what: str = "value") -> pa.Array:
    """Declared values (bounds, choices) as an array of the column's Arrow type.

    A value is either of the type already (``0``, ``date(2024, 1, 1)``) or text the column would
    accept from a file (``"0"``, ``"01/01/2024"`` for a ``%d/%m/%Y`` date).
    """
    try:
        return pa.concat_arrays([_typed_value(column, v) for v in values])
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, ValueError) as exc:
        raise ValueError(
            f"column {column.name}: {what} {list(values)!r} is not {column.type_name}: {exc}"
        ) from exc


def _typed_value(column: Column, value: Any) -> pa.Array:
    to = column.arrow_type
    if column.kind == STRING:
        return pa.array([str(value)], to)
    if column.kind == DECIMAL:  # via text: an int64 does not cast to a small precision
        return pc.cast(pa.array([str(value).strip()]), to)
    if not isinstance(value, str):
        return pa.array([value]).cast(to)
    text = value.strip()
    if column.kind == BOOL:
        if text.lower() not in (*TRUE_TEXTS, *FALSE_TEXTS):
            raise ValueError(f"{value!r} is not one of {TRUE_TEXTS + FALSE_TEXTS}")
        return pa.array([text.lower() in TRUE_TEXTS], to)
    if column.kind in (DATE, TIMESTAMP) and column.format:
        for fmt in column.format:
            try:
                return pa.array([dt.datetime.strptime(text, fmt)]).cast(pa.timestamp("us")).cast(to)
            except ValueError:
                continue
        raise ValueError(f"{value!r} does not match {' or '.join(column.format)}")
    return pc.cast(pa.array([text]), to)


class PathValueError(ValueError):
    """The values a file's remote path must give cannot be had: the file is rejected as a whole."""


@dataclass(frozen=True)
class PathValue:
    """A column whose value is the named group ``column`` of ``pattern`` searched in the remote path.

    The path, not the file, is the authority: whoever can write under ``drops/partners/acme/`` is acme,
    whatever the rows inside say.
    """

    column: str
    pattern: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"path_values of {self.column}: {self.pattern!r} is not a regex: {exc}") from exc
        if self.column not in regex.groupindex:
            raise ValueError(
                f"path_values of {self.column}: {self.pattern!r} has no named group (?P<{self.column}>...)"
            )
        object.__setattr__(self, "regex", regex)

    def value(self, remote_path: str) -> str:
        match = self.regex.search(remote_path)
        if match is None or match.group(self.column) is None:
            raise PathValueError(
                f"remote path {remote_path!r} does not match the path_values pattern of "
                f"{self.column} {self.pattern!r}"
            )
        return match.group(self.column)


@dataclass(frozen=True)
class FileSchema:
    """The columns a dataset's files must hold, its key, and how its files are read.

    :param name: the dataset (the landed objects' ``table_name``).
    :param columns: the output columns, in output order.
    :param key: the columns identifying a record; they are never null, and a key repeated within one
        file quarantines every repeat after the first (which of two versions is right is the
        partner's question, not ours to guess).
    :param null_values: the values (after trimming) that mean "no value"; ``("",)`` by default, so
        a literal ``NULL`` or ``NA`` is a value unless declared here.
    :param read: how the files are read (:class:`ReaderOptions`).
    :param path_values: the columns whose value comes from the file's remote path
        (:class:`PathValue`; from configuration, ``{column: pattern}``). A row whose value differs is
        quarantined; a file without the column gets it filled; a file whose remote path is unknown or
        does not match is rejected (fail closed).
    """

    name: str
    columns: Sequence[Column]
    key: Sequence[str] = ()
    null_values: Sequence[str] = ("",)
    read: ReaderOptions = field(default_factory=ReaderOptions)
    path_values: Sequence[PathValue] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "key", tuple(self.key))
        object.__setattr__(self, "null_values", tuple(self.null_values))
        object.__setattr__(self, "path_values", tuple(self.path_values))
        if not self.columns:
            raise ValueError(f"schema {self.name}: no columns")
        seen: dict[str, str] = {}
        for column in self.columns:
            if column.key in RESERVED_NAMES:
                raise ValueError(f"schema {self.name}: {column.name!r} is a name the validation adds itself")
            if column.key in seen:
                raise ValueError(
                    f"schema {self.name}: columns {seen[column.key]!r} and {column.name!r} are the same name"
                )
            seen[column.key] = column.name
        missing = [k for k in self.key if normalise_name(k) not in seen]
        if missing:
            raise ValueError(f"schema {self.name}: key column(s) {missing} are not columns")
        from_path = [normalise_name(p.column) for p in self.path_values]
        strangers = [p.column for p in self.path_values if normalise_name(p.column) not in seen]
        if strangers:
            raise ValueError(f"schema {self.name}: path_values column(s) {strangers} are not columns")
        if len(set(from_path)) != len(from_path):
            raise ValueError(f"schema {self.name}: a column appears twice in path_values")

    def values_from_path(self, remote_path: str | Sequence[str] | None) -> dict[str, str]:
        """``{column key: value}`` the file's remote path gives (see :attr:`path_values`).

        ``remote_path`` may be several paths (one landed object that arrived, byte for byte, under
        more than one remote path): they must then all give the same values. Raises
        :class:`PathValueError` when the path is unknown, does not match, or the paths disagree.
        """
        if not self.path_values:
            return {}
        paths = [remote_path] if isinstance(remote_path, str) else list(remote_path or ())
        columns = ", ".join(p.column for p in self.path_values)
        if not paths:
            raise PathValueError(
                f"the file's remote path is unknown, so the value(s) of {columns} it may carry "
                "(path_values) cannot be known"
            )
        values: dict[str, str] = {}
        for path_value in self.path_values:
            found = {path: path_value.value(path) for path in paths}
            if len(set(found.values())) > 1:
                shown = ", ".join(f"{v!r} ({p})" for p, v in found.items())
                raise PathValueError(
                    f"the file landed from remote paths that disagree on {path_value.column}: {shown}"
                )
            values[normalise_name(path_value.column)] = next(iter(found.values()))
        return values

    @property
    def key_columns(self) -> tuple[Column, ...]:
        wanted = {normalise_name(k) for k in self.key}
        return tuple(c for c in self.columns if c.key in wanted)

    @property
    def arrow_schema(self) -> pa.Schema:
        """The valid rows' schema: the columns in order, then ``additional_column``, ``source_row``."""
        return pa.schema(
            [
                *(pa.field(c.name, c.arrow_type) for c in self.columns),
                pa.field(ADDITIONAL_COLUMN, pa.string()),
                pa.field(SOURCE_ROW, pa.int64()),
            ]
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileSchema:
        """A schema from configuration (see the module's docstring for the shape)."""
        unknown = sorted(set(data) - {"name", "columns", "key", "null_values", "read", "path_values"})
        if unknown:
            raise ValueError(f"schema {data.get('name')!r}: unknown option(s) {unknown}")
        columns = data.get("columns") or []
        if isinstance(columns, Mapping):  # {"id": "int", "note": {"type": "string", "nullable": true}}
            columns = [
                {"name": name, **(spec if isinstance(spec, Mapping) else {"type": spec})}
                for name, spec in columns.items()
            ]
        return cls(
            name=data["name"],
            columns=[c if isinstance(c, Column) else Column.from_dict(c) for c in columns],
            key=tuple(data.get("key") or ()),
            null_values=tuple(data.get("null_values", ("",))),
            read=ReaderOptions.from_dict(data.get("read")),
            path_values=_path_values(data.get("name"), data.get("path_values")),
        )


def _path_values(schema: Any, value: Any) -> tuple[PathValue, ...]:
    """``{column: pattern}`` from configuration as :class:`PathValue` objects."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise ValueError(f"schema {schema!r}: path_values must map columns to patterns, got {value!r}")
    try:
        return tuple(PathValue(str(column), str(pattern)) for column, pattern in value.items())
    except ValueError as exc:
        raise ValueError(f"schema {schema!r}: {exc}") from exc

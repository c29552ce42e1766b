"""Read one landed file into an Arrow table of raw strings, whatever format the partner used.

Every reader returns the same shape: one ``string`` column per header name (names stripped of
surrounding spaces, empty ones named ``column_<position>``), one row per data record, values exactly
as the file spells them (no trimming, no type inference, no 'NA'/'NULL' turned into nulls). Typing
and null rules belong to :mod:`include.etlkit.files.validate`, so they are the same for every format.

A record is what the format calls one: a parsed CSV record (a quoted value may span lines; blank
lines are not records), a spreadsheet row that is not entirely empty, a JSON object. Its 1-based
position among the records read is the ``source_row`` the validation reports.

Formats, chosen from the file's suffix unless :attr:`ReaderOptions.format` says otherwise:

- ``.csv``: comma-delimited, read by ``pyarrow.csv`` (multi-threaded, quoted newlines allowed);
- ``.txt``, ``.dat``: delimited text, the delimiter sniffed among ``|``, tab, ``;`` and ``,``;
  ``.tsv`` (tab) and ``.psv`` (``|``) have theirs by name; a declared delimiter always wins;
- ``.xlsx``: the first sheet (or the declared one), through openpyxl in read-only mode;
- ``.json``: an array of objects, or an object holding one (under the declared ``records_key``,
  or its only array value);
- ``.ndjson``, ``.jsonl``: one object per line;
- ``.parquet``: already typed; every column is cast to its string form (ISO dates and timestamps,
  plain decimals, ``true``/``false``) so that Parquet drops go through the same validation as text.
  The schema's typing then gives the values back their types, and a partner's Parquet whose types
  disagree with the schema is caught the same way a CSV would be.

A file that cannot be read at all (not UTF-8, ragged rows, not a workbook, not JSON) raises
:class:`FileReadError` naming the reason; the operator rejects that file and carries on with the others.

Every reader is bounded, so a hostile or broken file is rejected with a reason instead of taking
the worker's memory: the file's bytes (and an xlsx's uncompressed size, against zip bombs), its
rows, its columns (a spreadsheet that claims 16,384 columns, NDJSON with thousands of distinct
keys), one field's bytes and JSON nesting depth all have limits, set per feed under the schema's
``read:`` (see :class:`ReaderOptions` for the defaults). A quoted CSV value may not span lines unless
the feed declares ``multiline: true``: an unbalanced quote would otherwise swallow the next rows
silently. A UTF-16 file (it starts with a byte-order mark) is read as UTF-16.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit.lazy import lazy_module

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")
    pacsv = lazy_module("pyarrow.csv")


CSV = "csv"
DELIMITED = "delimited"
XLSX = "xlsx"
JSON = "json"
NDJSON = "ndjson"
PARQUET = "parquet"

FORMAT_BY_SUFFIX = {
    ".csv": CSV,
    ".txt": DELIMITED,
    ".tsv": DELIMITED,
    ".psv": DELIMITED,
    ".dat": DELIMITED,
    ".xlsx": XLSX,
    ".json": JSON,
    ".ndjson": NDJSON,
    ".jsonl": NDJSON,
    ".parquet": PARQUET,
}
DELIMITER_BY_SUFFIX = {".csv": ",", ".tsv": "\t", ".psv": "|"}
# Sniffing candidates, in order of preference when two fit equally well.
SNIFFED_DELIMITERS = ("|", "\t", ";", ",")
SNIFF_BYTES = 64 * 1024
SNIFF_LINES = 20
MiB = 1 << 20
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class FileReadError(ValueError):
    """The file cannot be read as its format (the message says where and why)."""


@dataclass(frozen=True)
class ReaderOptions:
    """How a dataset's files are read, when the suffix alone does not say.

    :param format: one of ``csv``, ``delimited``, ``xlsx``, ``json``, ``ndjson``, ``parquet``;
        None takes it from the suffix.
    :param delimiter: the field delimiter of delimited text (one character); None sniffs it.
    :param sheet: the worksheet of an ``.xlsx`` file; None takes the first.
    :param records_key: where the records are in a ``.json`` object, e.g. ``"records"`` or a dotted
        path ``"data.items"``; None accepts a top-level array, or an object with a single array.
    :param encoding: the text encoding of delimited and JSON files.
    :param multiline: whether a quoted delimited value may hold line breaks (off: such a file is
        rejected, because an unbalanced quote merges rows that way).
    :param max_bytes: the largest file read (and an xlsx's largest uncompressed size).
    :param max_rows: the most records in one file.
    :param max_columns: the most columns (distinct keys, for JSON).
    :param max_field_bytes: the longest single value.
    :param max_depth: the deepest JSON nesting.
    """

    format: str | None = None
    delimiter: str | None = None
    sheet: str | None = None
    records_key: str | None = None
    encoding: str = "utf-8"
    multiline: bool = False
    max_bytes: int = 512 * MiB
    max_rows: int = 10_000_000
    max_columns: int = 1_000
    max_field_bytes: int = 1 * MiB
    max_depth: int = 32

    def __post_init__(self) -> None:
        if self.format is not None and self.format not in set(FORMAT_BY_SUFFIX.values()):
            raise ValueError(
                f"unknown file format {self.format!r}: one of {sorted(set(FORMAT_BY_SUFFIX.values()))}"
            )
        if self.delimiter is not None and len(self.delimiter) != 1:
            raise ValueError(f"a delimiter is one character, not {self.delimiter!r}")
        for limit in LIMITS:
            value = getattr(self, limit)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{limit} must be a positive whole number, not {value!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ReaderOptions:
        data = dict(data or {})
        known = {"format", "delimiter", "sheet", "records_key", "encoding", "multiline", *LIMITS}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reader option(s): {unknown}")
        return cls(**data)


LIMITS = ("max_bytes", "max_rows", "max_columns", "max_field_bytes", "max_depth")


def file_format(path: Path | str, options: ReaderOptions | None = None) -> str:
    """The format a file is read as: the declared one, else the one its suffix names."""
    if options is not None and options.format is not None:
        return options.format
    suffix = Path(path).suffix.lower()
    try:
        return FORMAT_BY_SUFFIX[suffix]
    except KeyError:
        raise FileReadError(
            f"unsupported file type {suffix or '(no suffix)'!r}; "
            f"readable: {', '.join(sorted(FORMAT_BY_SUFFIX))}"
        ) from None


def read_file(path: Path | str, options: ReaderOptions | None = None) -> pa.Table:
    """Read ``path`` into a table of ``string`` columns (see the module's docstring)."""
    path = Path(path)
    options = options or ReaderOptions()
    kind = file_format(path, options)
    size = path.stat().st_size
    if size > options.max_bytes:
        raise FileReadError(f"{path.name} is {size:,} bytes, over max_bytes={options.max_bytes:,}")
    encoding = text_encoding(path, options.encoding)
    try:
        if kind in (CSV, DELIMITED):
            delimiter = options.delimiter or DELIMITER_BY_SUFFIX.get(path.suffix.lower())
            if delimiter is None:
                delimiter = sniff_delimiter(path, encoding)
            table = read_delimited(path, delimiter, encoding, options)
        elif kind == XLSX:
            table = read_xlsx(path, options.sheet, options)
        elif kind == JSON:
            table = read_json(path, options.records_key, encoding, options)
        elif kind == NDJSON:
            table = read_ndjson(path, encoding, options)
        else:
            table = read_parquet(path)
    except FileReadError:
        raise
    except UnicodeDecodeError as exc:
        raise FileReadError(
            f"{path.name} is not valid {exc.encoding} text (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start:,}); if the partner sends another encoding, declare it: read: {{encoding: latin-1}}"
        ) from exc
    except RecursionError as exc:
        raise FileReadError(f"{path.name} nests too deeply to read (max_depth={options.max_depth})") from exc
    except pa.ArrowInvalid as exc:
        if "straddl" in str(exc):
            raise FileReadError(
                f"{path.name}: a record is longer than {_block_size(options):,} bytes (a value over "
                f"max_field_bytes={options.max_field_bytes:,}, or an unbalanced quote)"
            ) from exc
        if "UTF8" in str(exc):
            raise FileReadError(
                f"{path.name} is not valid {encoding} text: {exc}; if the partner sends another "
                "encoding, declare it: read: {encoding: latin-1}"
            ) from exc
        raise FileReadError(f"cannot read {path.name} as {kind}: {exc}") from exc
    except (LookupError, OSError) as exc:
        raise FileReadError(f"cannot read {path.name} as {kind}: {exc}") from exc
    check_limits(table, options, path.name)
    return table


def text_encoding(path: Path, declared: str) -> str:
    """The declared encoding, or UTF-16 for a file that starts with UTF-16's byte-order mark."""
    if declared.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return declared
    with path.open("rb") as handle:
        head = handle.read(2)
    return "utf-16" if head in UTF16_BOMS else declared


def check_limits(table: pa.Table, options: ReaderOptions, name: str) -> None:
    """Columns, records and the longest value within what the feed allows."""
    if table.num_columns > options.max_columns:
        raise FileReadError(
            f"{name} has {table.num_columns:,} columns, over max_columns={options.max_columns:,}"
        )
    if table.num_rows > options.max_rows:
        raise FileReadError(f"{name} has {table.num_rows:,} records, over max_rows={options.max_rows:,}")
    for column_name, column in zip(table.column_names, table.columns, strict=True):
        if not table.num_rows:
            break
        lengths = pc.binary_length(column)
        longest = pc.max(lengths).as_py() or 0
        if longest > options.max_field_bytes:
            row = pc.index(lengths, longest).as_py() + 1
            raise FileReadError(
                f"{name} record {row}, column {column_name!r}: a value of {longest:,} bytes, over "
                f"max_field_bytes={options.max_field_bytes:,}"
            )


def _block_size(options: ReaderOptions) -> int:
    """pyarrow's CSV block: a whole record must fit in one, so it follows the field limit."""
    return max(1 * MiB, 4 * options.max_field_bytes)


# -- delimited text ---------------------------------------------------------------------------------


def sniff_delimiter(path: Path, encoding: str = "utf-8") -> str:
    """The candidate that splits the first lines into the same number of fields, the most fields.

    Quoted text is skipped, so a comma inside ``"..."`` does not count. A file with none of the
    candidates is a single-column file (``,`` is returned, and never found).
    """
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    text = head.decode(encoding, errors="replace").lstrip("\ufeff")
    lines = text.splitlines()
    if len(head) == SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line was cut by the read
    lines = [line for line in lines if line.strip()][:SNIFF_LINES]
    if not lines:
        return ","
    counts = {d: [_count_unquoted(line, d) for line in lines] for d in SNIFFED_DELIMITERS}
    consistent = [d for d in SNIFFED_DELIMITERS if counts[d][0] > 0 and len(set(counts[d])) == 1]
    pool = consistent or [d for d in SNIFFED_DELIMITERS if counts[d][0] > 0]
    if not pool:
        return ","
    return max(pool, key=lambda d: (counts[d][0], -SNIFFED_DELIMITERS.index(d)))


def _count_unquoted(line: str, delimiter: str) -> int:
    count, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            count += 1
    return count


def read_delimited(
    path: Path, delimiter: str, encoding: str = "utf-8", options: ReaderOptions | None = None
) -> pa.Table:
    """Delimited text with a header line, every column read as a string, nothing made null.

    Without ``multiline`` a value holding a line break rejects the file, naming the record: that is
    what an unbalanced quote looks like once parsed (one record swallowing the next ones).
    """
    options = options or ReaderOptions()
    if _blank(path, encoding):
        return pa.table({})  # no header: the validation says the file is empty
    read_options = pacsv.ReadOptions(encoding=encoding, block_size=_block_size(options))
    parse_options = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True)
    # The header, parsed by the same reader (so quoting is handled the same way), gives the names;
    # then every name is declared a string so no value is inferred, converted or nulled.
    names = pacsv.open_csv(path, read_options=read_options, parse_options=parse_options).schema.names
    convert_options = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in names},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
    )
    table = pacsv.read_csv(
        path, read_options=read_options, parse_options=parse_options, convert_options=convert_options
    )
    if not options.multiline:
        for name, column in zip(table.column_names, table.columns, strict=True):
            broken = pc.match_substring_regex(column, "[\r\n]")
            if pc.any(broken).as_py():
                row = pc.index(broken, True).as_py() + 1
                raise FileReadError(
                    f"{path.name} record {row}, column {name!r}: a quoted value spans lines (an unbalanced "
                    "quote merges records); declare read: {multiline: true} if values may hold line breaks"
                )
    return table.rename_columns(header_names(table.column_names))


def _blank(path: Path, encoding: str) -> bool:
    """Whether the file holds nothing but white space (or nothing at all)."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    return len(head) < SNIFF_BYTES and not head.decode(encoding, errors="replace").strip(" \t\r\n\ufeff")


def header_names(raw: Sequence[Any]) -> list[str]:
    """Header names stripped of surrounding spaces; an empty one is named by its position."""
    names = []
    for position, name in enumerate(raw, start=1):
        text = "" if name is None else str(name).strip()
        names.append(text or f"column_{position}")
    return names


# -- spreadsheets -----------------------------------------------------------------------------------


def read_xlsx(path: Path, sheet: str | None = None, options: ReaderOptions | None = None) -> pa.Table:
    """The first (or named) sheet: its first row is the header, entirely empty rows are skipped.

    The workbook's uncompressed size is checked before it is opened (a zip bomb), the dimension the
    sheet claims is ignored (a sheet may claim column XFD and would be padded to 16,384 columns), and
    rows and columns are counted as they are read.
    """
    import zipfile

    from openpyxl import load_workbook

    options = options or ReaderOptions()
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise FileReadError(f"{path.name} is not a readable .xlsx workbook: {exc}") from exc
    if unpacked > options.max_bytes:
        raise FileReadError(
            f"{path.name} unpacks to {unpacked:,} bytes, over max_bytes={options.max_bytes:,} (a zip bomb?)"
        )
    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises zipfile, XML and its own errors alike
        raise FileReadError(f"{path.name} is not a readable .xlsx workbook: {exc}") from exc
    try:
        if sheet is None:
            worksheet = workbook.worksheets[0]
        elif sheet in workbook.sheetnames:
            worksheet = workbook[sheet]
        else:
            raise FileReadError(f"{path.name} has no sheet {sheet!r} (sheets: {workbook.sheetnames})")
        try:
            worksheet.reset_dimensions()  # read the cells there are, not the range the sheet claims
            rows = []
            for row in worksheet.iter_rows(values_only=True):
                width = max((i for i, v in enumerate(row) if v is not None and v != ""), default=-1) + 1
                if not width:
                    continue
                if width > options.max_columns:
                    raise FileReadError(
                        f"{path.name} row {len(rows) + 1} has {width:,} columns, over max_columns="
                        f"{options.max_columns:,}"
                    )
                if len(rows) > options.max_rows:
                    raise FileReadError(f"{path.name} has more than max_rows={options.max_rows:,} rows")
                rows.append([cell_text(value) for value in row[:width]])
        except FileReadError:
            raise
        except Exception as exc:
            raise FileReadError(f"{path.name}: cannot read sheet {worksheet.title!r}: {exc}") from exc
    finally:
        workbook.close()
    if not rows:
        return pa.table({})
    # read-only sheets can report trailing empty cells: the width is the last cell with a value.
    width = max(max((i for i, v in enumerate(row) if v not in (None, "")), default=-1) for row in rows) + 1
    header, data = rows[0], rows[1:]
    names = header_names([*header, *[None] * width][:width])
    columns = [[(row[i] if i < len(row) else None) for row in data] for i in range(width)]
    return pa.Table.from_arrays([pa.array(values, pa.string()) for values in columns], names=names)


def cell_text(value: Any) -> str | None:
    """A spreadsheet cell as text: what a user sees, without the display format's rounding."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # Excel has one number type: 3.0 is the integer 3 a user typed
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()  # Excel stores dates as midnight datetimes
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


# -- JSON -------------------------------------------------------------------------------------------


class RawNumber(str):
    """A JSON number kept as the file spells it (``9.990`` stays ``9.990``, ``1e3`` stays ``1e3``)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise FileReadError(f"an object has the key {twice!r} twice: which value is meant cannot be told")
    return record


def _loads(text: str) -> Any:
    return json.loads(
        text,
        parse_float=RawNumber,
        parse_int=RawNumber,
        parse_constant=RawNumber,
        object_pairs_hook=_unique_keys,
    )


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            deepest = max(deepest, depth)
            continue
        deepest = max(deepest, depth + 1)
    return deepest


def json_text(value: Any) -> str | None:
    """One JSON value as a string cell: scalars as spelled, nested values as compact JSON."""
    if value is None:
        return None
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return _dump(value)


def _dump(value: Any) -> str:
    if isinstance(value, RawNumber):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_dump(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    return json.dumps(value)


def records_table(records: Iterable[tuple[int, Any]], options: ReaderOptions | None = None) -> pa.Table:
    """Objects (with their position, for errors) -> one string column per key, first-seen order.

    Each record only touches its own keys (a column's values are kept sparse, by record number, and
    filled in at the end), so a file of many distinct keys costs what it holds, and the number of
    distinct keys, records and nesting levels stop at the feed's limits.
    """
    options = options or ReaderOptions()
    columns: dict[str, dict[int, str | None]] = {}
    count = 0
    for count, (position, record) in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise FileReadError(f"record {position} is a JSON {type(record).__name__}, not an object")
        if count > options.max_rows:
            raise FileReadError(f"more than max_rows={options.max_rows:,} records")
        if json_depth(record) > options.max_depth:
            raise FileReadError(f"record {position} nests deeper than max_depth={options.max_depth}")
        for name, value in record.items():
            values = columns.get(name)
            if values is None:
                if len(columns) >= options.max_columns:
                    raise FileReadError(
                        f"record {position} brings key {len(columns) + 1:,}, over max_columns="
                        f"{options.max_columns:,}"
                    )
                values = columns[name] = {}
            values[count - 1] = json_text(value)
    if not columns:
        return pa.table({})
    names = header_names(list(columns))
    arrays = [pa.array([v.get(i) for i in range(count)], pa.string()) for v in columns.values()]
    return pa.Table.from_arrays(arrays, names=names)


def read_json(
    path: Path, records_key: str | None = None, encoding: str = "utf-8", options: ReaderOptions | None = None
) -> pa.Table:
    try:
        document = _loads(path.read_text(encoding=encoding).lstrip("\ufeff"))
    except json.JSONDecodeError as exc:
        raise FileReadError(f"{path.name} is not valid JSON: {exc}") from exc
    except FileReadError as exc:
        raise FileReadError(f"{path.name}: {exc}") from exc
    records = _find_records(document, records_key, path.name)
    try:
        return records_table(enumerate(records, start=1), options)
    except FileReadError as exc:
        raise FileReadError(f"{path.name}: {exc}") from exc


def _find_records(document: Any, records_key: str | None, name: str) -> list[Any]:
    if records_key is not None:
        found = document
        for part in records_key.split("."):
            if not isinstance(found, dict) or part not in found:
                raise FileReadError(f"{name} has no records under {records_key!r}")
            found = found[part]
        document = found
    elif isinstance(document, dict):
        arrays = [key for key, value in document.items() if isinstance(value, list)]
        if len(arrays) != 1:
            raise FileReadError(
                f"{name} is a JSON object with {len(arrays)} array(s) ({arrays}); declare records_key"
            )
        document = document[arrays[0]]
    if not isinstance(document, list):
        raise FileReadError(f"{name}: the records are a JSON {type(document).__name__}, not an array")
    return document


def read_ndjson(path: Path, encoding: str = "utf-8", options: ReaderOptions | None = None) -> pa.Table:
    def records() -> Iterator[tuple[int, Any]]:
        with path.open(encoding=encoding) as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip().lstrip("\ufeff")
                if not text:
                    continue
                try:
                    yield number, _loads(text)
                except json.JSONDecodeError as exc:
                    raise FileReadError(f"{path.name} line {number} is not valid JSON: {exc}") from exc
                except FileReadError as exc:
                    raise FileReadError(f"{path.name} line {number}: {exc}") from exc

    try:
        return records_table(records(), options)
    except FileReadError as exc:
        if str(exc).startswith(path.name):
            raise
        raise FileReadError(f"{path.name}: {exc}") from exc


# -- Parquet ----------------------------------------------------------------------------------------


def read_parquet(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = header_names(table.column_names)
    return pa.Table.from_arrays([_as_strings(table.column(i)) for i in range(table.num_columns)], names=names)


def _as_strings(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    if pa.types.is_string(kind):
        return column
    if pa.types.is_nested(kind):
        return pa.array([json_text(_raw_numbers(v)) for v in column.to_pylist()], pa.string())
    # Dates and timestamps become ISO 8601 ('2024-01-05', '2024-01-05 10:00:00.000000', with 'Z'
    # when zoned), decimals their plain digits, booleans 'true'/'false': what the validation parses.
    return pc.cast(column, pa.string())


def _raw_numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return RawNumber(value)
    if isinstance(value, dict):
        return {k: _raw_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_raw_numbers(v) for v in value]
    return str(value)


__all__ = [
    "FORMAT_BY_SUFFIX",
    "FileReadError",
    "ReaderOptions",
    "file_format",
    "read_file",
    "sniff_delimiter",
]

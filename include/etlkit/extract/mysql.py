"""Land one MySQL / MariaDB table's new and changed rows in the ingestion bucket, as Parquet.

The MySQL sibling of :mod:`include.etlkit.extract.postgres`: same windows
(:mod:`include.etlkit.windows`), same content-addressed, create-once objects
(:mod:`include.etlkit.storage`), same ledger records. The rows stream through a server-side cursor
(``SSCursor``) read with ``fetchmany``; each chunk becomes one Arrow record batch typed from
``information_schema.columns`` and one Parquet row group on local disk, so memory is bounded by the
chunk size whatever the table size.

Schema drift: before extracting, the table's live columns are compared with those recorded by its
last completed run (``etl.source_schema``). Added, dropped and retyped columns are logged as
warnings, returned as ``schema_changes`` and recorded in ``etl.schema_change``; nothing is dropped
silently: a new column is landed like any other, a dropped one is simply absent from later files.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.etlkit.control.schema_changes import SchemaChange, SchemaRegistry, diff_columns
from include.etlkit.extract.base import TableExtractOperator, TableSpec
from include.etlkit.lazy import lazy_module
from include.etlkit.parquet import stream_batches
from include.etlkit.row_identity import ROW_HASH, row_identity
from include.etlkit.windows import ExtractWindow

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq
else:  # imported on first use, not while a DAG file is parsed
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "MySqlTableExtractOperator",
    "SchemaChange",
    "SchemaRegistry",
    "SourceColumn",
    "SourceUnavailable",
    "arrow_type",
    "diff_columns",
    "quote_identifier",
]

DEFAULT_CURSOR = "updated_at"  # the retail tables' cursor column (a dict spec may name another)
DEFAULT_CHUNK_ROWS = 10_000  # rows per fetchmany, Arrow batch and Parquet row group
# UTC sessions: TIMESTAMP columns come back as the naive UTC values the windows compare with; a long
# write timeout because a server-side cursor holds the result open while each chunk is written.
SESSION_INIT = "SET time_zone = '+00:00', net_write_timeout = 600"
BINARY_TYPES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"})
VERSION_BATCH_ROWS = 100_000  # row versions sent to the ledger per batch


class SourceUnavailable(RuntimeError):
    """The MySQL source cannot be reached: the run fails, and nothing is recorded."""


def quote_identifier(name: str) -> str:
    """A backtick-quoted identifier, as MySQL quotes any name (``order date``, ``select``, ``a`b``).

    Identifiers cannot be bound as parameters, so quoting is what keeps a name a name: embedded
    backticks are doubled. What MySQL itself refuses (empty, NUL, over 64 characters, a trailing
    space) is refused here, before any query is built.
    """
    if not isinstance(name, str) or not name or len(name) > 64 or "\x00" in name or name.endswith(" "):
        raise ValueError(f"not a MySQL identifier: {name!r}")
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class SourceColumn:
    """A column as the source catalogue describes it; ``type`` is ``COLUMN_TYPE`` (``decimal(10,2)``)."""

    name: str
    type: str
    data_type: str
    precision: int | None = None
    scale: int | None = None
    datetime_precision: int | None = None

    @property
    def arrow(self) -> pa.DataType:
        return arrow_type(self)


def arrow_type(column: SourceColumn) -> pa.DataType:
    """The Arrow type for a MySQL column: exact where it matters (money stays decimal, ms stay ms)."""
    data_type, column_type = column.data_type.lower(), column.type.lower()
    if data_type == "tinyint" and column_type.startswith("tinyint(1)"):
        return pa.bool_()  # MySQL's BOOLEAN
    if data_type in ("tinyint", "smallint", "mediumint", "int", "integer", "year"):
        return pa.int64()
    if data_type == "bigint":
        return pa.uint64() if "unsigned" in column_type else pa.int64()
    if data_type == "decimal" and column.precision is not None:
        factory = pa.decimal128 if column.precision <= 38 else pa.decimal256
        return factory(column.precision, column.scale or 0)
    if data_type == "float":
        return pa.float32()
    if data_type == "double":
        return pa.float64()
    if data_type in ("datetime", "timestamp"):
        # timestamp('ms') would silently truncate microseconds: only used when the column has none.
        return pa.timestamp("ms" if (column.datetime_precision or 0) <= 3 else "us")
    if data_type == "date":
        return pa.date32()
    if data_type == "time":
        return pa.duration("us")  # MySQLdb returns TIME as a timedelta (it can exceed 24 hours)
    if data_type in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "bit"):
        return pa.binary()
    return pa.string()  # char, varchar, text, enum, set, json...: kept verbatim


def _to_arrow(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
    if pa.types.is_boolean(type_):
        values = [None if v is None else bool(v) for v in values]
    elif pa.types.is_string(type_):
        values = [v if v is None or isinstance(v, str) else str(v) for v in values]
    return pa.array(values, type=type_)


# -- the operator -----------------------------------------------------------------------------------


class MySqlTableExtractOperator(TableExtractOperator):
    """Land the rows of one MySQL table that changed in the run's window (a full snapshot the first time).

    Parameters as :class:`~include.etlkit.extract.base.TableExtractOperator` (a mapped table's cursor
    defaults to ``updated_at``; its ``schema`` is ignored: the table is read from the connection's
    database), plus:

    :param chunk_size: rows per ``fetchmany`` (and per Parquet row group): bounds memory.
    """

    ui_color = "#fbe3c6"
    default_cursor = DEFAULT_CURSOR

    def __init__(self, *, chunk_size: int = DEFAULT_CHUNK_ROWS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size

    def execute(self, context: Any) -> dict[str, Any]:
        spec = self.spec
        for name in (spec.name, spec.key, spec.cursor):
            quote_identifier(name)  # fail before any work on a name that could not be queried
        return self.land(context, self.window(context))

    @staticmethod
    def window_condition(spec: TableSpec, window: ExtractWindow) -> tuple[str, list[Any]]:
        """The WHERE condition (and its parameters) selecting the rows of ``window``."""
        cursor_column = quote_identifier(spec.cursor)
        if window.lower is None:
            return f"{cursor_column} < %s", [window.upper]
        return f"{cursor_column} >= %s AND {cursor_column} < %s", [window.lower, window.upper]

    def land(
        self,
        context: Any,
        window: ExtractWindow,
        *,
        condition: tuple[str, list[Any]] | None = None,
        mode: str | None = None,
        advance_state: bool = True,
    ) -> dict[str, Any]:
        """Land the table's rows in ``window`` (or those of ``condition``) as one immutable object
        carrying each row's hash; record it, its row versions and the schema.

        The versions are read from the landed object (its key, ``_row_hash`` and cursor columns), so
        a table's first landing is recorded as their baseline, one ledger row, as PostgreSQL's is.
        Only a key whose text Arrow would not write as the reconciliation does (a timestamp, a
        float...) has its versions' keys taken while streaming (:func:`_key_text`), in a side file.
        """
        # The ledger's names: imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.control.ledger import VersionColumns

        spec = self.spec
        registry = SchemaRegistry()
        where, params = condition or self.window_condition(spec, window)
        with tempfile.TemporaryDirectory(prefix=f"land-{spec.name}-") as tmp:
            local = Path(tmp) / f"{spec.name}.parquet"
            conn = self._connect()
            try:
                columns = self._columns(conn, spec)
                changes = diff_columns(registry.recorded(self.source, spec.name), columns)
                for change in changes:
                    self.log.warning("schema drift in %s.%s: %s", self.source, spec.name, change.describe())
                key_column = next(c for c in columns if c.name == spec.key)
                versions = None if _key_text_is_arrows(key_column) else Path(tmp) / "versions.parquet"
                rows = self._stream_to_parquet(conn, spec, columns, where, params, local, versions)
            finally:
                conn.close()
            summary = self.land_parquet(
                context,
                local,
                rows,
                window,
                mode=mode or window.mode,
                advance_state=advance_state,
                row_versions=_row_versions(versions) if versions is not None and rows else None,
                version_columns=VersionColumns(spec.key, ROW_HASH, spec.cursor) if versions is None else None,
            )
        registry.record(self.source, spec.name, columns, changes, context["run_id"])
        return {**summary, "schema_changes": [asdict(change) for change in changes]}

    def _connect(self) -> Any:
        from airflow.providers.mysql.hooks.mysql import MySqlHook

        hook = MySqlHook(mysql_conn_id=self.conn_id, init_command=SESSION_INIT)
        try:
            return hook.get_conn()
        except Exception as exc:
            # Only connection details are named: the URI could carry a password.
            conn = hook.get_connection(self.conn_id)
            raise SourceUnavailable(
                f"cannot reach the MySQL source (Airflow connection {self.conn_id!r}, "
                f"{conn.host}:{conn.port or 3306}/{conn.schema}): {exc}"
            ) from exc

    @staticmethod
    def _columns(conn: Any, spec: TableSpec) -> list[SourceColumn]:
        cur = conn.cursor()
        try:
            cur.execute(
                "SELECT column_name, column_type, data_type, numeric_precision, numeric_scale, "
                "datetime_precision FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = %s ORDER BY ordinal_position",
                (spec.name,),
            )
            columns = [
                SourceColumn(
                    name=name,
                    type=_text(column_type).lower(),
                    data_type=_text(data_type).lower(),
                    precision=None if precision is None else int(precision),
                    scale=None if scale is None else int(scale),
                    datetime_precision=None if dt_precision is None else int(dt_precision),
                )
                for name, column_type, data_type, precision, scale, dt_precision in cur.fetchall()
            ]
        finally:
            cur.close()
        if not columns:
            raise LookupError(f"table {spec.name} not found in the source catalogue")
        missing = {spec.key, spec.cursor} - {c.name for c in columns}
        if missing:
            raise LookupError(f"{spec.name} has no column(s) {sorted(missing)}")
        if ROW_HASH in {c.name for c in columns}:
            raise ValueError(f"{spec.name} has a column {ROW_HASH}: the name of the row hash landed with it")
        for column in columns:
            quote_identifier(column.name)
        return columns

    def _stream_to_parquet(
        self,
        conn: Any,
        spec: TableSpec,
        columns: Sequence[SourceColumn],
        condition: str,
        params: Sequence[Any],
        path: Path,
        versions: Path | None = None,
    ) -> int:
        """Stream the rows of ``condition`` with their identity (``_row_hash``) into a Parquet file,
        one row group per chunk (and, given ``versions``, each row's key as the server's text, its
        identity and cursor into that file); returns the count.

        The identity is :func:`~include.etlkit.row_identity.row_identity` of the row as the server's
        text, computed here: the reconciliation computes it the same way over the same text.
        """
        order = (spec.key,) if _unique_key(conn, spec) else (spec.key, spec.cursor)
        query = (
            f"SELECT {', '.join(quote_identifier(c.name) for c in columns)} "
            f"FROM {quote_identifier(spec.name)} WHERE {condition} "
            f"ORDER BY {', '.join(quote_identifier(c) for c in order)}"
        )
        schema = pa.schema([(c.name, c.arrow) for c in columns])
        landed = schema.append(pa.field(ROW_HASH, pa.string()))
        names = [c.name for c in columns]
        key, cursor = names.index(spec.key), names.index(spec.cursor)
        version_schema = pa.schema(
            [("row_key", pa.string()), ("row_hash", pa.string()), ("last_updated", schema.field(cursor).type)]
        )
        # No dictionary for the columns unique or nearly so (the hash, the key, the cursor): it would
        # be built and dropped in every row group (measured: 13% smaller at 1M rows, a little faster).
        dictionary = [n for n in landed.names if n not in (ROW_HASH, spec.key, spec.cursor)]
        rows = 0
        with (
            pq.ParquetWriter(path, landed, compression="zstd", use_dictionary=dictionary) as writer,
            pq.ParquetWriter(versions, version_schema) if versions else nullcontext() as sidecar,
        ):
            for raw, fallbacks in _text_chunks(conn, query, params, len(columns), self.chunk_size):
                arrays = [
                    _from_text(text, field.type, fallback)
                    for text, field, fallback in zip(raw, schema, fallbacks, strict=True)
                ]
                hashes = row_identity(raw)
                writer.write_batch(pa.RecordBatch.from_arrays([*arrays, hashes], schema=landed))
                if sidecar is not None:
                    sidecar.write_batch(
                        pa.RecordBatch.from_arrays(
                            [_key_text(arrays[key], raw[key]), hashes, arrays[cursor]], schema=version_schema
                        )
                    )
                rows += len(hashes)
        if rows == 0:
            path.unlink(missing_ok=True)
        return rows


def _text_chunks(
    conn: Any, query: str, params: Sequence[Any], width: int, chunk_size: int
) -> Iterator[tuple[list[pa.Array], list[Callable[[str], Any] | None]]]:
    """The rows of ``query`` as the server's text, ``chunk_size`` rows at a time, each chunk as one
    binary Arrow array per column, with MySQLdb's converter of each column for what Arrow cannot
    parse (:func:`_from_text`).

    The rows come through a server-side cursor with the connection's converters off, and become
    columns in one pass in Arrow (a struct of the rows' bytes): MySQLdb's Python objects per value
    cost three quarters of the extract's time (bench/README.md). The extract and the reconciliation
    read their rows here, so both hash the same text.
    """
    import MySQLdb.cursors

    text_rows = pa.struct([(f"c{i}", pa.binary()) for i in range(width)])
    converters = conn.converter
    conn.converter = {}  # values as the server sends them: bytes, parsed by Arrow
    cur = conn.cursor(MySQLdb.cursors.SSCursor)
    try:
        cur.execute(query, list(params))
        fallbacks = [_converter(converters, description[1]) for description in cur.description]
        while chunk := cur.fetchmany(chunk_size):
            by_column = pa.array(chunk, text_rows).flatten()
            del chunk  # the rows' Python objects: the chunk is Arrow's from here on
            yield by_column, fallbacks
    finally:
        cur.close()
        conn.converter = converters


def _unique_key(conn: Any, spec: TableSpec) -> bool:
    """Whether the key column alone is unique (the primary key, say): the rows are then ordered by
    it alone, which InnoDB reads in index order; adding the cursor would sort the whole result."""
    cur = conn.cursor()
    try:
        cur.execute(
            "SELECT 1 FROM information_schema.statistics WHERE table_schema = DATABASE() "
            "AND table_name = %s AND non_unique = 0 GROUP BY index_name "
            "HAVING count(*) = 1 AND max(column_name) = %s",
            (spec.name, spec.key),
        )
        return cur.fetchone() is not None
    finally:
        cur.close()


def _converter(converters: Mapping[Any, Any], field_type: int) -> Callable[[str], Any] | None:
    """MySQLdb's converter of a field type, when it is a plain function (text types have lists)."""
    found = converters.get(field_type)
    return found if callable(found) else None


def _from_text(raw: pa.Array, type_: pa.DataType, fallback: Callable[[str], Any] | None) -> pa.Array:
    """One column of a chunk, from the server's text (``raw``, binary) to its Arrow type."""
    if pa.types.is_binary(type_):
        return raw
    if not pa.types.is_duration(type_):
        try:
            text = raw.cast(pa.string())
            if pa.types.is_string(type_):
                return text
            if pa.types.is_boolean(type_):
                return text.cast(pa.int8()).cast(pa.bool_())
            return text.cast(type_)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            if fallback is None:
                raise
    if fallback is None:
        raise TypeError(f"no converter for a MySQL column read as {type_}")
    return _to_arrow([None if v is None else fallback(v.decode()) for v in raw.to_pylist()], type_)


def _key_text_is_arrows(column: SourceColumn) -> bool:
    """Whether a key column's text is Arrow's text of its typed value, as the landed object gives it
    to :func:`~include.etlkit.control.ledger.landed_versions`: integers (a ZEROFILL ``00042`` reads
    ``42``) and strings. Other keys' versions go to a side file with their text (:func:`_key_text`)."""
    return pa.types.is_integer(column.arrow) or pa.types.is_string(column.arrow)


def _key_text(array: pa.Array, raw: pa.Array) -> pa.Array:
    """A key that is not an integer or a string as ``etl.row_version`` records it: its text (as
    ``str`` of a timestamp, the server's text of anything else)."""
    if pa.types.is_timestamp(array.type) or pa.types.is_duration(array.type):
        return pa.array([_text(v) for v in array.to_pylist()], pa.string())
    return raw.cast(pa.string())


def key_text(column: SourceColumn, raw: pa.Array, fallback: Callable[[str], Any] | None) -> pa.Array:
    """A key column's values (the server's text, ``raw``) as the ledger records them, whichever
    way it recorded them: what the reconciliation compares with ``Ledger.row_hashes``' keys."""
    array = _from_text(raw, column.arrow, fallback)
    return array.cast(pa.string()) if _key_text_is_arrows(column) else _key_text(array, raw)


def _row_versions(path: Path) -> Iterator[pa.RecordBatch]:
    """The versions of a side file (keys as the server's text), batch by batch (bounded memory)."""
    yield from stream_batches(path, VERSION_BATCH_ROWS)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

"""The hostile-input corpus: files a partner could drop, each with the outcome the pipeline must give.

Every case is generated here by code (the large ones too), dropped in S3 under its own name and
taken through the real path by ``test_hostile_corpus.py``: the S3 drop extract, the validation and
the load. ``docs/reliability.md`` lists every case (``python -m tests.integration.corpus`` prints
the table it holds).

Outcomes:
- ``loaded``: every row reaches the warehouse;
- ``quarantined``: the bad rows are set aside with a reason, the others are loaded;
- ``rejected``: the file is rejected whole, with a reason (a copy under ``errors/``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

MiB = 1 << 20

# The feed every case is dropped into: a partner's customer list.
SCHEMA = {
    "key": ["customer_ref"],
    "null_values": ["", "NULL", "NA"],
    "columns": [
        {"name": "customer_ref", "type": "string"},
        {"name": "full_name", "type": "string"},
        {"name": "email", "type": "string", "nullable": True, "required": False},
        {"name": "signed_up_on", "type": "date", "nullable": True, "required": False},
        {"name": "spend", "type": "decimal(12,2)", "nullable": True, "min": 0, "required": False},
    ],
    # The limits a feed may set (the defaults are larger): small here, so the bombs stay small.
    "read": {"max_bytes": 8 * MiB, "max_field_bytes": 64 * 1024, "max_columns": 200},
}
HEADER = "customer_ref,full_name,email,signed_up_on,spend"


def rows(case: str, n: int, start: int = 1) -> list[str]:
    return [
        f"{case}-{i},Name {i},n{i}@example.com,2024-11-{i % 28 + 1:02d},{i}.50"
        for i in range(start, start + n)
    ]


def csv(case: str, n: int = 3, header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows(case, n)]) + "\n").encode()


def records(case: str, n: int = 3) -> list[dict[str, str]]:
    return [
        {
            "customer_ref": f"{case}-{i}",
            "full_name": f"Name {i}",
            "email": f"n{i}@example.com",
            "spend": f"{i}.50",
        }
        for i in range(1, n + 1)
    ]


def xlsx(table: list[list[object]], edit: Callable[[object], None] | None = None) -> bytes:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    for row in table:
        sheet.append(row)
    if edit is not None:
        edit(sheet)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewrite_sheet(data: bytes, change: Callable[[str], str]) -> bytes:
    """The workbook with its first sheet's XML changed (what some exporters write)."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            body = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                body = change(body.decode()).encode()
            target.writestr(item, body)
    return out.getvalue()


def claimed_dimension(sheet_xml: str) -> str:
    start = sheet_xml.index('<dimension ref="') + len('<dimension ref="')
    return sheet_xml[:start] + "A1:XFD1048576" + sheet_xml[sheet_xml.index('"', start) :]


def zip_bomb() -> bytes:
    """A workbook whose sheet unpacks to 12 MiB (over the feed's 8 MiB) from a few KB."""
    base = xlsx([HEADER.split(","), ["bomb-1", "Name", "a@x", None, "1.00"]])
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename))
        target.writestr("xl/padding.bin", b"\0" * (12 * MiB))
    return out.getvalue()


def parquet(case: str) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "customer_ref": [f"{case}-1", f"{case}-2"],
            "full_name": ["Ann", "Bob"],
            "signed_up_on": pa.array([None, None], pa.date32()),
            "spend": pa.array([None, None], pa.decimal128(12, 2)),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@dataclass(frozen=True)
class Case:
    """One hostile file: where it is dropped, its bytes, and what must become of it."""

    id: str
    name: str  # the dropped file's name (its S3 key under the drop prefix)
    data: bytes
    outcome: str  # loaded, quarantined or rejected
    reason: str = ""  # text the reason must contain (rejected or quarantined)
    what: str = ""  # the problem, for docs/reliability.md
    rows: tuple[int, int, int] | None = None  # (read, loaded, rejected) when it is known exactly

    def __post_init__(self) -> None:
        if self.outcome not in ("loaded", "quarantined", "rejected"):
            raise ValueError(self.outcome)


def _formula_sheet(sheet) -> None:
    sheet["B2"] = "=UPPER(A2)"  # no cached value: the name is empty once read


def _merged(sheet) -> None:
    sheet.merge_cells("B2:B3")


def _cases() -> list[Case]:
    deep = "[" * 100_000 + "]" * 100_000
    many_keys = "\n".join(json.dumps({f"k{i}_{j}": j for j in range(5)}) for i in range(1000))
    return [
        Case("empty", "empty.csv", b"", "rejected", "no header row", "an empty file (0 bytes)"),
        Case(
            "header-only",
            "header_only.csv",
            (HEADER + "\n").encode(),
            "loaded",
            "",
            "a header and no rows",
            (0, 0, 0),
        ),
        Case("blank-lines", "blank_lines.csv", b"\n\n\n", "rejected", "no header row", "only blank lines"),
        Case(
            "ragged",
            "ragged.csv",
            csv("rg") + b"rg-9,Extra,e@x,2024-11-01,1.00,surplus\n",
            "rejected",
            "Expected 5 columns, got 6",
            "a row with more fields than the header",
        ),
        Case(
            "short-row",
            "short_row.csv",
            csv("sr") + b"sr-9,Short\n",
            "rejected",
            "Expected 5 columns",
            "a row with fewer fields than the header",
        ),
        Case(
            "latin1",
            "latin1.csv",
            (HEADER + "\nl1-1,Zoé,z@x,,1.00\n").encode("latin-1"),
            "rejected",
            "encoding: latin-1",
            "Latin-1 bytes in a UTF-8 feed",
        ),
        Case(
            "utf16",
            "utf16.csv",
            (HEADER + "\nu16-1,Zoë,z@x,,1.00\n").encode("utf-16"),
            "loaded",
            "",
            "UTF-16 with a byte-order mark",
            (1, 1, 0),
        ),
        Case(
            "utf8-bom",
            "utf8_bom.csv",
            b"\xef\xbb\xbf" + csv("bom"),
            "loaded",
            "",
            "a UTF-8 byte-order mark",
            (3, 3, 0),
        ),
        Case(
            "invalid-utf8",
            "invalid_utf8.csv",
            csv("iu") + b"iu-9,Bad \xff\xfe bytes,b@x,,1.00\n",
            "rejected",
            "not valid",
            "bytes that are not UTF-8 at all",
        ),
        Case("binary", "garbage.csv", bytes(range(256)) * 20, "rejected", "", "binary garbage named .csv"),
        Case(
            "unbalanced-quote",
            "unbalanced.csv",
            (
                HEADER + '\nuq-1,"Ann,a@x,2024-11-01,1.00\nuq-2,Bob",b@x,2024-11-02,2.00\nuq-3,Cy,c@x,,3.00\n'
            ).encode(),
            "rejected",
            "spans lines",
            "an unbalanced quote (a row would swallow the next)",
        ),
        Case(
            "quoted",
            "quoted.csv",
            (HEADER + '\nq-1,"Smith, Ann",a@x,,1.00\nq-2,"The ""Best"" Co",b@x,,2.00\n').encode(),
            "loaded",
            "",
            "delimiters and doubled quotes inside quotes",
            (2, 2, 0),
        ),
        Case(
            "crlf", "crlf.csv", csv("cr").replace(b"\n", b"\r\n"), "loaded", "", "CRLF line ends", (3, 3, 0)
        ),
        Case(
            "nul",
            "nul.csv",
            (HEADER + "\nnu-1,Ann,a@x,,1.00\nnu-2,B\x00b,b@x,,2.00\n").encode(),
            "quarantined",
            "NUL byte",
            "a NUL byte in a value",
            (2, 1, 1),
        ),
        Case(
            "big-field",
            "big_field.csv",
            (HEADER + "\nbf-1," + "x" * (10 * MiB // 2) + ",a@x,,1.00\n").encode(),
            "rejected",
            "max_field_bytes",
            "a 5 MB field (over the feed's 64 KB limit)",
        ),
        Case(
            "too-big",
            "too_big.csv",
            csv("tb") + b"#" * (9 * MiB),
            "rejected",
            "max_bytes",
            "a file over the feed's max_bytes (8 MiB)",
        ),
        Case(
            "many-columns",
            "many_columns.csv",
            (",".join(f"c{i}" for i in range(300)) + "\n").encode(),
            "rejected",
            "max_columns",
            "300 columns (over the feed's 200)",
        ),
        Case(
            "duplicate-headers",
            "dup_headers.csv",
            csv("dh", header=HEADER + ",Email").replace(b"50\n", b"50,x@y\n"),
            "rejected",
            "ambiguous header",
            "two headers naming one column",
        ),
        Case(
            "missing-column",
            "missing.csv",
            b"customer_ref,email\nmc-1,a@x\n",
            "rejected",
            "missing required column(s): full_name",
            "a required column missing",
        ),
        Case(
            "extra-columns",
            "extra.csv",
            csv("ex", header=HEADER + ",loyalty_tier").replace(b"50\n", b"50,gold\n"),
            "loaded",
            "",
            "a column beyond the schema (kept in additional_column)",
            (3, 3, 0),
        ),
        Case(
            "repeated-keys",
            "repeated_keys.csv",
            csv("rk") + "\n".join(rows("rk", 1)).encode() + b"\n",
            "quarantined",
            "duplicate key",
            "a key repeated within the file",
            (4, 3, 1),
        ),
        Case(
            "impossible-dates",
            "dates.csv",
            (HEADER + "\nid-1,Ann,a@x,2024-02-30,1.00\nid-2,Bob,b@x,2024-02-29,2.00\n").encode(),
            "quarantined",
            "signed_up_on",
            "30 February",
            (2, 1, 1),
        ),
        Case(
            "na-null-text",
            "na_null.csv",
            (HEADER + "\nna-1,Ann,NA,NULL,NA\nna-2,NULL,b@x,,1.00\n").encode(),
            "quarantined",
            "full_name is empty",
            "'NA' and 'NULL' as text (nulls by the feed's null_values)",
            (2, 1, 1),
        ),
        Case(
            "negative",
            "negative.csv",
            (HEADER + "\nng-1,Ann,a@x,,-1.00\nng-2,Bob,b@x,,1e999\n").encode(),
            "quarantined",
            "spend",
            "a negative amount and 1e999",
            (2, 0, 2),
        ),
        Case(
            "tsv-txt",
            "tabs.txt",
            csv("tx").replace(b",", b"\t"),
            "loaded",
            "",
            "tab-delimited .txt (sniffed)",
            (3, 3, 0),
        ),
        Case(
            "xlsx-formulas",
            "formulas.xlsx",
            xlsx([HEADER.split(","), ["xf-1", "x", "a@x", None, 1]], _formula_sheet),
            "quarantined",
            "full_name is empty",
            "a formula without a cached value",
            (1, 0, 1),
        ),
        Case(
            "xlsx-merged",
            "merged.xlsx",
            xlsx(
                [HEADER.split(","), ["xm-1", "Ann", "a@x", None, 1], ["xm-2", None, "b@x", None, 2]], _merged
            ),
            "quarantined",
            "full_name is empty",
            "merged cells (the value sits in the first cell only)",
            (2, 1, 1),
        ),
        Case(
            "xlsx-dimension",
            "dimension.xlsx",
            rewrite_sheet(xlsx([HEADER.split(","), ["xd-1", "Ann", "a@x", None, 1]]), claimed_dimension),
            "loaded",
            "",
            "a sheet claiming A1:XFD1048576",
            (1, 1, 0),
        ),
        Case(
            "xlsx-bomb", "bomb.xlsx", zip_bomb(), "rejected", "zip bomb", "a workbook that unpacks to 12 MiB"
        ),
        Case(
            "xlsx-not-zip",
            "not_a_workbook.xlsx",
            b"PK\x03\x04 truncated",
            "rejected",
            "not a readable .xlsx",
            "a truncated upload named .xlsx",
        ),
        Case(
            "json-deep",
            "deep.json",
            deep.encode(),
            "rejected",
            "nests too deeply",
            "JSON nested 100,000 deep",
        ),
        Case(
            "json-scalar",
            "scalar.json",
            b'"just a string"',
            "rejected",
            "not an array",
            "JSON that is not an array",
        ),
        Case(
            "json-two-arrays",
            "two_arrays.json",
            json.dumps({"a": [], "b": []}).encode(),
            "rejected",
            "declare records_key",
            "a JSON object with two arrays",
        ),
        Case(
            "json-duplicate-keys",
            "dup_keys.json",
            b'[{"customer_ref": "jd-1", "full_name": "Ann", "full_name": "Bob"}]',
            "rejected",
            "twice",
            "an object with one key twice",
        ),
        Case(
            "json-nan",
            "nan.json",
            b'[{"customer_ref": "jn-1", "full_name": "Ann", "spend": NaN},'
            b' {"customer_ref": "jn-2", "full_name": "Bob", "spend": 2.5}]',
            "quarantined",
            "spend",
            "NaN as a number",
            (2, 1, 1),
        ),
        Case(
            "json-records",
            "wrapped.json",
            json.dumps({"customers": records("jw")}).encode(),
            "loaded",
            "",
            "records under the one array of an object",
            (3, 3, 0),
        ),
        Case(
            "ndjson-broken",
            "broken.ndjson",
            b'{"customer_ref": "nb-1", "full_name": "Ann"}\n{"customer_ref": "nb-2", "full_na\n',
            "rejected",
            "line 2 is not valid JSON",
            "NDJSON with a broken line",
        ),
        Case(
            "ndjson-keys",
            "keys.ndjson",
            many_keys.encode(),
            "rejected",
            "max_columns",
            "NDJSON bringing 5,000 distinct keys",
        ),
        Case("parquet", "typed.parquet", parquet("pq"), "loaded", "", "a typed Parquet drop", (2, 2, 0)),
        Case(
            "long-name", "n" * 200 + ".csv", csv("ln"), "loaded", "", "a 204-character file name", (3, 3, 0)
        ),
        Case(
            "key-too-long",
            "k" * 996 + ".csv",
            csv("kl"),
            "loaded",
            "",
            "a 1,000-byte name: its landed key would pass S3's 1,024 bytes (the stem is cut)",
            (3, 3, 0),
        ),
        Case(
            "unicode-name",
            "clientes_ñandú_顧客.csv",
            csv("un"),
            "loaded",
            "",
            "a non-ASCII file name",
            (3, 3, 0),
        ),
        Case(
            "dot-dot-name",
            "../../escape.csv",
            csv("dd"),
            "loaded",
            "",
            "a key with ../ (landed under the feed's own prefix)",
            (3, 3, 0),
        ),
    ]


CASES: tuple[Case, ...] = tuple(_cases())


def table() -> str:
    """The markdown table of ``docs/reliability.md``: every case and its outcome."""
    lines = ["| case | file | what | outcome | reason says |", "|---|---|---|---|---|"]
    for case in CASES:
        shown = case.name if len(case.name) < 40 else case.name[:12] + "…" + case.name[-8:]
        lines.append(f"| `{case.id}` | `{shown}` | {case.what} | {case.outcome} | {case.reason or '—'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())

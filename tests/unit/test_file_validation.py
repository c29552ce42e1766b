"""Readers, schemas and validation of landed files (include.etlkit.files), on real files in tmp_path."""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from include.etlkit.files.readers import FileReadError, ReaderOptions, read_file, sniff_delimiter
from include.etlkit.files.schema import Column, FileSchema, normalise_name
from include.etlkit.files.validate import (
    PARTIALLY_QUARANTINED,
    REJECTED,
    VALIDATED,
    cast_or_null,
    validate,
)

SALES = FileSchema.from_dict(
    {
        "name": "sales",
        "key": ["order_id"],
        "columns": [
            {"name": "order_id", "type": "int", "min": 1},
            {"name": "amount", "type": "decimal(12,2)", "min": 0},
            {"name": "sold_on", "type": "date"},
            {"name": "channel", "type": "string", "choices": ["web", "shop"]},
            {"name": "note", "type": "string", "required": False, "nullable": True},
        ],
    }
)


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def strings(table: pa.Table) -> dict[str, list]:
    assert all(field.type == pa.string() for field in table.schema), table.schema
    return table.to_pydict()


def raw(**columns: list) -> pa.Table:
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


# -- readers ----------------------------------------------------------------------------------------


def test_csv_values_stay_raw_strings_with_stripped_headers(tmp_path):
    path = write(
        tmp_path,
        "sales.csv",
        '\ufeff Order ID ,amount,note\n007,9.990,NA\n2,,NULL\n\n3,"1,5","two\nlines"\n',
    )
    assert strings(read_file(path, ReaderOptions(multiline=True))) == {
        "Order ID": ["007", "2", "3"],
        "amount": ["9.990", "", "1,5"],
        "note": ["NA", "NULL", "two\nlines"],
    }


def test_csv_ragged_row_is_a_read_error(tmp_path):
    path = write(tmp_path, "bad.csv", "a,b\n1,2\n3,4,5\n")
    with pytest.raises(FileReadError, match=r"bad\.csv.*Expected 2 columns, got 3"):
        read_file(path)


def test_csv_that_is_not_utf8_is_a_read_error_unless_declared(tmp_path):
    path = write(tmp_path, "latin.csv", "name\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(FileReadError, match="UTF8"):
        read_file(path)
    assert strings(read_file(path, ReaderOptions(encoding="latin-1"))) == {"name": ["café"]}


def test_empty_file_has_no_columns_and_header_only_file_no_rows(tmp_path):
    assert read_file(write(tmp_path, "empty.csv", b"")).shape == (0, 0)
    header_only = read_file(write(tmp_path, "header.csv", "id,amount\n"))
    assert header_only.column_names == ["id", "amount"] and header_only.num_rows == 0


@pytest.mark.parametrize(
    ("name", "text", "delimiter"),
    [
        ("pipes.txt", "id|amount|note\n1|9.99|a, b\n2|1.00|c; d\n", "|"),
        ("tabs.tsv", "id\tamount\tnote\n1\t9.99\ta|b\n2\t1.00\tc\n", "\t"),
        ("semi.dat", "id;amount;note\n1;9,99;a\n2;1,00;b\n", ";"),
        ("commas.txt", 'id,amount,note\n1,9.99,"a; b; c"\n2,1.00,x\n', ","),
    ],
)
def test_delimited_text_delimiter_is_sniffed(tmp_path, name, text, delimiter):
    path = write(tmp_path, name, text)
    if not name.endswith(".tsv"):
        assert sniff_delimiter(path) == delimiter
    table = read_file(path)
    assert table.column_names == ["id", "amount", "note"]
    assert strings(table)["id"] == ["1", "2"]


def test_declared_delimiter_wins_over_sniffing(tmp_path):
    path = write(tmp_path, "odd.txt", "a;b|c\n1;2|3\n")
    assert read_file(path).column_names == ["a;b", "c"]  # a tie goes to '|', the first candidate
    assert read_file(path, ReaderOptions(delimiter=";")).column_names == ["a", "b|c"]


def _workbook(path: Path, sheets: dict[str, list[list]]) -> Path:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_xlsx_cells_read_as_the_user_sees_them(tmp_path):
    path = _workbook(
        tmp_path / "sales.xlsx",
        {
            "Sales": [
                [" order id", "amount", "sold on", "at", "paid", None],
                [1, 9.99, dt.datetime(2024, 1, 5), dt.datetime(2024, 1, 5, 10, 30), True],
                [None, None, None, None, None],  # an empty row is not a record
                [2.0, "1,00", dt.date(2024, 2, 1), "#N/A", False, "stray"],
            ],
            "Other": [["x"], ["y"]],
        },
    )
    assert strings(read_file(path)) == {
        "order id": ["1", "2"],
        "amount": ["9.99", "1,00"],
        "sold on": ["2024-01-05", "2024-02-01"],
        "at": ["2024-01-05 10:30:00", "#N/A"],
        "paid": ["true", "false"],
        "column_6": [None, "stray"],
    }
    assert strings(read_file(path, ReaderOptions(sheet="Other"))) == {"x": ["y"]}
    with pytest.raises(FileReadError, match=r"no sheet 'Missing' \(sheets: \['Sales', 'Other'\]\)"):
        read_file(path, ReaderOptions(sheet="Missing"))


def test_unreadable_xlsx_is_a_read_error(tmp_path):
    path = write(tmp_path, "broken.xlsx", b"PK\x03\x04 this is not a workbook")
    with pytest.raises(FileReadError, match=r"broken\.xlsx is not a readable \.xlsx workbook"):
        read_file(path)


def test_json_array_keeps_numbers_as_spelled_and_nests_as_json(tmp_path):
    path = write(
        tmp_path,
        "orders.json",
        '[{"id": 1, "amount": 9.990, "tags": ["a", 1.50], "meta": {"x": null}},'
        ' {"id": "2", "ok": true, "amount": null}]',
    )
    assert strings(read_file(path)) == {
        "id": ["1", "2"],
        "amount": ["9.990", None],
        "tags": ['["a",1.50]', None],
        "meta": ['{"x":null}', None],
        "ok": [None, "true"],
    }


def test_json_records_under_a_key(tmp_path):
    nested = write(tmp_path, "nested.json", '{"data": {"items": [{"id": 1}]}, "count": 1}')
    assert strings(read_file(nested, ReaderOptions(records_key="data.items"))) == {"id": ["1"]}
    single = write(tmp_path, "single.json", '{"records": [{"id": 1}, {"id": 2}], "page": 1}')
    assert strings(read_file(single)) == {"id": ["1", "2"]}
    two = write(tmp_path, "two.json", '{"a": [], "b": []}')
    with pytest.raises(FileReadError, match="declare records_key"):
        read_file(two)
    with pytest.raises(FileReadError, match="record 2 is a JSON list, not an object"):
        read_file(write(tmp_path, "mixed.json", '[{"id": 1}, [2]]'))
    with pytest.raises(FileReadError, match="not valid JSON"):
        read_file(write(tmp_path, "cut.json", '[{"id": 1}, {"id"'))


def test_ndjson_one_object_per_line(tmp_path):
    path = write(tmp_path, "events.ndjson", '{"id": 1, "v": "a"}\n\n{"id": 2, "w": 0.10}\n')
    assert strings(read_file(path)) == {"id": ["1", "2"], "v": ["a", None], "w": [None, "0.10"]}
    same = write(tmp_path, "events.jsonl", path.read_text())
    assert read_file(same).equals(read_file(path))
    with pytest.raises(FileReadError, match=r"line 2 is not valid JSON"):
        read_file(write(tmp_path, "bad.ndjson", '{"id": 1}\n{"id": \n'))


def test_parquet_is_read_as_strings_that_validation_types_back(tmp_path):
    path = tmp_path / "typed.parquet"
    pq.write_table(
        pa.table(
            {
                "order_id": pa.array([1, 2], pa.int64()),
                "amount": pa.array([Decimal("9.99"), Decimal("0.50")], pa.decimal128(12, 2)),
                "sold_on": pa.array([dt.date(2024, 1, 5), dt.date(2024, 1, 6)]),
                "channel": pa.array(["web", "shop"]).dictionary_encode(),
                "at": pa.array([dt.datetime(2024, 1, 5, 10, 0, 0, 250), None], pa.timestamp("ns")),
            }
        ),
        path,
    )
    table = read_file(path)
    assert strings(table)["amount"] == ["9.99", "0.50"]
    result = validate(table, SALES)
    assert result.status == VALIDATED
    assert result.valid.select(["order_id", "amount", "sold_on", "channel"]).to_pylist() == [
        {"order_id": 1, "amount": Decimal("9.99"), "sold_on": dt.date(2024, 1, 5), "channel": "web"},
        {"order_id": 2, "amount": Decimal("0.50"), "sold_on": dt.date(2024, 1, 6), "channel": "shop"},
    ]
    assert json.loads(result.valid["additional_column"][1].as_py()) == {"at": None}
    stamps = validate(table, FileSchema("s", [Column("at", "timestamp", nullable=True)]))
    assert stamps.valid["at"].to_pylist() == [dt.datetime(2024, 1, 5, 10, 0, 0, 250), None]


def test_unsupported_suffix_is_a_read_error(tmp_path):
    with pytest.raises(FileReadError, match=r"unsupported file type '\.xls'"):
        read_file(write(tmp_path, "old.xls", b"\xd0\xcf\x11\xe0"))
    with pytest.raises(FileReadError, match=r"cannot read fake\.parquet as parquet"):
        read_file(write(tmp_path, "fake.parquet", b"not parquet"))


# -- schemas ----------------------------------------------------------------------------------------


def test_names_match_case_and_space_and_dash_insensitively():
    assert normalise_name(" Order - ID ") == "order_id"
    assert normalise_name("SOLD-ON") == normalise_name("sold on") == "sold_on"


def test_schema_from_dict_in_both_shapes():
    listed = FileSchema.from_dict(
        {
            "name": "rates",
            "key": ["day", "currency"],
            "read": {"delimiter": "|"},
            "null_values": ["", "n/a"],
            "columns": [
                {"name": "day", "type": "date", "format": "%d/%m/%Y"},
                {"name": "currency", "type": "string", "pattern": "[A-Z]{3}"},
                {"name": "rate", "type": "Decimal(18, 6)", "min": "0"},
            ],
        }
    )
    assert listed.read.delimiter == "|" and listed.null_values == ("", "n/a")
    assert [str(f.type) for f in listed.arrow_schema] == [
        "date32[day]",
        "string",
        "decimal128(18, 6)",
        "string",
        "int64",
    ]
    mapped = FileSchema.from_dict({"name": "m", "columns": {"id": "integer", "at": {"type": "datetime"}}})
    assert [(c.name, c.kind) for c in mapped.columns] == [("id", "int"), ("at", "timestamp")]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"name": "t", "columns": [{"name": "a", "type": "money"}]}, "unknown type 'money'"),
        ({"name": "t", "columns": [{"name": "source_row", "type": "int"}]}, "adds itself"),
        ({"name": "t", "columns": [{"name": "a"}, {"name": " A "}]}, "same name"),
        ({"name": "t", "key": ["b"], "columns": [{"name": "a"}]}, r"key column\(s\) \['b'\]"),
        ({"name": "t", "columns": [{"name": "a", "type": "int", "min": "x"}]}, "min .* is not an int"),
        ({"name": "t", "columns": [{"name": "a", "type": "string", "min": 1}]}, "min/max apply"),
        ({"name": "t", "columns": [{"name": "a", "colour": "red"}]}, "unknown option"),
        ({"name": "t", "columns": [{"name": "a", "type": "decimal(40,2)"}]}, "precision <= 38"),
    ],
)
def test_bad_schema_declarations_fail_when_declared(spec, message):
    with pytest.raises(ValueError, match=message):
        FileSchema.from_dict(spec)


# -- validation -------------------------------------------------------------------------------------


def test_good_rows_are_typed_in_schema_order_with_extras_packed_as_json():
    table = raw(
        **{
            "Channel": ["web", "shop"],
            " ORDER-ID ": ["1", "+2"],
            "sold on": ["2024-01-05", "2024-02-29"],
            "Amount": [" 9.99 ", "10"],
            "Region": ['North "N"', None],
            "comment\n": ["a\\b\tc\u0001 ünï", ""],
        }
    )
    result = validate(table, SALES)
    assert result.status == VALIDATED and result.rejected_reason is None
    assert result.extra_columns == ("Region", "comment\n")
    assert result.valid.schema == SALES.arrow_schema
    rows = result.valid.to_pylist()
    assert [{k: v for k, v in r.items() if k != "additional_column"} for r in rows] == [
        {
            "order_id": 1,
            "amount": Decimal("9.99"),
            "sold_on": dt.date(2024, 1, 5),
            "channel": "web",
            "note": None,
            "source_row": 1,
        },
        {
            "order_id": 2,
            "amount": Decimal("10.00"),
            "sold_on": dt.date(2024, 2, 29),
            "channel": "shop",
            "note": None,
            "source_row": 2,
        },
    ]
    assert [json.loads(r["additional_column"]) for r in rows] == [
        {"Region": 'North "N"', "comment\n": "a\\b\tc\u0001 ünï"},
        {"Region": None, "comment\n": ""},
    ]


def test_additional_column_is_null_without_extra_columns():
    result = validate(raw(order_id=["1"], amount=["1"], sold_on=["2024-01-01"], channel=["web"]), SALES)
    assert result.extra_columns == () and result.valid["additional_column"].to_pylist() == [None]


def test_bad_rows_are_quarantined_with_every_bad_column_and_value_named():
    table = raw(
        order_id=["1", "x", "3", "4", "5", "6", "7", "1"],
        amount=["9.99", "1", "-0.01", "1.234", "", "2", "3", "4"],
        sold_on=["2024-01-05", "2024-02-30", "2024-01-05", "05/01/2024",
                 "2024-01-05", "2024-01-05", "", "2024-01-01"],
        channel=["web", "tv", "web", "web", "web", " shop ", "web", "web"],
    )  # fmt: skip
    result = validate(table, SALES)
    assert result.status == PARTIALLY_QUARANTINED
    assert result.valid["source_row"].to_pylist() == [1, 6]
    assert result.valid["channel"].to_pylist() == ["web", "shop"]  # trimmed
    quarantined = result.quarantined.to_pydict()
    assert dict(zip(quarantined["source_row"], quarantined["reason"], strict=True)) == {
        2: "order_id='x' is not an int; sold_on='2024-02-30' is not a date (ISO 8601); "
        "channel='tv' is not one of [web, shop]",
        3: "amount='-0.01' is below the minimum 0",
        4: "amount='1.234' is not a decimal(12,2); sold_on='05/01/2024' is not a date (ISO 8601)",
        5: "amount is empty ('') and may not be",
        7: "sold_on is empty ('') and may not be",
        8: "duplicate key order_id='1': first seen at row 1",
    }
    # The quarantine keeps the raw strings as the file spelled them.
    assert list(quarantined) == ["source_row", "reason", "order_id", "amount", "sold_on", "channel"]
    assert quarantined["order_id"] == ["x", "3", "4", "5", "7", "1"]
    counts = (result.rows_read, result.rows_valid, result.rows_quarantined, result.rows_rejected)
    assert counts == (8, 2, 6, 6)


def test_missing_required_column_rejects_the_whole_file():
    table = raw(order_id=["1", "2"], Amount=["1", "2"], channel=["web", "web"], extra=["a", "b"])
    result = validate(table, SALES)
    assert result.status == REJECTED
    assert result.missing_columns == ("sold_on",)
    assert result.rejected_reason.startswith("missing required column(s): sold_on (the file has: order_id, ")
    assert result.valid.num_rows == 0 and result.valid.schema == SALES.arrow_schema
    assert result.rows_rejected == result.rows_read == 2 and result.rows_quarantined == 0
    assert set(result.quarantined["reason"].to_pylist()) == {result.rejected_reason}


def test_two_headers_naming_one_column_reject_the_file():
    table = raw(order_id=["1"], **{"Order ID": ["2"]}, amount=["1"], sold_on=["2024-01-01"], channel=["web"])
    result = validate(table, SALES)
    assert result.status == REJECTED
    assert "'order_id' and 'Order ID' are one column" in result.rejected_reason


def test_optional_column_absent_is_null_and_nullable_rules():
    schema = FileSchema(
        "s",
        [
            Column("id", "int"),
            Column("flag", "bool", nullable=True),
            Column("opt", "date", required=False),
        ],
        null_values=("", "NULL"),
    )
    result = validate(raw(id=["1", "2", "3", None, "5"], flag=["Yes", "NULL", "maybe", "n", None]), schema)
    assert result.valid.to_pydict() == {
        "id": [1, 2, 5],
        "flag": [True, None, None],
        "opt": [None, None, None],
        "additional_column": [None, None, None],
        "source_row": [1, 2, 5],
    }
    assert result.quarantined["reason"].to_pylist() == [
        "flag='maybe' is not a bool",
        "id is empty (null) and may not be",
    ]


@pytest.mark.parametrize(
    ("column", "good", "bad", "message"),
    [
        (Column("v", "int", max=10), ["-3", "10", "007"], ["11", "1.0", "1e3", "9" * 19], "v="),
        (Column("v", "float", min=0), ["0", "1.5e3", ".5"], ["-1", "nan", "inf", "1e999", "1,5"], "v="),
        (
            Column("v", "decimal(5,2)"),
            ["999.99", "-1.", "0.100"],
            ["1000", "1.001", "1e2", "--1"],
            "decimal(5,2)",
        ),
        (
            Column("v", "date", min="2024-01-01"),
            ["2024-01-01"],
            ["2023-12-31", "2024-13-01", "20240101"],
            "v=",
        ),
        (
            Column("v", "date", format=["%d/%m/%Y", "%Y%m%d"]),
            ["5/1/2024", "2/1/2024", "05/01/2024", "20240105", "29/02/2024"],
            ["31/02/2024", "31/04/2024", "29/02/2023", "2024-01-05", "5/1"],
            "date (%d/%m/%Y or %Y%m%d)",
        ),
        (
            Column("v", "timestamp"),
            [
                "2024-01-05 10:00",
                "2024-01-05T10:00:00.123456",
                "2024-01-05T11:00:00+01:00",
                "2024-01-05",
                "2024-01-05 10:00:00.123456000",
            ],
            ["2024-01-05 25:00", "2024-01-05T10:00:00.1234567", "2024-01-05 10:00:00.123456070", "yesterday"],
            "timestamp (ISO 8601)",
        ),
        (Column("v", "string", max_length=3, pattern="[A-Z]+"), ["ABC", " GB "], ["ABCD", "ab", "A1"], "v="),
        (Column("v", "int", choices=["1", 2]), ["1", "02"], ["3"], "not one of [1, 2]"),
    ],
)
def test_each_type_and_rule_accepts_good_and_quarantines_bad_values(column, good, bad, message):
    result = validate(raw(v=good + bad), FileSchema("s", [column]))
    assert result.valid["source_row"].to_pylist() == list(range(1, len(good) + 1))
    assert result.quarantined["v"].to_pylist() == bad
    assert all(message in reason for reason in result.quarantined["reason"].to_pylist()), result.quarantined


def test_timestamps_with_offsets_are_converted_to_utc():
    result = validate(raw(v=["2024-01-05T11:00:00+01:00", "2024-01-05T10:00:00Z", "2024-01-05 10:00"]),
                      FileSchema("s", [Column("v", "timestamp")]))  # fmt: skip
    assert result.valid["v"].to_pylist() == [dt.datetime(2024, 1, 5, 10)] * 3


def test_a_few_impossible_values_in_a_large_column_are_isolated():
    values = [f"{n}.{n % 100:02d}" for n in range(50_000)]
    for bad in (7, 31_000, 49_999):
        values[bad] = "12345678901234567890.5"  # well-shaped, but overflows decimal(12,2)
    typed = cast_or_null(pa.array(values), pa.decimal128(12, 2))
    assert typed.null_count == 3 and typed[8].as_py() == Decimal("8.08")
    result = validate(raw(v=values), FileSchema("s", [Column("v", "decimal(12,2)")]))
    assert result.quarantined["source_row"].to_pylist() == [8, 31_001, 50_000]


# -- the invariant: valid + quarantined == rows read, whatever comes in -----------------------------


def _random_table(rng: random.Random, rows: int) -> pa.Table:
    def pick(options):
        return [rng.choice(options) for _ in range(rows)]

    columns = {
        "Order ID": pick(["1", "2", "3", "x", "", None, "-4", "99999999999999999999"]),
        "amount": pick(["9.99", "0", "-1", "1.234", "abc", "", "1e3"]),
        "SOLD-ON": pick(["2024-01-05", "2024-02-30", "05/01/2024", ""]),
        "channel": pick(["web", "shop", "tv", " web "]),
        "extra": pick(["a", None, '"q"']),
    }
    if rng.random() < 0.3:
        del columns["SOLD-ON"]  # a file missing a required column now and then
    return raw(**columns)


@pytest.mark.parametrize("seed", range(40))
def test_invariant_holds_on_random_files(seed):
    rng = random.Random(seed)
    table = _random_table(rng, rng.choice([0, 1, 2, 7, 50]))
    result = validate(table, SALES)
    assert len(result.valid) + len(result.quarantined) == result.rows_read == table.num_rows
    assert result.rows_valid + result.rows_rejected == result.rows_read
    assert sorted(
        result.valid["source_row"].to_pylist() + result.quarantined["source_row"].to_pylist()
    ) == list(range(1, table.num_rows + 1))
    assert all(result.quarantined["reason"].to_pylist())


@pytest.mark.parametrize(
    ("content", "status", "valid", "quarantined"),
    [
        ("", REJECTED, 0, 0),
        ("order_id,amount,sold_on,channel\n", VALIDATED, 0, 0),
        ("order_id,amount,sold_on,channel\nx,1,2024-01-01,web\n0,-1,bad,tv\n", PARTIALLY_QUARANTINED, 0, 2),
        ("order_id,amount,sold_on,channel\n1,1,2024-01-01,web\n2,2,2024-01-02,shop\n", VALIDATED, 2, 0),
    ],
    ids=["empty file", "header only", "all bad", "all good"],
)
def test_invariant_on_edge_files(tmp_path, content, status, valid, quarantined):
    result = validate(read_file(write(tmp_path, "f.csv", content)), SALES)
    assert (result.status, len(result.valid), len(result.quarantined)) == (status, valid, quarantined)
    assert len(result.valid) + len(result.quarantined) == result.rows_read


# -- values from the remote path (a partner's file may only speak for that partner) ---------------

PARTNERS = FileSchema.from_dict(
    {
        "name": "partner_customers",
        "key": ["partner", "partner_customer_ref"],
        "path_values": {"partner": r"^s3://[^/]+/drops/partners/(?P<partner>[^/]+)/"},
        "columns": [
            {"name": "partner", "type": "string"},
            {"name": "partner_customer_ref", "type": "string"},
            {"name": "full_name", "type": "string"},
        ],
    }
)
ACME_PATH = "s3://drops-bucket/drops/partners/acme/customers_20241107.csv"


def test_rows_naming_another_partner_than_the_drop_folder_are_quarantined():
    table = raw(
        partner=["acme", "brightmail", " acme ", "", "Acme"],
        partner_customer_ref=["A-1", "B-1", "A-2", "A-3", "A-4"],
        full_name=["Ann", "Bob", "Cat", "Dan", "Eve"],
    )
    result = validate(table, PARTNERS, ACME_PATH)
    assert result.status == PARTIALLY_QUARANTINED
    assert result.valid.select(["partner", "partner_customer_ref"]).to_pylist() == [
        {"partner": "acme", "partner_customer_ref": "A-1"},
        {"partner": "acme", "partner_customer_ref": "A-2"},  # trimmed, like every string
    ]
    assert result.quarantined.select(["source_row", "reason"]).to_pylist() == [
        {"source_row": 2, "reason": "partner='brightmail' does not match the drop folder value 'acme'"},
        {"source_row": 4, "reason": "partner is empty ('') and may not be"},
        {"source_row": 5, "reason": "partner='Acme' does not match the drop folder value 'acme'"},
    ]
    assert result.quarantined["partner"].to_pylist() == ["brightmail", "", "Acme"]  # raw, as sent


def test_a_nullable_path_column_left_empty_is_not_the_folders_value():
    schema = FileSchema.from_dict(
        {
            "name": "p",
            "path_values": {"partner": r"/partners/(?P<partner>[^/]+)/"},
            "columns": [{"name": "partner", "nullable": True}, {"name": "ref"}],
        }
    )
    result = validate(raw(partner=["", "acme"], ref=["1", "2"]), schema, "s3://b/partners/acme/x.csv")
    assert result.valid["ref"].to_pylist() == ["2"]
    assert result.quarantined["reason"].to_pylist() == [
        "partner='' does not match the drop folder value 'acme'"
    ]


def test_a_file_without_the_path_column_gets_it_filled_from_the_path():
    table = raw(**{"Partner Customer Ref": ["A-1", "A-2"], "full_name": ["Ann", "Bob"]})
    result = validate(table, PARTNERS, ACME_PATH)
    assert result.status == VALIDATED
    assert result.valid.select(["partner", "partner_customer_ref"]).to_pylist() == [
        {"partner": "acme", "partner_customer_ref": "A-1"},
        {"partner": "acme", "partner_customer_ref": "A-2"},
    ]
    assert result.valid.schema == PARTNERS.arrow_schema
    assert result.valid["additional_column"].null_count == 2  # the filled column is not "extra"


@pytest.mark.parametrize(
    ("remote_path", "reason"),
    [
        (
            "s3://drops-bucket/drops/elsewhere/customers.csv",
            "remote path 's3://drops-bucket/drops/elsewhere/customers.csv' does not match the path_values "
            "pattern of partner '^s3://[^/]+/drops/partners/(?P<partner>[^/]+)/'",
        ),
        (
            None,
            "the file's remote path is unknown, so the value(s) of partner it may carry (path_values) "
            "cannot be known",
        ),
        (
            [],
            "the file's remote path is unknown, so the value(s) of partner it may carry (path_values) "
            "cannot be known",
        ),
        (
            [ACME_PATH, "s3://drops-bucket/drops/partners/brightmail/customers_20241107.csv"],
            "the file landed from remote paths that disagree on partner: 'acme' "
            f"({ACME_PATH}), 'brightmail' (s3://drops-bucket/drops/partners/brightmail/customers_20241107.csv)",
        ),
    ],
    ids=["path outside the pattern", "no path", "no paths", "paths that disagree"],
)
def test_a_file_whose_path_gives_no_value_is_rejected_whole(remote_path, reason):
    table = raw(partner=["acme", "acme"], partner_customer_ref=["A-1", "A-2"], full_name=["Ann", "Bob"])
    result = validate(table, PARTNERS, remote_path)
    assert (result.status, result.rejected_reason, result.rows_valid, result.rows_rejected) == (
        REJECTED,
        reason,
        0,
        2,
    )
    assert result.quarantined["reason"].to_pylist() == [reason, reason]


def test_several_paths_that_agree_give_their_value():
    other_day = "s3://drops-bucket/drops/partners/acme/resent/customers_20241107.csv"
    table = raw(partner=["acme"], partner_customer_ref=["A-1"], full_name=["Ann"])
    assert validate(table, PARTNERS, [ACME_PATH, other_day]).status == VALIDATED


def test_a_path_value_not_of_the_columns_type_rejects_the_file():
    schema = FileSchema.from_dict(
        {
            "name": "stock",
            "path_values": {"store_id": r"/stores/(?P<store_id>[^/]+)/"},
            "columns": [{"name": "store_id", "type": "int"}, {"name": "sku"}],
        }
    )
    result = validate(raw(store_id=["7"], sku=["X"]), schema, "s3://b/stores/seven/stock.csv")
    assert result.status == REJECTED
    assert result.rejected_reason.startswith(
        "column store_id: the value of the remote path ['seven'] is not an int"
    )
    typed = validate(raw(store_id=["7", "07", "8"], sku=["X", "Y", "Z"]), schema, "s3://b/stores/7/stock.csv")
    assert typed.valid["store_id"].to_pylist() == [7, 7]  # compared as ints
    assert typed.quarantined["reason"].to_pylist() == [
        "store_id='8' does not match the drop folder value '7'"
    ]


def test_without_path_values_a_remote_path_changes_nothing():
    table = raw(order_id=["1", "2"], amount=["1.00", "x"], sold_on=["2024-01-01"] * 2, channel=["web"] * 2)
    plain = validate(table, SALES)
    assert SALES.path_values == () and SALES.values_from_path(None) == {}
    for remote_path in ("s3://anything/at/all.csv", None):
        again = validate(table, SALES, remote_path)
        assert again.valid.equals(plain.valid) and again.quarantined.equals(plain.quarantined)
        assert again.status == plain.status == PARTIALLY_QUARANTINED


@pytest.mark.parametrize(
    ("path_values", "error"),
    [
        ({"region": "/(?P<region>[^/]+)/"}, r"path_values column\(s\) \['region'\] are not columns"),
        ({"partner": "/partners/([^/]+)/"}, r"has no named group \(\?P<partner>...\)"),
        ({"partner": "/partners/(?P<partner>[^/]+/"}, "is not a regex"),
        (["partner"], "path_values must map columns to patterns"),
    ],
)
def test_bad_path_values_fail_at_parse_time(path_values, error):
    with pytest.raises(ValueError, match=error):
        FileSchema.from_dict(
            {"name": "p", "path_values": path_values, "columns": [{"name": "partner"}, {"name": "ref"}]}
        )


def test_retail_partner_drops_take_the_partner_from_their_folder():
    from include.etlkit.pipelines.config import load_pipeline
    from include.etlkit.pipelines.factory import schemas

    schema = schemas(load_pipeline("retail"))["partner_customers"]
    assert [p.column for p in schema.path_values] == ["partner"]
    table = raw(
        partner=["acme", "brightmail"],
        partner_customer_ref=["A-1", "B-1"],
        full_name=["Ann", "Bob"],
        **{c: ["", ""] for c in ("address", "postcode", "phone_number", "email", "signed_up_on")},
    )
    result = validate(table, schema, "s3://etl-drops/drops/partners/acme/customers_20241107.csv")
    assert result.valid["partner_customer_ref"].to_pylist() == ["A-1"]
    assert result.quarantined["reason"].to_pylist() == [
        "partner='brightmail' does not match the drop folder value 'acme'"
    ]
    # A lookalike folder deeper in the key does not make a file acme's.
    assert validate(table, schema, "s3://b/other/drops/partners/acme/x.csv").status == REJECTED

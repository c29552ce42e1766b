"""Readers under hostile input: every file is read within the feed's limits or rejected with a reason.

Each case here would, before the limits, have merged rows silently, raised something other than
``FileReadError`` (so the file stayed pending and blocked its source), or taken hundreds of MB.
"""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from include.etlkit.files.readers import FileReadError, ReaderOptions, read_file


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def test_an_unbalanced_quote_rejects_the_file_instead_of_merging_rows(tmp_path):
    # Record 1 opens a quote it never closes: parsed, it swallows Bob's row and takes his email.
    path = write(tmp_path, "customers.csv", 'id,name,email\n1,"Ann,a@x.com\n2,Bob",b@x.com\n3,Cy,c@x.com\n')
    message = r"customers\.csv record 1, column 'name': a quoted value spans lines"
    with pytest.raises(FileReadError, match=message):
        read_file(path)


def test_a_feed_that_declares_multiline_values_keeps_them(tmp_path):
    path = write(tmp_path, "notes.csv", 'id,note\n1,"two\nlines"\n2,one\n')
    table = read_file(path, ReaderOptions(multiline=True))
    assert table.column("note").to_pylist() == ["two\nlines", "one"]


def test_a_field_over_the_limit_is_named_not_a_block_boundary(tmp_path):
    path = write(tmp_path, "big.csv", "id,blob\n1," + "x" * (3 << 20) + "\n2,y\n")
    with pytest.raises(FileReadError, match=r"a value of|a record is longer") as raised:
        read_file(path)
    assert "straddl" not in str(raised.value) and "max_field_bytes" in str(raised.value)
    # A value just under a raised limit is read whole.
    table = read_file(path, ReaderOptions(max_field_bytes=4 << 20))
    assert len(table.column("blob")[0].as_py()) == 3 << 20


def test_a_field_over_the_limit_inside_one_block_names_its_record(tmp_path):
    path = write(tmp_path, "wide.csv", "id,blob\n1,short\n2," + "y" * 2000 + "\n")
    with pytest.raises(FileReadError, match=r"record 2, column 'blob': a value of 2,000 bytes"):
        read_file(path, ReaderOptions(max_field_bytes=1000))


def test_utf16_with_a_byte_order_mark_is_read_as_utf16(tmp_path):
    path = write(tmp_path, "partner.csv", "id,name\n1,Zoë\n".encode("utf-16"))
    assert read_file(path).to_pydict() == {"id": ["1"], "name": ["Zoë"]}


def test_invalid_utf8_says_which_byte_and_how_to_declare_the_encoding(tmp_path):
    path = write(tmp_path, "latin.json", '[{"name": "caf\xe9"}]'.encode("latin-1"))
    with pytest.raises(FileReadError, match=r"not valid utf-8 text \(byte 0xe9.*read: \{encoding: latin-1\}"):
        read_file(path)


def test_a_file_over_max_bytes_is_rejected_before_it_is_read(tmp_path):
    path = write(tmp_path, "huge.csv", "id\n" + "1\n" * 1000)
    with pytest.raises(FileReadError, match=r"huge\.csv is 2,003 bytes, over max_bytes=1,000"):
        read_file(path, ReaderOptions(max_bytes=1000))


def test_json_nested_a_hundred_thousand_deep_is_a_read_error(tmp_path):
    path = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(FileReadError, match="nests too deeply"):
        read_file(path)


def test_json_nested_past_max_depth_names_the_record(tmp_path):
    nested: object = "leaf"
    for _ in range(40):
        nested = {"n": nested}
    path = write(tmp_path, "nested.json", json.dumps([{"id": 1}, {"id": 2, "extra": nested}]))
    with pytest.raises(FileReadError, match=r"record 2 nests deeper than max_depth=32"):
        read_file(path)


def test_duplicate_json_keys_reject_the_file(tmp_path):
    path = write(tmp_path, "dupes.json", '[{"id": 1, "email": "a@x", "email": "b@x"}]')
    with pytest.raises(FileReadError, match=r"the key 'email' twice"):
        read_file(path)


def test_json_that_is_not_an_array_of_objects_is_a_read_error(tmp_path):
    with pytest.raises(FileReadError, match="not an array"):
        read_file(write(tmp_path, "scalar.json", '"hello"'))
    with pytest.raises(FileReadError, match="record 2 is a JSON list, not an object"):
        read_file(write(tmp_path, "mixed.json", '[{"id": 1}, [1, 2]]'))


def test_ndjson_with_thousands_of_distinct_keys_stops_at_max_columns(tmp_path):
    # 119 KB that used to cost 890 MB: every record brings new keys.
    lines = (json.dumps({f"k{i}_{j}": j for j in range(5)}) for i in range(5000))
    path = write(tmp_path, "keys.ndjson", "\n".join(lines))
    tracemalloc.start()
    try:
        with pytest.raises(FileReadError, match=r"brings key 1,001, over max_columns=1,000"):
            read_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20


def test_sparse_ndjson_within_the_limits_fills_absent_keys_with_null(tmp_path):
    path = write(tmp_path, "sparse.ndjson", '{"a": 1}\n{"b": 2}\n\n{"a": 3, "c": {"x": [1, 2.50]}}\n')
    assert read_file(path).to_pydict() == {
        "a": ["1", None, "3"],
        "b": [None, "2", None],
        "c": [None, None, '{"x":[1,2.50]}'],
    }


def _xlsx(path: Path, rows: list[list[object]], dimension: str | None = None) -> Path:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    if dimension is None:
        path.write_bytes(buffer.getvalue())
        return path
    # Rewrite the sheet's <dimension ref> to claim far more than it holds, as some exporters do.
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                start = text.index('<dimension ref="') + len('<dimension ref="')
                end = text.index('"', start)
                data = (text[:start] + dimension + text[end:]).encode()
            target.writestr(item, data)
    return path


def test_an_xlsx_claiming_column_xfd_is_read_at_its_real_width(tmp_path):
    path = _xlsx(tmp_path / "claims.xlsx", [["id", "name"], [1, "Ann"], [2, "Bob"]], dimension="A1:XFD5000")
    tracemalloc.start()
    try:
        table = read_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table.to_pydict() == {"id": ["1", "2"], "name": ["Ann", "Bob"]}
    assert peak < 50 << 20


def test_an_xlsx_that_unpacks_past_max_bytes_is_a_zip_bomb(tmp_path):
    path = _xlsx(tmp_path / "bomb.xlsx", [["id", "text"], *[[i, "x" * 1000] for i in range(200)]])
    assert path.stat().st_size < 60_000  # it compresses well: the unpacked size is what counts
    with pytest.raises(FileReadError, match=r"unpacks to [\d,]+ bytes, over max_bytes=60,000"):
        read_file(path, ReaderOptions(max_bytes=60_000))


def test_a_file_that_is_not_a_zip_is_not_a_workbook(tmp_path):
    with pytest.raises(FileReadError, match=r"not a readable \.xlsx workbook"):
        read_file(write(tmp_path, "fake.xlsx", b"PK but not really"))


@pytest.mark.parametrize("limit", ["max_rows", "max_columns", "max_field_bytes", "max_depth", "max_bytes"])
def test_limits_are_positive_whole_numbers(limit):
    with pytest.raises(ValueError, match=f"{limit} must be a positive whole number"):
        ReaderOptions.from_dict({limit: 0})
    assert getattr(ReaderOptions.from_dict({limit: 7}), limit) == 7


def test_a_nul_byte_quarantines_its_row_not_the_load(tmp_path):
    from include.etlkit.files.schema import FileSchema
    from include.etlkit.files.validate import validate

    columns = [{"name": "id", "type": "int"}, {"name": "name", "type": "string"}]
    schema = FileSchema.from_dict({"name": "people", "key": ["id"], "columns": columns})
    path = write(tmp_path, "people.csv", b"id,name,note\n1,Ann,ok\n2,B\x00b,ok\n3,Cy,n\x00te\n")
    result = validate(read_file(path), schema)
    assert result.valid.column("id").to_pylist() == [1]
    assert result.quarantined.column("source_row").to_pylist() == [2, 3]
    reasons = result.quarantined.column("reason").to_pylist()
    assert "name holds a NUL byte" in reasons[0] and "note holds a NUL byte" in reasons[1]
    assert result.rows_read == result.rows_valid + result.rows_rejected

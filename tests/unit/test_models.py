"""Unit tests of declared models (include.etlkit.pipelines.models) and the engine that runs them.

The parser is strict (errors name the file and the model); the engine's rules are shared by every
model: inputs concatenated with schema promotion, the latest version per key, references checked,
values converted to the target types or refused with the column named.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.etlkit.pipelines.models import Model, ModelConfigError, parse_models
from include.etlkit.totesys import model as totesys
from include.etlkit.transform.drift import describe_drift
from include.etlkit.transform.engine import (
    HASH_ROWS,
    ModelError,
    Targets,
    batch_rows,
    build,
    input_frame,
    latest,
    processed_schema,
    row_by_row,
    row_hash,
    scan,
    to_table,
    write_parquet,
)
from include.etlkit.transform.operators import run_prefix
from infra.local.settings import PROJECT_ROOT

WHERE = "totesys.yaml"


def _models(mapping: dict) -> tuple:
    return parse_models(mapping, WHERE)


# -- the declaration --------------------------------------------------------------------------------


def test_the_totesys_declaration_has_one_model_per_warehouse_table_each_after_what_it_reads():
    models = totesys.models()
    assert {m.name for m in models} == set(totesys.SCHEMAS)
    order = [m.name for m in models]
    for fact in ("fact_sales_order", "fact_purchase_order", "fact_payment"):
        assert order.index(fact) < order.index("dim_date")
    by_name = {m.name: m for m in models}
    assert by_name["fact_payment"].merge == "versions"
    assert by_name["fact_payment"].key == ("payment_id", "row_hash")
    assert by_name["dim_staff"].merge == "upsert"
    assert {i.name: i.rows for i in by_name["dim_counterparty"].inputs} == {
        "counterparty": "current",
        "address": "current",
    }
    assert all(m.sql_path.parent.name == "totesys" and m.sql_path.is_file() for m in models)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"inputs": {"design": "all"}, "key": ["design_id"]}, r"missing \['merge'\]"),
        ({"inputs": {"design": "all"}, "key": ["design_id"], "merge": "append"}, "merge must be one of"),
        ({"inputs": {"design": "some"}, "key": ["design_id"], "merge": "upsert"}, "rows must be one of"),
        ({"inputs": {"design": "latest"}, "key": ["design_id"], "merge": "upsert"}, "needs the table's key"),
        ({"inputs": {"design": "all"}, "key": ["design_id"], "merge": "versions"}, "must include row_hash"),
        ({"inputs": {"design": "all"}, "key": "design_id", "merge": "upsert", "sorce": 1}, "unknown option"),
        (
            {"inputs": {"staff": "all", "department": "all"}, "key": ["staff_id"], "merge": "upsert"},
            "must read each one as rows: current",
        ),
        (
            {
                "inputs": {"design": "all"},
                "key": ["design_id"],
                "merge": "upsert",
                "references": [{"from": "design.x", "to": "nowhere.y"}],
            },
            "'nowhere', which is not an input",
        ),
    ],
)
def test_a_wrong_declaration_fails_naming_the_file_and_the_model(spec, message):
    with pytest.raises(ModelConfigError, match=rf"totesys\.yaml, model 'dim_design': .*{message}"):
        _models({"dim_design": spec})


def test_a_model_without_its_sql_file_or_reading_an_undeclared_model_is_refused():
    with pytest.raises(ModelConfigError, match=r"dim_nothing.*SQL file .*dim_nothing\.sql not found"):
        _models({"dim_nothing": {"inputs": {"x": "all"}, "key": "id", "merge": "upsert"}})
    with pytest.raises(ModelConfigError, match=r"reads model 'fact_sales_order', which is not declared"):
        _models({"dim_date": {"inputs": {"fact_sales_order": "model"}, "key": "date_id", "merge": "upsert"}})


# -- inputs -----------------------------------------------------------------------------------------


def test_inputs_of_two_schemas_are_concatenated_with_promotion(tmp_path: Path):
    old = tmp_path / "old.parquet"
    new = tmp_path / "new.parquet"
    pq.write_table(
        pa.table(
            {"id": pa.array([1], pa.int32()), "price": pa.array([Decimal("1.50")], pa.decimal128(10, 2))}
        ),
        old,
    )
    pq.write_table(
        pa.table(
            {
                "id": pa.array([2], pa.int64()),  # widened
                "price": pa.array([Decimal("2.25")], pa.decimal128(14, 2)),  # widened
                "floor": ["3rd"],  # added
            }
        ),
        new,
    )
    rows = scan([old, new]).collect()
    assert rows.schema["id"] == pl.Int64
    assert rows.schema["price"] == pl.Decimal(14, 2)
    assert rows.to_dicts() == [
        {"id": 1, "price": Decimal("1.50"), "floor": None},
        {"id": 2, "price": Decimal("2.25"), "floor": "3rd"},
    ]
    assert describe_drift("address", [old, new]) == [
        "address.floor added (string)",
        "address.id retyped int32 -> int64",
        "address.price retyped decimal128(10, 2) -> decimal128(14, 2)",
    ]


def test_latest_keeps_the_newest_version_per_key_and_the_later_landing_on_a_tie():
    t1, t2 = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)
    rows = pl.LazyFrame(
        {
            "id": [2, 1, 1, 2, 1],
            "last_updated": [t2, t2, t1, t2, t2],
            "v": ["2-a", "1-new", "1-old", "2-b (landed later, same time)", "1-newest landing"],
        }
    )
    assert latest(rows, "id", "last_updated").collect().to_dicts() == [
        {"id": 1, "last_updated": t2, "v": "1-newest landing"},
        {"id": 2, "last_updated": t2, "v": "2-b (landed later, same time)"},
    ]


def test_latest_parses_a_cursor_landed_as_text():
    rows = pl.LazyFrame({"id": [1, 1], "last_updated": ["2024-01-02 00:00:00.5", "2024-01-01 23:59:59"]})
    assert latest(rows, "id", "last_updated").collect()["last_updated"].to_list() == ["2024-01-02 00:00:00.5"]


# -- running a model --------------------------------------------------------------------------------


def _dim_location() -> Model:
    return next(m for m in totesys.models() if m.name == "dim_location")


def _address(**overrides) -> dict:
    row = {
        "address_id": 1,
        "address_line_1": "1 Road",
        "address_line_2": None,
        "district": None,
        "city": "Leeds",
        "postal_code": "LS1",
        "country": "UK",
        "phone": "0113",
        "last_updated": dt.datetime(2024, 1, 1),
    }
    return row | overrides


def test_a_model_refuses_a_value_that_does_not_convert_naming_the_column():
    model = _dim_location()
    item = model.inputs[0]
    frames = {"address": input_frame(item, pl.LazyFrame([_address(address_id=3_000_000_000)]))}
    with pytest.raises(ModelError, match=r"dim_location\.location_id: cannot convert 1 value\(s\) to int32"):
        build(model, frames, totesys.TARGETS)


def test_a_model_whose_sql_misses_a_column_says_which(tmp_path: Path):
    model = _dim_location()
    frames = {"address": pl.LazyFrame([_address()]).drop("city")}
    with pytest.raises(
        ModelError, match=r"dim_location: its SQL \(dim_location\.sql\) fails on its inputs.*city"
    ):
        build(model, frames, totesys.TARGETS)


def test_written_parquet_has_exactly_the_target_schema(tmp_path: Path):
    sales = next(m for m in totesys.models() if m.name == "fact_sales_order")
    row = {
        "sales_order_id": 1,
        "created_at": dt.datetime(2022, 11, 3, 14, 20, 52, 186000),
        "last_updated": dt.datetime(2022, 11, 3, 14, 20, 52, 186000),
        "design_id": 3,
        "staff_id": 19,
        "counterparty_id": 8,
        "units_sold": 10,
        "unit_price": Decimal("3.90"),
        "currency_id": 2,
        "agreed_delivery_date": "2022-11-07",
        "agreed_payment_date": "2022-11-08",
        "agreed_delivery_location_id": 8,
    }
    path = tmp_path / "fact.parquet"
    rows = write_parquet(
        build(sales, {"sales_order": pl.LazyFrame([row])}, totesys.TARGETS),
        totesys.SCHEMAS["fact_sales_order"],
        path,
    )

    written = pq.read_table(path)
    assert rows == 1
    assert written.schema.equals(totesys.SCHEMAS["fact_sales_order"])
    # The row hash as the warehouse's existing rows were hashed: the converted values as text.
    text = "\x1f".join(
        [
            "1",
            "2022-11-03",
            "14:20:52.186000",
            "2022-11-03",
            "14:20:52.186000",
            "19",
            "8",
            "10",
            "3.90",
            "2",
            "3",
            "2022-11-08",
            "2022-11-07",
            "8",
        ]
    )
    assert written.column("row_hash").to_pylist() == [hashlib.md5(text.encode()).hexdigest()]


def test_row_hash_writes_null_as_backslash_n():
    hashes = row_hash([pa.array([1, 1], pa.int32()), pa.array(["x", None])])
    assert hashes.to_pylist() == [
        hashlib.md5(b"1\x1fx").hexdigest(),
        hashlib.md5(b"1\x1f\\N").hexdigest(),
    ]


def test_row_hash_is_the_same_across_its_passes_through_python():
    values = [f"v{i}" for i in range(HASH_ROWS * 2 + 7)]  # three passes, the last a short one
    hashes = row_hash([pa.array(values), pa.array(range(len(values)), pa.int64())])
    assert hashes.type == pa.string()
    assert hashes.to_pylist() == [
        hashlib.md5(f"{v}\x1f{i}".encode()).hexdigest() for i, v in enumerate(values)
    ]


def test_the_transform_of_a_fact_never_imports_pandas(tmp_path: Path):
    """pyarrow imports pandas to convert any Python value (``pa.array``, ``pa.scalar``...): ~40 MB
    and ~0.5 s a transform task never needs (its peak memory, bench/README.md)."""
    snapshot = PROJECT_ROOT / "infra" / "local" / "data" / "totesys" / "snapshot_2024-11-15"
    script = f"""
import sys
from pathlib import Path
from include.etlkit.totesys import model
from include.etlkit.transform.engine import batch_rows, processed_schema, write_parquet
fact = next(m for m in model.models() if m.name == "fact_payment")
rows = write_parquet(
    batch_rows(fact, [Path({str(snapshot / "payment.parquet")!r})], model.TARGETS, 5000),
    processed_schema(fact, model.TARGETS),
    Path({str(tmp_path / "fact.parquet")!r}),
)
assert rows == 15836, rows
print(sorted(name for name in sys.modules if name.split(".")[0] == "pandas"))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_seeds_and_checks_come_from_the_targets():
    currency = next(m for m in totesys.models() if m.name == "dim_currency")
    rows = pl.LazyFrame(
        {"currency_id": [1], "currency_code": ["CHF"], "last_updated": [dt.datetime(2024, 1, 1)]}
    )
    named = Targets(
        schemas=totesys.SCHEMAS,
        seeds={"iso_currency": pa.table({"currency_code": ["CHF"], "currency_name": ["Swiss Franc"]})},
    )
    built = to_table(build(currency, {"currency": rows}, named), totesys.SCHEMAS["dim_currency"])
    assert built.column("currency_name").to_pylist() == ["Swiss Franc"]
    with pytest.raises(totesys.UnknownCurrencyError, match=r"'CHF' \(currency_id 1\)"):
        build(currency, {"currency": rows}, totesys.TARGETS)


def test_each_transform_run_writes_under_its_own_prefix():
    assert run_prefix("totesys", "dim_staff", "manual__2024-11-15T15:00:00+00:00") == (
        "totesys/dim_staff/run=manual__2024-11-15T15_00_00_00_00"
    )
    assert run_prefix("totesys", "dim_staff", "a") != run_prefix("totesys", "dim_staff", "b")


def test_a_row_by_row_model_built_batch_by_batch_equals_the_whole_frame(tmp_path: Path):
    snapshot = PROJECT_ROOT / "infra" / "local" / "data" / "totesys" / "snapshot_2024-11-15"
    payment = next(m for m in totesys.models() if m.name == "fact_payment")
    assert row_by_row(payment)
    path = tmp_path / "fact_payment.parquet"
    schema = processed_schema(payment, totesys.TARGETS)  # the target's, plus additional_column

    rows = write_parquet(
        batch_rows(payment, [snapshot / "payment.parquet"], totesys.TARGETS, 1000), schema, path
    )

    whole = to_table(
        build(payment, {"payment": scan([snapshot / "payment.parquet"])}, totesys.TARGETS), schema
    )
    assert rows == whole.num_rows == 15836
    assert pq.read_table(path).equals(whole)


def test_an_id_landed_as_a_float_converts_only_when_whole():
    model = _dim_location()
    whole = {"address": pl.LazyFrame([_address(address_id=3.0)])}
    assert to_table(build(model, whole, totesys.TARGETS), totesys.SCHEMAS["dim_location"]).column(
        "location_id"
    ).to_pylist() == [3]
    with pytest.raises(
        ModelError, match=r"dim_location\.location_id: cannot convert 1 value\(s\) to int32 \(first: '3\.7'\)"
    ):
        build(model, {"address": pl.LazyFrame([_address(address_id=3.7)])}, totesys.TARGETS)


# -- columns added to a source after its models were written ---------------------------------------


def _sales_order_row(**overrides) -> dict:
    row = {
        "sales_order_id": 1,
        "created_at": dt.datetime(2022, 11, 3, 14, 20, 52, 186000),
        "last_updated": dt.datetime(2022, 11, 3, 14, 20, 52, 186000),
        "design_id": 3,
        "staff_id": 19,
        "counterparty_id": 8,
        "units_sold": 10,
        "unit_price": Decimal("3.90"),
        "currency_id": 2,
        "agreed_delivery_date": "2022-11-07",
        "agreed_payment_date": "2022-11-08",
        "agreed_delivery_location_id": 8,
    }
    return {**row, **overrides}


def test_a_column_added_to_the_source_is_carried_as_json_and_left_out_of_the_row_hash(tmp_path: Path):
    sales = next(m for m in totesys.models() if m.name == "fact_sales_order")
    schema = processed_schema(sales, totesys.TARGETS)
    assert schema.names == [*totesys.SCHEMAS["fact_sales_order"].names, "additional_column"]
    assert sales.load.landing_only == ("additional_column",)  # never merged into core
    before = pl.LazyFrame([_sales_order_row()])
    after = pl.LazyFrame(
        [
            _sales_order_row(sales_order_id=2, discount_code="SPRING", channel=None),
            _sales_order_row(sales_order_id=3, discount_code=None, channel=None),
        ]
    )
    frame = pl.concat([before, after], how="diagonal_relaxed")
    added = {"sales_order": ["discount_code", "channel", "gone_again"]}

    path = tmp_path / "fact.parquet"
    write_parquet(build(sales, {"sales_order": frame}, totesys.TARGETS, added=added), schema, path)

    written = pq.read_table(path)
    assert written.column("additional_column").to_pylist() == [
        None,
        '{"discount_code":"SPRING","channel":null}',
        None,
    ]
    # A version is the table's values: the same row hashes alike with or without what was added.
    plain = tmp_path / "plain.parquet"
    write_parquet(
        build(sales, {"sales_order": pl.LazyFrame([_sales_order_row(sales_order_id=2)])}, totesys.TARGETS),
        schema,
        plain,
    )
    assert pq.read_table(plain).column("row_hash")[0] == written.column("row_hash")[1]


def test_an_added_column_the_model_uses_is_not_carried_again(tmp_path: Path):
    location = _dim_location()
    assert location.carries and "city" in location.names
    frames = {"address": pl.LazyFrame([_address(floor="3rd")])}
    built = to_table(
        build(location, frames, totesys.TARGETS, added={"address": ["floor", "city"]}),
        processed_schema(location, totesys.TARGETS),
    )
    assert built.column("additional_column").to_pylist() == ['{"floor":"3rd"}']


def test_a_model_that_does_not_select_additional_column_keeps_its_target_schema():
    dates = next(m for m in totesys.models() if m.name == "dim_date")
    assert not dates.carries
    assert processed_schema(dates, totesys.TARGETS) == totesys.SCHEMAS["dim_date"]
    assert dates.load.landing_only == ()

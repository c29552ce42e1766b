"""Unit tests of the totesys models (include/config/totesys.yaml, sql/models/totesys/*.sql).

Each model runs on the streaming engine (include.etlkit.transform) exactly as the transform task
runs it, here on frames in memory. Small hand-made frames pin each mapping's rules (NULL address
parts, apostrophes, leading-zero postcodes, text dates, exact money, history); one test runs every
mapping on the real
2024-11-15 snapshot and reconciles counts, keys, sums and dates with the source.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from include.etlkit.totesys import model
from include.etlkit.totesys.transform import build_tables
from include.etlkit.transform.batch import build_in_memory
from infra.local.settings import PROJECT_ROOT

SNAPSHOT = PROJECT_ROOT / "infra" / "local" / "data" / "totesys" / "snapshot_2024-11-15"
TS = pd.Timestamp("2022-11-03 14:20:49.962")


def _values(frame: pd.DataFrame, column: str) -> list:
    """A column as plain Python values, NULL as None."""
    return [None if pd.isna(v) else v for v in frame[column].tolist()]


def _model(name: str, **inputs: pd.DataFrame) -> pd.DataFrame:
    """The declared model ``name`` (and the models it reads) built from these source tables."""
    declared = {m.name: m for m in model.models()}
    wanted = [declared[name], *(declared[u] for u in declared[name].upstream_models)]
    frames = {table: pl.from_pandas(frame).lazy() for table, frame in inputs.items()}
    built = build_in_memory(
        [m for m in model.models() if m in wanted], model.TARGETS, frames, frames.__getitem__
    )
    return built[name].to_pandas(types_mapper=pd.ArrowDtype)


def _stamped(rows: list[dict], ts=TS) -> pd.DataFrame:
    return pd.DataFrame([{**row, "created_at": ts, "last_updated": ts} for row in rows])


def _address(**overrides) -> dict:
    row = {
        "address_id": 1,
        "address_line_1": "6826 Herzog Via",
        "address_line_2": None,
        "district": None,
        "city": "New Patienceburgh",
        "postal_code": "08841",
        "country": "Turkey",
        "phone": "1803 637401",
    }
    return row | overrides


def _sales_order(**overrides) -> dict:
    row = {
        "sales_order_id": 2,
        "created_at": pd.Timestamp("2022-11-03 14:20:52.186"),
        "last_updated": pd.Timestamp("2022-11-04 09:00:00.5"),
        "design_id": 3,
        "staff_id": 19,
        "counterparty_id": 8,
        "units_sold": 42972,
        "unit_price": 3.94,
        "currency_id": 2,
        "agreed_delivery_date": "2022-11-07",
        "agreed_payment_date": "2022-11-08",
        "agreed_delivery_location_id": 8,
    }
    return row | overrides


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------


def test_fact_sales_order_splits_timestamps_and_parses_text_dates():
    fact = _model("fact_sales_order", sales_order=pd.DataFrame([_sales_order()]))

    assert list(fact.columns) == model.SCHEMAS["fact_sales_order"].names
    row = fact.iloc[0]
    assert row["created_date"] == dt.date(2022, 11, 3)
    assert row["created_time"] == dt.time(14, 20, 52, 186000)
    assert row["last_updated_date"] == dt.date(2022, 11, 4)
    assert row["last_updated_time"] == dt.time(9, 0, 0, 500000)
    assert row["agreed_delivery_date"] == dt.date(2022, 11, 7)
    assert row["agreed_payment_date"] == dt.date(2022, 11, 8)
    assert row["sales_staff_id"] == 19
    assert row["unit_price"] == Decimal("3.94")
    assert str(fact["unit_price"].dtype) == "decimal128(10, 2)[pyarrow]"
    assert len(row["row_hash"]) == 32


def test_money_is_exact_and_refuses_more_than_two_decimals():
    prices = pd.DataFrame([_sales_order(sales_order_id=i, unit_price=0.1) for i in range(10)])
    # ten floats 0.1 add up to 0.9999999999999999; ten Decimal('0.10') to exactly 1.00
    assert _model("fact_sales_order", sales_order=prices)["unit_price"].sum() == Decimal("1.00")

    with pytest.raises(ValueError, match=r"fact_sales_order\.unit_price"):
        _model("fact_sales_order", sales_order=pd.DataFrame([_sales_order(unit_price=3.945)]))


def test_facts_accept_values_landed_as_text():
    typed = pd.DataFrame([_sales_order()])
    text = typed.assign(
        created_at=["2022-11-03 14:20:52.186"],
        last_updated=["2022-11-04 09:00:00.500"],
        unit_price=["3.94"],
    )
    pd.testing.assert_frame_equal(
        _model("fact_sales_order", sales_order=text), _model("fact_sales_order", sales_order=typed)
    )


def test_facts_keep_each_distinct_version_once():
    first = _sales_order()
    silently_changed = _sales_order(agreed_delivery_location_id=19)  # same last_updated
    later = _sales_order(last_updated=pd.Timestamp("2022-11-05 10:00:00"))
    fact = _model("fact_sales_order", sales_order=pd.DataFrame([first, first, silently_changed, later]))

    assert len(fact) == 3
    assert fact["row_hash"].is_unique
    assert _values(fact, "agreed_delivery_location_id") == [8, 19, 8]


def test_fact_purchase_order_mapping():
    po = pd.DataFrame(
        [
            {
                "purchase_order_id": 1,
                "created_at": TS,
                "last_updated": TS,
                "staff_id": 12,
                "counterparty_id": 11,
                "item_code": "ZDOI5EA",
                "item_quantity": 371,
                "item_unit_price": 361.39,
                "currency_id": 2,
                "agreed_delivery_date": "2022-11-09",
                "agreed_payment_date": "2022-11-07",
                "agreed_delivery_location_id": 6,
            }
        ]
    )
    fact = _model("fact_purchase_order", purchase_order=po)

    assert list(fact.columns) == model.SCHEMAS["fact_purchase_order"].names
    assert fact.iloc[0]["item_unit_price"] == Decimal("361.39")
    assert fact.iloc[0]["item_code"] == "ZDOI5EA"
    assert fact.iloc[0]["created_time"] == dt.time(14, 20, 49, 962000)
    assert fact.iloc[0]["agreed_delivery_date"] == dt.date(2022, 11, 9)


def test_fact_payment_mapping_drops_account_numbers():
    payment = pd.DataFrame(
        [
            {
                "payment_id": 5,
                "created_at": TS,
                "last_updated": pd.Timestamp("2023-01-02 08:00:00"),
                "transaction_id": 5,
                "counterparty_id": 17,
                "payment_amount": 57067.2,
                "currency_id": 2,
                "payment_type_id": 3,
                "paid": True,
                "payment_date": "2022-11-06",
                "company_ac_number": 66213052,
                "counterparty_ac_number": 91659548,
            }
        ]
    )
    fact = _model("fact_payment", payment=payment)

    assert list(fact.columns) == model.SCHEMAS["fact_payment"].names
    row = fact.iloc[0]
    assert row["payment_amount"] == Decimal("57067.20")
    assert str(row["payment_amount"]) == "57067.20"
    assert _values(fact, "paid") == [True]
    assert row["payment_date"] == dt.date(2022, 11, 6)
    assert row["last_updated_date"] == dt.date(2023, 1, 2)


def test_not_null_columns_are_checked_with_the_column_named():
    with pytest.raises(ValueError, match=r"fact_sales_order\.design_id: 1 NULL"):
        _model("fact_sales_order", sales_order=pd.DataFrame([_sales_order(design_id=None)]))


# ---------------------------------------------------------------------------------------------
# Dimensions
# ---------------------------------------------------------------------------------------------


def test_dim_date_covers_every_fact_date_with_iso_weekdays():
    sales_order = pd.DataFrame(
        [
            _sales_order(agreed_delivery_date="2024-01-01", agreed_payment_date="2024-01-07"),
            _sales_order(sales_order_id=3, agreed_delivery_date="2024-02-29"),
        ]
    )
    dates = _model("dim_date", sales_order=sales_order)  # built from the facts of the run

    assert list(dates.columns) == model.SCHEMAS["dim_date"].names
    by_date = dates.set_index("date_id")
    assert set(by_date.index) == {
        dt.date(2022, 11, 3),  # created_date
        dt.date(2022, 11, 4),  # last_updated_date
        dt.date(2022, 11, 8),  # agreed_payment_date of the second row
        dt.date(2024, 1, 1),
        dt.date(2024, 1, 7),
        dt.date(2024, 2, 29),
    }
    monday, sunday, leap = (
        by_date.loc[dt.date(2024, 1, 1)],
        by_date.loc[dt.date(2024, 1, 7)],
        by_date.loc[dt.date(2024, 2, 29)],
    )
    assert (monday["day_of_week"], monday["day_name"]) == (1, "Monday")
    assert (sunday["day_of_week"], sunday["day_name"]) == (7, "Sunday")
    assert (leap["year"], leap["month"], leap["day"]) == (2024, 2, 29)
    assert (leap["month_name"], leap["quarter"]) == ("February", 1)
    assert by_date.loc[dt.date(2022, 11, 3), "quarter"] == 4
    assert dates["date_id"].is_monotonic_increasing


def test_dim_date_of_several_facts_has_each_date_once():
    sales = pd.DataFrame([_sales_order()])
    # the same dates from two facts (a purchase order shaped like the sales order) and twice in one
    purchases = sales.rename(
        columns={
            "sales_order_id": "purchase_order_id",
            "units_sold": "item_quantity",
            "unit_price": "item_unit_price",
        }
    ).assign(item_code="X")
    dates = _model("dim_date", sales_order=pd.concat([sales, sales]), purchase_order=purchases)
    assert dates["date_id"].is_unique
    assert len(dates) == 4


def test_dim_currency_names_iso_codes():
    currency = _stamped(
        [
            {"currency_id": 1, "currency_code": "GBP"},
            {"currency_id": 2, "currency_code": "USD"},
            {"currency_id": 3, "currency_code": "EUR"},
        ]
    )
    dim = _model("dim_currency", currency=currency)
    assert list(dim.columns) == ["currency_id", "currency_code", "currency_name"]
    assert _values(dim, "currency_name") == ["Pound Sterling", "US Dollar", "Euro"]


def test_dim_currency_names_the_unknown_code():
    currency = _stamped(
        [{"currency_id": 1, "currency_code": "GBP"}, {"currency_id": 4, "currency_code": "JPY"}]
    )
    with pytest.raises(model.UnknownCurrencyError, match=r"'JPY' \(currency_id 4\)"):
        _model("dim_currency", currency=currency)


def test_dim_location_keeps_nulls_and_leading_zero_postcodes():
    address = _stamped(
        [
            _address(),
            _address(
                address_id=2, address_line_2="Tremaine Circles", district="Bedfordshire", postal_code="01138"
            ),
        ]
    )
    dim = _model("dim_location", address=address)

    assert list(dim.columns) == model.SCHEMAS["dim_location"].names
    assert _values(dim, "location_id") == [1, 2]
    assert _values(dim, "postal_code") == ["08841", "01138"]
    assert _values(dim, "address_line_2") == [None, "Tremaine Circles"]
    assert _values(dim, "district") == [None, "Bedfordshire"]


def test_dim_counterparty_spells_out_the_legal_address():
    address = _stamped(
        [
            _address(address_id=15, address_line_1="605 O'Keefe Trafficway", postal_code="04524-5341"),
            _address(address_id=16, address_line_2="Cielo Radial", district="Buckinghamshire"),
        ]
    )
    counterparty = _stamped(
        [
            {
                "counterparty_id": 7,
                "counterparty_legal_name": "Padberg, Lueilwitz and O'Hara",
                "legal_address_id": 15,
                "commercial_contact": None,
                "delivery_contact": "Christy O'Hara",
            },
            {
                "counterparty_id": 8,
                "counterparty_legal_name": "Grant - Lakin",
                "legal_address_id": 16,
                "commercial_contact": "Emily Orn",
                "delivery_contact": None,
            },
        ]
    )
    dim = _model("dim_counterparty", counterparty=counterparty, address=address)

    assert list(dim.columns) == model.SCHEMAS["dim_counterparty"].names
    first, second = dim.iloc[0], dim.iloc[1]
    assert first["counterparty_legal_name"] == "Padberg, Lueilwitz and O'Hara"
    assert first["counterparty_legal_address_line_1"] == "605 O'Keefe Trafficway"
    assert first["counterparty_legal_postal_code"] == "04524-5341"
    assert first["counterparty_legal_phone_number"] == "1803 637401"
    assert pd.isna(first["counterparty_legal_address_line_2"])
    assert pd.isna(first["counterparty_legal_district"])
    assert second["counterparty_legal_address_line_2"] == "Cielo Radial"
    assert second["counterparty_legal_district"] == "Buckinghamshire"


def test_dim_counterparty_refuses_a_missing_address():
    counterparty = _stamped(
        [
            {
                "counterparty_id": 1,
                "counterparty_legal_name": "X",
                "legal_address_id": 99,
                "commercial_contact": None,
                "delivery_contact": None,
            }
        ]
    )
    with pytest.raises(ValueError, match=r"legal_address_id value\(s\) \[99\]"):
        _model("dim_counterparty", counterparty=counterparty, address=_stamped([_address()]))


def _staff_and_departments(location="Manchester"):
    staff = _stamped(
        [
            {
                "staff_id": 1,
                "first_name": "Jeremie",
                "last_name": "O'Keefe",
                "department_id": 2,
                "email_address": "jeremie.okeefe@terrifictotes.com",
            }
        ]
    )
    department = _stamped(
        [{"department_id": 2, "department_name": "Purchasing", "location": location, "manager": None}]
    )
    return {"staff": staff, "department": department}


def test_dim_staff_joins_department():
    dim = _model("dim_staff", **_staff_and_departments())
    assert list(dim.columns) == model.SCHEMAS["dim_staff"].names
    assert dim.iloc[0].to_dict() == {
        "staff_id": 1,
        "first_name": "Jeremie",
        "last_name": "O'Keefe",
        "department_name": "Purchasing",
        "location": "Manchester",
        "email_address": "jeremie.okeefe@terrifictotes.com",
    }


def test_dim_staff_refuses_a_null_location_the_warehouse_cannot_store():
    with pytest.raises(ValueError, match=r"dim_staff\.location: 1 NULL"):
        _model("dim_staff", **_staff_and_departments(location=None))


def test_dimensions_keep_the_latest_version_of_each_row():
    design = pd.DataFrame(
        [
            {
                "design_id": 7,
                "created_at": TS,
                "design_name": "Wooden",
                "file_location": "/System",
                "file_name": "wooden.json",
                "last_updated": TS,
            },
            {
                "design_id": 7,
                "created_at": TS,
                "design_name": "Wooden",
                "file_location": "/usr/local/bin",
                "file_name": "wooden.json",
                "last_updated": TS + pd.Timedelta(days=1),
            },
            {
                "design_id": 1,
                "created_at": TS,
                "design_name": "Steel",
                "file_location": "/lib",
                "file_name": "steel.json",
                "last_updated": TS,
            },
        ]
    )
    dim = _model("dim_design", design=design.iloc[[1, 0, 2]])  # the newer version first in the frame

    assert list(dim.columns) == ["design_id", "design_name", "file_location", "file_name"]
    assert _values(dim, "design_id") == [1, 7]
    assert _values(dim, "file_location") == ["/lib", "/usr/local/bin"]


def test_dim_transaction_keeps_the_unused_order_id_null():
    transaction = _stamped(
        [
            {
                "transaction_id": 1,
                "transaction_type": "PURCHASE",
                "sales_order_id": None,
                "purchase_order_id": 2,
            },
            {"transaction_id": 3, "transaction_type": "SALE", "sales_order_id": 1, "purchase_order_id": None},
        ]
    ).astype({"sales_order_id": "Int64", "purchase_order_id": "Int64"})
    dim = _model("dim_transaction", transaction=transaction)

    assert list(dim.columns) == model.SCHEMAS["dim_transaction"].names
    assert _values(dim, "sales_order_id") == [None, 1]
    assert _values(dim, "purchase_order_id") == [2, None]
    assert str(dim["sales_order_id"].dtype) == "int32[pyarrow]"


def test_dim_payment_type_mapping():
    payment_type = _stamped(
        [
            {"payment_type_id": 1, "payment_type_name": "SALES_RECEIPT"},
            {"payment_type_id": 2, "payment_type_name": "SALES_REFUND"},
        ]
    )
    dim = _model("dim_payment_type", payment_type=payment_type)
    assert list(dim.columns) == ["payment_type_id", "payment_type_name"]
    assert _values(dim, "payment_type_name") == ["SALES_RECEIPT", "SALES_REFUND"]


# ---------------------------------------------------------------------------------------------
# The real 2024-11-15 snapshot
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def source() -> dict[str, pd.DataFrame]:
    return {path.stem: pq.read_table(path).to_pandas() for path in sorted(SNAPSHOT.glob("*.parquet"))}


def _exact_sum(values: pd.Series) -> Decimal:
    return sum((Decimal(str(v)) for v in values.tolist()), Decimal(0))


def test_real_snapshot_reconciles_with_the_source(source):
    facts = {
        "sales_order": _model("fact_sales_order", sales_order=source["sales_order"]),
        "purchase_order": _model("fact_purchase_order", purchase_order=source["purchase_order"]),
        "payment": _model("fact_payment", payment=source["payment"]),
    }
    dims = {
        "staff": _model("dim_staff", staff=source["staff"], department=source["department"]),
        "address": _model("dim_location", address=source["address"]),
        "design": _model("dim_design", design=source["design"]),
        "currency": _model("dim_currency", currency=source["currency"]),
        "counterparty": _model(
            "dim_counterparty", counterparty=source["counterparty"], address=source["address"]
        ),
        "transaction": _model("dim_transaction", transaction=source["transaction"]),
        "payment_type": _model("dim_payment_type", payment_type=source["payment_type"]),
    }

    for table, frame in {**facts, **dims}.items():
        expected = source[table]
        key = f"{table}_id"
        target_key = "location_id" if table == "address" else key
        assert len(frame) == len(expected), table
        assert set(frame[target_key].tolist()) == set(expected[key].tolist()), table
        target_table = ("fact_" if table in facts else "dim_") + ("location" if table == "address" else table)
        assert list(frame.columns) == model.SCHEMAS[target_table].names

    for table, target, column in [
        ("sales_order", "unit_price", "unit_price"),
        ("purchase_order", "item_unit_price", "item_unit_price"),
        ("payment", "payment_amount", "payment_amount"),
    ]:
        assert facts[table][target].sum() == _exact_sum(source[table][column]), table
    assert facts["payment"]["payment_amount"].sum() == Decimal("2866262649.80")
    assert int(facts["sales_order"]["units_sold"].sum()) == int(source["sales_order"]["units_sold"].sum())

    # Text nullables survive: 20 addresses have no line 2, 14 no district (see the data README).
    assert dims["address"]["address_line_2"].isna().sum() == 20
    assert dims["address"]["district"].isna().sum() == 14
    assert dims["transaction"]["sales_order_id"].isna().sum() == len(source["purchase_order"])

    dates = build_tables(source, source.__getitem__)["dim_date"]
    fact_dates = {
        d for frame in facts.values() for c in frame.columns if c.endswith("_date") for d in frame[c].tolist()
    }
    assert set(dates["date_id"].tolist()) == fact_dates
    assert dates["date_id"].is_unique
    assert min(fact_dates) == dt.date(2022, 11, 3)
    assert max(fact_dates) == dt.date(2024, 11, 22)


def test_real_snapshot_frames_convert_to_arrow_with_the_target_schema(source):
    fact = _model("fact_payment", payment=source["payment"])
    schema = pa.Table.from_pandas(fact, preserve_index=False).schema
    target = model.SCHEMAS["fact_payment"]
    assert [(f.name, f.type) for f in schema] == [(f.name, f.type) for f in target]

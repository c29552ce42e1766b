"""The totesys warehouse model: what the 11 tables of ``sql/postgres/totesys/core.sql`` hold.

The models that build them are declared in ``include/config/totesys.yaml`` (one SQL file per table
under ``sql/models/totesys/``) and run by :mod:`include.etlkit.transform`. This module gives them
what SQL cannot say: each table's columns in order with the Arrow type the warehouse stores
(``int32``, ``string``, ``bool``, ``date32``, ``time64[us]`` and ``decimal128(p, 2)`` for money, so
money stays exact) and its nullability; the ISO currency names the SQL joins; and the check that
refuses to guess a currency's name.

What the tables do not hold: the facts' ``*_record_id`` (a ``SERIAL`` the database assigns on
insert). What the facts add: ``row_hash``, which identifies one version of a source row (see the
comment on the facts in ``core.sql``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module
from include.etlkit.pipelines.models import Model
from include.etlkit.transform.engine import Targets, strings

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa
else:  # imported on first use, not while a DAG file is parsed
    pl = lazy_module("polars")
    pa = lazy_module("pyarrow")

# ISO 4217 names of the currencies the source uses. A new code must be added here on purpose:
# dim_currency refuses to guess (see UnknownCurrencyError).
CURRENCY_NAMES: dict[str, str] = {
    "GBP": "Pound Sterling",
    "USD": "US Dollar",
    "EUR": "Euro",
}


class UnknownCurrencyError(ValueError):
    """The source holds a currency code that :data:`CURRENCY_NAMES` does not name."""


# ---------------------------------------------------------------------------------------------
# Target schemas: the columns of core.sql, in order, with nullability.
# ---------------------------------------------------------------------------------------------

INT, TEXT, BOOL, DATE, TIME = pa.int32(), pa.string(), pa.bool_(), pa.date32(), pa.time64("us")


def _money(precision: int) -> pa.DataType:
    return pa.decimal128(precision, 2)


def _nn(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


def _null(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=True)


_CREATED_UPDATED = [
    _nn("created_date", DATE),
    _nn("created_time", TIME),
    _nn("last_updated_date", DATE),
    _nn("last_updated_time", TIME),
]

SCHEMAS: dict[str, pa.Schema] = {
    "dim_date": pa.schema(
        [
            _nn("date_id", DATE),
            _nn("year", INT),
            _nn("month", INT),
            _nn("day", INT),
            _nn("day_of_week", INT),
            _nn("day_name", TEXT),
            _nn("month_name", TEXT),
            _nn("quarter", INT),
        ]
    ),
    "dim_staff": pa.schema(
        [
            _nn("staff_id", INT),
            _nn("first_name", TEXT),
            _nn("last_name", TEXT),
            _nn("department_name", TEXT),
            _nn("location", TEXT),
            _nn("email_address", TEXT),
        ]
    ),
    "dim_location": pa.schema(
        [
            _nn("location_id", INT),
            _nn("address_line_1", TEXT),
            _null("address_line_2", TEXT),
            _null("district", TEXT),
            _nn("city", TEXT),
            _nn("postal_code", TEXT),
            _nn("country", TEXT),
            _nn("phone", TEXT),
        ]
    ),
    "dim_design": pa.schema(
        [
            _nn("design_id", INT),
            _nn("design_name", TEXT),
            _nn("file_location", TEXT),
            _nn("file_name", TEXT),
        ]
    ),
    "dim_currency": pa.schema(
        [_nn("currency_id", INT), _nn("currency_code", TEXT), _nn("currency_name", TEXT)]
    ),
    "dim_counterparty": pa.schema(
        [
            _nn("counterparty_id", INT),
            _nn("counterparty_legal_name", TEXT),
            _nn("counterparty_legal_address_line_1", TEXT),
            _null("counterparty_legal_address_line_2", TEXT),
            _null("counterparty_legal_district", TEXT),
            _nn("counterparty_legal_city", TEXT),
            _nn("counterparty_legal_postal_code", TEXT),
            _nn("counterparty_legal_country", TEXT),
            _nn("counterparty_legal_phone_number", TEXT),
        ]
    ),
    "dim_transaction": pa.schema(
        [
            _nn("transaction_id", INT),
            _nn("transaction_type", TEXT),
            _null("sales_order_id", INT),
            _null("purchase_order_id", INT),
        ]
    ),
    "dim_payment_type": pa.schema([_nn("payment_type_id", INT), _nn("payment_type_name", TEXT)]),
    "fact_sales_order": pa.schema(
        [
            _nn("sales_order_id", INT),
            *_CREATED_UPDATED,
            _nn("sales_staff_id", INT),
            _nn("counterparty_id", INT),
            _nn("units_sold", INT),
            _nn("unit_price", _money(10)),
            _nn("currency_id", INT),
            _nn("design_id", INT),
            _nn("agreed_payment_date", DATE),
            _nn("agreed_delivery_date", DATE),
            _nn("agreed_delivery_location_id", INT),
            _nn("row_hash", TEXT),
        ]
    ),
    "fact_purchase_order": pa.schema(
        [
            _nn("purchase_order_id", INT),
            *_CREATED_UPDATED,
            _nn("staff_id", INT),
            _nn("counterparty_id", INT),
            _nn("item_code", TEXT),
            _nn("item_quantity", INT),
            _nn("item_unit_price", _money(10)),
            _nn("currency_id", INT),
            _nn("agreed_delivery_date", DATE),
            _nn("agreed_payment_date", DATE),
            _nn("agreed_delivery_location_id", INT),
            _nn("row_hash", TEXT),
        ]
    ),
    "fact_payment": pa.schema(
        [
            _nn("payment_id", INT),
            *_CREATED_UPDATED,
            _nn("transaction_id", INT),
            _nn("counterparty_id", INT),
            _nn("payment_amount", _money(14)),
            _nn("currency_id", INT),
            _nn("payment_type_id", INT),
            _nn("paid", BOOL),
            _nn("payment_date", DATE),
            _nn("row_hash", TEXT),
        ]
    ),
}


# ---------------------------------------------------------------------------------------------
# What the models need besides their SQL
# ---------------------------------------------------------------------------------------------


def check_currencies(dim_currency: pl.LazyFrame) -> None:
    """Every currency code has its ISO name: an unknown one raises :class:`UnknownCurrencyError`."""
    unknown = (
        dim_currency.filter(pl.col("currency_name").is_null())
        .select("currency_id", "currency_code")
        .sort("currency_id")
        .collect()
    )
    if unknown.height:
        found = ", ".join(f"{code!r} (currency_id {cid})" for cid, code in unknown.iter_rows())
        raise UnknownCurrencyError(
            f"no currency name for {found}: add the ISO 4217 name to CURRENCY_NAMES in {__name__}"
        )


TARGETS = Targets(
    schemas=SCHEMAS,
    seeds={
        "iso_currency": pa.table(
            {
                "currency_code": strings(list(CURRENCY_NAMES)),
                "currency_name": strings(list(CURRENCY_NAMES.values())),
            }
        )
    },
    checks={"dim_currency": check_currencies},
)


def models() -> tuple[Model, ...]:
    """The models declared in ``include/config/totesys.yaml``, each after the models it reads."""
    from include.etlkit.pipelines.config import load_pipeline

    return load_pipeline("totesys").models

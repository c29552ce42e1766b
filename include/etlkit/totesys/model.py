"""The totesys warehouse model: one pure function per table of ``sql/postgres/totesys/core.sql``.

Each function takes the source tables it needs as pandas DataFrames *as landed* (the source's own
columns; values may be typed or text, e.g. timestamps as ``datetime64`` or as ISO strings) and
returns a DataFrame with exactly the target table's columns, in its order, with pyarrow-backed
dtypes that say what the warehouse stores: ``int32``, ``string``, ``bool``, ``date32``,
``time64[us]`` and ``decimal128(p, 2)`` for money. Money therefore stays exact (``Decimal`` values,
never float sums), and the frame converts losslessly to Parquet or to COPY-able CSV.

What the functions do not produce: the facts' ``*_record_id`` (a ``SERIAL`` the database assigns
on insert). What they add: the facts' ``row_hash``, which identifies one version of a source row
(see the comment on the facts in ``core.sql``).

Rules shared by all mappings, so each function stays a plain column list:

- NOT NULL columns are checked here, with the column named, instead of failing at load time.
- Dimensions keep the current state: if a landed frame holds several versions of one id, the one
  with the latest ``last_updated`` (the last one on a tie) wins.
- Facts keep every distinct version of a source row, once.

No I/O here: reading the landing zone and writing the warehouse belong to the operators.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# ISO 4217 names of the currencies the source uses. A new code must be added here on purpose:
# dim_currency refuses to guess (see UnknownCurrencyError).
CURRENCY_NAMES: dict[str, str] = {
    "GBP": "Pound Sterling",
    "USD": "US Dollar",
    "EUR": "Euro",
}

# Fixed English names, not strftime("%A"/"%B"), which follow the process locale.
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTH_NAMES = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


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
# Conversions: landed values (typed or text) to warehouse types.
# ---------------------------------------------------------------------------------------------


def _timestamps(values: pd.Series) -> pa.Array:
    # ISO8601 accepts datetime64, datetime objects and text such as '2022-11-03 14:20:49.962'
    # or '2022-11-03' alike; anything else raises rather than guessing.
    return pa.array(pd.to_datetime(values, format="ISO8601"), type=pa.timestamp("us"))


def _date_part(values: pd.Series) -> pa.Array:
    return pc.cast(_timestamps(values), DATE)


def _time_part(values: pd.Series) -> pa.Array:
    return pc.cast(_timestamps(values), TIME)


def _decimals(values: pd.Series) -> list[Decimal | None]:
    """Money as ``Decimal``: floats through their shortest text (3.94, not 3.93999...)."""
    return [None if pd.isna(v) else v if isinstance(v, Decimal) else Decimal(str(v)) for v in values.tolist()]


def _array(values: Any, field: pa.Field, table: str) -> pa.Array:
    try:
        if isinstance(values, pa.Array | pa.ChunkedArray):
            array = values.cast(field.type)
        else:
            array = pa.array(values, type=field.type, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        # e.g. a price with 3 decimals ("Rescaling Decimal value would cause data loss")
        raise ValueError(f"{table}.{field.name}: cannot convert to {field.type}: {exc}") from exc
    if not field.nullable and array.null_count:
        raise ValueError(f"{table}.{field.name}: {array.null_count} NULL value(s) in a NOT NULL column")
    return array


def _row_hash(columns: list[pa.Array]) -> list[str]:
    """MD5 of a row's values as text (NULL as ``\\N``), separated by a unit separator.

    Computed on the converted values, so 3.9 and '3.90' hash alike; stable across runs and hosts.
    """
    text = pc.binary_join_element_wise(
        *(pc.cast(column, pa.string()) for column in columns),
        "\x1f",
        null_handling="replace",
        null_replacement="\\N",
    )
    return [hashlib.md5(row.encode(), usedforsecurity=False).hexdigest() for row in text.to_pylist()]


def _frame(table: str, columns: Mapping[str, Any]) -> pd.DataFrame:
    """Build ``table``'s frame from a value per target column (``row_hash`` is computed)."""
    schema = SCHEMAS[table]
    arrays = [_array(columns[f.name], f, table) for f in schema if f.name != "row_hash"]
    if "row_hash" in schema.names:
        arrays.append(pa.array(_row_hash(arrays), type=TEXT))
    return pa.Table.from_arrays(arrays, schema=schema).to_pandas(types_mapper=pd.ArrowDtype)


def _fact(table: str, key: str, columns: Mapping[str, Any]) -> pd.DataFrame:
    """A fact frame: one row per distinct version (key, row_hash) of a source row."""
    frame = _frame(table, columns)
    return frame.drop_duplicates([key, "row_hash"]).reset_index(drop=True)


def _current(source: pd.DataFrame, key: str) -> pd.DataFrame:
    """One row per ``key``: the latest by ``last_updated`` (the later row in the frame on a tie)."""
    latest_last = pc.sort_indices(_timestamps(source["last_updated"])).to_numpy()
    current = source.iloc[latest_last].drop_duplicates(key, keep="last")
    return current.sort_values(key, kind="stable").reset_index(drop=True)


def _lookup(
    frame: pd.DataFrame, fk: str, parent: pd.DataFrame, pk: str, columns: Mapping[str, str]
) -> pd.DataFrame:
    """Left-join ``parent[columns]`` (renamed ``{source: target}``) on ``frame[fk] = parent[pk]``.

    A missing parent raises: the dimension's columns would be NULL, or the row silently dropped.
    """
    missing = sorted(set(frame[fk].dropna()) - set(parent[pk]))
    if missing:
        raise ValueError(f"{fk} value(s) {missing} not found in {pk}")
    wanted = parent[[pk, *columns]].rename(columns={pk: fk, **columns})
    return frame.merge(wanted, on=fk, how="left", validate="many_to_one")


# ---------------------------------------------------------------------------------------------
# Dimensions
# ---------------------------------------------------------------------------------------------


def dim_date(*facts: pd.DataFrame) -> pd.DataFrame:
    """Every date any of ``facts`` refers to (its ``*_date`` columns), once, in order.

    Built from the facts rather than a fixed calendar range, so every fact date has its row (the
    facts' foreign keys need it) and the dimension grows with the data. Weekdays are ISO
    (Monday = 1), names English whatever the locale.
    """
    dates: set[dt.date] = set()
    for fact in facts:
        for column in (c for c in fact.columns if c.endswith("_date")):
            dates.update(_date_part(fact[column].dropna()).to_pylist())
    days = sorted(dates)
    return _frame(
        "dim_date",
        {
            "date_id": days,
            "year": [d.year for d in days],
            "month": [d.month for d in days],
            "day": [d.day for d in days],
            "day_of_week": [d.isoweekday() for d in days],
            "day_name": [DAY_NAMES[d.isoweekday() - 1] for d in days],
            "month_name": [MONTH_NAMES[d.month - 1] for d in days],
            "quarter": [(d.month - 1) // 3 + 1 for d in days],
        },
    )


def dim_staff(staff: pd.DataFrame, department: pd.DataFrame) -> pd.DataFrame:
    """Staff with their department's name and location (``staff.department_id``)."""
    rows = _lookup(
        _current(staff, "staff_id"),
        "department_id",
        _current(department, "department_id"),
        "department_id",
        {"department_name": "department_name", "location": "location"},
    )
    return _frame(
        "dim_staff",
        {
            "staff_id": rows["staff_id"],
            "first_name": rows["first_name"],
            "last_name": rows["last_name"],
            "department_name": rows["department_name"],
            "location": rows["location"],
            "email_address": rows["email_address"],
        },
    )


def dim_location(address: pd.DataFrame) -> pd.DataFrame:
    """Addresses as delivery locations: ``location_id`` is ``address_id``."""
    rows = _current(address, "address_id")
    return _frame(
        "dim_location",
        {
            "location_id": rows["address_id"],
            "address_line_1": rows["address_line_1"],
            "address_line_2": rows["address_line_2"],
            "district": rows["district"],
            "city": rows["city"],
            "postal_code": rows["postal_code"],
            "country": rows["country"],
            "phone": rows["phone"],
        },
    )


def dim_design(design: pd.DataFrame) -> pd.DataFrame:
    """Designs, without their timestamps."""
    rows = _current(design, "design_id")
    return _frame(
        "dim_design",
        {
            "design_id": rows["design_id"],
            "design_name": rows["design_name"],
            "file_location": rows["file_location"],
            "file_name": rows["file_name"],
        },
    )


def dim_currency(currency: pd.DataFrame) -> pd.DataFrame:
    """Currencies with their ISO 4217 name; an unknown code raises :class:`UnknownCurrencyError`."""
    rows = _current(currency, "currency_id")
    unknown = rows.loc[~rows["currency_code"].isin(list(CURRENCY_NAMES))]
    if len(unknown):
        found = ", ".join(
            f"{code!r} (currency_id {cid})" for cid, code in unknown[["currency_id", "currency_code"]].values
        )
        raise UnknownCurrencyError(
            f"no currency name for {found}: add the ISO 4217 name to CURRENCY_NAMES in {__name__}"
        )
    return _frame(
        "dim_currency",
        {
            "currency_id": rows["currency_id"],
            "currency_code": rows["currency_code"],
            "currency_name": rows["currency_code"].map(CURRENCY_NAMES),
        },
    )


def dim_counterparty(counterparty: pd.DataFrame, address: pd.DataFrame) -> pd.DataFrame:
    """Counterparties with their legal address (``counterparty.legal_address_id``) spelt out."""
    legal = "counterparty_legal_"
    rows = _lookup(
        _current(counterparty, "counterparty_id"),
        "legal_address_id",
        _current(address, "address_id"),
        "address_id",
        {
            "address_line_1": f"{legal}address_line_1",
            "address_line_2": f"{legal}address_line_2",
            "district": f"{legal}district",
            "city": f"{legal}city",
            "postal_code": f"{legal}postal_code",
            "country": f"{legal}country",
            "phone": f"{legal}phone_number",
        },
    )
    return _frame("dim_counterparty", {name: rows[name] for name in SCHEMAS["dim_counterparty"].names})


def dim_transaction(transaction: pd.DataFrame) -> pd.DataFrame:
    """Transactions: a SALE points to a sales order, a PURCHASE to a purchase order (other NULL)."""
    rows = _current(transaction, "transaction_id")
    return _frame(
        "dim_transaction",
        {
            "transaction_id": rows["transaction_id"],
            "transaction_type": rows["transaction_type"],
            "sales_order_id": rows["sales_order_id"],
            "purchase_order_id": rows["purchase_order_id"],
        },
    )


def dim_payment_type(payment_type: pd.DataFrame) -> pd.DataFrame:
    """Payment types (SALES_RECEIPT, SALES_REFUND, PURCHASE_PAYMENT, PURCHASE_REFUND)."""
    rows = _current(payment_type, "payment_type_id")
    return _frame(
        "dim_payment_type",
        {"payment_type_id": rows["payment_type_id"], "payment_type_name": rows["payment_type_name"]},
    )


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------


def fact_sales_order(sales_order: pd.DataFrame) -> pd.DataFrame:
    """Sales orders: timestamps split into date + time, text dates parsed, price exact."""
    so = sales_order
    return _fact(
        "fact_sales_order",
        "sales_order_id",
        {
            "sales_order_id": so["sales_order_id"],
            "created_date": _date_part(so["created_at"]),
            "created_time": _time_part(so["created_at"]),
            "last_updated_date": _date_part(so["last_updated"]),
            "last_updated_time": _time_part(so["last_updated"]),
            "sales_staff_id": so["staff_id"],
            "counterparty_id": so["counterparty_id"],
            "units_sold": so["units_sold"],
            "unit_price": _decimals(so["unit_price"]),
            "currency_id": so["currency_id"],
            "design_id": so["design_id"],
            "agreed_payment_date": _date_part(so["agreed_payment_date"]),
            "agreed_delivery_date": _date_part(so["agreed_delivery_date"]),
            "agreed_delivery_location_id": so["agreed_delivery_location_id"],
        },
    )


def fact_purchase_order(purchase_order: pd.DataFrame) -> pd.DataFrame:
    """Purchase orders: timestamps split into date + time, text dates parsed, price exact."""
    po = purchase_order
    return _fact(
        "fact_purchase_order",
        "purchase_order_id",
        {
            "purchase_order_id": po["purchase_order_id"],
            "created_date": _date_part(po["created_at"]),
            "created_time": _time_part(po["created_at"]),
            "last_updated_date": _date_part(po["last_updated"]),
            "last_updated_time": _time_part(po["last_updated"]),
            "staff_id": po["staff_id"],
            "counterparty_id": po["counterparty_id"],
            "item_code": po["item_code"],
            "item_quantity": po["item_quantity"],
            "item_unit_price": _decimals(po["item_unit_price"]),
            "currency_id": po["currency_id"],
            "agreed_delivery_date": _date_part(po["agreed_delivery_date"]),
            "agreed_payment_date": _date_part(po["agreed_payment_date"]),
            "agreed_delivery_location_id": po["agreed_delivery_location_id"],
        },
    )


def fact_payment(payment: pd.DataFrame) -> pd.DataFrame:
    """Payments: timestamps split into date + time, payment_date parsed, amount exact.

    The account numbers stay in the source: the warehouse model has no place for them.
    """
    pm = payment
    return _fact(
        "fact_payment",
        "payment_id",
        {
            "payment_id": pm["payment_id"],
            "created_date": _date_part(pm["created_at"]),
            "created_time": _time_part(pm["created_at"]),
            "last_updated_date": _date_part(pm["last_updated"]),
            "last_updated_time": _time_part(pm["last_updated"]),
            "transaction_id": pm["transaction_id"],
            "counterparty_id": pm["counterparty_id"],
            "payment_amount": _decimals(pm["payment_amount"]),
            "currency_id": pm["currency_id"],
            "payment_type_id": pm["payment_type_id"],
            "paid": pm["paid"],
            "payment_date": _date_part(pm["payment_date"]),
        },
    )

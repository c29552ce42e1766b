"""Which warehouse tables a batch of landed totesys rows touches, and how each is built from it.

A run transforms only what was landed since the last run (the new row versions). Two dimensions
join a second source table: ``dim_counterparty`` (counterparty + address) and ``dim_staff``
(staff + department). When either side changes they are rebuilt from the *current* state of both
sides (every version landed so far, latest wins), so a new address reaches the counterparties that
use it even though no counterparty row moved. Those four source tables are small reference tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from include.etlkit.totesys import model


@dataclass(frozen=True)
class TableMapping:
    """A warehouse table built from the new rows of ``changed_from`` (and current state of ``joins``)."""

    build: Callable[..., pd.DataFrame]
    inputs: tuple[str, ...]  # source tables passed to ``build``, in order
    current_state: bool = False  # build from every landed version, not only the new ones


MAPPINGS: dict[str, TableMapping] = {
    "dim_design": TableMapping(model.dim_design, ("design",)),
    "dim_currency": TableMapping(model.dim_currency, ("currency",)),
    "dim_payment_type": TableMapping(model.dim_payment_type, ("payment_type",)),
    "dim_transaction": TableMapping(model.dim_transaction, ("transaction",)),
    "dim_location": TableMapping(model.dim_location, ("address",)),
    "dim_counterparty": TableMapping(model.dim_counterparty, ("counterparty", "address"), current_state=True),
    "dim_staff": TableMapping(model.dim_staff, ("staff", "department"), current_state=True),
    "fact_sales_order": TableMapping(model.fact_sales_order, ("sales_order",)),
    "fact_purchase_order": TableMapping(model.fact_purchase_order, ("purchase_order",)),
    "fact_payment": TableMapping(model.fact_payment, ("payment",)),
}
FACTS = ("fact_sales_order", "fact_purchase_order", "fact_payment")

# Load order: dimensions before the facts that reference them.
LOAD_ORDER = (
    "dim_date",
    "dim_currency",
    "dim_design",
    "dim_location",
    "dim_counterparty",
    "dim_staff",
    "dim_payment_type",
    "dim_transaction",
    *FACTS,
)


def affected_tables(changed: set[str]) -> list[str]:
    """The warehouse tables a change in these source tables touches (dim_date follows the facts)."""
    tables = [name for name, m in MAPPINGS.items() if changed & set(m.inputs)]
    if any(name in FACTS for name in tables):
        tables.append("dim_date")
    return tables


def build_tables(
    new_rows: Mapping[str, pd.DataFrame], current: Callable[[str], pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """Build every affected warehouse table from the new rows of each changed source table.

    ``current(source_table)`` returns every version of that table landed so far.
    """
    built: dict[str, pd.DataFrame] = {}
    for name in affected_tables(set(new_rows)):
        if name == "dim_date":
            continue
        mapping = MAPPINGS[name]
        if mapping.current_state:
            frames = [current(table) for table in mapping.inputs]
        else:
            frames = [new_rows[table] for table in mapping.inputs]
        built[name] = mapping.build(*frames)
    facts = [built[name] for name in FACTS if name in built]
    if facts:
        built["dim_date"] = model.dim_date(*facts)
    return built

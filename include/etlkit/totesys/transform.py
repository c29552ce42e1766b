"""The totesys tables in load order, and the models run on frames already in memory.

The models themselves are declared in ``include/config/totesys.yaml`` and run by
:class:`~include.etlkit.transform.operators.TransformLandedOperator`; :func:`build_tables` runs the
same models on pandas frames (tests and tools that hold a whole small snapshot).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from include.etlkit.lazy import lazy_module
from include.etlkit.totesys import model
from include.etlkit.transform.batch import build_in_memory

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
else:  # imported on first use, not while a DAG file is parsed
    pd = lazy_module("pandas")
    pl = lazy_module("polars")

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


def _lazy(frame: pd.DataFrame) -> pl.LazyFrame:
    return pl.from_pandas(frame).lazy()


def build_tables(
    new_rows: Mapping[str, pd.DataFrame], current: Callable[[str], pd.DataFrame]
) -> dict[str, pd.DataFrame]:
    """Every warehouse table the new rows of these source tables affect, as pyarrow-backed frames.

    ``current(source_table)`` returns every version of that table landed so far.
    """
    built = build_in_memory(
        model.models(),
        model.TARGETS,
        {table: _lazy(frame) for table, frame in new_rows.items()},
        lambda table: _lazy(current(table)),
    )
    return {name: table.to_pandas(types_mapper=pd.ArrowDtype) for name, table in built.items()}

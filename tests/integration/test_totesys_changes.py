"""totesys under change, end to end on the real local services and the 2024-11-15 snapshot.

The source changes the way real sources do, between runs of ingest -> transform -> load (the real
DAGs through ``dag.test()``): a value goes back to an earlier state, a column is added or widened,
a column a model needs is dropped. Each change is made with ``last_updated`` moved into the next
30-minute interval, so the next ingest lands it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import psycopg
import pytest

from include.etlkit.control.store import ControlStore
from tests.integration.airflow_server import dsn
from tests.integration.test_totesys_end_to_end import (
    FIRST_INTERVAL_END,
    SOURCE_DB,
    WAREHOUSE_DB,
    _query,
    _scalar,
    pipeline,  # noqa: F401 - the module's fixture: fresh source, warehouse, buckets, DAGs
    run,
    run_chain,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Clock:
    """The source's clock: each change 10 minutes into the next 30-minute interval."""

    def __init__(self, start: datetime) -> None:
        self.interval_end = start

    def next_interval(self) -> tuple[str, datetime]:
        changed_at = self.interval_end + timedelta(minutes=10)
        self.interval_end += timedelta(minutes=30)
        return changed_at.strftime("%Y-%m-%d %H:%M:%S"), self.interval_end


@pytest.fixture(scope="module")
def clock(pipeline) -> Clock:  # noqa: F811 - the imported fixture, used by name
    run_chain(pipeline, FIRST_INTERVAL_END)  # the full snapshot, every table
    return Clock(FIRST_INTERVAL_END)


def _source(statement: str, params: tuple = ()) -> None:
    with psycopg.connect(dsn(SOURCE_DB), autocommit=True) as conn:
        conn.execute(statement, params)


def _legal_address() -> tuple[int, int, str]:
    """The first counterparty, its legal address and that address's city."""
    return _query(
        SOURCE_DB,
        "SELECT c.counterparty_id, a.address_id, a.city FROM counterparty AS c "
        "JOIN address AS a ON a.address_id = c.legal_address_id ORDER BY 1 LIMIT 1",
    )[0]


def _warehouse_city(counterparty_id: int, address_id: int) -> tuple[str, str]:
    return (
        _scalar(
            WAREHOUSE_DB,
            "SELECT counterparty_legal_city FROM core.dim_counterparty WHERE counterparty_id = %s",
            (counterparty_id,),
        ),
        _scalar(WAREHOUSE_DB, "SELECT city FROM core.dim_location WHERE location_id = %s", (address_id,)),
    )


def test_a_value_that_returns_to_an_earlier_state_reaches_the_warehouse_every_time(pipeline, clock):  # noqa: F811
    counterparty_id, address_id, v1 = _legal_address()
    order_id, v1_units = _query(
        SOURCE_DB, "SELECT sales_order_id, units_sold FROM sales_order ORDER BY 1 LIMIT 1"
    )[0]
    seen = []
    for city, units in (("Elsewhere", v1_units + 1), (v1, v1_units)):  # v1 -> v2 -> v1
        changed_at, interval_end = clock.next_interval()
        _source(
            "UPDATE address SET city = %s, last_updated = %s WHERE address_id = %s",
            (city, changed_at, address_id),
        )
        _source(
            "UPDATE sales_order SET units_sold = %s, last_updated = %s WHERE sales_order_id = %s",
            (units, changed_at, order_id),
        )
        run_chain(pipeline, interval_end)
        seen.append(_warehouse_city(counterparty_id, address_id))

    assert seen == [("Elsewhere", "Elsewhere"), (v1, v1)]
    # The fact keeps every version: v1 from the snapshot, v2, and v1 again (a later last_updated).
    versions = _query(
        WAREHOUSE_DB,
        "SELECT units_sold FROM core.fact_sales_order WHERE sales_order_id = %s "
        "ORDER BY last_updated_date, last_updated_time",
        (order_id,),
    )
    assert [units for (units,) in versions] == [v1_units, v1_units + 1, v1_units]
    # Each transform run wrote its own objects: the third dim_counterparty (same rows as the
    # first) is a new object, loaded, not mistaken for the first.
    keys = _query(
        WAREHOUSE_DB,
        "SELECT key, loaded_at IS NOT NULL FROM etl.processed_object "
        "WHERE source = 'totesys' AND table_name = 'dim_counterparty' ORDER BY created_at",
    )
    assert len(keys) == 3 and all(loaded for _, loaded in keys)
    assert len({key.rsplit("/", 1)[0] for key, _ in keys}) == 3  # one run= prefix each


def test_joined_dimensions_read_current_state_snapshots_not_every_landed_object(pipeline, clock):  # noqa: F811
    states = dict(
        _query(
            WAREHOUSE_DB,
            "SELECT table_name, rows FROM etl.current_state WHERE source = 'totesys' ORDER BY 1",
        )
    )
    # One snapshot per table a joined dimension reads, one row per key, however many times rows landed.
    assert states == {"address": 30, "counterparty": 20, "department": 8, "staff": 20}
    address_objects = _scalar(
        WAREHOUSE_DB,
        "SELECT count(*) FROM etl.landed_object WHERE source = 'totesys' AND table_name = 'address'",
    )
    assert address_objects >= 3  # the snapshot and each change: what the state saves reading again


def test_an_added_and_a_widened_column_neither_halt_nor_drop_data(pipeline, clock):  # noqa: F811
    counterparty_id, address_id, _ = _legal_address()
    other_address = _scalar(SOURCE_DB, "SELECT max(address_id) FROM address")
    order_id = _scalar(SOURCE_DB, "SELECT max(sales_order_id) FROM sales_order")

    # Two ingests before one transform: one object in the old schema, one in the new.
    changed_at, interval_end = clock.next_interval()
    _source(
        "UPDATE address SET district = 'Before', last_updated = %s WHERE address_id = %s",
        (changed_at, other_address),
    )
    _source(
        "UPDATE sales_order SET units_sold = 1, last_updated = %s WHERE sales_order_id = %s",
        (changed_at, order_id),
    )
    run(pipeline["totesys_ingest"], interval_end)

    _source("ALTER TABLE address ADD COLUMN floor text")
    _source(
        "ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint, "
        "ALTER COLUMN unit_price TYPE numeric(14, 2)"
    )
    changed_at, interval_end = clock.next_interval()
    _source(
        "UPDATE address SET floor = '3rd', city = 'Driftwood', last_updated = %s WHERE address_id = %s",
        (changed_at, address_id),
    )
    _source(
        "UPDATE sales_order SET units_sold = 2, unit_price = 12.34, last_updated = %s "
        "WHERE sales_order_id = %s",
        (changed_at, order_id),
    )
    run(pipeline["totesys_ingest"], interval_end)
    run(pipeline["totesys_transform"])
    run(pipeline["totesys_load"])

    assert _warehouse_city(counterparty_id, address_id) == ("Driftwood", "Driftwood")
    assert _scalar(
        WAREHOUSE_DB, "SELECT district FROM core.dim_location WHERE location_id = %s", (other_address,)
    ) == ("Before")
    units = _query(
        WAREHOUSE_DB,
        "SELECT units_sold, unit_price FROM core.fact_sales_order WHERE sales_order_id = %s "
        "ORDER BY last_updated_date, last_updated_time",
        (order_id,),
    )
    assert [u for u, _ in units[-2:]] == [1, 2]
    assert str(units[-1][1]) == "12.34"
    assert not ControlStore().query(
        "SELECT key FROM etl.landed_object WHERE source = 'totesys' AND transformed_at IS NULL"
    )
    # The added column reaches the warehouse's landing table (not core, whose shape is the model's).
    carried = _query(
        WAREHOUSE_DB,
        "SELECT location_id, additional_column FROM landing.dim_location "
        "WHERE location_id IN (%s, %s) ORDER BY _loaded_at DESC, location_id",
        (address_id, other_address),
    )
    latest_by_id = {location: extra for location, extra in reversed(carried)}
    assert json.loads(latest_by_id[address_id]) == {"floor": "3rd"}
    assert latest_by_id[other_address] is None  # landed before the column existed
    core_columns = _query(
        WAREHOUSE_DB,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'core' AND table_name = 'dim_location'",
    )
    assert ("additional_column",) not in core_columns


def test_additive_drift_is_recorded_in_schema_change(pipeline, clock):  # noqa: F811
    changes = _query(
        WAREHOUSE_DB,
        "SELECT table_name, change_kind, column_name FROM etl.schema_change "
        "WHERE source = 'totesys' ORDER BY 1, 3",
    )
    assert ("address", "added", "floor") in changes
    assert ("sales_order", "retyped", "units_sold") in changes


def test_a_dropped_or_narrowed_column_fails_its_model_only_and_says_what_changed(pipeline, clock):  # noqa: F811
    design_id = _scalar(SOURCE_DB, "SELECT min(design_id) FROM design")
    sales_id = _scalar(SOURCE_DB, "SELECT min(sales_order_id) FROM sales_order")
    purchase_id = _scalar(SOURCE_DB, "SELECT min(purchase_order_id) FROM purchase_order")
    _source("ALTER TABLE design DROP COLUMN file_location")  # dim_design needs it
    # integer -> text holding codes: no longer an id the warehouse's int column can take
    _source(
        "ALTER TABLE sales_order DROP CONSTRAINT sales_order_design_id_fkey, "
        "ALTER COLUMN design_id TYPE text USING 'D-' || design_id"
    )
    changed_at, interval_end = clock.next_interval()
    for table, key in (("design", design_id), ("sales_order", sales_id), ("purchase_order", purchase_id)):
        _source(f"UPDATE {table} SET last_updated = %s WHERE {table}_id = %s", (changed_at, key))
    _source("UPDATE purchase_order SET item_quantity = 77 WHERE purchase_order_id = %s", (purchase_id,))
    run(pipeline["totesys_ingest"], interval_end)

    result = pipeline["totesys_transform"].test()

    assert result.state == "failed"
    error = _scalar(
        WAREHOUSE_DB,
        "SELECT error FROM etl.task_log WHERE dag_id = 'totesys_transform' AND run_id = %s",
        (result.run_id,),
    )
    assert "2 model(s) of totesys failed" in error
    assert "dim_design" in error and "design.file_location dropped" in error
    assert "fact_sales_order.sales_order_id" not in error
    assert "fact_sales_order.design_id: cannot convert 1 value(s) to int32 (first: 'D-" in error
    assert "sales_order.design_id retyped int32 -> string" in error
    # Their landed objects wait for the next run, once the models are fixed; the other tables ran.
    pending = ControlStore().query(
        "SELECT table_name FROM etl.landed_object WHERE source = 'totesys' AND transformed_at IS NULL"
    )
    assert {table for (table,) in pending} == {"design", "sales_order"}
    run(pipeline["totesys_load"])
    latest_quantity = _scalar(
        WAREHOUSE_DB,
        "SELECT item_quantity FROM core.fact_purchase_order WHERE purchase_order_id = %s "
        "ORDER BY last_updated_date DESC, last_updated_time DESC LIMIT 1",
        (purchase_id,),
    )
    assert latest_quantity == 77

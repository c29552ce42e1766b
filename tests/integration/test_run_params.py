"""Runs a person starts: the ingest DAG's Params (``tables``, ``full_refresh``, ``since``) on totesys.

The whole chain runs with ``dag.test(run_conf=...)`` (what ``airflow dags test -c`` does) on the real
services: the requested feeds re-land as new immutable objects, the others are skipped, and once
transformed and loaded the warehouse is exactly what it was (a fresh load of the same data).
"""

from __future__ import annotations

import copy
from datetime import UTC

import psycopg
import pytest

from include.etlkit.control.store import ControlStore
from tests.integration.airflow_server import dsn
from tests.integration.pipeline_checks import warehouse_fingerprint
from tests.integration.test_totesys_end_to_end import (
    FIRST_INTERVAL_END,
    SOURCE_DB,
    pipeline,  # noqa: F401 - the module's fixture: fresh source, warehouse, buckets, DAGs
    run_chain,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def first_run(pipeline):  # noqa: F811 - the end-to-end module's fixture, used by name
    """A fresh source, warehouse and buckets, and the first, scheduled-style run: every table's
    full snapshot, modelled and loaded."""
    run_chain(pipeline, FIRST_INTERVAL_END)
    return pipeline


def _landed(table: str) -> list[tuple[str, str, int]]:
    return ControlStore().query(
        "SELECT key, mode, rows FROM etl.landed_object WHERE source = 'totesys' AND table_name = %s "
        "ORDER BY landed_at",
        (table,),
    )


def _source_rows(table: str) -> int:
    with psycopg.connect(dsn(SOURCE_DB)) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_the_params_are_in_the_trigger_form_with_the_feeds_to_choose_from(first_run):
    params = first_run["totesys_ingest"].params
    assert set(params) >= {"tables", "full_refresh", "since"}
    schema = params.get_param("tables").schema
    assert sorted(schema["items"]["enum"]) == sorted(
        ["address", "counterparty", "currency", "department", "design", "payment", "payment_type",
         "purchase_order", "sales_order", "staff", "transaction"]
    )  # fmt: skip


def test_a_full_refresh_of_two_tables_relands_them_as_new_objects_and_changes_nothing(first_run):
    before = warehouse_fingerprint()
    earlier = {table: _landed(table) for table in ("currency", "design", "staff")}

    result = first_run["totesys_ingest"].test(
        run_conf={"tables": ["currency", "design"], "full_refresh": True}
    )

    states = {ti.task_id: ti.state for ti in result.get_task_instances()}
    assert states["land_currency"] == states["land_design"] == "success"
    assert states["land_staff"] == states["land_sales_order"] == "skipped"
    for table in ("currency", "design"):
        new = [row for row in _landed(table) if row not in earlier[table]]
        assert len(new) == 1, table
        key, mode, rows = new[0]
        assert "/refresh=" in key and mode == "full" and rows == _source_rows(table)
    assert _landed("staff") == earlier["staff"]  # a table not asked for lands nothing

    for dag_id in ("totesys_transform", "totesys_load"):
        assert first_run[dag_id].test().state == "success"
    assert warehouse_fingerprint() == before


def test_since_relands_the_rows_changed_from_that_moment(first_run):
    with psycopg.connect(dsn(SOURCE_DB)) as conn:
        (moment,) = conn.execute("SELECT max(last_updated) - interval '30 days' FROM sales_order").fetchone()
        (expected,) = conn.execute(
            "SELECT count(*) FROM sales_order WHERE last_updated >= %s", (moment,)
        ).fetchone()
    earlier = _landed("sales_order")

    result = first_run["totesys_ingest"].test(
        run_conf={
            "tables": ["sales_order"],
            "full_refresh": False,
            "since": moment.replace(tzinfo=UTC).isoformat(),
        }
    )

    assert result.state == "success"
    (new,) = [row for row in _landed("sales_order") if row not in earlier]
    assert "/refresh=" in new[0] and new[1] == "incremental" and new[2] == expected > 0


def test_an_unknown_table_is_refused_before_the_run_starts(first_run):
    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(first_run["totesys_ingest"].params)
    with pytest.raises(ParamValidationError):  # refused when set, or when the run validates them
        params["tables"] = ["no_such_table"]
        params.validate()


def test_asset_events_carry_the_rows_they_bring(first_run):
    """The events of the first run (the module's fixture) say how much they brought."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        events = {
            name: extra
            for name, extra in session.query(AssetModel.name, AssetEvent.extra)
            .join(AssetEvent, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name.in_(["totesys_landed", "totesys_processed"]))
            .order_by(AssetEvent.timestamp)
        }
    assert events["totesys_landed"]["objects"] >= 1 and events["totesys_landed"]["rows"] > 0
    assert "/_manifests/" in events["totesys_landed"]["manifest"]
    assert events["totesys_processed"]["rows_in"] > 0 and events["totesys_processed"]["rows_out"] > 0

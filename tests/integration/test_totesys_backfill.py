"""A real scheduler: Asset-chained runs, then ``airflow backfill create`` leaves the warehouse as it was.

``airflow standalone`` (API server, scheduler, DAG processor, triggerer, LocalExecutor) runs in its
own AIRFLOW_HOME against its own source, warehouse and buckets. A triggered ``totesys_ingest`` run
wakes ``totesys_transform`` and then ``totesys_load`` through their Assets; a backfill of the hours
before re-lands those windows, and the warehouse ends exactly as before, with no object overwritten.
"""

from __future__ import annotations

import uuid

import pytest

from tests.integration.airflow_server import (
    ROOT,
    Standalone,
    create_databases,
    drop_databases,
    dsn,
    free_port,
    pg_uri,
    standalone_settings,
    venv_env,
)
from tests.integration.pipeline_checks import assert_nothing_changed_since, snapshot, warehouse_fingerprint

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DAG_IDS = ("totesys_ingest", "totesys_transform", "totesys_load")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory, local_services, control_plane):
    suffix = uuid.uuid4().hex[:8]
    source_db, warehouse_db = f"totesys_bf_{suffix}", f"warehouse_bf_{suffix}"
    metadata_db = f"airflow_bf_{suffix}"
    home = tmp_path_factory.mktemp("airflow-standalone")
    overrides = {
        **standalone_settings(home, metadata_db, free_port()),
        "AIRFLOW_CONN_TOTESYS": pg_uri(source_db),
        "AIRFLOW_CONN_WAREHOUSE": pg_uri(warehouse_db),
        "AIRFLOW_CONN_ETL_CONTROL": pg_uri(warehouse_db),
        "AIRFLOW_VAR_INGESTION_BUCKET": f"etl-ingestion-bf-{suffix}",
        "AIRFLOW_VAR_PROCESSED_BUCKET": f"etl-processed-bf-{suffix}",
    }
    patch = pytest.MonkeyPatch()
    for key, value in overrides.items():
        patch.setenv(key, value)
    patch.delenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", raising=False)

    from include.etlkit.control.cli import dag_tasks
    from include.etlkit.control.store import ControlStore
    from infra.local.bootstrap import ensure_buckets, ensure_postgres_database, ensure_warehouse_schemas
    from infra.local.seed_totesys import seed

    create_databases(metadata_db)
    ensure_postgres_database("warehouse")
    ensure_warehouse_schemas("warehouse")
    seed("2024-11-15", dsn(source_db))
    ensure_buckets()
    store = ControlStore()
    store.ensure_tables()
    store.register(dag_tasks(str(ROOT / "dags")))

    server = Standalone(home, venv_env(), metadata_db, DAG_IDS)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        patch.undo()
        drop_databases(source_db, warehouse_db, metadata_db)


def test_assets_chain_the_dags_and_a_backfill_leaves_the_warehouse_exactly_as_before(standalone):
    standalone.airflow("dags", "trigger", "totesys_ingest", "--logical-date", "2024-11-15T15:00:00+00:00")
    standalone.wait_for(
        "totesys_load to be triggered through the Assets",
        lambda: any(state == "success" for _, _, state in standalone.runs("totesys_load")),
    )
    standalone.wait_until_idle("the first runs to finish")
    for dag_id in DAG_IDS:
        states = [state for _, _, state in standalone.runs(dag_id)]
        assert "failed" not in states, f"{dag_id}: {states}\n{standalone.tail()}"
    assert [t for _, t, _ in standalone.runs("totesys_transform")] == ["asset_triggered"] * len(
        standalone.runs("totesys_transform")
    )
    fact_rows = warehouse_fingerprint()["fact_sales_order"][0]
    assert fact_rows == 11187
    before = snapshot()

    standalone.airflow(
        "backfill",
        "create",
        "--dag-id",
        "totesys_ingest",
        "--from-date",
        "2024-11-15T13:00:00+00:00",
        "--to-date",
        "2024-11-15T14:30:00+00:00",
        "--reprocess-behavior",
        "completed",
    )
    standalone.wait_for(
        "the backfill runs to be created",
        lambda: sum(t == "backfill" for _, t, _ in standalone.runs("totesys_ingest")) >= 4,
    )
    standalone.wait_until_idle("the backfill and the runs it triggers to finish")

    backfill = [(run_id, state) for run_id, t, state in standalone.runs("totesys_ingest") if t == "backfill"]
    assert [state for _, state in backfill] == ["success"] * 4, f"{backfill}\n{standalone.tail()}"
    from include.etlkit.control.store import ControlStore

    relanded = ControlStore().query(
        "SELECT count(*) FROM etl.landed_object WHERE source = 'totesys' AND run_id LIKE 'backfill%%'",
    )[0][0]
    assert relanded > 0, "the backfill re-landed nothing: its windows hold rows of the snapshot"
    pending = ControlStore().query(
        "SELECT (SELECT count(*) FROM etl.landed_object "
        "        WHERE source = 'totesys' AND transformed_at IS NULL), "
        "       (SELECT count(*) FROM etl.processed_object WHERE source = 'totesys' AND loaded_at IS NULL)",
    )[0]
    assert pending == (0, 0), "the Assets did not carry the re-landed windows through transform and load"

    assert_nothing_changed_since(before)

"""OpenLineage end to end: one totesys run and one retail run, captured with the file transport.

Airflow's OpenLineage provider is configured the way a deployment points it at Marquez or DataZone
(``AIRFLOW__OPENLINEAGE__TRANSPORT``), here with its file transport, and the pipelines run with
``dag.test()`` (the real task runner, whose listeners emit the events). The events are read back
and checked as the graph a lineage server would draw: source table -> landed objects -> processed
Parquet -> warehouse tables -> marts, with row counts equal to what the source, the ledger and the
warehouse hold, and no secret anywhere in them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from include.etlkit.pipelines.pipeline import pipeline as declared_pipeline
from infra.local import settings
from tests.integration import test_retail_end_to_end as retail_e2e
from tests.integration import test_totesys_end_to_end as totesys_e2e
from tests.integration.airflow_server import dsn

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMESPACE = "etlkit-lineage-test"
PG = f"postgres://{settings.PG_HOST}:{settings.PG_PORT}"
MYSQL = f"mysql://{settings.MYSQL_HOST}:{settings.MYSQL_PORT}"
FTP = f"ftp://{settings.LOOPBACK}:{settings.FTP_PORT}"
WAREHOUSE_DB = settings.database("warehouse")


@pytest.fixture(scope="module")
def events_file(tmp_path_factory, airflow_db) -> Iterator[Path]:
    """The provider's file transport on, its listener registered, for this module's runs only."""
    path = tmp_path_factory.mktemp("lineage") / "events.jsonl"
    patch = pytest.MonkeyPatch()
    transport = {"type": "file", "log_file_path": str(path), "append": True}
    patch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps(transport))
    patch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", NAMESPACE)
    from airflow.providers.openlineage import conf
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    from airflow.sdk.listener import get_listener_manager

    assert not conf.is_disabled()
    # The provider's plugin registers its listener when plugins load with a transport configured;
    # when an earlier test of this process loaded them without one, register it the same way.
    manager, listener = get_listener_manager(), get_openlineage_listener()
    manager.add_listener(listener)
    declared_pipeline.cache_clear()  # the Asset URIs are read with the buckets this module uses
    yield path
    if manager.pm.is_registered(listener):
        manager.pm.unregister(listener)
    patch.undo()
    declared_pipeline.cache_clear()


class Events:
    """The COMPLETE (and START) events of the task runs, by ``dag_id.task_id``."""

    def __init__(self, path: Path, dag_ids: tuple[str, ...]) -> None:
        self.text = path.read_text()
        lines = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        self.complete: dict[str, dict] = {}
        self.start: dict[str, dict] = {}
        for event in lines:
            job = event["job"]["name"]
            if job.split(".")[0] not in dag_ids or "." not in job:
                continue
            target = {"COMPLETE": self.complete, "START": self.start}.get(event["eventType"])
            if target is not None:
                target[job] = event  # the last run of a task wins

    def task(self, job: str) -> dict:
        assert job in self.complete, f"no COMPLETE event for {job}; have {sorted(self.complete)}"
        return self.complete[job]

    def inputs(self, job: str) -> dict[tuple[str, str], dict]:
        return {(d["namespace"], d["name"]): d for d in self.task(job).get("inputs", [])}

    def outputs(self, job: str) -> dict[tuple[str, str], dict]:
        return {(d["namespace"], d["name"]): d for d in self.task(job).get("outputs", [])}

    def reachable(self, start: tuple[str, str]) -> set[tuple[str, str]]:
        """Every dataset downstream of ``start`` through the tasks' input -> output edges."""
        edges: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
        for job in self.complete:
            for source in self.inputs(job):
                edges[source] |= set(self.outputs(job))
        seen, todo = set(), [start]
        while todo:
            for nxt in edges[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen


def rows_out(dataset: dict) -> int | None:
    return dataset.get("outputFacets", {}).get("outputStatistics", {}).get("rowCount")


def rows_in(dataset: dict) -> int | None:
    return dataset.get("inputFacets", {}).get("inputStatistics", {}).get("rowCount")


def _scalar(database: str, sql: str, params: tuple = ()) -> Any:
    with psycopg.connect(dsn(database)) as conn:
        return conn.execute(sql, params).fetchone()[0]


def _ledger_rows(table: str, source: str, name: str) -> int:
    return _scalar(
        WAREHOUSE_DB, f"SELECT coalesce(sum(rows), 0) FROM etl.{table} WHERE source = %s AND table_name = %s",
        (source, name),
    )  # fmt: skip


def _assert_no_secret(text: str) -> None:
    for secret in (settings.S3_SECRET_KEY, settings.API_TOKEN, settings.FTP_PASSWORD):
        assert secret and secret not in text
    assert "password" not in text.lower()


# -- totesys --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def totesys(events_file, local_services, control_plane) -> Iterator[Events]:
    """One totesys chain (the first snapshot: ingest, transform, load) with lineage captured."""
    for dags in totesys_e2e.fresh_pipeline(control_plane):
        totesys_e2e.run_chain(dags, totesys_e2e.FIRST_INTERVAL_END)
        yield Events(events_file, ("totesys_ingest", "totesys_transform", "totesys_load"))


def test_totesys_extract_reports_the_source_table_and_its_landed_objects_with_their_rows(totesys):
    ingestion = f"s3://{_variable('ingestion_bucket')}"
    source_db = totesys_e2e.SOURCE_DB
    for table in ("sales_order", "staff", "currency"):
        count = _scalar(source_db, f"SELECT count(*) FROM {table}")
        job = f"totesys_ingest.land_{table}"
        source = (PG, f"{source_db}.public.{table}")
        assert rows_in(totesys.inputs(job)[source]) == count
        landed = totesys.outputs(job)[(ingestion, f"totesys/{table}")]
        assert rows_out(landed) == count
        assert landed["outputFacets"]["outputStatistics"]["fileCount"] == 1
        # The START event already names the source table (before a row is read).
        assert [d["name"] for d in totesys.start[job]["inputs"]] == [f"{source_db}.public.{table}"]
    # What the announcement (the totesys_landed Asset event) brings, in the bucket in force.
    announce = "totesys_ingest.announce_landed"
    pending = totesys.inputs(announce)[(ingestion, "totesys")]["inputFacets"]["inputStatistics"]
    assert pending["rowCount"] == _scalar(
        WAREHOUSE_DB, "SELECT sum(rows) FROM etl.landed_object WHERE source = 'totesys'"
    )
    assert list(totesys.outputs(announce)) == [(ingestion, "totesys/_manifests")]


def test_totesys_transform_and_load_carry_the_rows_from_landed_objects_to_the_warehouse(totesys):
    ingestion, processed = f"s3://{_variable('ingestion_bucket')}", f"s3://{_variable('processed_bucket')}"
    transform, load = "totesys_transform.transform_landed", "totesys_load.load_processed"
    landed = _ledger_rows("landed_object", "totesys", "sales_order")
    assert rows_in(totesys.inputs(transform)[(ingestion, "totesys/sales_order")]) == landed
    modelled = _ledger_rows("processed_object", "totesys", "fact_sales_order")
    assert modelled > 0
    assert rows_out(totesys.outputs(transform)[(processed, "totesys/fact_sales_order")]) == modelled
    assert rows_in(totesys.inputs(load)[(processed, "totesys/fact_sales_order")]) == modelled
    outputs = totesys.outputs(load)
    for table in ("fact_sales_order", "dim_staff", "dim_currency"):
        core = _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM core.{table}")
        landing = _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM landing.{table}")
        assert rows_out(outputs[(PG, f"{WAREHOUSE_DB}.core.{table}")]) == core  # a first load: all merged
        assert rows_out(outputs[(PG, f"{WAREHOUSE_DB}.landing.{table}")]) == landing


def test_totesys_graph_leads_from_the_source_table_to_the_core_table_and_the_marts(totesys):
    reached = totesys.reachable((PG, f"{totesys_e2e.SOURCE_DB}.public.sales_order"))
    assert (f"s3://{_variable('processed_bucket')}", "totesys/fact_sales_order") in reached
    assert (PG, f"{WAREHOUSE_DB}.core.fact_sales_order") in reached
    marts = {name for namespace, name in reached if name.startswith(f"{WAREHOUSE_DB}.mart.")}
    assert marts, "publish_marts names no mart view built from fact_sales_order"
    _assert_no_secret(totesys.text)


# -- retail ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def retail(totesys, events_file, local_services, control_plane) -> Iterator[Events]:
    """One retail run of every DAG (after the totesys one, so the transport and listener are shared)."""
    for _ in retail_e2e.fresh_pipeline(control_plane):
        yield Events(events_file, retail_e2e.DAG_IDS)


def test_retail_every_source_kind_reports_where_it_read_and_what_it_landed(retail):
    ingestion = f"s3://{_variable('ingestion_bucket')}"
    retail_db = settings.database("retail")
    store = retail.inputs("retail_ingest.land_store")[(MYSQL, f"{retail_db}.store")]
    assert rows_in(store) == _ledger_rows("landed_object", "retail", "store") > 0
    rates = retail.inputs("retail_ingest.land_rates")
    assert list(rates) == [(f"http://{settings.LOOPBACK}:{settings.API_PORT}", "v1/rates")]
    sales = retail.inputs("retail_ingest.land_sales")
    assert list(sales) == [(FTP, retail_e2e.sales_dir().strip("/"))]
    landed_files = _scalar(
        WAREHOUSE_DB,
        "SELECT count(*) FROM etl.landed_object WHERE source = 'retail' AND table_name = 'sales'",
    )
    assert next(iter(sales.values()))["inputFacets"]["inputStatistics"]["fileCount"] == landed_files > 0
    drops = retail.inputs("retail_drops.land_partner_customers")
    assert list(drops) == [(ingestion, "drops/partners")]
    for job, feed in (
        ("retail_ingest.land_store", "store"),
        ("retail_ingest.land_rates", "rates"),
        ("retail_ingest.land_sales", "sales"),
        ("retail_drops.land_partner_customers", "partner_customers"),
    ):
        landed = retail.outputs(job)[(ingestion, f"retail/{feed}")]
        assert rows_out(landed) == _ledger_rows("landed_object", "retail", feed), feed


def test_retail_validation_splits_each_feed_into_valid_quarantined_and_rejected_rows(retail):
    ingestion, processed = f"s3://{_variable('ingestion_bucket')}", f"s3://{_variable('processed_bucket')}"
    job = "retail_transform.validate_landed"
    inputs, outputs = retail.inputs(job), retail.outputs(job)
    for feed in ("sales", "partner_customers"):
        read, loaded, rejected = (
            _scalar(WAREHOUSE_DB, f"SELECT coalesce(sum({column}), 0) FROM etl.file_status "
                    "WHERE source = 'retail' AND dataset = %s", (feed,))
            for column in ("rows_read", "rows_loaded", "rows_rejected")
        )  # fmt: skip
        assert rows_in(inputs[(ingestion, f"retail/{feed}")]) == read
        assert rows_out(outputs[(processed, f"retail/{feed}")]) == loaded
        set_aside = [
            rows_out(outputs[key])
            for key in ((ingestion, f"quarantine/retail/{feed}"), (ingestion, f"errors/retail/{feed}"))
            if key in outputs
        ]
        assert sum(set_aside) == rejected > 0, feed  # the sample deliveries carry bad rows in both


def test_retail_load_reports_core_tables_and_the_graph_joins_ftp_files_to_the_warehouse(retail):
    outputs = retail.outputs("retail_load.load_processed")
    for table in ("fact_sale", "dim_store", "partner_customer"):
        core = _scalar(WAREHOUSE_DB, f"SELECT count(*) FROM core.{table}")
        assert rows_out(outputs[(PG, f"{WAREHOUSE_DB}.core.{table}")]) == core, table
    sales_dir = (FTP, retail_e2e.sales_dir().strip("/"))
    assert (PG, f"{WAREHOUSE_DB}.core.fact_sale") in retail.reachable(sales_dir)
    _assert_no_secret(retail.text)


def _variable(name: str) -> str:
    import os

    return os.environ[f"AIRFLOW_VAR_{name.upper()}"]

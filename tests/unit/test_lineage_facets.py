"""OpenLineage datasets from what the operators know, without running a pipeline.

``tests/integration/test_lineage.py`` captures the events of whole runs; these pin down the naming
(OpenLineage's conventions per kind of store), that no credential of a connection reaches a
dataset, the facets the provider is handed, the SQL parser's view of the marts, and the Asset URIs.
"""

from __future__ import annotations

import json

import pytest
from airflow.providers.openlineage.extractors.manager import ExtractorManager

from include.etlkit.lineage import (
    RunLineage,
    object_dataset,
    remote_dataset,
    s3_dataset,
    sql_tables,
    table_dataset,
)
from include.etlkit.load.operators import WarehouseScriptOperator
from include.etlkit.paths import SQL_DIR
from include.etlkit.storage import StoredObject


@pytest.fixture
def connections(monkeypatch):
    """Connections with credentials, as a deployment has them."""
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_PG", "postgres://etl:s3cret-pg@db.example.com:6432/sales")
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_MYSQL", "mysql://etl:s3cret-my@shop.example.com/retail")
    monkeypatch.setenv(
        "AIRFLOW_CONN_LINEAGE_API",
        json.dumps(
            {"conn_type": "http", "host": "api.example.com", "schema": "https", "password": "s3cret-token"}
        ),
    )
    monkeypatch.setenv("AIRFLOW_CONN_LINEAGE_FTP", "ftp://partner:s3cret-ftp@ftp.example.com:2121")


def test_database_tables_are_named_by_host_port_and_database_without_credentials(connections):
    pg = table_dataset("lineage_pg", "public", "sales_order")
    assert (pg.namespace, pg.name) == ("postgres://db.example.com:6432", "sales.public.sales_order")
    my = table_dataset("lineage_mysql", None, "store")
    assert (my.namespace, my.name) == ("mysql://shop.example.com:3306", "retail.store")  # no schema level
    assert "s3cret" not in repr((pg, my))


def test_servers_are_named_by_scheme_host_and_port_without_credentials(connections):
    api = remote_dataset("lineage_api", "https", "/v1/rates")
    assert (api.namespace, api.name) == ("https://api.example.com", "v1/rates")
    ftp = remote_dataset("lineage_ftp", "ftp", "/sales")
    assert (ftp.namespace, ftp.name) == ("ftp://ftp.example.com:2121", "sales")
    assert "s3cret" not in repr((api, ftp))


def test_an_immutable_object_counts_in_its_tables_dataset():
    landed = object_dataset("etl-ingestion", "totesys/sales_order/2024/11/15/sales_order-ab12.parquet")
    processed = object_dataset("etl-processed", "totesys/fact_sales_order/run=manual_1/fact-cd34.parquet")
    assert landed == s3_dataset("etl-ingestion", "totesys/sales_order/")
    assert (processed.namespace, processed.name) == ("s3://etl-processed", "totesys/fact_sales_order")


def test_counts_add_up_per_dataset_into_the_providers_statistics_facets():
    lineage = RunLineage()
    for day, rows in ((15, 3), (16, 4)):
        lineage.read_object("etl-ingestion", f"totesys/payment/2024/11/{day}/p.parquet", rows=rows, size=10)
        written = StoredObject("etl-processed", f"totesys/fact_payment/run=r/{day}.parquet", "x", 7, True)
        lineage.wrote_object(written, rows=rows)
    result = lineage.operator_lineage([s3_dataset("etl-ingestion", "totesys/payment")])
    assert len(result.inputs) == len(result.outputs) == 1  # the known input is the one read, not twice
    stats = result.inputs[0].inputFacets["inputStatistics"]
    assert (stats.rowCount, stats.fileCount, stats.size) == (7, 2, 20)
    out = result.outputs[0].outputFacets["outputStatistics"]
    assert result.outputs[0].name == "totesys/fact_payment"
    assert (out.rowCount, out.fileCount, out.size) == (7, 2, 14)


def test_the_marts_script_reads_core_tables_and_writes_mart_views():
    read, written = sql_tables((SQL_DIR / "postgres" / "totesys" / "marts.sql").read_text(), "postgres")
    assert "core.fact_sales_order" in read
    assert written and all(name.startswith("mart.") for name in written)


def test_the_provider_uses_the_operators_own_facet_methods():
    task = WarehouseScriptOperator(task_id="publish_marts", scripts="totesys/marts.sql")
    extractor = ExtractorManager()._get_extractor(task)
    assert type(extractor).__name__ == "DefaultExtractor"
    assert extractor.extract_on_complete(None).outputs == []  # nothing ran, nothing reported


def test_the_asset_uris_name_the_buckets_the_configuration_names(monkeypatch):
    from include.etlkit.pipelines.config import load_pipeline
    from include.etlkit.pipelines.pipeline import Pipeline

    monkeypatch.setenv("AIRFLOW__ETLKIT__INGESTION_BUCKET", "acme-etl-ingestion")
    monkeypatch.setenv("AIRFLOW__ETLKIT__PROCESSED_BUCKET", "acme-etl-processed")
    monkeypatch.setenv("AIRFLOW_VAR_INGESTION_BUCKET", "one-run-only")  # a Variable does not move it
    totesys = Pipeline(load_pipeline("totesys"))
    assert totesys.landed.uri == "s3://acme-etl-ingestion/totesys"
    assert totesys.processed.uri == "s3://acme-etl-processed/totesys"
    assert (totesys.landed.name, totesys.processed.name) == ("totesys_landed", "totesys_processed")
    monkeypatch.delenv("AIRFLOW__ETLKIT__INGESTION_BUCKET")
    assert Pipeline(load_pipeline("totesys")).landed.uri == "s3://ingestion/totesys"


def test_the_demo_writes_lineage_to_a_local_file_unless_a_transport_is_configured(monkeypatch):
    from infra.local import demo

    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__TRANSPORT", raising=False)
    transport = json.loads(demo._dag_environment()["AIRFLOW__OPENLINEAGE__TRANSPORT"])
    assert transport == {"type": "file", "log_file_path": str(demo.LINEAGE_FILE), "append": True}
    marquez = json.dumps({"type": "http", "url": "http://marquez:5000"})
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", marquez)
    assert demo._dag_environment()["AIRFLOW__OPENLINEAGE__TRANSPORT"] == marquez


def test_a_source_table_is_named_when_the_facets_are_built_not_while_the_task_works(connections):
    """Naming a table imports the provider's SQL parser module (1-2 s in a fresh task process): an
    extract only records which connection and table it read, and the provider's call names them."""
    from include.etlkit.extract.postgres import PostgresTableExtractOperator, TableSpec
    from include.etlkit.lineage import TableRef

    task = PostgresTableExtractOperator(
        task_id="land",
        table=TableSpec("sales_order", "sales_order_id"),
        source="s",
        conn_id="lineage_pg",
        bucket="b",
    )
    task.lineage.read(task.source_table(), rows=5)
    assert task.source_table() == TableRef("lineage_pg", "public", "sales_order")
    assert "_lineage_locations" not in task.__dict__  # no connection looked up yet

    (read,) = task.get_openlineage_facets_on_complete(None).inputs  # the known input, read once
    assert (read.namespace, read.name) == ("postgres://db.example.com:6432", "sales.public.sales_order")
    assert read.inputFacets["inputStatistics"].rowCount == 5


def test_a_connection_that_cannot_be_looked_up_still_names_its_table():
    from include.etlkit.extract.postgres import PostgresTableExtractOperator, TableSpec

    task = PostgresTableExtractOperator(
        task_id="land", table=TableSpec("t", "id"), source="s", conn_id="lineage_missing", bucket="b"
    )
    (read,) = task.get_openlineage_facets_on_start().inputs
    assert (read.namespace, read.name) == ("airflow-connection://lineage_missing", "public.t")

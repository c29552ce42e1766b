"""
### totesys_ingest

Lands the new and changed rows of the 11 totesys business tables in the ingestion bucket, every
30 minutes, for the run's data interval (a full snapshot the first time a table is seen). Files are
immutable Parquet under `totesys/<table>/...`, with one manifest per run under `totesys/_manifests/`.
Publishes the `totesys_landed` Asset, which wakes `totesys_transform`.
"""

from __future__ import annotations

from airflow.sdk import dag

from include.etlkit.totesys import pipeline as totesys


@dag(
    schedule=totesys.INGEST_SCHEDULE,
    start_date=totesys.START,
    catchup=False,
    max_active_runs=1,
    default_args=totesys.default_args(),
    tags=["totesys", "ingest"],
    doc_md=__doc__,
)
def totesys_ingest():
    tables = totesys.discover_tables()
    totesys.write_manifest(totesys.land_tables(tables))


totesys_ingest()

"""
### totesys_ingest

Lands the new and changed rows of the 11 totesys business tables in the ingestion bucket, every
30 minutes, for the run's data interval (a full snapshot the first time a table is seen). Files are
immutable Parquet under `totesys/<table>/...`, with one manifest per run under `totesys/_manifests/`.
Publishes the `totesys_landed` Asset, which wakes `totesys_transform`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

totesys = pipeline("totesys")


@dag(
    schedule=totesys.ingest_schedule,
    start_date=totesys.start,
    catchup=False,
    max_active_runs=1,
    default_args=totesys.default_args(),
    params=totesys.ingest_params(),
    tags=["totesys", "ingest"],
    doc_md=__doc__,
)
def totesys_ingest():
    totesys.land_scheduled_feeds() >> totesys.announce_landed()


totesys_ingest()

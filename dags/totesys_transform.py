"""
### totesys_transform

Models every landed totesys object not yet transformed into the tables of the sales, purchases and
payments star schemas, as immutable Parquet in the processed bucket. Woken by `totesys_landed`;
publishes `totesys_processed`, which wakes `totesys_load`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

totesys = pipeline("totesys")


@dag(
    schedule=[totesys.landed],
    start_date=totesys.start,
    catchup=False,
    max_active_runs=1,
    default_args=totesys.default_args(),
    tags=["totesys", "transform"],
    doc_md=__doc__,
)
def totesys_transform():
    totesys.transform_landed()


totesys_transform()

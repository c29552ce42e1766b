"""
### retail_reconcile

Once a day, compares the hash of every row of the retail MySQL reference tables (store, customer,
product, sales_team) with the version last landed: lands the rows that changed without moving
`updated_at` or committed later than the ingest's overlap, and the keys of rows deleted in the
source as tombstones. Publishes `retail_landed` like `retail_ingest`, so `retail_transform` and
`retail_load` take them: a deleted row keeps its dimension row, with `deleted_at` set.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

retail = pipeline("retail")


@dag(
    schedule=retail.reconcile_schedule,
    start_date=retail.start,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    tags=["retail", "ingest", "reconcile"],
    doc_md=__doc__,
)
def retail_reconcile():
    retail.reconcile_feeds() >> retail.announce_landed()


retail_reconcile()

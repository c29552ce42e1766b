"""
### totesys_reconcile

Once a day, compares the hash of every totesys source row with the version last landed and lands
the rows that changed without moving `last_updated` (the real data has such silent edits) as new
versions. Publishes `totesys_landed` like `totesys_ingest`, so the changes flow through
`totesys_transform` and `totesys_load`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

totesys = pipeline("totesys")


@dag(
    schedule=totesys.reconcile_schedule,
    start_date=totesys.start,
    catchup=False,
    max_active_runs=1,
    default_args=totesys.default_args(),
    tags=["totesys", "ingest", "reconcile"],
    doc_md=__doc__,
)
def totesys_reconcile():
    totesys.reconcile_feeds() >> totesys.announce_landed()


totesys_reconcile()

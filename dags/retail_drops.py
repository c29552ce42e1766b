"""
### retail_drops

Partners drop customer files (CSV, Excel, JSON, NDJSON, delimited TXT) under `drops/partners/` in
the ingestion bucket. Every 15 minutes a deferrable sensor waits, in the triggerer and holding no
worker slot, for a file that has not been landed yet; the extract then lands each new file once
(the dropped object itself is never changed or deleted). Publishes `retail_landed`.

Where `AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL` names the SQS queue the bucket announces arrivals to,
each arrival also wakes this DAG (`AssetOrTimeSchedule`: the cron polling stays as the fallback); an
event only wakes it, the ledger still lands each file version once.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

retail = pipeline("retail")


@dag(
    schedule=retail.drops_schedule,
    start_date=retail.start,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    tags=["retail", "ingest", "s3"],
    doc_md=__doc__,
)
def retail_drops():
    retail.land_dropped_feeds() >> retail.announce_landed()


retail_drops()

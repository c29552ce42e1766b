"""
### retail_ingest

Lands, every hour, what the retail sources hold for the run's interval: the MySQL reference tables
(`store`, `customer`, `product`, `sales_team`; new and changed rows by `updated_at`, a full snapshot
the first time), the daily exchange rates from the rates API, and each new daily sales file on the
FTP drop (each file once). One task per feed of `include/config/retail.yaml`: add a feed there and
it appears here. Publishes `retail_landed`, which wakes `retail_transform`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

retail = pipeline("retail")


@dag(
    schedule=retail.ingest_schedule,
    start_date=retail.start,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    params=retail.ingest_params(),
    tags=["retail", "ingest"],
    doc_md=__doc__,
)
def retail_ingest():
    retail.land_scheduled_feeds() >> retail.announce_landed()


retail_ingest()

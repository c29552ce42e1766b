"""
### retail_transform

Validates every landed retail file not validated yet against its feed's declared schema
(`include/config/retail.yaml`): valid rows become typed Parquet in the processed bucket (extra
columns kept in `additional_column`), rows with bad values are quarantined with the reason, and a
file missing required columns is copied to the `errors/` prefix with its reason. `etl.file_status`
shows, per file, rows read = loaded + rejected. Woken by `retail_landed`; publishes
`retail_processed`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports it once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names.
import airflow.providers.amazon.aws.assets.s3  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

retail = pipeline("retail")


@dag(
    schedule=[retail.landed],
    start_date=retail.start,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    tags=["retail", "transform"],
    doc_md=__doc__,
)
def retail_transform():
    retail.transform_landed()


retail_transform()

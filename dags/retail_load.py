"""
### retail_load

Merges every processed retail object not loaded yet into the warehouse (`landing` copies, then the
`core` star schema by key: rerunning a day adds nothing), matches partner customers to known ones
(fuzzy: same id, new id, or the review table), checks references and GBP rates, and publishes the
marts `mart.customer_monthly` and `mart.sales_team_monthly`. Woken by `retail_processed`; publishes
`retail_warehouse`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports them once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names, and
# sqlparse with common.sql's hook for the quality checks it builds.
import airflow.providers.amazon.aws.assets.s3
import airflow.providers.common.sql.operators.sql  # noqa: F401
from airflow.sdk import chain, dag

from include.etlkit.pipelines.pipeline import pipeline
from include.etlkit.retail.pipeline import unify_customers

retail = pipeline("retail")


@dag(
    schedule=[retail.processed],
    start_date=retail.start,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    template_searchpath=retail.template_searchpath,
    tags=["retail", "load"],
    doc_md=__doc__,
)
def retail_load():
    chain(
        retail.ensure_core_tables(),
        retail.load_processed(),
        unify_customers(retail),
        *retail.after_load(),  # add_sale_dates
        retail.quality_checks(),
        retail.publish_marts(),
    )


retail_load()

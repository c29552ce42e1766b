"""
### retail_load

Merges every processed retail object not loaded yet into the warehouse (`landing` copies, then the
`core` star schema by key: rerunning a day adds nothing), matches partner customers to known ones
(fuzzy: same id, new id, or the review table), checks references and GBP rates, and publishes the
marts `mart.customer_monthly` and `mart.sales_team_monthly`. Woken by `retail_processed`; publishes
`retail_warehouse`.
"""

from __future__ import annotations

from airflow.sdk import dag

from include.etlkit.retail import pipeline as retail


@dag(
    schedule=[retail.PROCESSED],
    start_date=retail.START,
    catchup=False,
    max_active_runs=1,
    default_args=retail.default_args(),
    template_searchpath=retail.TEMPLATE_SEARCHPATH,
    tags=["retail", "load"],
    doc_md=__doc__,
)
def retail_load():
    (
        retail.ensure_core_tables()
        >> retail.load_processed()
        >> retail.unify_customers()
        >> retail.add_sale_dates()
        >> retail.quality_checks()
        >> retail.publish_marts()
    )


retail_load()

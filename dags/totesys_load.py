"""
### totesys_load

Loads every processed totesys object not yet loaded into the warehouse (`landing` copies, then the
`core` star tables merged by key), checks the result (keys, foreign keys, facts against landing)
and publishes the marts. Woken by `totesys_processed`; publishes `totesys_warehouse`.
"""

from __future__ import annotations

# Named so Airflow's DAG processor imports them once, before it forks a parse (parsing_pre_import_modules):
# otherwise every parse of this file imports boto3 to normalise the s3:// Assets it names, and
# sqlparse with common.sql's hook for the quality checks it builds.
import airflow.providers.amazon.aws.assets.s3
import airflow.providers.common.sql.operators.sql  # noqa: F401
from airflow.sdk import dag

from include.etlkit.pipelines.pipeline import pipeline

totesys = pipeline("totesys")


@dag(
    schedule=[totesys.processed],
    start_date=totesys.start,
    catchup=False,
    max_active_runs=1,
    default_args=totesys.default_args(),
    template_searchpath=totesys.template_searchpath,
    tags=["totesys", "load"],
    doc_md=__doc__,
)
def totesys_load():
    (
        totesys.ensure_core_tables()
        >> totesys.load_processed()
        >> totesys.quality_checks()
        >> totesys.publish_marts()
    )


totesys_load()

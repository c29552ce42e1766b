"""
### totesys_reconcile

Once a day, compares the hash of every totesys source row with the version last landed and lands
the rows that changed without moving `last_updated` (the real data has such silent edits) as new
versions. Publishes `totesys_landed` like `totesys_ingest`, so the changes flow through
`totesys_transform` and `totesys_load`.
"""

from __future__ import annotations

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

"""
### etl_freshness

Every hour, checks each feed that declares `freshness_hours` in its pipeline's YAML
(`include/config/*.yaml`): a feed that has landed nothing within that many hours alerts once (email
or SES, and SNS, like a failed task) and is listed in `etl.freshness_alert` until it lands again.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from include.etlkit.control.freshness import CheckFreshnessOperator, declared_rules
from include.etlkit.dag_defaults import default_args


@dag(
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=["etl", "control"],
    doc_md=__doc__,
)
def etl_freshness():
    CheckFreshnessOperator(task_id="check_freshness", rules=declared_rules())


etl_freshness()

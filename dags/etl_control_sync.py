"""
### etl_control_sync

Registers every task of every DAG in `etl.audit`, so newly deployed tasks may run (enabled by
default). Rows that exist are never touched: a task someone disabled stays disabled.

Runs daily and on demand (trigger it after a deploy). Switch tasks with
`python -m include.etlkit.control enable|disable DAG [TASK]` or the audit page in the UI.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from include.etlkit.control.operators import RegisterTasksOperator
from include.etlkit.dag_defaults import default_args


@dag(
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    default_args=default_args(),
    tags=["etl", "control"],
    doc_md=__doc__,
)
def etl_control_sync():
    RegisterTasksOperator(task_id="register_tasks")


etl_control_sync()

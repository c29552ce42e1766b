"""Operators of the control plane itself."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.cli import dag_tasks
from include.etlkit.control.store import ControlStore


class RegisterTasksOperator(BaseOperator):
    """Register every task of the deployed DAG folder in ``etl.audit`` (new tasks enabled).

    This is how tasks get registered on MWAA, where nobody runs the CLI after a deploy. It is the one
    task exempt from the audit gate: it cannot ask to be registered before it has registered itself.
    Existing rows, and so anything an operator disabled, are never changed.
    """

    audit_exempt = True
    ui_color = "#e8f4ea"

    def __init__(self, *, enabled: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.enabled = enabled

    def execute(self, context: Any) -> int:
        store = ControlStore()
        store.ensure_tables()
        tasks = dag_tasks()
        added = store.register(tasks, enabled=self.enabled)
        report_rows(context, rows_in=len(tasks), rows_out=added)
        self.log.info("%d tasks in the DAG folder, %d newly registered in etl.audit", len(tasks), added)
        return added

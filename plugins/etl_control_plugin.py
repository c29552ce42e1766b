"""The ``etl_control`` plugin: a listener that writes one ``etl.task_log`` row per task try.

A listener sees every task of every DAG, provider operators included, so no operator has to remember
to log. The framework is imported lazily: on MWAA the dags folder (where ``include`` lives) joins
``sys.path`` only once DAGs are parsed, after plugins load.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


class TaskLogListener:
    """Delegates to ``include.etlkit.control.listener``; a logging failure never fails the task."""

    @staticmethod
    def _record(step: str, *args, **kwargs) -> None:
        try:
            from include.etlkit.control import listener

            getattr(listener, step)(*args, **kwargs)
        except Exception:
            log.exception("etl.task_log: could not record %s", step)

    @hookimpl
    def on_task_instance_running(self, previous_state, task_instance):
        self._record("record_start", task_instance)

    @hookimpl
    def on_task_instance_success(self, previous_state, task_instance):
        self._record("record_end", task_instance, "success")

    @hookimpl
    def on_task_instance_failed(self, previous_state, task_instance, error):
        self._record("record_end", task_instance, "failed", error)

    @hookimpl
    def on_task_instance_skipped(self, previous_state, task_instance):
        self._record("record_end", task_instance, "skipped")


class EtlControlPlugin(AirflowPlugin):
    name = "etl_control"
    listeners = [TaskLogListener()]

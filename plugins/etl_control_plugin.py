"""The ``etl_control`` plugin: the task-log listener, and the control-plane page in the Airflow UI.

- A listener writes one ``etl.task_log`` row per task try. It sees every task of every DAG, provider
  operators included, so no operator has to remember to log.
- A FastAPI app (``include.etlkit.control.ui``) mounted on the API server at ``/etl-control`` shows
  ``etl.audit`` with a switch per task and the recent ``etl.task_log`` rows; an external view puts it
  in the UI's navigation (Admin menu), embedded at ``/plugin/etl-control``;
- the same app's Dashboard page (``/etl-control/dashboard``: pipeline health and the business marts
  as charts), in the navigation's Browse menu, embedded at ``/plugin/etl-dashboard``.

The framework is imported lazily: on MWAA the dags folder (where ``include`` lives) joins
``sys.path`` only once DAGs are parsed, after plugins load, and the API server parses no DAGs at all.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

UI_URL_PREFIX = "/etl-control"  # include.etlkit.control.ui.URL_PREFIX, kept here to import nothing


def _import_framework_module(name: str) -> Any:
    """Import ``include.etlkit...``, putting the dags folder on ``sys.path`` first if it is not there.

    The API server never parses DAGs, so on MWAA nothing else adds the dags folder (which holds
    ``include``) to its path; DagBag does the same for the processes that parse.
    """
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name not in ("include", "include.etlkit"):
            raise
        from airflow.configuration import conf

        dags_folder = conf.get("core", "dags_folder")
        if dags_folder in sys.path:
            raise
        sys.path.append(dags_folder)
        return importlib.import_module(name)


class ControlPlaneApp:
    """An ASGI app that builds the framework's FastAPI app on its first request.

    Airflow mounts plugin apps when the API server starts, and on MWAA the framework may not be
    importable then; building on first use keeps the plugin module free of framework imports.
    """

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self._app is None:
            self._app = _import_framework_module("include.etlkit.control.ui").create_app()
        await self._app(scope, receive, send)


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
    fastapi_apps = [{"app": ControlPlaneApp(), "url_prefix": UI_URL_PREFIX, "name": "ETL control plane"}]
    external_views = [
        {
            "name": "ETL control plane",
            # Relative to the UI's base URL (no leading slash), so it works behind a path prefix too.
            "href": UI_URL_PREFIX.lstrip("/") + "/",
            "url_route": "etl-control",
            "destination": "nav",
            "category": "admin",
        },
        {
            "name": "ETL dashboard",
            "href": UI_URL_PREFIX.lstrip("/") + "/dashboard",
            "url_route": "etl-dashboard",
            "destination": "nav",
            "category": "browse",
        },
    ]

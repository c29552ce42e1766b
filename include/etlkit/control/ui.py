"""The control-plane page: ``etl.audit`` with a switch per task, the deployed tasks that have no row
yet, and the recent ``etl.task_log`` rows; and the Dashboard page (:mod:`.dashboard`) at
``/dashboard`` beside it: pipeline health and the business marts as charts.

A small FastAPI app, server-rendered (no build step), that the ``etl_control`` plugin mounts on
Airflow's API server at :data:`URL_PREFIX` and lists in the UI's navigation. It is kept in the
framework package, like the listener, so it is tested like any other code.

Security, all of it Airflow's own:
- every request needs an Airflow user (:func:`~airflow.api_fastapi.core_api.security.get_user`
  reads the JWT from the UI's ``_token`` cookie or a bearer header); an anonymous browser is sent
  to the auth manager's login page;
- reading needs read access to all DAGs; switching a task needs edit access to its DAG
  (:func:`~airflow.api_fastapi.core_api.security.requires_access_dag` with ``PUT``), which the simple
  auth manager grants from the ``User`` role up;
- a switch records the Airflow user name in ``etl.audit.updated_by``;
- a switch posted from another origin is refused (the cookie is ``SameSite=Lax``, which still lets
  a page on another port of the same host post with it);
- Jinja autoescaping escapes every value, so a reason text cannot inject HTML.

Reads and writes go through :class:`~include.etlkit.control.store.ControlStore`, the one home of the
control tables' SQL. The deployed tasks come from Airflow's metadata database (the serialized DAGs
the UI itself shows, stale DAGs left out): the API server parses no DAG file. A task listed there
without an ``etl.audit`` row runs anyway: the gate registers it (enabled) at its first run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import GetUserDep, requires_access_dag
from airflow.configuration import conf
from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment

from include.etlkit.control import dashboard
from include.etlkit.control.store import ControlPlaneUnavailable, ControlStore

URL_PREFIX = "/etl-control"
PAGE = Path(__file__).with_name("control_plane.html")
DASHBOARD_PAGE = Path(__file__).with_name("dashboard.html")
DEFAULT_LOG_LIMIT = 50
DEFAULT_RUNS = 5  # a DAG's last runs shown feed by feed
RUN_COLUMNS = (
    "run_id",
    "task_id",
    "status",
    "tries",
    "rows_in",
    "rows_out",
    "rows_rejected",
    "duration_seconds",
    "started_at",
)
MAX_LOG_LIMIT = 500
MAX_REASON_CHARS = 500

AUDIT_COLUMNS = ("dag_id", "task_id", "enabled", "reason", "updated_at", "updated_by")
LOG_COLUMNS = (
    "dag_id",
    "task_id",
    "run_id",
    "try_number",
    "status",
    "rows_in",
    "rows_out",
    "rows_rejected",
    "started_at",
    "ended_at",
    "duration_seconds",
    "error",
)


def _may_read_all_dags(user: GetUserDep) -> BaseUser:
    """The page shows every DAG's switches and tries: it needs read access to all DAGs."""
    if not get_auth_manager().is_authorized_dag(method="GET", user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden: reading all DAGs is needed")
    return user


def _same_origin(request: Request) -> None:
    """Refuse a state change posted by a page of another origin (cross-site request forgery)."""
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser form or fetch (curl, the CLI, a test client): the token decides
    allowed = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    allowed.add(urlsplit(conf.get("api", "base_url", fallback="") or "").netloc or None)
    if urlsplit(origin).netloc not in allowed - {None}:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"Forbidden: cross-origin request from {origin}")


def _record(columns: tuple[str, ...], row: tuple) -> dict[str, Any]:
    return dict(zip(columns, row, strict=True))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _first_line(value: str | None, width: int = 160) -> str:
    if not value:
        return ""
    line = value.strip().splitlines()[0] if value.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _page_url(request: Request) -> str:
    # The mount point (and any base path in front of it) is the sub-app's root_path; url_for would
    # look the route up in Airflow's root router, which does not know this app's names.
    return request.scope.get("root_path", "").rstrip("/") + "/"


def _switch_url(request: Request, dag_id: str, task_id: str, action: str) -> str:
    return f"{_page_url(request)}audit/{quote(dag_id, safe='')}/{quote(task_id, safe='')}/{action}"


def _limit(value: int) -> int:
    return max(1, min(value, MAX_LOG_LIMIT))


def deployed_tasks() -> list[tuple[str, str]]:
    """``(dag_id, task_id)`` of every task of every DAG Airflow has parsed and not marked stale."""
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        live = set(session.scalars(select(DagModel.dag_id).where(DagModel.is_stale.is_(False))))
        dags = SerializedDagModel.read_all_dags(session=session)
    return sorted((d, task_id) for d, dag in dags.items() if d in live for task_id in dag.task_ids)


def create_app(
    store_factory: Callable[[], ControlStore] = ControlStore,
    tasks_factory: Callable[[], list[tuple[str, str]]] = deployed_tasks,
    charts_factory: Callable[[], list[dashboard.Chart]] = dashboard.business_charts,
) -> FastAPI:
    """The app the plugin mounts at :data:`URL_PREFIX`.

    ``store_factory`` gives the control store, ``tasks_factory`` the deployed ``(dag_id, task_id)``,
    ``charts_factory`` the Dashboard's business charts.
    """
    app = FastAPI(
        title="etl control plane",
        description="etl.audit switches and recent etl.task_log rows",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    templates = Environment(autoescape=True)
    templates.filters["when"] = _when
    templates.filters["first_line"] = _first_line
    page = templates.from_string(PAGE.read_text())
    dashboard_page = templates.from_string(DASHBOARD_PAGE.read_text())

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        # A browser that is not logged in is sent to Airflow's login page, and back here after it.
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if exc.status_code == status.HTTP_401_UNAUTHORIZED and wants_page:
            login = get_auth_manager().get_url_login(next_url=str(request.url))
            return RedirectResponse(login, status_code=status.HTTP_303_SEE_OTHER)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(ControlPlaneUnavailable)
    async def _unavailable(request: Request, exc: ControlPlaneUnavailable) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    def _audit(dag: str | None) -> list[dict[str, Any]]:
        return [_record(AUDIT_COLUMNS, row) for row in store_factory().audit_rows(dag)]

    def _unregistered(dag: str | None, audit: list[dict[str, Any]]) -> list[dict[str, str]]:
        known = {(row["dag_id"], row["task_id"]) for row in audit}
        return [
            {"dag_id": d, "task_id": t}
            for d, t in tasks_factory()
            if (d, t) not in known and dag in (None, d)
        ]

    def _runs(dag: str | None) -> list[dict[str, Any]]:
        if not dag:
            return []
        return [_record(RUN_COLUMNS, row) for row in store_factory().last_runs(dag, DEFAULT_RUNS)]

    def _log(dag: str | None, limit: int) -> list[dict[str, Any]]:
        rows = store_factory().recent_log(dag_id=dag, limit=_limit(limit))
        return [_record(LOG_COLUMNS, row) for row in rows]

    @app.get("/", response_class=HTMLResponse)
    def show(
        request: Request,
        user: Annotated[BaseUser, Depends(_may_read_all_dags)],
        dag: Annotated[str | None, Query(description="show this DAG only")] = None,
        limit: Annotated[int, Query(description="task_log rows")] = DEFAULT_LOG_LIMIT,
        switched_dag: str | None = None,
        switched_task: str | None = None,
    ) -> HTMLResponse:
        dag = dag or None
        every = _audit(None)
        unregistered = _unregistered(None, every)
        dag_ids = sorted({row["dag_id"] for row in [*every, *unregistered]} | ({dag} if dag else set()))
        # The notice after a switch is built from the row itself, never from text in the URL.
        switched = next(
            (r for r in every if (r["dag_id"], r["task_id"]) == (switched_dag, switched_task)), None
        )
        return HTMLResponse(
            page.render(
                audit=[row for row in every if dag in (None, row["dag_id"])],
                unregistered=[row for row in unregistered if dag in (None, row["dag_id"])],
                log=_log(dag, limit),
                runs=_runs(dag),
                dag=dag,
                dag_ids=dag_ids,
                limit=_limit(limit),
                user=user.get_name(),
                switched=switched,
                page_url=_page_url(request),
                switch_url=lambda row, action: _switch_url(request, row["dag_id"], row["task_id"], action),
            )
        )

    @app.get("/dashboard", response_class=HTMLResponse)
    def show_dashboard(
        request: Request, user: Annotated[BaseUser, Depends(_may_read_all_dags)]
    ) -> HTMLResponse:
        """Pipeline health from the control plane and the business charts from the warehouse's marts."""
        return HTMLResponse(
            dashboard_page.render(
                charts=charts_factory(),
                health=dashboard.pipeline_health(store_factory()),
                warehouse_conn_id=dashboard.warehouse_name(),
                user=user.get_name(),
                page_url=_page_url(request),
            )
        )

    @app.post(
        "/audit/{dag_id}/{task_id}/{action}",
        dependencies=[Depends(_same_origin), Depends(requires_access_dag("PUT"))],
    )
    def switch(
        request: Request,
        dag_id: str,
        task_id: str,
        action: str,
        user: GetUserDep,
        reason: Annotated[str, Form(max_length=MAX_REASON_CHARS)] = "",
        dag: Annotated[str, Form()] = "",
    ) -> Response:
        if action not in ("enable", "disable"):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown action {action!r}")
        enabled = action == "enable"
        changed = store_factory().set_enabled(
            dag_id, task_id, enabled, reason.strip() or None, updated_by=user.get_name()
        )
        if not changed:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no etl.audit row for {dag_id}.{task_id}")
        query = {"switched_dag": dag_id, "switched_task": task_id}
        if dag:
            query["dag"] = dag
        back = f"{_page_url(request)}?{urlencode(query)}"
        return RedirectResponse(back, status_code=status.HTTP_303_SEE_OTHER)

    @app.get("/api/audit")
    def audit_json(
        user: Annotated[BaseUser, Depends(_may_read_all_dags)], dag: str | None = None
    ) -> list[dict[str, Any]]:
        return [{k: _jsonable(v) for k, v in row.items()} for row in _audit(dag or None)]

    @app.get("/api/unregistered")
    def unregistered_json(
        user: Annotated[BaseUser, Depends(_may_read_all_dags)], dag: str | None = None
    ) -> list[dict[str, str]]:
        """Deployed tasks with no ``etl.audit`` row (registered, enabled, by their first run)."""
        return _unregistered(dag or None, _audit(None))

    @app.get("/api/runs")
    def runs_json(user: Annotated[BaseUser, Depends(_may_read_all_dags)], dag: str) -> list[dict[str, Any]]:
        """The DAG's last runs, task by task (latest try): status, tries, rows, seconds."""
        return [{k: _jsonable(v) for k, v in row.items()} for row in _runs(dag)]

    @app.get("/api/task-log")
    def task_log_json(
        user: Annotated[BaseUser, Depends(_may_read_all_dags)],
        dag: str | None = None,
        limit: int = DEFAULT_LOG_LIMIT,
    ) -> list[dict[str, Any]]:
        return [{k: _jsonable(v) for k, v in row.items()} for row in _log(dag or None, limit)]

    return app

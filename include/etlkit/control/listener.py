"""Task-log writing: what the ``etl_control`` listener plugin does when a task try starts and ends.

Kept in the framework package (the plugin only delegates here) so it is tested like any other code.
Runs inside the task process, where the try's row counts and skip reason were reported.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from include.etlkit.control.accounting import take_outcome
from include.etlkit.control.store import ControlStore, TaskTry
from include.etlkit.redaction import redact

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4000


def _key(ti: Any) -> TaskTry:
    map_index = getattr(ti, "map_index", -1)
    return TaskTry(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=-1 if map_index is None else map_index,
        try_number=ti.try_number,
    )


def _run_dates(ti: Any) -> tuple[datetime | None, datetime | None, datetime | None]:
    try:
        dag_run = ti.get_template_context()["dag_run"]
    except Exception:
        return None, None, None
    return (
        getattr(dag_run, "logical_date", None),
        getattr(dag_run, "data_interval_start", None),
        getattr(dag_run, "data_interval_end", None),
    )


def _state_name(ti: Any, default: str) -> str:
    state = getattr(ti, "state", None)
    value = getattr(state, "value", state)
    return value if value in {"failed", "up_for_retry"} else default


def record_start(ti: Any, store: ControlStore | None = None) -> None:
    logical_date, interval_start, interval_end = _run_dates(ti)
    task = getattr(ti, "task", None)
    (store or ControlStore()).log_started(
        _key(ti),
        started_at=getattr(ti, "start_date", None) or datetime.now(UTC),
        operator=type(task).__name__ if task is not None else None,
        hostname=getattr(ti, "hostname", None),
        logical_date=logical_date,
        data_interval=(interval_start, interval_end),
    )


def record_end(ti: Any, status: str, error: object = None, store: ControlStore | None = None) -> None:
    outcome = take_outcome(ti)
    if status == "failed":
        status = _state_name(ti, "failed")
    message = outcome.skip_reason if status == "skipped" else None
    if error is not None:
        message = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
        message = redact(message)  # the row is shown by the UI and its API: no secret may be in it
    now = datetime.now(UTC)
    (store or ControlStore()).log_finished(
        _key(ti),
        status=status,
        started_at=getattr(ti, "start_date", None) or now,
        ended_at=getattr(ti, "end_date", None) or now,
        rows_in=outcome.rows_in,
        rows_out=outcome.rows_out,
        rows_rejected=outcome.rows_rejected,
        error=message[:MAX_ERROR_CHARS] if message else None,
    )

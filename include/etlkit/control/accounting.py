"""Row accounting: what a task try read, wrote and rejected, handed to the task-log listener.

Operators call :func:`report_rows` from ``execute``; the listener, which Airflow calls in the same
task process when the try ends, takes the totals with :func:`take_outcome` and writes them into the
try's ``etl.task_log`` row. The audit gate leaves its skip reason here the same way, because
Airflow's skip hook does not pass the exception on to listeners.

The same totals go into the ``extra`` of every Asset event the task publishes (its outlets), so the
Asset's page in the UI and the DAGs it wakes see how many rows came with it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_lock = threading.Lock()
_outcomes: dict[str, TryOutcome] = {}


@dataclass
class TryOutcome:
    rows_in: int | None = None
    rows_out: int | None = None
    rows_rejected: int | None = None
    skip_reason: str | None = None


def try_key(task_instance: Any) -> str:
    """Identify a try the same way whichever TaskInstance flavour Airflow hands over."""
    return "|".join(
        str(getattr(task_instance, name, ""))
        for name in ("dag_id", "task_id", "run_id", "map_index", "try_number")
    )


def _outcome(context_or_ti: Any) -> TryOutcome:
    ti = context_or_ti["ti"] if isinstance(context_or_ti, Mapping) else context_or_ti
    key = try_key(ti)
    with _lock:
        return _outcomes.setdefault(key, TryOutcome())


def _add(current: int | None, more: int | None) -> int | None:
    if more is None:
        return current
    if more < 0:
        raise ValueError(f"row counts cannot be negative, got {more}")
    return (current or 0) + more


def report_rows(
    context: Any, *, rows_in: int | None = None, rows_out: int | None = None, rows_rejected: int | None = None
) -> None:
    """Add to this try's row counts (callable many times, e.g. once per table or file)."""
    outcome = _outcome(context)
    with _lock:
        outcome.rows_in = _add(outcome.rows_in, rows_in)
        outcome.rows_out = _add(outcome.rows_out, rows_out)
        outcome.rows_rejected = _add(outcome.rows_rejected, rows_rejected)
        totals = {
            "rows_in": outcome.rows_in,
            "rows_out": outcome.rows_out,
            "rows_rejected": outcome.rows_rejected,
        }
    _tag_asset_events(context, {name: value for name, value in totals.items() if value is not None})


def _tag_asset_events(context: Any, totals: dict[str, int]) -> None:
    """The try's totals so far into the extra of each Asset event it publishes."""
    if not isinstance(context, Mapping) or "outlet_events" not in context:
        return
    task = context.get("task")
    for outlet in getattr(task, "outlets", None) or ():
        try:
            context["outlet_events"][outlet].extra.update(totals)
        except (KeyError, TypeError, AttributeError):  # not an Asset (an alias, say): nothing to tag
            continue


def note_skip_reason(context: Any, reason: str) -> None:
    outcome = _outcome(context)
    with _lock:
        outcome.skip_reason = reason


def take_outcome(task_instance: Any) -> TryOutcome:
    """Remove and return what was reported for this try (empty if nothing was)."""
    with _lock:
        return _outcomes.pop(try_key(task_instance), TryOutcome())

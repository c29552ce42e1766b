"""The audit gate: every task asks ``etl.audit`` whether it may run, when it runs.

Installed on every task of every DAG by the cluster policy in ``plugins/airflow_local_settings.py``
(so provider operators are gated too, and no DAG can forget). It runs in the worker right before
``execute``, never while a DAG file is parsed, and skips the task (``AirflowSkipException``, the
reason logged and kept for the task-log row) when its row is disabled.

A task with no row yet (deployed since the last ``control sync``) is registered, enabled, by its
first run (:meth:`ControlStore.admit`) and runs: a deploy never leaves a task silently skipped until
the next sync. A disabled row still skips it.

Where it hooks in, through Airflow's public operator API only:

- an ordinary task: its ``pre_execute`` method, which the task runner calls right before
  ``execute`` whenever it is not ``BaseOperator``'s own. The gate replaces it on the instance and
  then calls the class's ``pre_execute`` on the task being run, so an operator's own override
  still runs. (A ``pre_execute=`` hook passed to an ordinary operator's constructor runs just
  before it: the runner calls that hook first. The project's DAGs pass none; a DAG that needs one
  should use it for checks only, as Airflow's ``run_if`` does.);
- a mapped task: the ``pre_execute`` argument of its ``partial(...)`` (``partial_kwargs``), the
  documented hook every expanded task instance is built with; a hook already there runs after it,
  as Airflow's own ``run_if`` / ``skip_if`` chain theirs.

Not chosen: a listener's ``on_task_instance_running`` and ``on_execute_callback`` run at the same
moment, but the task runner swallows their exceptions, so they cannot skip (or stop) a task.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from include.etlkit.control.accounting import note_skip_reason
from include.etlkit.control.store import ControlPlaneUnavailable, ControlStore

PreExecuteHook = Callable[[Any], Any]
REGISTERED_BY = "etl gate: registered at first run"

log = logging.getLogger(__name__)


def check_audit(context: Any) -> None:
    """Skip the task if its audit row is disabled; fail it if the control plane is unreachable."""
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    ti = context["ti"]
    task = context.get("task") or ti.task
    if getattr(task, "audit_exempt", False):
        return
    try:
        decision = ControlStore().admit(ti.dag_id, ti.task_id, registered_by=REGISTERED_BY)
    except ControlPlaneUnavailable as exc:
        raise AirflowException(f"{exc}; refusing to run {ti.dag_id}.{ti.task_id} ungated") from exc
    if decision.registered:
        log.warning("etl.audit: %s.%s had no row: registered enabled by its first run", ti.dag_id, ti.task_id)
    if not decision.allowed:
        reason = decision.reason or "etl.audit: not allowed to run"
        note_skip_reason(context, reason)
        raise AirflowSkipException(reason)


def _gated(previous: PreExecuteHook | None) -> PreExecuteHook:
    """A pre-execute hook for a mapped task's partial: the gate, then ``previous`` (if any)."""

    def gated_pre_execute(context: Any) -> None:
        check_audit(context)
        if previous is not None:
            previous(context)

    gated_pre_execute.audit_gate = True  # type: ignore[attr-defined]
    return gated_pre_execute


def _gated_method(context: Any) -> None:
    """The ``pre_execute`` of a gated ordinary task: the gate, then the operator class's own."""
    check_audit(context)
    task = context["task"]  # the copy being run (rendered templates), not the one parsed
    type(task).pre_execute(task, context)


_gated_method.audit_gate = True  # type: ignore[attr-defined]


def _is_mapped(task: Any) -> bool:
    return hasattr(task, "partial_kwargs")


def apply_audit_gate(task: Any) -> None:
    """Make ``check_audit`` run right before ``execute`` of ``task``, mapped or not (idempotent)."""
    if is_gated(task):
        return
    if _is_mapped(task):
        task.partial_kwargs["pre_execute"] = _gated(task.partial_kwargs.get("pre_execute"))
    else:
        task.pre_execute = _gated_method


def is_gated(task: Any) -> bool:
    hook = task.partial_kwargs.get("pre_execute") if _is_mapped(task) else task.pre_execute
    return bool(getattr(hook, "audit_gate", False))

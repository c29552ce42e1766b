"""The audit gate: every task asks ``etl.audit`` whether it may run, when it runs.

Installed on every task of every DAG by the cluster policy in ``plugins/airflow_local_settings.py``
(so provider operators are gated too, and no DAG can forget), as a pre-execute hook: it runs in
the worker right before ``execute``, never while a DAG file is parsed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from include.etlkit.control.accounting import note_skip_reason
from include.etlkit.control.store import ControlPlaneUnavailable, ControlStore


def check_audit(context: Any) -> None:
    """Skip the task unless its audit row is enabled; fail it if the control plane is unreachable."""
    from airflow.sdk.exceptions import AirflowException, AirflowSkipException

    ti = context["ti"]
    task = context.get("task") or ti.task
    if getattr(task, "audit_exempt", False):
        return
    try:
        decision = ControlStore().decide(ti.dag_id, ti.task_id)
    except ControlPlaneUnavailable as exc:
        raise AirflowException(f"{exc}; refusing to run {ti.dag_id}.{ti.task_id} ungated") from exc
    if not decision.allowed:
        reason = decision.reason or "etl.audit: not allowed to run"
        note_skip_reason(context, reason)
        raise AirflowSkipException(reason)


def _gated(previous: Callable[[Any], Any] | None) -> Callable[[Any], None]:
    def gated_pre_execute(context: Any) -> None:
        check_audit(context)
        if previous is not None:
            previous(context)

    gated_pre_execute.audit_gate = True  # type: ignore[attr-defined]
    return gated_pre_execute


def _pre_execute_hook(task: Any) -> Callable[[Any], Any] | None:
    # A mapped task is unmapped at run time from its partial kwargs, so its hook lives there.
    if hasattr(task, "partial_kwargs"):
        return task.partial_kwargs.get("pre_execute")
    return task._pre_execute_hook


def apply_audit_gate(task: Any) -> None:
    """Make ``check_audit`` the first pre-execute step of ``task``, mapped or not (idempotent)."""
    previous = _pre_execute_hook(task)
    if getattr(previous, "audit_gate", False):
        return
    if hasattr(task, "partial_kwargs"):
        task.partial_kwargs["pre_execute"] = _gated(previous)
    else:
        task._pre_execute_hook = _gated(previous)


def is_gated(task: Any) -> bool:
    return bool(getattr(_pre_execute_hook(task), "audit_gate", False))

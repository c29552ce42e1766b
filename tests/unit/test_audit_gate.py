"""How the audit gate hooks into operators: Airflow's public ``pre_execute``, never a private attribute.

The control-plane integration tests run the gate for real (``dag.test()``: skipped, registered,
unreachable); these pin down the hook itself, without a database: what the task runner will call,
in which order, for an ordinary and a mapped task, and that an operator's own ``pre_execute`` runs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import DAG, BaseOperator

from include.etlkit.control import gate

calls: list[str] = []


class RecordingOperator(BaseOperator):
    """An operator with its own ``pre_execute``, as some provider operators have."""

    def pre_execute(self, context: Any) -> None:
        calls.append(f"own pre_execute of {self.task_id}")

    def execute(self, context: Any) -> None:
        calls.append("execute")


@pytest.fixture(autouse=True)
def recorded_gate(monkeypatch):
    calls.clear()
    monkeypatch.setattr(gate, "check_audit", lambda context: calls.append("gate"))
    yield calls


def _dag() -> DAG:
    return DAG("gate_unit", schedule=None, start_date=datetime(2024, 1, 1))


def test_an_ordinary_task_is_gated_through_its_public_pre_execute_and_keeps_its_own():
    with _dag():
        task = RecordingOperator(task_id="t")
    assert not gate.is_gated(task)

    gate.apply_audit_gate(task)
    gate.apply_audit_gate(task)  # idempotent: parsed twice, gated once

    assert gate.is_gated(task)
    assert task._pre_execute_hook is None  # no private attribute written
    # The task runner calls task.pre_execute when it is not BaseOperator's own: it will call the gate.
    assert getattr(task.pre_execute, "__func__", None) is not BaseOperator.pre_execute
    running = task.prepare_for_execution()  # the copy the runner executes
    running.pre_execute({"task": running})
    assert calls == ["gate", "own pre_execute of t"]


def test_a_provider_operator_without_its_own_pre_execute_is_gated_too():
    with _dag():
        task = SQLExecuteQueryOperator(task_id="sql", conn_id="etl_control", sql="SELECT 1")
    gate.apply_audit_gate(task)

    task.pre_execute({"task": task})

    assert gate.is_gated(task) and calls == ["gate"]


def test_a_mapped_task_is_gated_through_its_partial_pre_execute_before_any_hook_it_had():
    with _dag():
        mapped = SQLExecuteQueryOperator.partial(
            task_id="mapped", conn_id="etl_control", pre_execute=lambda context: calls.append("dag's hook")
        ).expand(sql=["SELECT 1", "SELECT 2"])
    gate.apply_audit_gate(mapped)
    gate.apply_audit_gate(mapped)

    assert gate.is_gated(mapped)
    mapped.partial_kwargs["pre_execute"]({})
    assert calls == ["gate", "dag's hook"]  # once: applying twice did not wrap twice

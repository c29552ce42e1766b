"""The control plane against the real PostgreSQL: gating by etl.audit and one task_log row per try."""

from __future__ import annotations

import pytest

from include.etlkit.control.gate import REGISTERED_BY
from include.etlkit.control.store import ControlStore
from tests.conftest import FIXTURE_DAGS, load_dag

pytestmark = pytest.mark.integration

DAG_ID = "control_plane_probe"


def _reset(store: ControlStore) -> None:
    store.query("DELETE FROM etl.audit WHERE dag_id = %s", (DAG_ID,))
    store.query("DELETE FROM etl.task_log WHERE dag_id = %s", (DAG_ID,))


def _log_rows(store: ControlStore, run_id: str) -> dict[str, list[dict]]:
    rows = store.query(
        "SELECT task_id, try_number, status, operator, rows_in, rows_out, rows_rejected, "
        "started_at, ended_at, duration_seconds, error FROM etl.task_log WHERE dag_id = %s AND run_id = %s",
        (DAG_ID, run_id),
    )
    names = [
        "task_id",
        "try_number",
        "status",
        "operator",
        "rows_in",
        "rows_out",
        "rows_rejected",
        "started_at",
        "ended_at",
        "duration_seconds",
        "error",
    ]
    by_task: dict[str, list[dict]] = {}
    for row in rows:
        record = dict(zip(names, row, strict=True))
        by_task.setdefault(record["task_id"], []).append(record)
    return by_task


def _states(run) -> dict[str, str]:
    """Each task's state; a mapped task's when all its map indexes agree."""
    by_task: dict[str, set[str]] = {}
    for ti in run.get_task_instances():
        by_task.setdefault(ti.task_id, set()).add(ti.state)
    return {task: "|".join(sorted(states)) for task, states in by_task.items()}


@pytest.fixture
def probe(airflow_db, control_plane):
    _reset(control_plane)
    yield load_dag(DAG_ID, FIXTURE_DAGS)
    _reset(control_plane)


def test_every_task_try_writes_one_log_row_with_status_rows_and_error(probe, control_plane):
    control_plane.register([(DAG_ID, t) for t in probe.task_ids])
    control_plane.set_enabled(DAG_ID, "disabled_step", False, reason="switched off by the test")

    run = probe.test()

    states = _states(run)
    assert states == {
        "count_rows": "success",
        "sql_probe": "success",
        "always_fails": "failed",
        "disabled_step": "skipped",
        "mapped_sql": "success",
    }
    rows = _log_rows(control_plane, run.run_id)
    assert {task: len(tries) for task, tries in rows.items()} == {**dict.fromkeys(states, 1), "mapped_sql": 2}

    counted = rows["count_rows"][0]
    assert counted["status"] == "success"
    assert (counted["rows_in"], counted["rows_out"], counted["rows_rejected"]) == (10, 8, 2)
    assert counted["ended_at"] >= counted["started_at"]
    assert counted["duration_seconds"] is not None

    provider = rows["sql_probe"][0]
    assert provider["status"] == "success"
    assert provider["operator"] == "SQLExecuteQueryOperator"

    failed = rows["always_fails"][0]
    assert failed["status"] == "failed"
    assert "the probe failed on purpose" in failed["error"]

    skipped = rows["disabled_step"][0]
    assert skipped["status"] == "skipped"
    assert "disabled" in skipped["error"] and "switched off by the test" in skipped["error"]


def test_a_task_without_an_audit_row_is_registered_by_its_first_run_and_runs(probe, control_plane):
    # Deployed since the last `control sync`: no row yet. It must not be skipped until the next sync.
    registered = [t for t in probe.task_ids if t not in ("count_rows", "mapped_sql")]
    control_plane.register([(DAG_ID, t) for t in registered])

    run = probe.test()

    states = _states(run)
    assert states["count_rows"] == "success" and states["mapped_sql"] == "success"
    assert _log_rows(control_plane, run.run_id)["count_rows"][0]["rows_in"] == 10  # it did its work
    audit = {row[1]: row for row in control_plane.audit_rows(DAG_ID)}
    for task in ("count_rows", "mapped_sql"):  # registered once, though mapped_sql ran twice
        _, _, enabled, _, _, updated_by = audit[task]
        assert enabled is True and updated_by == REGISTERED_BY


def test_a_disabled_row_still_skips_and_the_first_run_never_overwrites_it(probe, control_plane):
    control_plane.register([(DAG_ID, t) for t in probe.task_ids])
    control_plane.set_enabled(DAG_ID, "mapped_sql", False, reason="mapped switched off")

    run = probe.test()

    assert _states(run)["mapped_sql"] == "skipped"
    mapped = _log_rows(control_plane, run.run_id)["mapped_sql"]
    assert len(mapped) == 2  # both map indexes asked the gate, both skipped with the reason
    assert all(r["status"] == "skipped" and "mapped switched off" in r["error"] for r in mapped)
    assert control_plane.decide(DAG_ID, "mapped_sql").allowed is False


def test_admit_registers_a_missing_row_once_and_keeps_existing_switches(control_plane):
    _reset(control_plane)
    try:
        first = control_plane.admit(DAG_ID, "new_task", registered_by=REGISTERED_BY)
        again = control_plane.admit(DAG_ID, "new_task", registered_by=REGISTERED_BY)
        assert (first.allowed, first.registered) == (True, True)
        assert (again.allowed, again.registered) == (True, False)
        control_plane.set_enabled(DAG_ID, "new_task", False, reason="paused")
        paused = control_plane.admit(DAG_ID, "new_task", registered_by=REGISTERED_BY)
        assert (paused.allowed, paused.registered) == (False, False) and "paused" in paused.reason
        assert [r[1] for r in control_plane.audit_rows(DAG_ID)] == ["new_task"]
    finally:
        _reset(control_plane)


def test_tasks_fail_rather_than_run_ungated_when_the_control_database_is_unreachable(
    probe, control_plane, monkeypatch
):
    control_plane.register([(DAG_ID, t) for t in probe.task_ids])
    # Nothing listens on port 1: the gate cannot ask etl.audit.
    monkeypatch.setenv("AIRFLOW_CONN_ETL_CONTROL", "postgres://postgres@127.0.0.1:1/warehouse_test")

    run = probe.test()

    states = _states(run)
    assert states["count_rows"] == "failed"
    assert states["disabled_step"] == "failed"  # it would raise AssertionError had it run ungated


def test_the_gate_error_names_the_connection_and_refuses_to_run_ungated(monkeypatch):
    from airflow.exceptions import AirflowException

    from include.etlkit.control.gate import check_audit

    monkeypatch.setenv("AIRFLOW_CONN_ETL_CONTROL", "postgres://postgres@127.0.0.1:1/warehouse_test")

    class FakeTI:
        dag_id, task_id = "any_dag", "any_task"
        task = object()

    with pytest.raises(AirflowException, match=r"(?s)etl_control.*refusing to run any_dag\.any_task ungated"):
        check_audit({"ti": FakeTI(), "task": FakeTI.task})


def test_register_keeps_existing_switches_and_enable_disable_round_trip(control_plane):
    _reset(control_plane)
    try:
        assert control_plane.register([(DAG_ID, "a"), (DAG_ID, "b")]) == 2
        assert control_plane.set_enabled(DAG_ID, "a", False, reason="maintenance") == 1
        assert control_plane.register([(DAG_ID, "a"), (DAG_ID, "b"), (DAG_ID, "c")]) == 1
        assert control_plane.decide(DAG_ID, "a").allowed is False
        assert "maintenance" in control_plane.decide(DAG_ID, "a").reason
        assert control_plane.decide(DAG_ID, "c").allowed is True
        assert control_plane.set_enabled(DAG_ID, None, False) == 3
        assert not any(control_plane.decide(DAG_ID, t).allowed for t in "abc")
        assert control_plane.set_enabled(DAG_ID, None, True) == 3
        assert all(control_plane.decide(DAG_ID, t).allowed for t in "abc")
    finally:
        _reset(control_plane)


def test_the_cli_switches_tasks_and_shows_the_audit_table_and_log(control_plane, capsys):
    from include.etlkit.control.cli import main

    _reset(control_plane)
    try:
        control_plane.register([(DAG_ID, "count_rows"), (DAG_ID, "sql_probe")])
        assert main(["disable", DAG_ID, "count_rows", "--reason", "source maintenance"]) == 0
        assert main(["list", "--dag", DAG_ID]) == 0
        listing = capsys.readouterr().out
        assert "count_rows" in listing and "False" in listing and "source maintenance" in listing
        assert control_plane.decide(DAG_ID, "count_rows").allowed is False
        assert main(["enable", DAG_ID]) == 0
        assert control_plane.decide(DAG_ID, "count_rows").allowed is True
        assert main(["disable", DAG_ID, "no_such_task"]) == 1
        assert main(["log", "--dag", DAG_ID, "--limit", "5"]) == 0
        assert "status" in capsys.readouterr().out
    finally:
        _reset(control_plane)


def test_a_try_whose_start_was_never_logged_still_gets_its_duration(control_plane):
    """log_finished creates the row when log_started never ran (a try killed before it began)."""
    from datetime import UTC, datetime, timedelta

    from include.etlkit.control.store import TaskTry

    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    key = TaskTry("store_probe", "late", f"manual__{started:%H%M%S%f}", -1, 1)
    control_plane.log_finished(
        key, status="failed", started_at=started, ended_at=started + timedelta(seconds=2.5)
    )
    rows = control_plane.query(
        "SELECT status, duration_seconds FROM etl.task_log WHERE dag_id = %s AND run_id = %s",
        (key.dag_id, key.run_id),
    )
    control_plane.query("DELETE FROM etl.task_log WHERE dag_id = %s", (key.dag_id,))
    assert [(status, float(duration)) for status, duration in rows] == [("failed", 2.5)]


def test_forgetting_a_source_clears_every_table_that_remembers_it_and_nothing_else(control_plane):
    from include.etlkit.control.ledger import SOURCE_TABLES, Ledger

    gone, kept = "forget_probe_gone", "forget_probe_kept"
    for source in (gone, kept):
        control_plane.query(
            "INSERT INTO etl.extract_state (source, table_name, landed_until, last_run_id)"
            " VALUES (%s, 't', now(), 'r')",
            (source,),
        )
        control_plane.query(
            "INSERT INTO etl.source_schema (source, table_name, columns) VALUES (%s, 't', '[]')", (source,)
        )
    Ledger(control_plane).forget(gone)

    def remembered(source: str) -> int:
        return sum(
            control_plane.query(f"SELECT count(*) FROM etl.{table} WHERE source = %s", (source,))[0][0]
            for table in SOURCE_TABLES
        )

    assert (remembered(gone), remembered(kept)) == (0, 2)
    Ledger(control_plane).forget(kept)


def test_the_cli_shows_a_dags_last_runs_feed_by_feed_and_reenables_with_a_reason(
    probe, control_plane, capsys
):
    from include.etlkit.control.cli import main

    control_plane.register([(DAG_ID, t) for t in probe.task_ids])
    control_plane.set_enabled(DAG_ID, "disabled_step", False, reason="switched off by the test")
    first, second = probe.test(), probe.test()

    runs = control_plane.last_runs(DAG_ID, runs=1)
    assert {row[0] for row in runs} == {second.run_id}  # the newest run only
    by_task = {row[1]: row for row in runs}
    assert by_task["count_rows"][2:7] == ("success", 1, 10, 8, 2)  # status, tries, in, out, rejected
    assert by_task["always_fails"][2] == "failed" and by_task["disabled_step"][2] == "skipped"
    assert {row[0] for row in control_plane.last_runs(DAG_ID, runs=2)} == {first.run_id, second.run_id}

    capsys.readouterr()  # the runs' own log lines
    assert main(["runs", DAG_ID, "--runs", "1"]) == 0
    shown = capsys.readouterr().out
    assert second.run_id in shown and first.run_id not in shown and "count_rows" in shown

    assert main(["enable", DAG_ID, "disabled_step", "--reason", "maintenance over"]) == 0
    (row,) = [r for r in control_plane.audit_rows(DAG_ID) if r[1] == "disabled_step"]
    assert row[2] is True and row[3] == "maintenance over"

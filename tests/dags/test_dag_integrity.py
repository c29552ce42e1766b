"""Integrity and policy tests over every DAG in ``dags/``.

The DAG folder is parsed the way Airflow parses it (a DagBag, cluster policies applied) while every
way of reaching a database, a Variable, a connection or the network raises, so a DAG file that does
I/O at parse time shows up as an import error here rather than as a slow, flaky scheduler in prod.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

from include.etlkit.alerts import has_failure_alert
from include.etlkit.control.gate import is_gated
from include.etlkit.dag_defaults import OWNER

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


class ParseTimeIO(RuntimeError):
    pass


def _refuse(what: str):
    def refuse(*args, **kwargs):
        raise ParseTimeIO(f"{what} at DAG parse time")

    return refuse


@contextlib.contextmanager
def io_forbidden() -> Iterator[None]:
    """Make databases, Variables, connections and the network raise while DAG files import."""
    targets = {
        "socket.socket.connect": "network connection",
        "socket.create_connection": "network connection",
        "psycopg.connect": "PostgreSQL connection",
        "psycopg2.connect": "PostgreSQL connection",
        "MySQLdb.connect": "MySQL connection",
        "airflow.sdk.Variable.get": "Variable.get",
        "airflow.models.variable.Variable.get": "Variable.get",
        "airflow.sdk.BaseHook.get_connection": "connection lookup",
        "airflow.sdk.bases.hook.BaseHook.get_connection": "connection lookup",
    }
    with contextlib.ExitStack() as stack:
        for target, what in targets.items():
            stack.enter_context(mock.patch(target, side_effect=_refuse(what)))
        yield


def parse(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    with io_forbidden():
        return DagBag(dag_folder=str(folder))


@pytest.fixture(scope="module")
def dagbag():
    return parse(DAGS_DIR)


def test_every_dag_file_imports_without_errors_and_without_io(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_FILES, "no DAG files found"
    assert {Path(dag.fileloc).name for dag in dagbag.dags.values()} == {p.name for p in DAG_FILES}


def test_retail_drops_parses_with_its_sqs_watcher_without_io(monkeypatch):
    """Where its queue is configured, retail_drops gets an AssetWatcher: built at parse, no I/O."""
    queue = "https://sqs.eu-west-2.amazonaws.com/123456789012/etl-drop-arrivals"
    monkeypatch.setenv("AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL", queue)
    bag = parse(DAGS_DIR)
    assert bag.import_errors == {}
    timetable = bag.dags["retail_drops"].timetable
    (asset,) = timetable.asset_condition.objects
    (watcher,) = asset.watchers
    assert watcher.trigger.serialize()[1]["sqs_queue"] == queue
    assert timetable.timetable.expression == "*/15 * * * *"  # the cron polling stays


def test_the_io_guard_catches_a_dag_that_reads_a_variable_or_a_database_at_parse_time(tmp_path):
    (tmp_path / "reads_variable.py").write_text(
        "from airflow.sdk import Variable, dag\n"
        "BUCKET = Variable.get('ingestion_bucket')\n"
        "@dag(schedule=None)\n"
        "def reads_variable():\n    pass\n"
        "reads_variable()\n"
    )
    (tmp_path / "opens_socket.py").write_text(
        "import socket\nfrom airflow.sdk import dag\nsocket.create_connection(('127.0.0.1', 5432))\n"
    )
    (tmp_path / "opens_database.py").write_text(
        "import psycopg\nfrom airflow.sdk import dag\npsycopg.connect('postgresql://127.0.0.1/warehouse')\n"
    )
    bag = parse(tmp_path)
    assert sorted(Path(p).name for p in bag.import_errors) == [
        "opens_database.py",
        "opens_socket.py",
        "reads_variable.py",
    ]
    assert all("at DAG parse time" in err for err in bag.import_errors.values())


def test_every_dag_has_owner_tags_and_docs(dagbag):
    for dag in dagbag.dags.values():
        assert dag.tags, f"{dag.dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag.dag_id} has no doc_md"
        assert dag.owner == OWNER, f"{dag.dag_id} is owned by {dag.owner!r}"


def test_every_task_retries_with_exponential_backoff(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id} never retries"
            assert task.retry_exponential_backoff, f"{dag.dag_id}.{task.task_id} retries without backoff"


def test_every_task_is_gated_by_the_audit_table(dagbag):
    for dag in dagbag.dags.values():
        ungated = [t.task_id for t in dag.tasks if not is_gated(t)]
        assert not ungated, f"{dag.dag_id}: tasks without the etl.audit gate: {ungated}"


def test_every_task_alerts_on_failure(dagbag):
    for dag in dagbag.dags.values():
        silent = [t.task_id for t in dag.tasks if not has_failure_alert(t)]
        assert not silent, f"{dag.dag_id}: tasks without the failure alert (email and SNS): {silent}"


def _callee(call: ast.Call) -> str | None:
    return getattr(call.func, "id", getattr(call.func, "attr", None))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_dag_sets_catchup_explicitly(path):
    calls = [
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and _callee(node) in {"dag", "DAG"}
    ]
    assert calls, f"{path.name} defines no DAG"
    for call in calls:
        assert any(kw.arg == "catchup" for kw in call.keywords), f"{path.name}: catchup is not explicit"

"""The load DAGs choose their warehouse when they run: no task names a warehouse connection or dialect."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.etlkit.load.operators import LoadProcessedOperator, WarehouseScriptOperator
from include.etlkit.load.warehouse import WAREHOUSE_CONN_ID
from include.etlkit.paths import SQL_DIR
from include.etlkit.retail.customers import UnifyCustomersOperator
from tests.dags.test_dag_integrity import parse

DAGS = Path(__file__).resolve().parents[2] / "dags"
LOAD_DAGS = ("totesys_load", "retail_load")


@pytest.fixture(scope="module")
def load_dags():
    bag = parse(DAGS)  # with databases, Variables, connections and sockets made to raise
    return [bag.dags[dag_id] for dag_id in LOAD_DAGS]


def test_every_warehouse_task_takes_its_connection_from_the_variable_at_run_time(load_dags):
    checked = 0
    for dag in load_dags:
        for task in dag.tasks:
            conn_id = getattr(task, "conn_id", None)
            if isinstance(task, LoadProcessedOperator | WarehouseScriptOperator | UnifyCustomersOperator):
                assert conn_id in (None, WAREHOUSE_CONN_ID), f"{dag.dag_id}.{task.task_id}: {conn_id!r}"
            else:  # common-sql's check operators: conn_id is a templated field
                assert conn_id == WAREHOUSE_CONN_ID, f"{dag.dag_id}.{task.task_id}: {conn_id!r}"
                assert "conn_id" in task.template_fields
            checked += 1
    assert checked > 20


def test_every_script_of_the_load_dags_exists_in_both_dialects(load_dags):
    scripts = {
        script
        for dag in load_dags
        for task in dag.tasks
        if isinstance(task, WarehouseScriptOperator)
        for script in task.scripts
    }
    assert scripts == {
        "totesys/core.sql",
        "totesys/marts.sql",
        "retail/core.sql",
        "retail/dedup.sql",
        "retail/dim_date.sql",
        "retail/marts.sql",
    }
    for dialect in ("postgres", "snowflake"):
        missing = sorted(script for script in scripts if not (SQL_DIR / dialect / script).is_file())
        assert not missing, f"sql/{dialect}/ lacks {missing}"

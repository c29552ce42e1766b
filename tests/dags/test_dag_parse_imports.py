"""Parsing a DAG file loads none of the libraries only running tasks need (issue 11: parse time).

The DAG processor executes every DAG file over and over; a file that pulls in pyarrow, polars,
psycopg, boto3 or an HTTP client while it is parsed costs about a second each time. Each file is
executed here as Airflow 3's DAG processor parses it: in a fresh interpreter that has imported the
processor's manager and, as the manager does before it forks a parse (``parsing_pre_import_modules``),
every ``airflow.*`` module the file names; then the heavy libraries the parse itself loaded are
listed. The amazon provider's s3 Asset handler imports boto3, so a DAG file naming ``s3://`` Assets
names that module (imported once per processor) or fails here; so does a DAG file building common.sql's
check operators (sqlparse). The framework's own run-time modules are held to the same rule: the
control plane's ledger, the landing path and the object store are imported by the tasks that use
them, not by the operator modules a parse builds tasks from.
``make bench BENCH_ARGS=--parse`` prints the time this saves; this test keeps it from coming back.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local import settings

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))

# Libraries a task may use but a parse must not load (top-level package names).
RUN_TIME_ONLY = {
    "adbc_driver_manager",
    "adbc_driver_postgresql",
    "aiobotocore",
    "aiohttp",
    "asyncssh",
    "boto3",
    "botocore",
    "MySQLdb",
    "numpy",
    "openpyxl",
    "pandas",
    "paramiko",
    "polars",
    "psycopg",
    "pyarrow",
    "rapidfuzz",
    "requests",
    "snowflake",
    # common.sql's hook (the quality checks' operators import it): a load DAG file names
    # airflow.providers.common.sql.operators.sql so the processor imports it once, not per parse.
    "sqlparse",
}

# The framework's modules a task imports when it runs and a parse must not (full module names): each
# is a step towards the libraries above, and the first an operator module reaching for them would pull.
RUN_TIME_ONLY_MODULES = {
    "include.etlkit.control.ledger",
    "include.etlkit.extract.landing",
    "include.etlkit.storage",
}

PROBE = """
import importlib, importlib.util, json, sys
import airflow.dag_processing.manager  # the process a parse is forked from
from airflow.sdk.definitions._internal.contextmanager import DagContext
from airflow.utils.file import iter_airflow_imports
for name in iter_airflow_imports(sys.argv[1]):  # what the manager imports before the fork
    importlib.import_module(name)
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("parsed_dag", sys.argv[1])
module = sys.modules["parsed_dag"] = importlib.util.module_from_spec(spec)
DagContext.current_autoregister_module_name = "parsed_dag"  # as the DAG processor registers DAGs
spec.loader.exec_module(module)
modules = sorted(set(sys.modules) - before)
loaded = sorted({name.split(".")[0] for name in modules})
dags = sorted(dag.dag_id for dag, _ in DagContext.autoregistered_dags)
print(json.dumps({"loaded": loaded, "modules": modules, "dags": dags}))
"""


@functools.cache  # one parse per file serves both tests: each costs a fresh interpreter
def parse_in_fresh_interpreter(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        cwd=ROOT,
        env={**os.environ, **settings.airflow_environment(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parsing_a_dag_file_loads_no_run_time_library(path: Path) -> None:
    parsed = parse_in_fresh_interpreter(path)
    assert parsed["dags"], f"{path.name} defined no DAG: the probe did not parse it"
    assert not RUN_TIME_ONLY & set(parsed["loaded"]), (
        f"{path.name} loads {sorted(RUN_TIME_ONLY & set(parsed['loaded']))} while it is parsed"
    )


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parsing_a_dag_file_imports_no_run_time_module_of_the_framework(path: Path) -> None:
    parsed = parse_in_fresh_interpreter(path)
    assert parsed["dags"], f"{path.name} defined no DAG: the probe did not parse it"
    imported = sorted(RUN_TIME_ONLY_MODULES.intersection(parsed["modules"]))
    assert not imported, f"{path.name} imports {imported} while it is parsed"

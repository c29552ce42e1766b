"""Parsing a DAG file loads none of the libraries only running tasks need (issue 11: parse time).

The DAG processor executes every DAG file over and over; a file that pulls in pyarrow, polars,
psycopg, boto3 or an HTTP client while it is parsed costs about a second each time. Each file is
executed here in a fresh interpreter that has already imported ``airflow.sdk`` (as the processor
has) and made an ``s3://`` Asset (the amazon provider's URI handler imports boto3 for any DAG that
names an S3 Asset: Airflow's cost, not the file's), and the heavy libraries it loaded are listed.
``make bench BENCH_ARGS=--parse`` prints the time this saves; this test keeps it from coming back.
"""

from __future__ import annotations

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
}

PROBE = """
import importlib.util, json, sys
import airflow.sdk
from airflow.sdk import Asset
from airflow.sdk.definitions._internal.contextmanager import DagContext
Asset("s3://baseline/object")  # Airflow's own s3 Asset handler imports boto3: not the file's doing
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("parsed_dag", sys.argv[1])
module = sys.modules["parsed_dag"] = importlib.util.module_from_spec(spec)
DagContext.current_autoregister_module_name = "parsed_dag"  # as the DAG processor registers DAGs
spec.loader.exec_module(module)
loaded = sorted({name.split(".")[0] for name in set(sys.modules) - before})
dags = sorted(dag.dag_id for dag, _ in DagContext.autoregistered_dags)
print(json.dumps({"loaded": loaded, "dags": dags}))
"""


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

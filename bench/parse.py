"""DAG parse time: each DAG file against an empty DAG file, as Airflow's DAG processor parses it.

``python -m bench.run --parse`` (or ``make bench BENCH_ARGS=--parse``); issue 11: <= +50 ms.

Airflow 3's DAG processor parses each file in a child it forks from its manager process. The child
inherits what the manager has imported, and before forking the manager imports every ``airflow.*``
module the file names (``[dag_processor] parsing_pre_import_modules``, on by default:
``DagFileProcessorProcess.start`` calls ``_pre_import_airflow_modules``), so a module a DAG file names
is imported once per processor, not once per parse. Each measurement here is a fresh interpreter
that does the same before the clock: it imports the processor's manager and the file's ``airflow.*``
imports with Airflow's own ``iter_airflow_imports``, then times executing the file as a module. A
real manager holds more still (~2,170 modules against ~1,600 here), so this errs on the slow side.

Bytecode is cached as on a deployment (the processor re-parses the same files all day): one
untimed warm-up process per file writes the ``.pyc`` files even where ``PYTHONDONTWRITEBYTECODE``
is set in the caller's environment. The median of ``REPEAT`` processes per file is printed, and its
difference with the empty DAG file's.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.local import settings

REPEAT = 3
BUDGET_MS = 50.0  # issue 11: each DAG file parses within 50 ms of an empty DAG file

EMPTY_DAG = '''"""An empty DAG: the baseline a DAG file's parse time is compared with."""
from airflow.sdk import dag


@dag(schedule=None)
def empty():
    pass


empty()
'''

S3_ASSET_DAG = '''"""An empty DAG whose task names an s3:// Asset: what Airflow itself loads for one."""
from airflow.sdk import Asset, dag, task


@dag(schedule=None)
def empty_with_asset():
    @task(outlets=[Asset("s3://bucket/key")])
    def noop():
        pass

    noop()


empty_with_asset()
'''

NAMED_HANDLER = "import airflow.providers.amazon.aws.assets.s3  # noqa: F401\n"
S3_ASSET_NAMED_DAG = S3_ASSET_DAG.replace("from airflow.sdk", NAMED_HANDLER + "from airflow.sdk")

# Runs in the measured process: what the DAG processor holds before it forks, then the file executed.
PROBE = """
import importlib, importlib.util, json, sys, time
import airflow.dag_processing.manager  # noqa: F401  (the process the parsing child is forked from)
from airflow.utils.file import iter_airflow_imports
path = sys.argv[1]
for name in iter_airflow_imports(path):  # parsing_pre_import_modules, done by the manager before the fork
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("parsed_dag", path)
module = importlib.util.module_from_spec(spec)
started = time.perf_counter()
spec.loader.exec_module(module)
print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))
"""


def parse_ms(path: Path) -> float:
    """The median parse time of ``path`` over ``REPEAT`` fresh processes (after a warm-up), in ms."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(settings.PROJECT_ROOT)
    times = []
    for _ in range(REPEAT + 1):
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(path)],
            cwd=settings.PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(json.loads(done.stdout.strip().splitlines()[-1])["ms"])
    return statistics.median(times[1:])  # the first process wrote the bytecode


def bench_parse() -> int:
    os.environ |= settings.airflow_environment()
    with tempfile.TemporaryDirectory(prefix="parse-") as tmp:
        empty = Path(tmp) / "empty_dag.py"
        empty.write_text(EMPTY_DAG)
        baseline = parse_ms(empty)
        asset = Path(tmp) / "s3_asset_dag.py"
        asset.write_text(S3_ASSET_DAG)
        with_asset = parse_ms(asset)
        named = Path(tmp) / "s3_asset_named_dag.py"
        named.write_text(S3_ASSET_NAMED_DAG)
        with_named = parse_ms(named)
    print(f"{'DAG file':<28} {'parse ms':>9} {'vs empty':>9}  within {BUDGET_MS:.0f} ms")
    print(f"{'(empty DAG file)':<28} {baseline:9.1f} {0:9.1f}")
    # Airflow's amazon provider imports boto3 to normalise any s3:// Asset URI (unless the DAG file
    # names ``airflow.providers.amazon.aws.assets.s3``, as the project's do, so the processor
    # imports it once), and any Asset makes the providers manager import every asset handler.
    print(f"{'(empty DAG, one s3 Asset)':<28} {with_asset:9.1f} {with_asset - baseline:+9.1f}")
    print(f"{'(the same, handler named)':<28} {with_named:9.1f} {with_named - baseline:+9.1f}")
    for path in sorted((settings.PROJECT_ROOT / "dags").glob("*.py")):
        ms = parse_ms(path)
        extra = ms - baseline
        print(f"{path.name:<28} {ms:9.1f} {extra:+9.1f}  {'yes' if extra <= BUDGET_MS else 'NO'}")
    print(f"median of {REPEAT} fresh processes per file after a warm-up; the processor's imports first")
    return 0


if __name__ == "__main__":
    sys.exit(bench_parse())

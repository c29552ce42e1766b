"""``make demo``: seed the sample sources, run every pipeline end to end, print what landed where.

Runs after ``make setup`` (services up, databases, control tables and buckets in place), inside the
local Airflow environment (``infra.local.run``). Each DAG runs with ``airflow dags test``, i.e. the
real task runner with the audit gate and the task-log listener, against the local servers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing

from infra.local import settings

# DAGs in the order their data flows. A DAG that the project does not have yet is left out.
DEMO_DAGS = (
    "etl_control_sync",
    "totesys_ingest",
    "totesys_reconcile",
    "totesys_transform",
    "totesys_load",
    "retail_ingest",
    "retail_reconcile",
    "retail_drops",
    "retail_transform",
    "retail_load",
)


def _seed_sources() -> None:
    if importlib.util.find_spec("infra.local.seed_totesys") is None:
        return
    from airflow.sdk import BaseHook

    from infra.local.seed_totesys import seed

    conn = BaseHook.get_connection("totesys")
    dsn = f"host={conn.host} port={conn.port or 5432} user={conn.login} dbname={conn.schema}"
    counts = seed("2024-11-15", dsn)
    inserted = sum(c.get("inserted", 0) for c in counts.values())
    print(f"seeded totesys from snapshot_2024-11-15: {inserted} new rows")
    _seed_retail()


def _seed_retail() -> None:
    """The retail reference tables in MariaDB, a week of sales files on FTP, partner files in S3."""
    from datetime import UTC, datetime, timedelta

    from airflow.sdk import Variable

    from infra.local.seed_retail import seed as seed_retail
    from infra.local.seed_retail_files import deliver_partner_files, deliver_sales, delivery

    tables = seed_retail()
    files = delivery(datetime.now(UTC).date() - timedelta(days=1), days=7)
    sent = deliver_sales(files.sales, Variable.get("retail_sales_dir"))
    dropped = deliver_partner_files(files.partners, Variable.get("ingestion_bucket"))
    print(
        f"seeded retail: {sum(tables.values())} reference rows in MariaDB, {len(sent)} sales files on FTP, "
        f"{len(dropped)} partner files dropped in S3"
    )


def _reset_if_s3_forgot(source: str) -> None:
    """Start the pipeline afresh when the local S3 lost what the ledger says was landed.

    The local S3 (moto) keeps objects in memory: after the services restart, the ledger in
    PostgreSQL still remembers landings whose objects are gone, and an incremental run would find
    nothing new. Locally only, the demo then clears that source's pipeline state (and totesys's
    warehouse tables) so the run is end to end again. Production buckets never forget (Object Lock).
    """
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.providers.postgres.hooks.postgres import PostgresHook
    from airflow.sdk import Variable

    from include.etlkit.control.ledger import Ledger
    from include.etlkit.control.store import ControlStore

    store = ControlStore()
    landed = Ledger(store).landed_count(source)
    bucket = Variable.get("ingestion_bucket")
    if not landed or S3Hook(aws_conn_id="aws_default").list_keys(bucket_name=bucket, prefix=f"{source}/"):
        return
    print(f"the local S3 restarted and lost {landed} landed {source} objects: resetting {source}'s state")
    Ledger(store).forget(source)
    if source != "totesys":
        return  # the retail load upserts by key: landing everything again changes no core row
    from include.etlkit.totesys.transform import LOAD_ORDER

    # CASCADE takes the mart views built on these tables; totesys_load publishes them again.
    PostgresHook(postgres_conn_id="warehouse").run(
        [
            f"DROP TABLE IF EXISTS {schema}.{table} CASCADE"
            for schema in ("core", "landing")
            for table in LOAD_ORDER
        ]
    )


def _new_partner_drops() -> int:
    """How many dropped partner files are not landed yet: retail_drops' sensor waits for one.

    With none (a second ``make demo`` re-delivers the same files, which are already landed) the
    sensor would wait its whole window before skipping, so the demo says so and moves on instead.
    """
    from airflow.sdk import Variable

    from include.etlkit.pipelines import factory
    from include.etlkit.pipelines.config import load_pipeline
    from include.etlkit.pipelines.pipeline import DROP_KINDS

    config = load_pipeline("retail")
    new = 0
    for feed in config.feeds_of(*DROP_KINDS):
        sensor = factory.wait_for_drop(config, feed)
        sensor.drop_bucket = feed.option("drop_bucket") or Variable.get("ingestion_bucket")
        new += len(sensor.check()[0])
    return new


def _known_dags() -> set[str]:
    from include.etlkit.control.cli import dag_tasks

    return {dag_id for dag_id, _ in dag_tasks()}

# OpenLineage events of the demo's runs, when no transport is configured (README "Lineage").
LINEAGE_FILE = settings.STATE_DIR / "lineage" / "events.jsonl"
LINEAGE_SETTINGS = (
    "AIRFLOW__OPENLINEAGE__TRANSPORT",
    "AIRFLOW__OPENLINEAGE__CONFIG_PATH",
    "AIRFLOW__OPENLINEAGE__DISABLED",
    "OPENLINEAGE_URL",
    "OPENLINEAGE_CONFIG",
)


def _dag_environment() -> dict[str, str]:
    """The DAG runs' environment: OpenLineage's file transport into :data:`LINEAGE_FILE`, unless the
    caller configured lineage already (say ``AIRFLOW__OPENLINEAGE__TRANSPORT`` pointing at Marquez)."""
    env = dict(os.environ)
    if not any(env.get(name) for name in LINEAGE_SETTINGS):
        LINEAGE_FILE.parent.mkdir(parents=True, exist_ok=True)
        transport = {"type": "file", "log_file_path": str(LINEAGE_FILE), "append": True}
        env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport)
    env.setdefault("AIRFLOW__OPENLINEAGE__NAMESPACE", "etlkit-local")
    return env


def _lineage_summary() -> None:
    """Where the events went; for the local file, how many and the datasets they name."""
    if os.environ.get("AIRFLOW__OPENLINEAGE__DISABLED", "").lower() in ("true", "1"):
        print("  OpenLineage is disabled (AIRFLOW__OPENLINEAGE__DISABLED)")
        return
    if any(os.environ.get(name) for name in LINEAGE_SETTINGS):
        print("  sent where your OpenLineage settings say (AIRFLOW__OPENLINEAGE__TRANSPORT and the like)")
        return
    events = [json.loads(line) for line in LINEAGE_FILE.read_text().splitlines() if line.strip()]
    datasets: dict[str, set[str]] = {}
    for event in events:
        for dataset in [*event.get("inputs", []), *event.get("outputs", [])]:
            datasets.setdefault(dataset["namespace"], set()).add(dataset["name"])
    print(f"  {len(events)} events (file transport) in {LINEAGE_FILE}")
    for namespace, names in sorted(datasets.items()):
        print(f"    {namespace:<36} {len(names):>4} datasets, e.g. {sorted(names)[0]}")


def _run_dag(dag_id: str) -> None:
    print(f"\n=== airflow dags test {dag_id}", flush=True)
    log_path = settings.STATE_DIR / "logs" / f"demo-{dag_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", dag_id],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_dag_environment(),
        )
    failed = _failed_tasks(dag_id)
    if result.returncode != 0 or failed:
        print(f"{dag_id} failed ({', '.join(failed) or f'exit {result.returncode}'}); log: {log_path}")
        raise SystemExit(1)
    print(f"{dag_id}: success (log: {log_path})")


def _failed_tasks(dag_id: str) -> list[str]:
    from include.etlkit.control.store import ControlStore

    rows = ControlStore().latest_try_statuses(dag_id)
    return [task for task, status in rows if status in ("failed", "up_for_retry")]


def _print_section(title: str, body: Callable[[], None]) -> None:
    print(f"\n--- {title}")
    try:
        body()
    except Exception as exc:
        print(f"(could not read: {exc})")


def _warehouse_counts() -> None:
    from airflow.sdk import BaseHook

    schemas = ", ".join(f"'{s}'" for s in settings.WAREHOUSE_SCHEMAS)
    tables = _warehouse_query(
        "SELECT table_schema, table_name FROM information_schema.tables "
        f"WHERE table_schema IN ({schemas}) AND table_type = 'BASE TABLE' ORDER BY 1, 2"
    )
    if not tables:
        print("(no tables yet)")
    database = BaseHook.get_connection("warehouse").schema
    for schema, table in tables:
        count = _warehouse_query(f'SELECT count(*) FROM "{schema}"."{table}"')[0][0]
        print(f"  {database}.{schema}.{table:<28} {count:>8} rows")


def _bucket_counts() -> None:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook
    from airflow.sdk import Variable

    hook = S3Hook(aws_conn_id="aws_default")
    for variable in settings.BUCKETS:
        bucket = Variable.get(variable)
        keys = hook.list_keys(bucket_name=bucket) or []
        prefixes: dict[str, int] = {}
        for key in keys:
            prefix = "/".join(key.split("/")[:2])
            prefixes[prefix] = prefixes.get(prefix, 0) + 1
        print(f"  s3://{bucket}: {len(keys)} objects")
        for prefix, count in sorted(prefixes.items()):
            print(f"    {prefix}/  {count}")


def _retail_summary() -> None:
    from include.etlkit.control.file_status import FileStatusStore

    rows = FileStatusStore().summary("retail")
    print("  etl.file_status (per feed and status: files, rows read = loaded + rejected)")
    for dataset, status, files, read, loaded, rejected, reasons in rows:
        line = f"    {dataset:<18} {status:<22} {files:>3} files  read={read} loaded={loaded}"
        line += f" rejected={rejected}"
        print(line + (f"  ({reasons[:120]})" if reasons and rejected else ""))
    marts = (("customer_monthly", "total_sales_gbp DESC"), ("sales_team_monthly", "incentive_gbp DESC"))
    for mart, order in marts:
        print(f"  mart.{mart} (top 3 of {_warehouse_query(f'SELECT count(*) FROM mart.{mart}')[0][0]} rows)")
        for row in _warehouse_query(f"SELECT * FROM mart.{mart} ORDER BY {order} LIMIT 3"):
            print("    " + " | ".join(str(v) for v in row))


def _warehouse_query(query: str) -> list[tuple]:
    """Rows from the warehouse, on a cursor of its own: hook.get_records would log every statement
    between the figures the demo prints."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    with closing(PostgresHook(postgres_conn_id="warehouse").get_conn()) as conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def _task_log_summary() -> None:
    from include.etlkit.control.store import ControlStore

    rows = ControlStore().log_summary()
    for dag_id, status, tries, rows_in, rows_out, rejected in rows:
        counts = f"in={rows_in} out={rows_out} rejected={rejected}"
        print(f"  {dag_id:<22} {status:<10} {tries:>4} tries  {counts}")


def main() -> int:
    _seed_sources()
    for source in ("totesys", "retail"):
        _reset_if_s3_forgot(source)
    known = _known_dags()
    for dag_id in DEMO_DAGS:
        if dag_id == "retail_drops" and dag_id in known and not _new_partner_drops():
            print("\n=== retail_drops: every dropped partner file is landed already; its sensor would wait")
            continue
        if dag_id in known:
            _run_dag(dag_id)
    _print_section("warehouse tables (connection 'warehouse')", _warehouse_counts)
    s3_title = f"buckets (connection 'aws_default', local S3 at {settings.s3_endpoint()})"
    _print_section(s3_title, _bucket_counts)
    _print_section("retail: files and marts", _retail_summary)
    _print_section("etl.task_log (python -m include.etlkit.control log)", _task_log_summary)
    _print_section("lineage (OpenLineage events of every task: README, Lineage)", _lineage_summary)
    ui = f"http://127.0.0.1:{settings.UI_PORT}"
    print(
        "\nWhere to look next:\n"
        f"  Airflow UI:        make airflow ARGS=standalone   then {ui}\n"
        f"  dashboard:         {ui}/plugin/etl-dashboard (Browse → ETL dashboard; alone: "
        f"{ui}/etl-control/dashboard)\n"
        f"  control plane:     {ui}/plugin/etl-control (Admin → ETL control plane)\n"
        "  audit switches:    make control ARGS=list\n"
        "  recent task log:   make control ARGS=log\n"
        f"  lineage events:    {LINEAGE_FILE} (or Marquez: README, Lineage)\n"
        f"  service logs:      {settings.STATE_DIR / 'logs'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The totesys pipeline as configuration and task factories: what the three DAG files assemble.

``totesys_ingest`` lands new and changed rows of the 11 business tables (Asset ``totesys_landed``),
``totesys_transform`` models them into the star schemas (Asset ``totesys_processed``) and
``totesys_load`` merges them into the warehouse, checks it and publishes the marts.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.providers.common.sql.operators.sql import (
    SQLCheckOperator,
    SQLColumnCheckOperator,
    SQLExecuteQueryOperator,
    SQLTableCheckOperator,
)
from airflow.sdk import Asset, Variable, task, task_group
from airflow.timetables.interval import CronDataIntervalTimetable

from include.etlkit.dag_defaults import default_args as shared_default_args
from include.etlkit.extract.base import TableSpec
from include.etlkit.extract.postgres import PostgresTableExtractOperator
from include.etlkit.extract.reconcile import PostgresReconcileOperator
from include.etlkit.load.operators import LoadProcessedOperator
from include.etlkit.load.postgres import TableLoad
from include.etlkit.paths import SQL_DIR
from include.etlkit.storage import ImmutableStore
from include.etlkit.totesys import model
from include.etlkit.totesys.transform import FACTS, LOAD_ORDER
from include.etlkit.transform.operators import TransformLandedOperator

SOURCE = "totesys"
SOURCE_CONN_ID = "totesys"
WAREHOUSE_CONN_ID = "warehouse"
INGESTION_BUCKET = "{{ var.value.ingestion_bucket }}"
PROCESSED_BUCKET = "{{ var.value.processed_bucket }}"

START = datetime(2024, 11, 1, tzinfo=UTC)
INGEST_SCHEDULE = CronDataIntervalTimetable("*/30 * * * *", timezone="UTC")
RECONCILE_SCHEDULE = CronDataIntervalTimetable("15 2 * * *", timezone="UTC")
TEMPLATE_SEARCHPATH = [str(SQL_DIR / "postgres")]

LANDED = Asset(name="totesys_landed", uri="s3://ingestion/totesys", group="totesys")
PROCESSED = Asset(name="totesys_processed", uri="s3://processed/totesys", group="totesys")
WAREHOUSE = Asset(name="totesys_warehouse", group="totesys")

# The allow-list: the business tables, each with its key. Anything else in the source catalogue
# (``_prisma_migrations``, say) is ignored.
TABLES: tuple[TableSpec, ...] = (
    TableSpec("address", "address_id"),
    TableSpec("counterparty", "counterparty_id"),
    TableSpec("currency", "currency_id"),
    TableSpec("department", "department_id"),
    TableSpec("design", "design_id"),
    TableSpec("payment", "payment_id"),
    TableSpec("payment_type", "payment_type_id"),
    TableSpec("purchase_order", "purchase_order_id"),
    TableSpec("sales_order", "sales_order_id"),
    TableSpec("staff", "staff_id"),
    TableSpec("transaction", "transaction_id"),
)

_DIM_KEYS = {
    "dim_date": "date_id",
    "dim_currency": "currency_id",
    "dim_design": "design_id",
    "dim_location": "location_id",
    "dim_counterparty": "counterparty_id",
    "dim_staff": "staff_id",
    "dim_payment_type": "payment_type_id",
    "dim_transaction": "transaction_id",
}
_FACT_KEYS = {
    "fact_sales_order": ("sales_record_id", "sales_order_id"),
    "fact_purchase_order": ("purchase_record_id", "purchase_order_id"),
    "fact_payment": ("payment_record_id", "payment_id"),
}
TABLE_LOADS: tuple[TableLoad, ...] = tuple(
    TableLoad(name, (_FACT_KEYS[name][1], "row_hash"), "versions")
    if name in FACTS
    else TableLoad(name, (_DIM_KEYS[name],), "upsert")
    for name in LOAD_ORDER
)

# Foreign keys of the facts: (fact, column, dimension, dimension key).
FOREIGN_KEYS: tuple[tuple[str, str, str, str], ...] = (
    ("fact_sales_order", "sales_staff_id", "dim_staff", "staff_id"),
    ("fact_sales_order", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_sales_order", "currency_id", "dim_currency", "currency_id"),
    ("fact_sales_order", "design_id", "dim_design", "design_id"),
    ("fact_sales_order", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_sales_order", "created_date", "dim_date", "date_id"),
    ("fact_purchase_order", "staff_id", "dim_staff", "staff_id"),
    ("fact_purchase_order", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_purchase_order", "currency_id", "dim_currency", "currency_id"),
    ("fact_purchase_order", "agreed_delivery_location_id", "dim_location", "location_id"),
    ("fact_payment", "transaction_id", "dim_transaction", "transaction_id"),
    ("fact_payment", "counterparty_id", "dim_counterparty", "counterparty_id"),
    ("fact_payment", "currency_id", "dim_currency", "currency_id"),
    ("fact_payment", "payment_type_id", "dim_payment_type", "payment_type_id"),
)


def default_args() -> dict[str, Any]:
    return shared_default_args(retry_delay=timedelta(minutes=2))


# -- totesys_ingest -------------------------------------------------------------------------------


@task
def discover_tables() -> list[dict[str, str]]:
    """The allow-listed tables the source catalogue has; a missing one fails the run loudly."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    present = {
        name
        for (name,) in PostgresHook(postgres_conn_id=SOURCE_CONN_ID).get_records(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
    }
    missing = sorted(spec.name for spec in TABLES if spec.name not in present)
    if missing:
        raise LookupError(f"totesys tables missing from the source: {missing}")
    ignored = sorted(present - {spec.name for spec in TABLES})
    if ignored:
        print(f"not on the allow-list, ignored: {ignored}")
    return [asdict(spec) for spec in TABLES]


def _per_table(operator: type[PostgresTableExtractOperator], task_id: str, tables: Any) -> Any:
    """One mapped task per table; returns their results (what each landed) for the manifest."""
    return (
        operator.partial(
            task_id=task_id,
            source=SOURCE,
            conn_id=SOURCE_CONN_ID,
            bucket=INGESTION_BUCKET,
            map_index_template="{{ task.table['name'] }}",
        )
        .expand(table=tables)
        .output
    )


def land_tables(tables: Any) -> Any:
    """Land each table's new and changed rows."""
    return _per_table(PostgresTableExtractOperator, "land_table", tables)


@task(outlets=[LANDED])
def write_manifest(landed: list[dict[str, Any]], **context: Any) -> str:
    """One immutable manifest per run: tables, keys, row counts, windows."""
    manifest = {
        "source": SOURCE,
        "run_id": context["run_id"],
        "data_interval_start": context["data_interval_start"].isoformat(),
        "data_interval_end": context["data_interval_end"].isoformat(),
        "tables": sorted(landed, key=lambda entry: entry["table"]),
        "rows": sum(entry["rows"] for entry in landed),
    }
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    prefix = f"{SOURCE}/_manifests/{context['data_interval_end']:%Y/%m/%d}"
    stored = ImmutableStore().create_bytes(
        Variable.get("ingestion_bucket"), prefix, "manifest", body, ".json"
    )
    return stored.uri


def reconcile_tables(tables: Any) -> Any:
    """Land each table's rows whose hash changed without their ``last_updated``."""
    return _per_table(PostgresReconcileOperator, "reconcile_table", tables)


# -- totesys_transform ----------------------------------------------------------------------------


def transform_landed() -> TransformLandedOperator:
    """The models of ``include/config/totesys.yaml`` over everything landed and not yet transformed."""
    return TransformLandedOperator(
        task_id="transform_landed",
        source=SOURCE,
        models=model.models(),
        targets=model.TARGETS,
        bucket=PROCESSED_BUCKET,
        outlets=[PROCESSED],
    )


# -- totesys_load ---------------------------------------------------------------------------------


def ensure_core_tables() -> SQLExecuteQueryOperator:
    return SQLExecuteQueryOperator(
        task_id="ensure_core_tables", conn_id=WAREHOUSE_CONN_ID, sql="totesys/core.sql"
    )


def load_processed() -> LoadProcessedOperator:
    return LoadProcessedOperator(
        task_id="load_processed", source=SOURCE, tables=TABLE_LOADS, conn_id=WAREHOUSE_CONN_ID
    )


@task_group(group_id="quality_checks")
def quality_checks() -> None:
    """Keys unique and not null, foreign keys resolve, facts reconcile with what was landed."""
    for name, key in _DIM_KEYS.items():
        SQLColumnCheckOperator(
            task_id=f"keys_{name}",
            conn_id=WAREHOUSE_CONN_ID,
            table=f"core.{name}",
            column_mapping={key: {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}}},
        )
    for name, (record_id, _source_id) in _FACT_KEYS.items():
        SQLColumnCheckOperator(
            task_id=f"keys_{name}",
            conn_id=WAREHOUSE_CONN_ID,
            table=f"core.{name}",
            column_mapping={record_id: {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}}},
        )
    for fact in _FACT_KEYS:
        SQLTableCheckOperator(
            task_id=f"foreign_keys_{fact}",
            conn_id=WAREHOUSE_CONN_ID,
            table=f"core.{fact}",
            checks={
                f"{column}_in_{dim}": {
                    "check_statement": f"{column} IS NULL OR {column} IN (SELECT {key} FROM core.{dim})"
                }
                for fact_name, column, dim, key in FOREIGN_KEYS
                if fact_name == fact
            },
        )
    for fact, (_record_id, source_id) in _FACT_KEYS.items():
        # Every distinct version that was ever landed is exactly one fact row.
        SQLCheckOperator(
            task_id=f"reconcile_{fact}",
            conn_id=WAREHOUSE_CONN_ID,
            sql=f"SELECT (SELECT count(*) FROM core.{fact}) = "
            f"(SELECT count(*) FROM (SELECT DISTINCT {source_id}, row_hash FROM landing.{fact}) AS v)",
        )


def publish_marts() -> SQLExecuteQueryOperator:
    return SQLExecuteQueryOperator(
        task_id="publish_marts", conn_id=WAREHOUSE_CONN_ID, sql="totesys/marts.sql", outlets=[WAREHOUSE]
    )

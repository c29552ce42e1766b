"""The retail pipeline as the four DAG files assemble it, from ``include/config/retail.yaml``.

``retail_ingest`` (hourly) lands the MySQL tables, the rates API listing and the FTP sales files;
``retail_drops`` waits (deferrably) for partner files in S3 and lands them. Both publish
``retail_landed``, which wakes ``retail_transform``: every landed file is validated against its feed's
schema (bad rows quarantined, files missing columns to the error prefix) and the valid rows written
as Parquet (``retail_processed``). ``retail_load`` merges them into the star schema, unifies partner
customers with the known ones, checks the result and publishes the marts (``retail_warehouse``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLCheckOperator
from airflow.sdk import Asset, BaseOperator, task, task_group
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable

from include.etlkit.control.ledger import Ledger
from include.etlkit.dag_defaults import default_args as shared_default_args
from include.etlkit.load.operators import WarehouseScriptOperator
from include.etlkit.load.warehouse import WAREHOUSE_CONN_ID
from include.etlkit.pipelines import factory
from include.etlkit.pipelines.config import load_pipeline
from include.etlkit.retail.customers import UnifyCustomersOperator

CONFIG = load_pipeline("retail")
SOURCE = CONFIG.source
START = CONFIG.start
INGEST_SCHEDULE = CronDataIntervalTimetable(CONFIG.ingest_schedule, timezone="UTC")
DROPS_SCHEDULE = CronDataIntervalTimetable(CONFIG.drops_schedule, timezone="UTC")
# The load DAG's SQL is per dialect (sql/<dialect>/), chosen when its tasks run: no searchpath.
TEMPLATE_SEARCHPATH: list[str] = []

LANDED = Asset(name="retail_landed", uri="s3://ingestion/retail", group="retail")
PROCESSED = Asset(name="retail_processed", uri="s3://processed/retail", group="retail")
WAREHOUSE = Asset(name="retail_warehouse", group="retail")

DROP_KINDS = ("s3_drop",)
SCHEDULED_KINDS = ("mysql", "http", "ftp")


def default_args() -> dict[str, Any]:
    return shared_default_args(retry_delay=timedelta(minutes=2))


# -- retail_ingest / retail_drops -----------------------------------------------------------------


def land_scheduled_feeds() -> list[BaseOperator]:
    """One extract task per MySQL table, API listing and FTP feed of the configuration."""
    return [factory.extract(CONFIG, feed) for feed in CONFIG.feeds_of(*SCHEDULED_KINDS)]


def land_dropped_feeds() -> list[BaseOperator]:
    """Per S3 drop feed: a deferrable wait for a file not landed yet, then its landing."""
    landed = []
    for feed in CONFIG.feeds_of(*DROP_KINDS):
        land = factory.extract(CONFIG, feed)
        (
            factory.wait_for_drop(
                CONFIG, feed, timeout=int(timedelta(minutes=14).total_seconds()), soft_fail=True
            )
            >> land
        )
        landed.append(land)
    return landed


@task(outlets=[LANDED], trigger_rule="all_done")
def announce_landed() -> int:
    """Publish ``retail_landed`` when anything waits for the transform, whatever the extracts did.

    ``all_done``: one feed failing (the API down, say) must not hold back what the others landed;
    the failed extract still fails the run and alerts. With nothing waiting the task skips, and
    a skipped task publishes no Asset event.
    """
    pending = Ledger().pending_landed(SOURCE)
    if not pending:
        raise AirflowSkipException(f"nothing of {SOURCE} waits for retail_transform")
    print(f"{len(pending)} landed object(s) of {SOURCE} wait for retail_transform")
    return len(pending)


# -- retail_transform ------------------------------------------------------------------------------


def validate_landed() -> BaseOperator:
    return factory.validate(CONFIG, outlets=[PROCESSED])


# -- retail_load -----------------------------------------------------------------------------------


def ensure_core_tables() -> WarehouseScriptOperator:
    return WarehouseScriptOperator(
        task_id="ensure_core_tables", scripts=["retail/core.sql", "retail/dedup.sql"]
    )


def load_processed() -> BaseOperator:
    return factory.load(CONFIG, conn_id=WAREHOUSE_CONN_ID)


def unify_customers() -> UnifyCustomersOperator:
    thresholds = CONFIG.settings.get("customer_matching", {})
    return UnifyCustomersOperator(task_id="unify_customers", **thresholds)


def add_sale_dates() -> WarehouseScriptOperator:
    """Every date a sale falls on gets its row in the conformed ``core.dim_date``."""
    return WarehouseScriptOperator(task_id="add_sale_dates", scripts="retail/dim_date.sql")


# (check name, SQL that is true when the warehouse is right)
CHECKS: tuple[tuple[str, str], ...] = (
    (
        "sales_have_stores",
        "SELECT count(*) = 0 FROM core.fact_sale s "
        "WHERE NOT EXISTS (SELECT 1 FROM core.dim_store d WHERE d.store_id = s.store_id)",
    ),
    (
        "sales_have_products",
        "SELECT count(*) = 0 FROM core.fact_sale s "
        "WHERE NOT EXISTS (SELECT 1 FROM core.dim_product d WHERE d.product_id = s.product_id)",
    ),
    (
        "sales_have_customers",
        "SELECT count(*) = 0 FROM core.fact_sale s WHERE s.customer_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM core.dim_customer d WHERE d.customer_id = s.customer_id)",
    ),
    (
        "sales_have_sales_people",
        "SELECT count(*) = 0 FROM core.fact_sale s WHERE s.sales_person_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM core.dim_sales_person d WHERE d.sales_person_id = s.sales_person_id)",
    ),
    (
        "sales_have_dates",
        "SELECT count(*) = 0 FROM core.fact_sale s "
        "WHERE NOT EXISTS (SELECT 1 FROM core.dim_date d WHERE d.date_id = s.sold_at::date)",
    ),
    (
        "sales_have_gbp_rates",
        "SELECT count(*) = 0 FROM core.fact_sale s WHERE s.currency <> 'GBP' "
        "AND NOT EXISTS (SELECT 1 FROM core.exchange_rate x "
        "WHERE x.currency = s.currency AND x.date <= s.sold_at::date)",
    ),
    (
        "partner_customers_linked_or_in_review",
        "SELECT count(*) = 0 FROM core.partner_customer p "
        "WHERE NOT EXISTS (SELECT 1 FROM core.customer_xref x "
        "WHERE x.source = p.partner AND x.source_customer_ref = p.partner_customer_ref) "
        "AND NOT EXISTS (SELECT 1 FROM core.customer_match_review r "
        "WHERE r.partner = p.partner AND r.partner_customer_ref = p.partner_customer_ref)",
    ),
)


@task_group(group_id="quality_checks")
def quality_checks() -> None:
    """References resolve, every sale can be priced in GBP, every partner record is decided."""
    for name, check in CHECKS:
        SQLCheckOperator(task_id=name, conn_id=WAREHOUSE_CONN_ID, sql=check)


def publish_marts() -> WarehouseScriptOperator:
    return WarehouseScriptOperator(task_id="publish_marts", scripts="retail/marts.sql", outlets=[WAREHOUSE])

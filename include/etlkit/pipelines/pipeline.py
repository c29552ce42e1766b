"""A declared pipeline as its DAG files assemble it: schedules, Assets and the tasks of each DAG.

Every source is ``include/config/<source>.yaml`` (its feeds, models or schemas, warehouse steps and
checks) plus its SQL; :func:`pipeline` turns that declaration into the tasks of the source's DAGs,
the same way for every source:

- ``<source>_ingest`` lands the scheduled feeds (database tables, API listings, FTP files) and
  ``<source>_drops`` the S3 drops, each feed its own task; ``<source>_reconcile`` (when feeds ask for
  it) lands rows that changed without moving their cursor. Each ends with ``announce_landed``, which
  writes the run's manifest and publishes ``<source>_landed``.
- ``<source>_transform`` validates every landed file against its feed's schema, or builds the
  pipeline's models from what landed, and publishes ``<source>_processed``.
- ``<source>_load`` creates the warehouse tables, merges every processed object, runs the declared
  steps and checks, and publishes the marts (``<source>_warehouse``).

An Asset event only wakes a DAG: each step takes everything the control plane says is waiting, so
a manual run, a retry or a backfill does the right thing too. Nothing here touches a connection, a
Variable or the network while a DAG file is parsed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator, TaskGroup
from airflow.sdk.exceptions import AirflowSkipException
from airflow.timetables.interval import CronDataIntervalTimetable

from include.etlkit.dag_defaults import default_args as shared_default_args
from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import ReportsLineage, s3_dataset
from include.etlkit.load.warehouse import WAREHOUSE_CONN_ID
from include.etlkit.pipelines import events, factory
from include.etlkit.pipelines.config import PipelineConfig, load_pipeline
from include.etlkit.pipelines.models import Model
from include.etlkit.run_params import RunOnlyRequestedFeed, ingest_params

if TYPE_CHECKING:
    from airflow.providers.common.sql.operators import sql as sql_checks

    from include.etlkit.load import operators as load_operators
else:  # the load DAG's operators, imported when a load DAG builds them (DAG parse time, issue 11)
    sql_checks = lazy_module("airflow.providers.common.sql.operators.sql")
    load_operators = lazy_module("include.etlkit.load.operators")

DROP_KINDS = ("s3_drop",)


def asset_bucket(variable: str, default: str) -> str:
    """The bucket an Asset URI names: ``[etlkit] <variable>`` of Airflow's configuration, else ``default``.

    The bucket Variables are read when tasks run (from Secrets Manager on MWAA), never while a DAG
    file is parsed, so the Asset takes its bucket from configuration, which Terraform sets on MWAA
    beside the Variable (``airflow_configuration_options``). Without it the URI keeps the logical
    name: Airflow 3 deactivates an Asset whose name moves to another URI until every DAG using it
    is parsed again, so the URI must not follow a Variable that a test module or a person changes
    for one run; the tasks' OpenLineage events name the buckets in force in any case.
    """
    from airflow.sdk.configuration import conf

    return conf.get("etlkit", variable, fallback=None) or default


class Pipeline:
    """The tasks of one declared source's DAGs (see the module docstring for the DAGs they make)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.source = config.source
        self.start = config.start
        self.ingest_schedule = CronDataIntervalTimetable(config.ingest_schedule, timezone="UTC")
        self.reconcile_schedule = (
            CronDataIntervalTimetable(config.reconcile_schedule, timezone="UTC")
            if config.reconcile_schedule
            else None
        )
        # On MWAA the URIs name the real buckets (see asset_bucket); the names are what DAGs schedule on.
        self.landed = Asset(
            name=f"{self.source}_landed",
            uri=f"s3://{asset_bucket('ingestion_bucket', 'ingestion')}/{self.source}",
            group=self.source,
        )
        self.processed = Asset(
            name=f"{self.source}_processed",
            uri=f"s3://{asset_bucket('processed_bucket', 'processed')}/{self.source}",
            group=self.source,
        )
        self.warehouse = Asset(name=f"{self.source}_warehouse", group=self.source)
        # The load's SQL is per dialect (sql/<dialect>/), read when its tasks run: no searchpath.
        self.template_searchpath: list[str] = []

    @property
    def drops_schedule(self) -> Any:
        """The cron; or the cron or an S3 arrival announced through SQS, when a drop feed says
        ``events`` and its queue is configured. Built at each parse (the pipeline is cached per
        process), so it follows the environment the DAG file is parsed in."""
        return events.drops_schedule(self.config)

    @staticmethod
    def default_args() -> dict[str, Any]:
        return shared_default_args(retry_delay=timedelta(minutes=2))

    # -- ingest, drops, reconcile ---------------------------------------------------------------

    def ingest_params(self) -> dict[str, Any]:
        """The ingest DAG's Params: ``tables``, ``full_refresh``, ``since`` (see ``run_params``)."""
        return ingest_params([feed.name for feed in self.config.feeds if feed.kind not in DROP_KINDS])

    def land_scheduled_feeds(self) -> list[BaseOperator]:
        """One extract task per feed that is fetched on a schedule (tables, API listings, FTP).

        Each skips itself when the run's ``tables`` Param names other feeds.
        """
        return [
            factory.extract(self.config, feed, pre_execute=RunOnlyRequestedFeed(feed.name))
            for feed in self.config.feeds
            if feed.kind not in DROP_KINDS
        ]

    def land_dropped_feeds(self) -> list[BaseOperator]:
        """Per S3 drop feed: a deferrable wait for a file not landed yet, then its landing."""
        landed = []
        for feed in self.config.feeds_of(*DROP_KINDS):
            land = factory.extract(self.config, feed)
            wait = factory.wait_for_drop(
                self.config, feed, timeout=int(timedelta(minutes=14).total_seconds()), soft_fail=True
            )
            wait >> land
            landed.append(land)
        return landed

    def reconcile_feeds(self) -> list[BaseOperator]:
        """One reconciliation task per feed that declares ``reconcile: true``."""
        return [factory.reconcile(self.config, feed) for feed in self.config.reconciled_feeds]

    def announce_landed(self) -> BaseOperator:
        """Write the run's manifest and publish ``<source>_landed`` when anything waits for the transform.

        ``all_done``: one feed failing (an API down, say) must not hold back what the others landed;
        the failed extract still fails the run and alerts. With nothing waiting the task skips, and a
        skipped task publishes no Asset event.
        """
        return AnnounceLandedOperator(
            task_id="announce_landed",
            source=self.source,
            asset=self.landed,
            bucket=factory.INGESTION_BUCKET,
            outlets=[self.landed],
            trigger_rule="all_done",
        )

    # -- transform ------------------------------------------------------------------------------

    def transform_landed(self) -> BaseOperator:
        """Model what landed (``models``) or validate each landed file against its feed's schema."""
        if self.config.models:
            return factory.transform(self.config, outlets=[self.processed])
        return factory.validate(self.config, outlets=[self.processed])

    # -- load -----------------------------------------------------------------------------------

    # Every load task works on the warehouse the ``warehouse_conn_id`` Variable names when it runs:
    # scripts come from ``sql/<dialect>/`` of that warehouse, checks are portable SQL.

    def ensure_core_tables(self) -> BaseOperator:
        return load_operators.WarehouseScriptOperator(
            task_id="ensure_core_tables", scripts=list(self.config.warehouse.ddl)
        )

    def load_processed(self) -> BaseOperator:
        return factory.load(self.config)

    def after_load(self) -> list[BaseOperator]:
        """The declared SQL steps that follow the merge, one task each (the DAG file chains them)."""
        return [
            load_operators.WarehouseScriptOperator(task_id=task_id, scripts=script)
            for task_id, script in self.config.warehouse.after_load
        ]

    def quality_checks(self) -> TaskGroup:
        """Keys unique and not null, references resolve, facts match what landed, declared checks pass."""
        with TaskGroup(group_id="quality_checks") as group:
            for model in self.config.models:
                _key_check(model)
                if model.foreign_keys:
                    _foreign_key_check(model)
                if model.load.merge == "versions":
                    _versions_check(model)
            for name, check in self.config.checks.items():
                sql_checks.SQLCheckOperator(task_id=name, conn_id=WAREHOUSE_CONN_ID, sql=check)
        return group

    def publish_marts(self) -> BaseOperator:
        return load_operators.WarehouseScriptOperator(
            task_id="publish_marts", scripts=self.config.warehouse.marts, outlets=[self.warehouse]
        )


class AnnounceLandedOperator(ReportsLineage, BaseOperator):
    """Write the run's manifest of what its extracts landed, and tag the ``<source>_landed`` event.

    Skips when nothing of the source waits for its transform. Lineage: the source's landed data in
    the ingestion bucket in force (``s3://<bucket>/<source>``, with the rows and objects waiting),
    whatever bucket the Asset's URI names, in; the manifest (``<source>/_manifests``) out.

    :param source: the ledger's source name.
    :param asset: the Asset the task publishes (one of its outlets), whose event gets the counts.
    :param bucket: the ingestion bucket (templated).
    """

    template_fields: Sequence[str] = ("bucket",)

    def __init__(self, *, source: str, asset: Asset, bucket: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.asset = asset
        self.bucket = bucket

    def execute(self, context: Any) -> str:
        # Imported when the task runs: a DAG file's parse needs none of them (issue 11).
        from include.etlkit.control.ledger import Ledger
        from include.etlkit.storage import ImmutableStore
        from include.etlkit.windows import run_interval

        source = self.source
        pending = Ledger().pending_landed(source)
        if not pending:
            raise AirflowSkipException(f"nothing of {source} waits for {source}_transform")
        upstream = sorted(self.upstream_task_ids)
        results = context["ti"].xcom_pull(task_ids=upstream) if upstream else []
        start, end = run_interval(context)
        manifest = {
            "source": source,
            "run_id": context["run_id"],
            "data_interval_start": start.isoformat() if start else None,
            "data_interval_end": end.isoformat(),
            "landed": [result for result in results or () if result],
            "pending": len(pending),
        }
        body = json.dumps(manifest, indent=2, sort_keys=True, default=str).encode()
        stored = ImmutableStore().create_bytes(
            self.bucket, f"{source}/_manifests/{end:%Y/%m/%d}", "manifest", body, ".json"
        )
        print(f"{len(pending)} landed object(s) of {source} wait for {source}_transform; {stored.uri}")
        rows = sum(obj.rows for obj in pending)
        # What the event brings, on the Asset's page and for the DAGs it wakes.
        context["outlet_events"][self.asset].extra.update(
            {"objects": len(pending), "rows": rows, "manifest": stored.uri}
        )
        self.lineage.read(s3_dataset(self.bucket, source), rows=rows, files=len(pending))
        self.lineage.wrote_object(stored, rows=None)
        return stored.uri


def _key_check(model: Model) -> BaseOperator:
    """The key (a fact's record id) has no NULL and no duplicate."""
    table = f"core.{model.name}"
    columns = (model.record_id,) if model.record_id else model.load.key
    if len(columns) == 1:
        return sql_checks.SQLColumnCheckOperator(
            task_id=f"keys_{model.name}",
            conn_id=WAREHOUSE_CONN_ID,
            table=table,
            column_mapping={columns[0]: {"null_check": {"equal_to": 0}, "unique_check": {"equal_to": 0}}},
        )
    key = ", ".join(columns)
    return sql_checks.SQLCheckOperator(
        task_id=f"keys_{model.name}",
        conn_id=WAREHOUSE_CONN_ID,
        sql=f"SELECT count(*) = 0 FROM (SELECT {key} FROM {table} GROUP BY {key} HAVING count(*) > 1) AS d",
    )


def _foreign_key_check(model: Model) -> BaseOperator:
    return sql_checks.SQLTableCheckOperator(
        task_id=f"foreign_keys_{model.name}",
        conn_id=WAREHOUSE_CONN_ID,
        table=f"core.{model.name}",
        checks={
            f"{ref.column}_in_{ref.table}": {
                "check_statement": f"{ref.column} IS NULL "
                f"OR {ref.column} IN (SELECT {ref.key} FROM core.{ref.table})"
            }
            for ref in model.foreign_keys
        },
    )


def _versions_check(model: Model) -> BaseOperator:
    """Every distinct version that was ever landed is exactly one row of the table (deletion
    versions, which the warehouse adds for rows deleted in the source, apart)."""
    key = ", ".join(model.load.key)
    return sql_checks.SQLCheckOperator(
        task_id=f"reconcile_{model.name}",
        conn_id=WAREHOUSE_CONN_ID,
        sql=f"SELECT (SELECT count(*) FROM core.{model.name} WHERE deleted_at IS NULL) = "
        f"(SELECT count(*) FROM (SELECT DISTINCT {key} FROM landing.{model.name}) AS v)",
    )


@functools.cache
def pipeline(name: str) -> Pipeline:
    """The pipeline declared in ``include/config/<name>.yaml`` (read once per process)."""
    return Pipeline(load_pipeline(name))

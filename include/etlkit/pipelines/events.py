"""S3 drops woken by their arrivals: S3 event notifications → SQS → an ``AssetWatcher``.

A feed of kind ``s3_drop`` may declare ``events: {queue_url: ...}``: the drop's bucket sends an
``s3:ObjectCreated:*`` notification for the drop prefix to that SQS queue (``infra/terraform/events.tf``),
and the triggerer watches the queue with the common-messaging provider's ``MessageQueueTrigger``
(``scheme="sqs"``, the amazon provider's ``SqsSensorTrigger`` underneath: long polling, messages
deleted once received). Each batch of messages becomes an event of the feed's arrivals Asset,
``<source>_<feed>_arrivals``, and the drops DAG, scheduled ``AssetOrTimeSchedule`` (its cron polling
stays as the fallback), runs for it.

An event only wakes the DAG; it does not define the work. The run lists the drop and lands what the
ledger (``etl.source_file``) says is not landed, so a duplicated message lands nothing twice, a lost
one is taken by the next run (event or cron), and messages arriving out of order change nothing.

The queue's URL is not a secret but differs per environment, so the YAML may name an environment
variable, ``${AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL}``: on MWAA the Airflow configuration option
``etlkit.retail_drops_queue_url`` (set by Terraform) is exported as that variable to every component.
It is read when the DAG file is parsed (an environment lookup: no I/O). Unset or empty, the feed has
no watcher and its DAG polls on its cron alone, as it does locally by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from include.etlkit.pipelines.config import ENV_REFERENCE, Feed, PipelineConfig

# Long polling: one ReceiveMessage call waits up to 20 s (SQS's maximum) for a message, so an
# arrival wakes the DAG within seconds at a few calls a minute.
DEFAULT_WAIT_TIME_SECONDS = 20
# Seconds between two ReceiveMessage calls that found nothing.
DEFAULT_WAITER_DELAY = 5
MAX_MESSAGES = 10  # SQS's maximum per call; one Asset event per batch


def queue_url(feed: Feed, environ: Mapping[str, str] | None = None) -> str | None:
    """The SQS queue the feed's arrivals are announced on, or None (no ``events``, or unset)."""
    events = feed.option("events")
    if not events:
        return None
    declared = str(events["queue_url"])
    reference = ENV_REFERENCE.fullmatch(declared)
    if reference is None:
        return declared
    value = (os.environ if environ is None else environ).get(reference["name"], "").strip()
    return value or None


def arrivals_asset_name(config: PipelineConfig, feed: Feed) -> str:
    return f"{config.source}_{feed.name}_arrivals"


def arrival_watcher_trigger(url: str, events: Mapping[str, Any]) -> Any:
    """The common-messaging trigger that watches ``url`` (imported here: only for feeds with events)."""
    from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

    return MessageQueueTrigger(
        scheme="sqs",
        sqs_queue=url,
        aws_conn_id=events.get("aws_conn_id", "aws_default"),
        max_messages=MAX_MESSAGES,
        wait_time_seconds=events.get("wait_time_seconds", DEFAULT_WAIT_TIME_SECONDS),
        waiter_delay=events.get("waiter_delay", DEFAULT_WAITER_DELAY),
    )


def arrivals(config: PipelineConfig, environ: Mapping[str, str] | None = None) -> list[Any]:
    """One watched Asset per drop feed whose ``events`` queue is configured here."""
    from airflow.sdk import Asset, AssetWatcher

    assets = []
    for feed in config.feeds_of("s3_drop"):
        url = queue_url(feed, environ)
        if url is None:
            continue
        name = arrivals_asset_name(config, feed)
        trigger = arrival_watcher_trigger(url, feed.option("events"))
        watcher = AssetWatcher(name=f"{name}_sqs", trigger=trigger)
        assets.append(Asset(name=name, group=config.source, watchers=[watcher]))
    return assets


def drops_schedule(config: PipelineConfig, environ: Mapping[str, str] | None = None) -> Any:
    """The drops DAG's schedule: its cron, or, when a feed's arrivals are watched, the cron *or* any
    arrival (``AssetOrTimeSchedule``): the polling stays as the fallback for lost events."""
    watched = arrivals(config, environ)
    if not watched:
        from airflow.timetables.interval import CronDataIntervalTimetable

        return CronDataIntervalTimetable(config.drops_schedule, timezone="UTC")
    from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronDataIntervalTimetable

    return AssetOrTimeSchedule(
        timetable=CronDataIntervalTimetable(config.drops_schedule, timezone="UTC"),
        assets=AssetAny(*watched),
    )

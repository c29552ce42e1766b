"""Event-driven S3 drops and their bounded listing, without servers: the YAML options, the watcher
and schedule they give the drops DAG, the high-water mark's rules and the sensor's event-run wait.

The same paths against moto's S3 and SQS and the control database: tests/integration/test_drop_events.py.
"""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from include.etlkit.extract.s3_drop import (
    DropObject,
    ListingBound,
    S3DropExtractOperator,
    listing_bound,
    next_listing_mark,
)
from include.etlkit.pipelines import events, factory
from include.etlkit.pipelines.config import PipelineConfigError, load_pipeline, parse_pipeline
from include.etlkit.sensors.s3_drop import S3DropSensor

QUEUE = "https://sqs.eu-west-2.amazonaws.com/123456789012/shop-drops"
DROPS = textwrap.dedent(
    """
    source: shop
    start: 2024-11-01
    ingest_schedule: "@hourly"
    drops_schedule: "*/15 * * * *"
    feeds:
      returns:
        kind: s3_drop
        drop_prefix: drops/returns/
        settle_seconds: 30
        OPTIONS
        load: {table: returns, key: [ref], merge: upsert}
        schema:
          columns:
            - {name: ref, type: string}
    """
)


def drops(options: str = "") -> str:
    return DROPS.replace("OPTIONS", options)


def remote(key: str, modified: datetime) -> DropObject:
    return DropObject(path=f"s3://b/{key}", size=1, modified_at=modified, etag="e")


# -- the YAML options ---------------------------------------------------------------------------------


def test_an_s3_drop_may_declare_events_and_a_bounded_listing():
    config = parse_pipeline(
        drops(
            'listing: {margin_hours: 6, date_folders: "%Y/%m/%d"}\n'
            '    events: {queue_url: "${SHOP_DROPS_QUEUE}", wait_time_seconds: 10}'
        )
    )
    (feed,) = config.feeds
    assert feed.option("listing") == {"margin_hours": 6, "date_folders": "%Y/%m/%d"}
    assert feed.option("events") == {"queue_url": "${SHOP_DROPS_QUEUE}", "wait_time_seconds": 10}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("events: {queue: x}", "events needs queue_url"),
        ("events: {queue_url: sqs-drops}", "must be an SQS queue URL"),
        ('events: {queue_url: "$SHOP_QUEUE"}', "must be an SQS queue URL"),
        (f"events: {{queue_url: {QUEUE}, waiter_delay: -1}}", "events.waiter_delay must be a whole number"),
        (f"events: {{queue_url: {QUEUE}, colour: blue}}", "events needs queue_url and may say"),
        ("listing: {margin_hours: 0}", "listing.margin_hours must be a number > 0"),
        ("listing: {since: yesterday}", "listing may only say"),
        ('listing: {date_folders: "%d/%m/%Y"}', "must be a strftime format that sorts by date"),
        ('listing: {date_folders: "incoming"}', "must be a strftime format that sorts by date"),
    ],
)
def test_event_and_listing_mistakes_fail_at_parse_time_naming_the_feed(options, message):
    with pytest.raises(PipelineConfigError, match="feed 'returns'") as caught:
        parse_pipeline(drops(options))
    assert message in str(caught.value)


def test_only_an_s3_drop_may_say_events():
    text = textwrap.dedent(
        f"""
        source: shop
        start: 2024-11-01
        ingest_schedule: "@hourly"
        feeds:
          orders:
            kind: ftp
            conn_id: ftp_drop
            remote_dir: /orders
            pattern: "*.csv"
            events: {{queue_url: {QUEUE}}}
            load: {{table: orders, key: [id], merge: upsert}}
            schema: {{columns: [{{name: id, type: int}}]}}
        """
    )
    with pytest.raises(PipelineConfigError, match=r"unknown \['events'\]"):
        parse_pipeline(text)


def test_the_sensor_and_the_extract_of_a_feed_share_its_bounded_listing():
    config = parse_pipeline(drops('listing: {date_folders: "dt=%Y-%m-%d"}'))
    (feed,) = config.feeds
    land, wait = factory.extract(config, feed), factory.wait_for_drop(config, feed)
    for task in (land, wait):
        assert (task.listing_margin_hours, task.date_folders) == (24, "dt=%Y-%m-%d")  # the default margin
    plain = parse_pipeline(drops())
    assert factory.extract(plain, plain.feeds[0]).listing_margin_hours is None  # whole prefix, as before


# -- the watcher and the schedule ----------------------------------------------------------------------


def test_a_feed_with_events_gets_an_sqs_asset_watcher_and_the_dag_polls_as_a_fallback():
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
    from airflow.sdk import AssetOrTimeSchedule

    config = parse_pipeline(drops('events: {queue_url: "${SHOP_DROPS_QUEUE}", aws_conn_id: partner_aws}'))
    schedule = events.drops_schedule(config, environ={"SHOP_DROPS_QUEUE": QUEUE})

    assert isinstance(schedule, AssetOrTimeSchedule)
    assert schedule.timetable.expression == "*/15 * * * *"  # the cron polling stays
    (asset,) = schedule.asset_condition.objects
    assert asset.name == "shop_returns_arrivals" and asset.group == "shop"
    (watcher,) = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()  # what the triggerer will run
    assert classpath == f"{SqsSensorTrigger.__module__}.{SqsSensorTrigger.__qualname__}"
    assert kwargs["sqs_queue"] == QUEUE and kwargs["aws_conn_id"] == "partner_aws"
    assert kwargs["delete_message_on_reception"] is True
    assert kwargs["wait_time_seconds"] == events.DEFAULT_WAIT_TIME_SECONDS  # long polling
    assert kwargs["max_messages"] == 10


@pytest.mark.parametrize("environ", [{}, {"SHOP_DROPS_QUEUE": "  "}])
def test_an_unset_queue_leaves_the_dag_on_its_cron_alone(environ):
    from airflow.timetables.interval import CronDataIntervalTimetable

    config = parse_pipeline(drops('events: {queue_url: "${SHOP_DROPS_QUEUE}"}'))
    assert events.arrivals(config, environ) == []
    schedule = events.drops_schedule(config, environ)
    assert isinstance(schedule, CronDataIntervalTimetable) and schedule._expression == "*/15 * * * *"


def test_a_literal_queue_url_needs_no_environment():
    config = parse_pipeline(drops(f"events: {{queue_url: {QUEUE}}}"))
    assert events.queue_url(config.feeds[0], environ={}) == QUEUE


def test_retail_drops_is_woken_by_arrivals_where_its_queue_is_configured(monkeypatch):
    from airflow.sdk import AssetOrTimeSchedule

    from include.etlkit.pipelines.pipeline import pipeline

    retail = pipeline("retail")
    monkeypatch.delenv("AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL", raising=False)
    assert not isinstance(retail.drops_schedule, AssetOrTimeSchedule)
    monkeypatch.setenv("AIRFLOW__ETLKIT__RETAIL_DROPS_QUEUE_URL", QUEUE)
    schedule = retail.drops_schedule  # read at each parse, though the pipeline is cached
    assert isinstance(schedule, AssetOrTimeSchedule)
    assert [a.name for a in schedule.asset_condition.objects] == ["retail_partner_customers_arrivals"]
    feed = load_pipeline("retail").feed("partner_customers")
    assert feed.option("listing") == {"margin_hours": 24}


# -- the high-water mark --------------------------------------------------------------------------------

T = datetime(2024, 11, 15, 10, 0, 0)


def test_without_a_mark_or_a_margin_the_whole_prefix_is_listed():
    assert listing_bound(None, 24) == ListingBound()
    assert listing_bound(T, None) == ListingBound()
    assert ListingBound().start_after("drops/") is None
    assert ListingBound().admits(remote("drops/old.csv", datetime(2000, 1, 1)))


def test_the_listing_starts_a_margin_behind_the_mark_and_at_its_date_folder():
    bound = listing_bound(T, 36, "%Y/%m/%d")
    assert bound.since == T - timedelta(hours=36)
    assert bound.start_after("drops/acme/") == "drops/acme/2024/11/13"
    # Every key of the floor's day sorts after StartAfter; the day before does not.
    assert "drops/acme/2024/11/13/a.csv" > bound.start_after("drops/acme/") > "drops/acme/2024/11/12/z.csv"
    assert not bound.admits(remote("drops/acme/x.csv", bound.since - timedelta(seconds=1)))
    assert bound.admits(remote("drops/acme/x.csv", bound.since))
    assert listing_bound(T, 36).start_after("drops/") is None  # a flat drop: LIST from the start


def test_the_mark_stops_at_the_oldest_version_not_landed_so_the_next_listing_still_sees_it():
    old = remote("drops/old.csv", T)
    settling = remote("drops/settling.csv", T + timedelta(minutes=5))
    newest = remote("drops/newest.csv", T + timedelta(minutes=10))
    assert next_listing_mark([old, settling, newest], not_landed=[]) == newest.modified_at
    mark = next_listing_mark([old, settling, newest], not_landed=[settling])
    assert mark == settling.modified_at
    # However small the margin, the version left behind is inside the next bound.
    assert listing_bound(mark, 0.001).admits(settling)
    assert next_listing_mark([], []) is None


def test_date_folders_need_the_high_water_mark():
    with pytest.raises(ValueError, match="date_folders needs listing_margin_hours"):
        S3DropExtractOperator(
            task_id="land", source="s", name="n", drop_prefix="drops/", bucket="b", date_folders="%Y/%m/%d"
        )


# -- the sensor in a run an arrival woke -----------------------------------------------------------------


def test_a_run_an_arrival_woke_waits_only_for_the_file_to_settle_not_the_whole_timeout():
    sensor = S3DropSensor(
        task_id="wait",
        source="s",
        name="n",
        drop_bucket="b",
        drop_prefix="drops/",
        settle_seconds=30,
        timeout=840,
        event_timeout=60,
    )
    woken = {"dag_run": SimpleNamespace(run_type="asset_triggered")}
    polled = {"dag_run": SimpleNamespace(run_type="scheduled")}
    assert sensor.wait_seconds(woken) == 90
    assert sensor.wait_seconds(polled) == 840
    assert sensor.wait_seconds({}) == 840

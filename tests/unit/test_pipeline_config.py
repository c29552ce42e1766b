"""Pipelines declared in YAML: strict parsing with messages that name the feed, and the tasks they give."""

from __future__ import annotations

import re
import textwrap

import pytest

from include.etlkit.pipelines.config import PipelineConfigError, load_pipeline, parse_pipeline

MINIMAL = textwrap.dedent(
    """
    source: shop
    start: 2024-11-01
    ingest_schedule: "@hourly"
    feeds:
      orders:
        kind: ftp
        conn_id: ftp_drop
        remote_dir: /orders
        pattern: "orders_*.csv"
        load: {table: fact_order, key: [order_id], merge: upsert}
        schema:
          columns:
            - {name: order_id, type: int}
            - {name: amount, type: "decimal(10,2)", min: 0}
    """
)


def test_a_minimal_pipeline_parses_into_feeds_and_loads():
    config = parse_pipeline(MINIMAL)
    assert config.source == "shop"
    assert config.start.isoformat() == "2024-11-01T00:00:00+00:00"
    assert config.drops_schedule == "@hourly"  # defaults to the ingest schedule
    (feed,) = config.feeds
    assert (feed.name, feed.kind, feed.option("pattern")) == ("orders", "ftp", "orders_*.csv")
    assert feed.load.warehouse_table == "fact_order" and feed.load.key == ("order_id",)
    assert feed.load.landing_only == ("source_row",)
    assert feed.schema["name"] == "orders"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("kind: ftp", "kind: gopher"), "feed 'orders' has kind 'gopher'"),
        (('    pattern: "orders_*.csv"\n', ""), "missing ['pattern']"),
        (
            ("    remote_dir: /orders\n", "    remote_dir: /orders\n    colour: blue\n"),
            "unknown ['colour']",
        ),
        (("key: [order_id]", "key: [order_ref]"), "load key ['order_ref'] not all in its schema"),
        (("merge: upsert", "merge: append"), "merge must be 'upsert' or 'versions'"),
        (("start: 2024-11-01", "start: soon"), "start must be a date"),
    ],
)
def test_mistakes_fail_at_parse_time_naming_the_feed(change, message):
    old, new = change
    assert old in MINIMAL
    with pytest.raises(PipelineConfigError, match=re.escape(message)):
        parse_pipeline(MINIMAL.replace(old, new), where="shop.yaml")


def test_two_feeds_cannot_load_the_same_table():
    doubled = MINIMAL + textwrap.indent(
        textwrap.dedent(
            """
            more_orders:
              kind: s3_drop
              drop_prefix: drops/orders/
              load: {table: fact_order, key: [order_id], merge: upsert}
              schema: {columns: [{name: order_id, type: int}]}
            """
        ),
        "  ",
    )
    with pytest.raises(PipelineConfigError, match="two feeds load the same table"):
        parse_pipeline(doubled)


def test_the_retail_configuration_gives_one_extract_per_feed_of_the_right_kind():
    from include.etlkit.extract.ftp import FtpFileExtractOperator
    from include.etlkit.extract.http import HttpApiExtractOperator, PageNumberPagination
    from include.etlkit.extract.mysql import MySqlTableExtractOperator
    from include.etlkit.extract.s3_drop import S3DropExtractOperator
    from include.etlkit.pipelines import factory
    from include.etlkit.sensors.s3_drop import S3DropSensor

    config = load_pipeline("retail")
    kinds = {
        "mysql": MySqlTableExtractOperator,
        "http": HttpApiExtractOperator,
        "ftp": FtpFileExtractOperator,
        "s3_drop": S3DropExtractOperator,
    }
    assert {feed.kind for feed in config.feeds} == set(kinds)
    for feed in config.feeds:
        operator = factory.extract(config, feed)
        assert type(operator) is kinds[feed.kind]
        assert operator.task_id == f"land_{feed.name}"
    rates = factory.extract(config, config.feed("rates"))
    assert isinstance(rates.pagination, PageNumberPagination) and rates.pagination.size == 500
    drop = config.feed("partner_customers")
    sensor = factory.wait_for_drop(config, drop)
    extract = factory.extract(config, drop)
    assert isinstance(sensor, S3DropSensor) and sensor.deferrable
    # The sensor only wakes for a file the extract will take.
    assert sensor.settle_seconds == extract.settle_seconds == drop.option("settle_seconds")
    # Every feed's schema is a valid FileSchema, and every load names a distinct warehouse table.
    schemas = factory.schemas(config)
    assert set(schemas) == {feed.name for feed in config.feeds}
    assert len({load.warehouse_table for load in config.table_loads}) == len(config.feeds)


def test_every_retail_feed_fits_the_core_table_it_loads():
    """Each declared column exists in its core table, and an int the table stores in 32 bits is
    bounded, so the validation quarantines what the merge would refuse instead of failing the load."""
    from include.etlkit.paths import sql_file
    from include.etlkit.pipelines import factory

    ddl = sql_file("postgres", "retail", "core.sql").read_text()
    tables = {
        name: dict(re.findall(r"^\s+(\w+)\s+(\w+)", body, re.MULTILINE))
        for name, body in re.findall(r"CREATE TABLE IF NOT EXISTS core\.(\w+) \((.*?)\n\);", ddl, re.DOTALL)
    }
    config = load_pipeline("retail")
    schemas = factory.schemas(config)
    for feed in config.feeds:
        columns = tables[feed.load.warehouse_table]
        for column in schemas[feed.name].columns:
            assert column.name in columns, (feed.name, column.name)
            if column.type == "int" and columns[column.name] == "int":
                assert column.max is not None and int(column.max) <= 2**31 - 1, (feed.name, column.name)
        assert list(schemas[feed.name].key) == list(feed.load.key)
    assert float(schemas["rates"].columns[-1].min) > 0  # core.exchange_rate: CHECK (rate > 0)

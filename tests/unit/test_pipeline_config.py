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


MODELLED = textwrap.dedent(
    """
    source: books
    start: 2024-11-01
    ingest_schedule: "@hourly"
    reconcile_schedule: "@daily"
    feeds:
      book:   {kind: postgres, conn_id: books_db, key: book_id, overlap_minutes: 30, reconcile: true}
      author: {kind: postgres, conn_id: books_db, key: author_id}
    targets: include.etlkit.totesys.model:TARGETS
    models:
      fact_book:
        inputs: {book: all}
        key: [book_id, row_hash]
        merge: versions
        record_id: book_record_id
        foreign_keys: {author_id: dim_author.author_id}
        sql: SQLDIR/fact_book.sql
      dim_author:
        inputs: {author: {key: author_id, rows: latest}}
        key: [author_id]
        merge: upsert
        sql: SQLDIR/dim_author.sql
    warehouse:
      ddl: [books/core.sql]
      marts: books/marts.sql
    """
)


@pytest.fixture
def modelled(tmp_path) -> str:
    """MODELLED with its two model SQL files written under ``tmp_path``."""
    (tmp_path / "fact_book.sql").write_text("SELECT book_id, author_id FROM book")
    (tmp_path / "dim_author.sql").write_text("SELECT author_id FROM author")
    return MODELLED.replace("SQLDIR", str(tmp_path))


def test_a_modelled_pipeline_declares_feeds_models_and_warehouse_steps(modelled):
    config = parse_pipeline(modelled)
    assert [feed.name for feed in config.feeds] == ["book", "author"]
    assert all(feed.schema is None and feed.load is None for feed in config.feeds)
    assert [feed.name for feed in config.reconciled_feeds] == ["book"]
    assert config.validated_feeds == ()
    # Declared fact first, but loaded after the dimension its foreign key names.
    assert [(load.name, load.key, load.merge) for load in config.table_loads] == [
        ("dim_author", ("author_id",), "upsert"),
        ("fact_book", ("book_id", "row_hash"), "versions"),
    ]
    fact = next(m for m in config.models if m.name == "fact_book")
    assert fact.record_id == "book_record_id"
    assert [(r.column, r.table, r.key) for r in fact.foreign_keys] == [
        ("author_id", "dim_author", "author_id")
    ]
    assert config.warehouse.ddl == ("books/core.sql",) and config.warehouse.marts == "books/marts.sql"
    assert config.reconcile_schedule == "@daily" and config.targets == "include.etlkit.totesys.model:TARGETS"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("inputs: {book: all}", "inputs: {writer: all}"),
            "'fact_book' reads ['writer'], which are not feeds",
        ),
        (("merge: upsert", "merge: append"), "merge must be one of"),
        (("targets: include.etlkit.totesys.model:TARGETS\n", ""), "models need targets"),
        (("overlap_minutes: 30", "overlap_minutes: soon"), "overlap_minutes must be a whole number"),
        (("reconcile: true}", "reconcile: true, colour: blue}"), "unknown ['colour']"),
        (("dim_author.author_id", "dim_author"), "must name table.key"),
        (("dim_author.sql", "no_such.sql"), "not found"),
    ],
)
def test_model_mistakes_fail_at_parse_time_naming_the_model(modelled, change, message):
    old, new = change
    assert old in modelled
    with pytest.raises(PipelineConfigError, match=re.escape(message)):
        parse_pipeline(modelled.replace(old, new), where="books.yaml")


def test_a_feed_no_model_reads_is_a_mistake(modelled):
    with pytest.raises(PipelineConfigError, match=re.escape("feed(s) ['author'] have neither schema")):
        parse_pipeline(
            modelled.replace("inputs: {author: {key: author_id, rows: latest}}", "inputs: {book: all}")
        )


def test_the_totesys_configuration_gives_an_extract_and_a_reconciliation_per_table():
    from include.etlkit.extract.postgres import PostgresTableExtractOperator
    from include.etlkit.extract.reconcile import PostgresReconcileOperator
    from include.etlkit.paths import sql_file
    from include.etlkit.pipelines import factory

    config = load_pipeline("totesys")
    tables = sorted(feed.name for feed in config.feeds)
    assert len(tables) == 11 and {feed.kind for feed in config.feeds} == {"postgres"}
    for feed in config.feeds:
        land, reconcile = factory.extract(config, feed), factory.reconcile(config, feed)
        assert type(land) is PostgresTableExtractOperator and land.task_id == f"land_{feed.name}"
        assert type(reconcile) is PostgresReconcileOperator and reconcile.task_id == f"reconcile_{feed.name}"
        assert land.spec.key == f"{feed.name}_id" and land.spec.cursor == "last_updated"
        assert land.overlap.total_seconds() == 15 * 60
    # Every model is a table of core.sql, every reference names a model and its key.
    ddl = sql_file("postgres", "totesys", "core.sql").read_text()
    models = {model.name: model for model in config.models}
    for model in config.models:
        assert f"core.{model.name} (" in ddl, model.name
        for ref in model.foreign_keys:
            assert models[ref.table].load.key == (ref.key,)
    # every table loads after the tables its foreign keys name (dim_date before the facts)
    order = [load.name for load in config.table_loads]
    for model in config.models:
        for ref in model.foreign_keys:
            assert order.index(ref.table) < order.index(model.name)
    assert order.index("dim_date") < order.index("fact_sales_order")


def test_retails_mysql_feeds_are_reconciled_daily_and_their_load_keys_match_the_tombstones():
    from include.etlkit.extract.mysql_reconcile import MySqlReconcileOperator
    from include.etlkit.pipelines import factory

    config = load_pipeline("retail")
    assert config.reconcile_schedule == "35 2 * * *"
    reconciled = {feed.name: feed for feed in config.reconciled_feeds}
    assert sorted(reconciled) == ["customer", "product", "sales_team", "store"]
    assert sorted(reconciled) == sorted(feed.name for feed in config.feeds_of("mysql"))
    loads = {load.name: load for load in config.table_loads}
    for name, feed in reconciled.items():
        task = factory.reconcile(config, feed)
        assert type(task) is MySqlReconcileOperator and task.task_id == f"reconcile_{name}"
        # A tombstone names rows by the table's key; the load marks them by its first key column.
        assert loads[name].key == (task.spec.key,) and loads[name].merge == "upsert"


def test_a_feed_kind_without_reconciliation_says_so():
    from include.etlkit.pipelines import factory

    config = load_pipeline("retail")
    with pytest.raises(ValueError, match="a http feed has no reconciliation"):
        factory.reconcile(config, config.feed("rates"))


def test_a_mysql_feed_may_ask_for_the_daily_reconciliation(modelled):
    from include.etlkit.extract.mysql_reconcile import MySqlReconcileOperator
    from include.etlkit.pipelines import factory

    config = parse_pipeline(
        modelled.replace(
            "author: {kind: postgres, conn_id: books_db, key: author_id}",
            "author: {kind: mysql, conn_id: shop_db, key: author_id, overlap_minutes: 45, reconcile: true}",
        )
    )
    assert [feed.name for feed in config.reconciled_feeds] == ["book", "author"]
    author = config.feed("author")
    task = factory.reconcile(config, author)
    assert type(task) is MySqlReconcileOperator and task.task_id == "reconcile_author"
    assert (task.spec.name, task.spec.key, task.spec.cursor) == ("author", "author_id", "updated_at")
    assert factory.extract(config, author).overlap.total_seconds() == 45 * 60


def test_the_totesys_targets_resolve_and_type_every_model():
    """The transform resolves ``targets:`` when it runs (not at DAG parse time): it must resolve."""
    from include.etlkit.pipelines.config import load_pipeline
    from include.etlkit.transform.engine import resolve_targets

    config = load_pipeline("totesys")
    targets = resolve_targets(config.targets)
    assert {model.name for model in config.models} <= set(targets.schemas)
    with pytest.raises(ValueError, match="<module>:<attribute>"):
        resolve_targets("include.etlkit.totesys.model")

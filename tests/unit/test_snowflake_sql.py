"""The Snowflake statements the tests cannot run on fakesnow, checked as text; and the MERGE's shape."""

from __future__ import annotations

import pytest
import sqlglot

from include.etlkit.load.snowflake import ExternalStageCopy, copy_into_landing_sql, merge_sql
from include.etlkit.load.warehouse import TableLoad

KEY = "totesys/fact_sales_order/2025/02/25/fact_sales_order-0123456789abcdef.parquet"


def test_the_landing_copy_reads_the_object_from_the_external_stage_as_parquet_by_column_name():
    statement = copy_into_landing_sql('"LANDING"."FACT_SALES_ORDER"', "landing.processed", KEY)

    assert statement == (
        f'COPY INTO "LANDING"."FACT_SALES_ORDER" FROM @landing.processed/{KEY} '
        "FILE_FORMAT = (TYPE = PARQUET) MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE "
        'INCLUDE_METADATA = ("_LOAD_ID" = METADATA$FILENAME, "_ORDINAL" = METADATA$FILE_ROW_NUMBER, '
        '"_LOADED_AT" = METADATA$START_SCAN_TIME) '
        "ON_ERROR = ABORT_STATEMENT"
    )
    # No FORCE and no PURGE: the load history keeps the file loaded once, and the bucket is immutable.
    assert "FORCE" not in statement and "PURGE" not in statement


@pytest.mark.parametrize("key", ["a b.parquet", "x';DROP TABLE t;--.parquet", "../other/x.parquet", ""])
def test_a_key_that_cannot_be_a_stage_path_is_refused(key):
    with pytest.raises(ValueError, match="cannot be written as a stage path"):
        copy_into_landing_sql('"LANDING"."T"', "landing.processed", key)


def test_the_production_landing_copy_runs_exactly_that_statement():
    class Cursor:
        def __init__(self):
            self.statements: list[str] = []

        def execute(self, statement: str) -> None:
            self.statements.append(statement)

    cur = Cursor()
    ExternalStageCopy("etl.processed_zone")(cur, '"LANDING"."DIM_DATE"', "processed-bucket", KEY)

    assert cur.statements == [copy_into_landing_sql('"LANDING"."DIM_DATE"', "etl.processed_zone", KEY)]


def test_a_versions_merge_only_inserts_versions_not_in_core_and_takes_one_row_per_version():
    spec = TableLoad("fact_payment", ("payment_id", "row_hash"), "versions")

    statement = merge_sql(spec, ["payment_id", "amount", "row_hash"])

    assert statement == (
        'MERGE INTO "CORE"."FACT_PAYMENT" AS t USING (SELECT "PAYMENT_ID", "AMOUNT", "ROW_HASH" '
        'FROM "LANDING"."FACT_PAYMENT" WHERE "_LOAD_ID" = %s QUALIFY ROW_NUMBER() OVER '
        '(PARTITION BY "PAYMENT_ID", "ROW_HASH" ORDER BY "_ORDINAL" DESC) = 1) AS s '
        'ON t."PAYMENT_ID" = s."PAYMENT_ID" AND t."ROW_HASH" = s."ROW_HASH" '
        'WHEN NOT MATCHED THEN INSERT ("PAYMENT_ID", "AMOUNT", "ROW_HASH") '
        'VALUES (s."PAYMENT_ID", s."AMOUNT", s."ROW_HASH")'
    )
    assert "WHEN MATCHED" not in statement  # a fact version is never updated


def test_an_upsert_merge_updates_changed_rows_only_and_never_to_an_older_version():
    spec = TableLoad("dim_store", ("store_id",), "upsert", version="updated_at")

    statement = merge_sql(spec, ["store_id", "name", "updated_at"])

    assert (
        'WHEN MATCHED AND (t."NAME" IS DISTINCT FROM s."NAME" OR t."UPDATED_AT" IS DISTINCT FROM '
        's."UPDATED_AT") AND s."UPDATED_AT" >= t."UPDATED_AT" '
        'THEN UPDATE SET "NAME" = s."NAME", "UPDATED_AT" = s."UPDATED_AT"'
    ) in statement
    assert statement.endswith(
        'WHEN NOT MATCHED THEN INSERT ("STORE_ID", "NAME", "UPDATED_AT") '
        'VALUES (s."STORE_ID", s."NAME", s."UPDATED_AT")'
    )
    # One statement Snowflake's own grammar accepts (sqlglot's Snowflake dialect, as a syntax check).
    assert len(sqlglot.parse(statement.replace("%s", "'k'"), read="snowflake")) == 1


def test_deletions_mark_dimensions_and_add_one_deletion_version_to_facts():
    from include.etlkit.load.snowflake import GONE, deletion_sql
    from include.etlkit.load.warehouse import TableLoad

    (dim,) = deletion_sql(TableLoad("dim_design", ("design_id",), "upsert"), [])
    assert dim == (
        'UPDATE "CORE"."DIM_DESIGN" AS t SET "DELETED_AT" = g.DELETED_AT FROM ' + GONE + " AS g "
        'WHERE TO_VARCHAR(t."DESIGN_ID") = g.K AND t."DELETED_AT" IS NULL'
    )
    fact = TableLoad("fact_payment", ("payment_id", "row_hash"), "versions", record_id="payment_record_id")
    (insert,) = deletion_sql(fact, ["payment_id", "paid"])
    assert insert.startswith(
        'INSERT INTO "CORE"."FACT_PAYMENT" ("PAYMENT_ID", "PAID", "ROW_HASH", "DELETED_AT") '
    )
    assert "MD5(t.\"ROW_HASH\" || ':deleted')" in insert
    assert 'AND x."DELETED_AT" IS NOT NULL' in insert  # once per key
    assert insert.endswith(
        'QUALIFY ROW_NUMBER() OVER (PARTITION BY t."PAYMENT_ID" ORDER BY t."PAYMENT_RECORD_ID" DESC) = 1'
    )

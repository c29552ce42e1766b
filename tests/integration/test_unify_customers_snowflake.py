"""UnifyCustomersOperator on Snowflake (fakesnow): the same decisions as on PostgreSQL, in one transaction.

The operator picks the warehouse from its connection's type; only the next sequence value and the
JSON of a review differ between dialects (``DIALECT_SQL``). The matching itself is tested on
PostgreSQL (``test_unify_customers.py``); this proves the Snowflake statements and tables.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import fakesnow
import pytest

from include.etlkit.load.snowflake import SnowflakeWarehouse
from include.etlkit.paths import sql_file
from include.etlkit.retail.customers import UnifyCustomersOperator
from tests.conftest import TaskTry
from tests.integration.fakesnow_support import fix_merge_counts, snowflake_connection
from tests.integration.test_unify_customers import KNOWN

pytestmark = pytest.mark.integration

CONN_ID = "sf_unify"


@pytest.fixture
def db(monkeypatch, control_plane):
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", snowflake_connection(schema="CORE"))
    fix_merge_counts(monkeypatch)
    with fakesnow.patch():
        warehouse = SnowflakeWarehouse(CONN_ID)
        warehouse.run_script(sql_file("snowflake", "retail", "core.sql").read_text())
        warehouse.run_script(sql_file("snowflake", "retail", "dedup.sql").read_text())
        with warehouse.session() as cur:
            for row in KNOWN:
                cur.execute(
                    "INSERT INTO core.dim_customer (customer_id, first_name, last_name, address, postcode,"
                    " phone_number, email, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP)",
                    row,
                )
        yield warehouse


def query(warehouse: SnowflakeWarehouse, statement: str) -> list[tuple]:
    with warehouse.session() as cur:
        cur.execute(statement)
        return [
            tuple(int(v) if isinstance(v, Decimal) and v % 1 == 0 else v for v in row)
            for row in cur.fetchall()
        ]


def run() -> dict:
    operator = UnifyCustomersOperator(task_id="unify_customers", conn_id=CONN_ID)
    return TaskTry(operator, "retail_load", f"manual__{datetime.now().isoformat()}").execute()


def xref(warehouse) -> dict[tuple[str, str], tuple[int, str]]:
    rows = query(
        warehouse, "SELECT source, source_customer_ref, customer_id, decision FROM core.customer_xref"
    )
    return {(s, r): (c, d) for s, r, c, d in rows}


def test_matches_new_customers_reviews_and_resolutions_on_snowflake(db):
    with db.session() as cur:
        for record in (
            ("acme", "A-1", "O'BRIEN, Siobhan", "12 High St", "LS14AB", "07700-900001", None),
            (
                "acme",
                "A-3",
                "Zoë Walker",
                "501 Station Road",
                "NR9 9ZZ",
                "+44 7700 901999",
                "zoe@example.org",
            ),
            ("acme", "A-9", "Grace Hughes", "14 Mill Lane", "BS8 1EF", None, None),
        ):
            cur.execute(
                "INSERT INTO core.partner_customer (partner, partner_customer_ref, full_name, address,"
                " postcode, phone_number, email) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                record,
            )

    assert run() == {"match": 1, "new": 1, "review": 1, "resolved": 0}
    decided = xref(db)
    assert decided[("acme", "A-1")] == (1, "match")
    new_id, decision = decided[("acme", "A-3")]
    assert decision == "new" and new_id == 100_000_000  # the Snowflake sequence's first value
    assert query(
        db, f"SELECT first_name, customer_source FROM core.dim_customer WHERE customer_id = {new_id}"
    ) == [("Zoë", "acme")]
    ((candidate, record),) = query(db, "SELECT candidate_customer_id, record FROM core.customer_match_review")
    assert (
        candidate == 3 and json.loads(record)["full_name"] == "Grace Hughes"
    )  # a VARIANT, read as JSON text

    assert run() == {"match": 0, "new": 0, "review": 0, "resolved": 0}  # nothing decided twice
    assert query(db, "SELECT count(*) FROM core.customer_match_review") == [(1,)]

    with db.session() as cur:
        cur.execute(
            "UPDATE core.customer_match_review SET resolved_at = CURRENT_TIMESTAMP, resolution = 'match',"
            " resolved_customer_id = 3"
        )
    assert run()["resolved"] == 1
    assert xref(db)[("acme", "A-9")] == (3, "review")
    assert run()["resolved"] == 0


def test_a_failure_inside_the_unification_leaves_nothing_half_decided(db, monkeypatch):
    with db.session() as cur:
        cur.execute(
            "INSERT INTO core.partner_customer (partner, partner_customer_ref, full_name) VALUES "
            "('acme', 'A-3', 'Zoë Walker'), ('acme', 'A-4', 'Ada Lovelace')"
        )
    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("the warehouse went away")
        return original(*args, **kwargs)

    from include.etlkit.retail import customers

    original = customers._insert_xref
    monkeypatch.setattr(customers, "_insert_xref", fail_on_second)

    with pytest.raises(RuntimeError, match="went away"):
        run()

    assert xref(db) == {}  # the first decision was rolled back with the second
    assert query(db, "SELECT count(*) FROM core.dim_customer WHERE customer_source = 'acme'") == [(0,)]

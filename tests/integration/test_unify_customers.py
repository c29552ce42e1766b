"""UnifyCustomersOperator on a throwaway PostgreSQL warehouse: match, new, review, and resolved reviews."""

from __future__ import annotations

import uuid
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from include.etlkit.paths import sql_file
from include.etlkit.retail.customers import UnifyCustomersOperator, split_full_name
from infra.local import settings
from tests.conftest import TaskTry

pytestmark = pytest.mark.integration

CONN_ID = "wh_unify"
KNOWN = [
    # customer_id, first, last, address, postcode, phone, email
    (1, "Siobhán", "O'Brien", "12 High Street", "LS1 4AB", "+44 7700 900001", "siobhan.obrien1@example.com"),
    (2, "Kwame", "Okafor", "7 Mill Lane", "M3 2CD", "+44 7700 900002", "kwame.okafor2@example.com"),
    (3, "Grace", "Hughes", "88 Park Avenue", "BS8 1EF", "+44 7700 900003", None),
]


def _connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname, autocommit=True
    )


@pytest.fixture
def db(monkeypatch, control_plane):
    name = f"wh_unify_{uuid.uuid4().hex[:12]}"
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        f"postgres://{settings.PG_USER}@{settings.PG_HOST}:{settings.PG_PORT}/{name}",
    )
    conn = _connect(name)
    conn.execute(sql_file("postgres", "retail", "core.sql").read_text())
    conn.execute(sql_file("postgres", "retail", "dedup.sql").read_text())
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO core.dim_customer (customer_id, first_name, last_name, address, postcode,"
            " phone_number, email, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, now())",
            KNOWN,
        )
    yield conn
    conn.close()
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def partner(conn, *records: tuple) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO core.partner_customer (partner, partner_customer_ref, full_name, address, postcode,"
            " phone_number, email) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            records,
        )


def run() -> tuple[dict, object]:
    operator = UnifyCustomersOperator(task_id="unify_customers", conn_id=CONN_ID)
    task = TaskTry(operator, "retail_load", f"manual__{datetime.now().isoformat()}")
    counts = task.execute()
    return counts, task.outcome


def xref(conn) -> dict[tuple[str, str], tuple[int, str]]:
    rows = conn.execute("SELECT source, source_customer_ref, customer_id, decision FROM core.customer_xref")
    return {(s, r): (c, d) for s, r, c, d in rows}


def test_known_people_keep_their_id_new_people_get_one_and_a_rerun_decides_nothing(db):
    partner(
        db,
        ("acme", "A-1", "O'BRIEN, Siobhan", "12 High St", "LS14AB", "07700-900001", None),
        ("acme", "A-2", "Kwame Okafor", "7 Mill Ln", "M3 2CD", "(07700) 900002", "kwame.okafor2@example.com"),
        ("acme", "A-3", "Zoë Walker", "501 Station Road", "NR9 9ZZ", "+44 7700 901999", "zoe@example.org"),
        ("bright", "B-1", "Zoe Walker", "501 Station Rd", "NR99ZZ", "07700 901999", "zoe@example.org"),
    )
    counts, outcome = run()
    decided = xref(db)
    assert decided[("acme", "A-1")] == (1, "match")
    assert decided[("acme", "A-2")] == (2, "match")
    new_id, decision = decided[("acme", "A-3")]
    assert decision == "new" and new_id >= 100_000_000
    # The second partner's record is the person the first partner introduced: same id, no new row.
    assert decided[("bright", "B-1")] == (new_id, "match")
    assert db.execute(
        "SELECT first_name, last_name, customer_source FROM core.dim_customer WHERE customer_id = %s",
        (new_id,),
    ).fetchone() == ("Zoë", "Walker", "acme")
    assert counts == {"match": 3, "new": 1, "review": 0, "resolved": 0}
    assert (outcome.rows_in, outcome.rows_out) == (4, 4)

    before = db.execute("SELECT count(*) FROM core.dim_customer").fetchone()
    counts, _ = run()
    assert counts == {"match": 0, "new": 0, "review": 0, "resolved": 0}
    assert xref(db) == decided
    assert db.execute("SELECT count(*) FROM core.dim_customer").fetchone() == before


def test_an_ambiguous_record_waits_for_review_and_its_resolution_is_applied_once(db):
    # Grace Hughes's name and postcode at another address, no phone or email: moved, or namesake?
    partner(db, ("acme", "A-9", "Grace Hughes", "14 Mill Lane", "BS8 1EF", None, None))
    counts, _ = run()
    assert counts["review"] == 1 and ("acme", "A-9") not in xref(db)
    review = db.execute(
        "SELECT candidate_customer_id, record->>'full_name' FROM core.customer_match_review"
    ).fetchone()
    assert review == (3, "Grace Hughes")
    assert run()[0]["review"] == 0  # still waiting: not asked again, not queued twice
    assert db.execute("SELECT count(*) FROM core.customer_match_review").fetchone() == (1,)

    # A resolution naming a customer who does not exist links nothing and stops nothing.
    db.execute(
        "UPDATE core.customer_match_review SET resolved_at = now(), resolution = 'match',"
        " resolved_customer_id = 999"
    )
    assert run()[0]["resolved"] == 0 and ("acme", "A-9") not in xref(db)
    db.execute("UPDATE core.customer_match_review SET resolved_customer_id = 3")
    counts, _ = run()
    assert counts["resolved"] == 1
    assert xref(db)[("acme", "A-9")] == (3, "review")
    assert run()[0]["resolved"] == 0


@pytest.mark.parametrize(
    ("full_name", "expected"),
    [
        ("O'Brien, Siobhán", ("Siobhán", "O'Brien")),
        ("Mary  Ann Smith", ("Mary Ann", "Smith")),
        ("Cher", ("", "Cher")),
    ],
)
def test_full_names_split_into_first_and_last(full_name, expected):
    assert split_full_name(full_name) == expected

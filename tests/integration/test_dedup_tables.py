"""sql/postgres/retail/dedup.sql on a throwaway PostgreSQL database, filled from real matcher decisions."""

from __future__ import annotations

import json
import uuid

import pandas as pd
import psycopg
import pytest
from psycopg import sql

from include.etlkit.dedup import CustomerMatcher
from include.etlkit.paths import sql_file
from infra.local import settings

pytestmark = pytest.mark.integration

EXISTING = pd.DataFrame(
    {
        "customer_id": [1, 2],
        "first_name": ["Seán", "Amelia"],
        "last_name": ["O'Brien", "Patel"],
        "address": ["12 St John's Close", "4 Station Road"],
        "postcode": ["LS1 4AB", "M14 5QD"],
        "phone_number": ["+44 20 7946 0018", "+44 113 496 0123"],
        "email": [None, None],
    }
)
BATCH = pd.DataFrame(
    {
        "partner_customer_ref": ["R1", "R2", "R3"],
        "full_name": ["O'BRIEN, Sean", "Kwame Mensah", "Amelia Patel"],
        "address": ["12 St Johns Cl", "7 Harbour View", "40 Station Road"],  # R3: another house too
        "postcode": ["ls14ab", "NE7 9LX", None],
        "phone_number": ["(020) 79460018", "07700 900461", "0113 496 0999"],  # R3: another phone
        "email": [None, None, None],
    }
)


def _connect(dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=settings.PG_HOST, port=settings.PG_PORT, user=settings.PG_USER, dbname=dbname, autocommit=True
    )


@pytest.fixture(scope="module")
def db():
    name = f"dedup{settings.SUFFIX}_{uuid.uuid4().hex[:10]}"
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conn = _connect(name)
    yield conn
    conn.close()
    with _connect("postgres") as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _write(conn: psycopg.Connection, partner: str) -> None:
    """What the pipeline does with a batch's decisions: xref rows, and open reviews with the record."""
    records = BATCH.set_index("partner_customer_ref")
    for decision in CustomerMatcher(EXISTING).match(BATCH, next_id=lambda: 100_000_000):
        if decision.decision == "review":
            row = records.loc[decision.candidate_ref]
            record = {field: None if pd.isna(value) else value for field, value in row.items()}
            conn.execute(
                """
                INSERT INTO core.customer_match_review
                    (partner, partner_customer_ref, candidate_customer_id, score, explanation, record)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (partner, partner_customer_ref) WHERE resolved_at IS NULL DO NOTHING
                """,
                (
                    partner,
                    decision.candidate_ref,
                    decision.best_candidate_id,
                    decision.score,
                    decision.explanation,
                    json.dumps(record),
                ),
            )
        else:
            conn.execute(
                """
                INSERT INTO core.customer_xref (source, source_customer_ref, customer_id, decision, score)
                VALUES (%s, %s, %s, %s, %s)
                ON CONFLICT (source, source_customer_ref) DO UPDATE
                SET customer_id = EXCLUDED.customer_id, decision = EXCLUDED.decision,
                    score = EXCLUDED.score, matched_at = now()
                """,
                (partner, decision.candidate_ref, decision.customer_id, decision.decision, decision.score),
            )


def test_dedup_ddl_applies_twice_and_holds_one_row_per_record_and_one_open_review(db):
    ddl = sql_file("postgres", "retail", "dedup.sql").read_text()
    db.execute(ddl)
    db.execute(ddl)  # idempotent

    _write(db, "acme")
    _write(db, "acme")  # a rerun of the same batch adds nothing

    xref = db.execute(
        "SELECT source_customer_ref, customer_id, decision FROM core.customer_xref ORDER BY 1"
    ).fetchall()
    assert xref == [("R1", 1, "match"), ("R2", 100_000_000, "new")]
    reviews = db.execute(
        "SELECT partner_customer_ref, candidate_customer_id, record->>'full_name', record->'postcode', "
        "resolved_at FROM core.customer_match_review"
    ).fetchall()
    assert reviews == [("R3", 2, "Amelia Patel", None, None)]

    # A reviewer settles it; a later batch may then open a new review for the same record.
    db.execute(
        "UPDATE core.customer_match_review SET resolved_at = now(), resolution = 'match', "
        "resolved_customer_id = 2 WHERE partner_customer_ref = 'R3'"
    )
    _write(db, "acme")
    (count,) = db.execute("SELECT count(*) FROM core.customer_match_review").fetchone()
    assert count == 2


def test_dedup_ddl_rejects_inconsistent_rows(db):
    db.execute(sql_file("postgres", "retail", "dedup.sql").read_text())
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO core.customer_xref (source, source_customer_ref, customer_id, decision) "
            "VALUES ('acme', 'X1', 5, 'maybe')"
        )
    with pytest.raises(psycopg.errors.CheckViolation):  # a resolution needs its time, and vice versa
        db.execute(
            "INSERT INTO core.customer_match_review "
            "(partner, partner_customer_ref, score, explanation, record, resolution, resolved_customer_id) "
            "VALUES ('acme', 'X2', 70, 'e', '{}', 'match', 1)"
        )
    with pytest.raises(psycopg.errors.CheckViolation):  # a 'match' names the customer
        db.execute(
            "INSERT INTO core.customer_match_review "
            "(partner, partner_customer_ref, score, explanation, record, resolved_at, resolution) "
            "VALUES ('acme', 'X3', 70, 'e', '{}', now(), 'match')"
        )

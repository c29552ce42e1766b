"""Unify customer ids: partner customer records matched against the customers the warehouse knows.

Partner files (the ``partner_customers`` feed) land in ``core.partner_customer`` like any other
feed. This step takes the partner records not decided yet and asks the fuzzy matcher
(:mod:`include.etlkit.dedup`) about each one:

- a confident match links the record to the existing ``customer_id`` in ``core.customer_xref``;
- a confident non-match becomes a new customer in ``core.dim_customer`` (id from
  ``core.partner_customer_id_seq``, ``customer_source`` = the partner) and is linked to it;
- anything in between waits in ``core.customer_match_review`` for a person, and is not asked about
  again until it is resolved.

All of it happens in one warehouse transaction, so a failed try leaves nothing half-decided and a
rerun finds exactly the records still pending: running the same interval twice decides nothing twice.

The warehouse is whichever the ``warehouse_conn_id`` Variable names (see
:mod:`include.etlkit.load.warehouse`): the statements are the same on PostgreSQL and Snowflake but
for the two in ``DIALECT_SQL`` (the next id of a sequence, and a JSON value).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.lazy import lazy_module
from include.etlkit.load.warehouse import fetch_all, warehouse_for

if TYPE_CHECKING:
    import pandas as pd

    from include.etlkit import dedup
else:  # imported on first use, not while a DAG file is parsed
    dedup = lazy_module("include.etlkit.dedup")  # numpy, pandas, rapidfuzz
    pd = lazy_module("pandas")

# What each warehouse spells differently: (next customer id, a JSON parameter).
DIALECT_SQL: dict[str, tuple[str, str]] = {
    "postgres": ("SELECT nextval('core.partner_customer_id_seq')", "%s::jsonb"),
    "snowflake": ("SELECT core.partner_customer_id_seq.NEXTVAL", "PARSE_JSON(%s)"),
}

EXISTING_SQL = """
SELECT customer_id, first_name, last_name, address, postcode, phone_number, email
FROM core.dim_customer ORDER BY customer_id
"""
PENDING_SQL = """
SELECT p.partner, p.partner_customer_ref, p.full_name, p.address, p.postcode, p.phone_number, p.email
FROM core.partner_customer AS p
WHERE NOT EXISTS (
        SELECT 1 FROM core.customer_xref AS x
        WHERE x.source = p.partner AND x.source_customer_ref = p.partner_customer_ref)
  AND NOT EXISTS (
        SELECT 1 FROM core.customer_match_review AS r
        WHERE r.partner = p.partner AND r.partner_customer_ref = p.partner_customer_ref
          AND (r.resolved_at IS NULL OR r.resolution = 'reject'))
ORDER BY p.partner, p.partner_customer_ref
"""
# Reviews a person has resolved ('match' to a customer, or 'new') and not yet applied.
RESOLVED_SQL = """
SELECT r.partner, r.partner_customer_ref, r.resolution, r.resolved_customer_id, r.score,
       p.full_name, p.address, p.postcode, p.phone_number, p.email
FROM core.customer_match_review AS r
JOIN core.partner_customer AS p
  ON p.partner = r.partner AND p.partner_customer_ref = r.partner_customer_ref
WHERE r.resolution IN ('match', 'new')
  AND NOT EXISTS (
        SELECT 1 FROM core.customer_xref AS x
        WHERE x.source = r.partner AND x.source_customer_ref = r.partner_customer_ref)
ORDER BY r.partner, r.partner_customer_ref, r.resolved_at DESC
"""


def split_full_name(full_name: str) -> tuple[str, str]:
    """``"Last, First"`` or ``"First Middle Last"`` as (first name, last name); one word is a last name."""
    text = " ".join(full_name.split())
    if "," in text:
        last, _, first = text.partition(",")
        return first.strip(), last.strip()
    first, _, last = text.rpartition(" ")
    return first, last


class UnifyCustomersOperator(BaseOperator):
    """Decide every pending partner customer record: same customer, new customer, or review.

    :param conn_id: the warehouse connection; default: the ``warehouse_conn_id`` Variable at run time.
    :param match: score (0-100) at or above which a record is taken to be an existing customer.
    :param review: score below which a record is taken to be a new customer; in between: review.
    """

    template_fields: Sequence[str] = ("conn_id",)
    ui_color = "#f6e0ec"

    def __init__(self, *, conn_id: str | None = None, match: float = 88, review: float = 50, **kwargs: Any):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.match = match
        self.review = review

    @property
    def thresholds(self) -> dedup.MatchThresholds:
        return dedup.MatchThresholds(match=self.match, review=self.review)

    def execute(self, context: Any) -> dict[str, int]:
        warehouse = warehouse_for(self.conn_id or None)
        next_id_sql, self._json = DIALECT_SQL[warehouse.dialect]
        with warehouse.session() as cur:

            def next_id() -> int:
                cur.execute(next_id_sql)
                return int(cur.fetchone()[0])

            resolved = self._apply_resolutions(cur, next_id)
            existing = _frame(cur, EXISTING_SQL)
            pending = _frame(cur, PENDING_SQL)
            counts = {"match": 0, "new": 0, "review": 0}
            if pending.empty:
                self.log.info("no partner customer records waiting for a decision")
            else:
                counts = self._decide(cur, existing, pending, next_id)
            counts["resolved"] = resolved
        report_rows(context, rows_in=len(pending), rows_out=counts["match"] + counts["new"], rows_rejected=0)
        self.log.info(
            "%d partner record(s): %d matched to known customers, %d new customers, %d sent to review;"
            " %d resolved review(s) applied",
            len(pending),
            counts["match"],
            counts["new"],
            counts["review"],
            resolved,
        )
        return counts

    def _apply_resolutions(self, cur: Any, next_id: Any) -> int:
        """Link the records a person decided in the review table (the latest resolution wins).

        A resolution that cannot be right (a 'match' to a customer that does not exist, a 'new'
        customer with an id already taken) is logged and left for the person to correct: it must
        neither stop every later load nor link a record to nobody.
        """
        applied: set[tuple[str, str]] = set()
        linked = 0
        for row in _frame(cur, RESOLVED_SQL).to_dict("records"):
            identity = (row["partner"], row["partner_customer_ref"])
            if identity in applied:
                continue
            applied.add(identity)
            customer_id = None if pd.isna(row["resolved_customer_id"]) else int(row["resolved_customer_id"])
            exists = customer_id is not None and _customer_exists(cur, customer_id)
            if row["resolution"] == "match" and not exists:
                self.log.warning(
                    "review of %s/%s: 'match' to unknown customer %s; fix the row", *identity, customer_id
                )
                continue
            if row["resolution"] == "new":
                if exists:
                    self.log.warning(
                        "review of %s/%s: 'new' with id %s, already taken; fix the row",
                        *identity,
                        customer_id,
                    )
                    continue
                customer_id = customer_id or next_id()
                _insert_customer(cur, customer_id, row["partner"], row)
            _insert_xref(
                cur, row["partner"], row["partner_customer_ref"], customer_id, "review", row["score"]
            )
            linked += 1
        return linked

    def _decide(
        self, cur: Any, existing: pd.DataFrame, pending: pd.DataFrame, next_id: Any
    ) -> dict[str, int]:
        counts = {"match": 0, "new": 0, "review": 0}
        matcher = dedup.CustomerMatcher(
            existing, self.thresholds
        )  # indexing the customers is the costly part
        for partner, records in pending.groupby("partner", sort=True):
            candidates = records.drop(columns=["partner"]).reset_index(drop=True)
            by_ref = candidates.set_index("partner_customer_ref")
            created: dict[int, dict[str, Any]] = {}
            for decision in matcher.match(candidates, next_id=next_id):
                record = by_ref.loc[decision.candidate_ref]
                counts[decision.decision] += 1
                if decision.decision == "review":
                    # At most one open review per record (a unique index guards it in PostgreSQL;
                    # Snowflake enforces no uniqueness, so the statement itself makes sure).
                    cur.execute(
                        "INSERT INTO core.customer_match_review (partner, partner_customer_ref,"
                        " candidate_customer_id, score, explanation, record)"
                        f" SELECT %s, %s, %s, %s, %s, {self._json}"
                        " WHERE NOT EXISTS (SELECT 1 FROM core.customer_match_review"
                        " WHERE partner = %s AND partner_customer_ref = %s AND resolved_at IS NULL)",
                        (
                            partner,
                            decision.candidate_ref,
                            decision.best_candidate_id,
                            decision.score,
                            decision.explanation,
                            json.dumps(_plain(record.to_dict()), default=str),
                            partner,
                            decision.candidate_ref,
                        ),
                    )
                    continue
                if decision.decision == "new" and decision.customer_id not in created:
                    created[decision.customer_id] = _insert_customer(
                        cur, decision.customer_id, partner, record.to_dict()
                    )
                _insert_xref(
                    cur,
                    partner,
                    decision.candidate_ref,
                    decision.customer_id,
                    decision.decision,
                    decision.score,
                )
            if created:  # the next partner's records may be these same people: index them too
                existing = pd.concat([existing, pd.DataFrame(list(created.values()))], ignore_index=True)
                matcher = dedup.CustomerMatcher(existing, self.thresholds)
        return counts


def _insert_customer(cur: Any, customer_id: int, partner: str, record: dict[str, Any]) -> dict[str, Any]:
    """A customer first seen in ``partner``'s file; returns it as the matcher's ``existing`` row."""
    first, last = split_full_name(record["full_name"])
    row = {
        "customer_id": customer_id,
        "first_name": first,
        "last_name": last,
        **{k: _plain(record).get(k) for k in ("address", "postcode", "phone_number", "email")},
    }
    cur.execute(
        "INSERT INTO core.dim_customer (customer_id, first_name, last_name, address, postcode,"
        " phone_number, email, updated_at, customer_source)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, CURRENT_TIMESTAMP::timestamp, %s)",
        (*row.values(), partner),
    )
    return row


def _customer_exists(cur: Any, customer_id: int) -> bool:
    cur.execute("SELECT 1 FROM core.dim_customer WHERE customer_id = %s", (customer_id,))
    return cur.fetchone() is not None


def _insert_xref(cur: Any, partner: str, ref: str, customer_id: int, decision: str, score: Any) -> None:
    cur.execute(
        "INSERT INTO core.customer_xref (source, source_customer_ref, customer_id, decision, score)"
        " VALUES (%s, %s, %s, %s, %s)",
        (partner, ref, customer_id, decision, score),
    )


def _frame(cur: Any, query: str) -> pd.DataFrame:
    columns, rows = fetch_all(cur, query)
    return pd.DataFrame(
        [tuple(_id_value(c, v) for c, v in zip(columns, row, strict=True)) for row in rows], columns=columns
    )


def _id_value(column: str, value: Any) -> Any:
    """An id as ``int``: Snowflake's NUMBER may come back as a ``Decimal`` (fakesnow returns them so)."""
    if column.endswith("_id") and isinstance(value, Decimal):
        return int(value)
    return value


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if pd.isna(v) else v) for k, v in record.items()}

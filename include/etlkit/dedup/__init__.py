"""Fuzzy de-duplication of customer records: one customer id per person across partner files.

``CustomerMatcher(existing, MatchThresholds(...)).match(candidates, next_id)`` decides, for each
partner record, whether it is a customer the warehouse already knows (``match``), a new person
(``new``, with an id from ``next_id``, one per person even if the batch holds them twice), or a case
for a person to decide (``review``). The core is plain Python, pandas and rapidfuzz: no Airflow.
``tests.support.labelled.labelled_set`` (test code, not deployed) generates a labelled population
to measure it on.
"""

from include.etlkit.dedup.matcher import (
    DECISION_COLUMNS,
    CustomerMatcher,
    Decision,
    FieldEvidence,
    MatchDecision,
    MatchThresholds,
    decisions_frame,
)
from include.etlkit.dedup.normalise import (
    normalise_address,
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_postcode,
)

__all__ = [
    "DECISION_COLUMNS",
    "CustomerMatcher",
    "Decision",
    "FieldEvidence",
    "MatchDecision",
    "MatchThresholds",
    "decisions_frame",
    "normalise_address",
    "normalise_email",
    "normalise_name",
    "normalise_phone",
    "normalise_postcode",
]

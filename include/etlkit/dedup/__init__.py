"""Fuzzy de-duplication of customer records: one customer id per person across partner files.

``CustomerMatcher(existing, MatchThresholds(...)).match(candidates, next_id)`` decides, for each
partner record, whether it is a customer the warehouse already knows (``match``), a new person
(``new``, with an id from ``next_id``, one per person even if the batch holds them twice), or a case
for a person to decide (``review``). Modules: ``normalise`` (normal forms), ``blocking`` (who is
compared with whom), ``comparison`` (agreement levels per field), ``weights`` (Fellegi-Sunter m/u
estimated from the data, term frequencies), ``matcher`` (scores and decisions), ``calibrate``
(thresholds from a labelled sample). Plain Python, numpy, pandas and rapidfuzz: no Airflow.
``tests.support.labelled.labelled_set`` (test code, not deployed) generates a labelled population
to measure it on.
"""

from include.etlkit.dedup.matcher import (
    DECISION_COLUMNS,
    CustomerMatcher,
    Decision,
    MatchDecision,
    MatchThresholds,
    decisions_frame,
)
from include.etlkit.dedup.normalise import (
    normalise_address,
    normalise_date,
    normalise_email,
    normalise_name,
    normalise_phone,
    normalise_postcode,
)
from include.etlkit.dedup.weights import Weights

__all__ = [
    "DECISION_COLUMNS",
    "CustomerMatcher",
    "Decision",
    "MatchDecision",
    "MatchThresholds",
    "Weights",
    "decisions_frame",
    "normalise_address",
    "normalise_date",
    "normalise_email",
    "normalise_name",
    "normalise_phone",
    "normalise_postcode",
]

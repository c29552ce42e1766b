"""FEBRL 4 as the matcher sees a partner file, and the figures of a matching run against a truth.

A test and bench helper (not shipped to MWAA). ``febrl4(with_dob)`` reads the two CSV files in
``tests/data/febrl4/`` (their source and licence are in the README there): the 5,000 originals
(``dataset4a``) become the known customers, the 5,000 corrupted duplicates (``dataset4b``) the
partner records, in the matcher's column names:

- name: ``given_name`` + ``surname`` (known: ``first_name`` / ``last_name``; partner: ``full_name``);
- ``address``: street number + address_1 + address_2 + suburb; ``postcode``;
- ``date_of_birth`` only with ``with_dob``; ``soc_sec_id`` is not a phone and is left out.

Truth: ``rec-N-dup-0`` is customer ``N`` (``rec-N-org``). ``figures(decisions, truth)`` gives
precision, recall and review share with the definitions of ``tests/unit/test_dedup.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from include.etlkit.dedup import MatchDecision

FEBRL4 = Path(__file__).resolve().parents[1] / "tests" / "data" / "febrl4"


@dataclass(frozen=True)
class LinkageSet:
    """Known customers, partner records, and per partner ref its true customer id (None: new)."""

    existing: pd.DataFrame
    candidates: pd.DataFrame
    truth: Mapping[Any, int | None]


def _read(name: str) -> pd.DataFrame:
    frame = pd.read_csv(FEBRL4 / name, skipinitialspace=True, dtype=str, keep_default_na=False)
    frame.columns = [column.strip() for column in frame.columns]
    return frame.apply(lambda column: column.str.strip())


def _joined(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    return frame[list(columns)].apply(lambda row: " ".join(value for value in row if value), axis=1)


def febrl4(with_dob: bool = True) -> LinkageSet:
    """FEBRL 4: originals as known customers, duplicates as one partner batch (see the module doc)."""
    originals, duplicates = _read("dataset4a.csv"), _read("dataset4b.csv")
    address = ("street_number", "address_1", "address_2", "suburb")
    existing = pd.DataFrame(
        {
            "customer_id": originals["rec_id"].str.split("-").str[1].astype(int),
            "first_name": originals["given_name"],
            "last_name": originals["surname"],
            "address": _joined(originals, address),
            "postcode": originals["postcode"],
        }
    )
    candidates = pd.DataFrame(
        {
            "partner_customer_ref": duplicates["rec_id"],
            "full_name": _joined(duplicates, ("given_name", "surname")),
            "address": _joined(duplicates, address),
            "postcode": duplicates["postcode"],
        }
    )
    if with_dob:
        existing["date_of_birth"] = originals["date_of_birth"]
        candidates["date_of_birth"] = duplicates["date_of_birth"]
    truth = {ref: int(ref.split("-")[1]) for ref in candidates["partner_customer_ref"]}
    return LinkageSet(existing, candidates, truth)


@dataclass(frozen=True)
class Figures:
    """precision = correct matches / matches; recall = correct matches / records with a true customer;
    review share = reviews / records."""

    records: int
    positives: int
    matches: int
    correct: int
    reviews: int

    @property
    def precision(self) -> float:
        return self.correct / self.matches if self.matches else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.positives if self.positives else 1.0

    @property
    def review_share(self) -> float:
        return self.reviews / self.records if self.records else 0.0

    def summary(self) -> str:
        return (
            f"precision {self.precision:.4f}, recall {self.recall:.4f}, review {self.review_share:.2%} "
            f"({self.matches:,} matches, {self.positives:,} true duplicates, {self.reviews:,} reviews)"
        )


def figures(decisions: Sequence[MatchDecision], truth: Mapping[Any, int | None]) -> Figures:
    """The figures of ``decisions`` against ``truth`` (one decision per truth key)."""
    matches = correct = reviews = 0
    for decision in decisions:
        reviews += decision.decision == "review"
        if decision.decision == "match":
            matches += 1
            correct += decision.customer_id == truth[decision.candidate_ref]
    positives = sum(customer is not None for customer in truth.values())
    return Figures(len(decisions), positives, matches, correct, reviews)


def blocking_recall(blocked: Mapping[Any, list[int]], truth: Mapping[Any, int | None]) -> tuple[float, float]:
    """(share of true pairs compared, customers compared per record) of a ``blocked_customers`` map."""
    positives = [(ref, customer) for ref, customer in truth.items() if customer is not None]
    kept = sum(customer in blocked[ref] for ref, customer in positives)
    compared = sum(len(customers) for customers in blocked.values())
    return kept / len(positives) if positives else 1.0, compared / len(blocked) if blocked else 0.0

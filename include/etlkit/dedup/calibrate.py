"""Choose the ``match`` / ``review`` thresholds on your own labelled sample.

Scores are posterior probabilities in percent, so the defaults (88 / 50) mean "at least 88 in 100
pairs scoring so are the same person". Whether that holds on a partner's data is for a labelled
sample to say: a few hundred partner records with, for each, the customer it really is (or none).

``threshold_table(matcher, candidates, truth)`` matches the sample once and gives, per candidate
``match`` threshold, the precision, recall and share of records at or above it; pick the lowest
threshold whose precision you accept, then set ``customer_matching.match`` in
``include/config/retail.yaml``. The same from a shell, with three CSV files (truth: columns
``partner_customer_ref`` and ``customer_id``, empty for a new person)::

    python -m include.etlkit.dedup.calibrate customers.csv partner_sample.csv truth.csv

The table ignores the near-tie rule (a tie is a review whatever the threshold), so it is the
best case for each threshold by at most the share of ties.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from include.etlkit.dedup.matcher import CustomerMatcher

DEFAULT_MATCHES = (50, 60, 70, 80, 88, 90, 95, 98, 99)


def threshold_table(
    matcher: CustomerMatcher,
    candidates: pd.DataFrame,
    truth: Mapping[Any, int | None],
    matches: Iterable[float] = DEFAULT_MATCHES,
) -> pd.DataFrame:
    """Per ``match`` threshold: ``matched`` records, ``precision``, ``recall`` (see module doc)."""
    decisions = matcher.match(candidates)
    positives = sum(truth.get(d.candidate_ref) is not None for d in decisions)
    rows = []
    for threshold in matches:
        taken = [d for d in decisions if d.best_candidate_id is not None and d.score >= threshold]
        correct = sum(d.best_candidate_id == truth.get(d.candidate_ref) for d in taken)
        rows.append(
            {
                "match": threshold,
                "matched": len(taken),
                "precision": correct / len(taken) if taken else 1.0,
                "recall": correct / positives if positives else 1.0,
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m include.etlkit.dedup.calibrate", description=__doc__)
    parser.add_argument("customers", help="known customers CSV (customer_id, first_name, last_name, ...)")
    parser.add_argument("candidates", help="partner sample CSV (partner_customer_ref, full_name, ...)")
    parser.add_argument("truth", help="CSV: partner_customer_ref, customer_id (empty: a new person)")
    args = parser.parse_args(argv)
    customers = pd.read_csv(args.customers, dtype=str, keep_default_na=False)
    customers["customer_id"] = customers["customer_id"].astype(int)
    candidates = pd.read_csv(args.candidates, dtype=str, keep_default_na=False)
    labels = pd.read_csv(args.truth, dtype=str, keep_default_na=False)
    truth = {
        ref: int(customer) if customer else None
        for ref, customer in zip(labels["partner_customer_ref"], labels["customer_id"], strict=True)
    }
    print(threshold_table(CustomerMatcher(customers), candidates, truth).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

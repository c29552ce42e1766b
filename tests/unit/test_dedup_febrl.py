"""Customer matching on data nobody here wrote (FEBRL 4), and the parts that make it hold there.

FEBRL 4 (``tests/data/febrl4/``, read by ``bench/febrl.py``): 5,000 originals as known customers,
5,000 corrupted duplicates as one partner batch. Figures are printed (``pytest -s`` / ``-rP``) and
asserted loosely below the measured ones (README: "Customer matching"), so a regression fails but
noise does not. Definitions as in ``test_dedup.py``: precision = correct matches / matches, recall
= correct matches / true duplicates (a review counts as not matched).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.febrl import blocking_recall, febrl4, figures
from include.etlkit.dedup import CustomerMatcher, MatchThresholds, normalise_date
from include.etlkit.dedup.blocking import DEFAULT_MAX_CANDIDATES, BlockIndex
from include.etlkit.dedup.calibrate import threshold_table
from include.etlkit.dedup.comparison import Comparison, Records
from include.etlkit.dedup.normalise import name_tokens, postcode_outward
from include.etlkit.dedup.weights import TermFrequencies, estimate_m, estimate_u


@pytest.fixture(scope="module")
def with_dob():
    return febrl4(with_dob=True)


@pytest.fixture(scope="module")
def without_dob():
    return febrl4(with_dob=False)


def test_febrl4_loads_as_the_matcher_reads_it(with_dob, without_dob):
    assert len(with_dob.existing) == len(with_dob.candidates) == 5_000
    assert with_dob.existing["customer_id"].is_unique
    assert set(with_dob.truth.values()) == set(with_dob.existing["customer_id"])  # one duplicate each
    assert "date_of_birth" in with_dob.candidates and "date_of_birth" not in without_dob.candidates
    first = with_dob.existing.set_index("customer_id").loc[1070]
    assert (first["first_name"], first["last_name"], first["postcode"]) == ("michaela", "neumann", "4223")
    assert first["address"] == "8 stanley street miami winston hills"


def test_blocking_keeps_febrl_true_pairs_with_bounded_work(with_dob):
    matcher = CustomerMatcher(with_dob.existing)
    kept, per_record = blocking_recall(matcher.blocked_customers(with_dob.candidates), with_dob.truth)
    print(f"\nFEBRL 4 blocking recall {kept:.4f}, {per_record:.1f} customers compared per record")
    assert kept >= 0.99  # the single Soundex-of-all-names key kept 67 %
    assert per_record <= DEFAULT_MAX_CANDIDATES  # bounded whatever the table size


@pytest.mark.parametrize(
    ("dob", "households", "precision", "recall"),
    [(True, True, 0.99, 0.95), (False, False, 0.99, 0.84)],
    ids=["with date of birth", "without, household rule off"],
)
def test_febrl4_precision_and_recall(with_dob, without_dob, dob, households, precision, recall):
    linkage = with_dob if dob else without_dob
    matcher = CustomerMatcher(linkage.existing, households=households)
    result = figures(matcher.match(linkage.candidates), linkage.truth)
    print(f"\nFEBRL 4 (date of birth: {dob}, household rule: {households}): {result.summary()}")
    assert result.precision >= precision
    assert result.recall >= recall
    assert result.review_share <= 0.05


def test_household_rule_is_what_costs_recall_without_a_date_of_birth(without_dob):
    """Without a date of birth, FEBRL's "another given name, same family and address" duplicates
    look exactly like the labelled set's household members; the rule reads them as new people."""
    sample = without_dob.candidates.iloc[:1_500]
    truth = {ref: without_dob.truth[ref] for ref in sample["partner_customer_ref"]}
    on = figures(CustomerMatcher(without_dob.existing).match(sample), truth)
    off = figures(CustomerMatcher(without_dob.existing, households=False).match(sample), truth)
    print(f"\nFEBRL 4 without dob, 1,500 records: rule on {on.summary()}; off {off.summary()}")
    assert on.precision >= 0.99 and off.precision >= 0.99
    assert off.recall > on.recall


def test_em_learns_that_febrl_typists_change_given_names(with_dob):
    matcher = CustomerMatcher(with_dob.existing)
    matcher.match(with_dob.candidates.iloc[:2_000])
    weights = matcher.weights
    assert weights is not None
    print("\n" + weights.describe())
    # FEBRL replaces about one given name in ten: EM finds it, far above the prior's 1 %.
    assert 0.04 <= weights.m["given"][3] <= 0.2
    # A date of birth agreeing is strong evidence, disagreeing strong evidence against.
    assert np.log2(weights.m["dob"][0] / weights.u["dob"][0]) > 4
    assert np.log2(weights.m["dob"][2] / weights.u["dob"][2]) < -2


# -- the parts, on small explicit data ---------------------------------------------------------------


def _records(rows: list[tuple[str, str, str, str, str]]) -> Records:
    frame = pd.DataFrame(rows, columns=["first_name", "last_name", "address", "postcode", "date_of_birth"])
    pairs = zip(frame["first_name"], frame["last_name"], strict=True)
    names = [(name_tokens(first), name_tokens(last)) for first, last in pairs]
    return Records(list(range(len(frame))), names, frame)


def test_comparison_levels_grade_each_field_and_treat_missing_as_no_evidence():
    left = _records([("michaela", "neumann", "8 stanley street", "4223", "19151111")] * 4)
    right = _records(
        [
            ("michaela", "neumann", "8 stanley street", "4223", "19151111"),
            ("micheala", "neumann", "8 stanley st", "4224", "19151112"),
            ("neumann", "michaela", "9 stanley street", "5000", ""),  # swapped names, no dob
            ("bob", "smith", "", "4223", "19151111"),
        ]
    )
    index = np.arange(4)
    levels = Comparison(left, index, right, index).levels
    assert levels["given"].tolist() == [0, 1, 0, 3]
    assert levels["family"].tolist() == [0, 0, 0, 3]
    assert levels["address"].tolist() == [0, 0, 2, -1]  # another house number: similar at most
    assert levels["postcode"].tolist() == [0, 1, 2, 0]
    assert levels["dob"].tolist() == [0, 1, -1, 0]


def test_normalise_date_and_numeric_postcode_district():
    assert normalise_date("1951-11-09") == normalise_date(19511109) == "19511109"
    assert normalise_date(pd.Timestamp("1951-11-09")) == "19511109"
    assert normalise_date("1951") == normalise_date(None) == normalise_date(float("nan")) == ""
    assert postcode_outward("4223") == "422" and postcode_outward("LS14AB") == "LS1"


def test_blocking_caps_the_customers_compared_per_record():
    existing = _records([("john", "smith", f"{n} high street", "4223", "") for n in range(200)])
    index = BlockIndex(existing, max_candidates=25)
    partner = _records([("jon", "smith", "7 high street", "4223", "")])
    found = index.candidates(partner, 0)
    assert len(found) == 25 and found == sorted(found)
    assert 7 in found  # the one sharing the most keys (house number and street) survives the cap


def test_term_frequency_makes_a_common_name_weaker_evidence():
    frequencies = TermFrequencies(["smith"] * 50 + ["jones"] * 30 + [f"rare{n}" for n in range(20)])
    smith, rare, none = frequencies.adjustment(np.array(["smith", "rare3", ""], dtype=object))
    assert smith < 0 < rare and none == 0


def test_em_recovers_m_from_simulated_pairs():
    """Levels drawn from known m and u: EM, with u fixed, finds m and the share of matches."""
    rng = np.random.default_rng(5)
    fields = ("given", "family", "address", "postcode", "phone", "email", "dob")
    true_m = {
        "given": [0.8, 0.1, 0.05, 0.05],
        "family": [0.85, 0.1, 0.03, 0.02],
        "address": [0.7, 0.1, 0.1, 0.1],
        "postcode": [0.9, 0.05, 0.05],
        "phone": [0.9, 0.1],
        "email": [0.9, 0.1],
        "dob": [0.9, 0.05, 0.05],
    }
    true_u = {
        "given": [0.05, 0.02, 0.1, 0.83],
        "family": [0.3, 0.05, 0.1, 0.55],
        "address": [0.01, 0.01, 0.05, 0.93],
        "postcode": [0.3, 0.2, 0.5],
        "phone": [0.01, 0.99],
        "email": [0.005, 0.995],
        "dob": [0.01, 0.02, 0.97],
    }
    matches, non_matches = 2_000, 38_000

    def draw(probabilities: dict[str, list[float]], n: int) -> np.ndarray:
        columns = [rng.choice(len(probabilities[f]), size=n, p=probabilities[f]) for f in fields]
        return np.stack(columns, axis=1)

    levels = np.concatenate([draw(true_m, matches), draw(true_u, non_matches)]).astype(np.int8)
    u = estimate_u(draw(true_u, 50_000).astype(np.int8))
    weights = estimate_m(levels, u, records=4_000)
    assert weights.prior == pytest.approx(matches / (matches + non_matches), abs=0.005)
    for field in fields:
        assert weights.m[field] == pytest.approx(true_m[field], abs=0.03)


def test_threshold_table_gives_the_figures_per_threshold_on_a_labelled_sample(with_dob):
    sample = with_dob.candidates.iloc[:1_000]
    truth = {ref: with_dob.truth[ref] for ref in sample["partner_customer_ref"]}
    table = threshold_table(CustomerMatcher(with_dob.existing), sample, truth, matches=(50, 88, 99))
    assert list(table["match"]) == [50, 88, 99]
    assert table["precision"].is_monotonic_increasing or table["precision"].min() >= 0.99
    assert table["recall"].is_monotonic_decreasing
    assert table.loc[table["match"] == 88, "recall"].item() >= 0.9


def test_thresholds_keep_their_meaning_for_the_operator(with_dob):
    """``review``/``match`` still split scores three ways, on FEBRL's estimated scores too."""
    sample = with_dob.candidates.iloc[:500]
    decisions = CustomerMatcher(with_dob.existing, MatchThresholds(match=88, review=50)).match(sample)
    for decision in decisions:
        expected = "match" if decision.score >= 88 else "review" if decision.score >= 50 else "new"
        assert decision.decision == expected or decision.explanation.startswith("nearly tied")


def test_calibrate_cli_prints_the_threshold_table_from_three_csv_files(with_dob, tmp_path, capsys):
    from include.etlkit.dedup.calibrate import main

    sample = with_dob.candidates.iloc[:300]
    with_dob.existing.to_csv(tmp_path / "customers.csv", index=False)
    sample.to_csv(tmp_path / "sample.csv", index=False)
    truth = pd.DataFrame(
        {
            "partner_customer_ref": sample["partner_customer_ref"],
            # The first 50 labelled "new": their matches now count against precision.
            "customer_id": [None] * 50 + [with_dob.truth[ref] for ref in sample["partner_customer_ref"][50:]],
        }
    )
    truth["customer_id"] = truth["customer_id"].astype("Int64")
    truth.to_csv(tmp_path / "truth.csv", index=False)
    assert main([str(tmp_path / name) for name in ("customers.csv", "sample.csv", "truth.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["match", "matched", "precision", "recall"]
    at_88 = next(line.split() for line in lines[1:] if line.split()[0] == "88")
    assert 0.7 < float(at_88[2]) < 0.9  # about 50 of ~290 matches are now "wrong"


def test_comparing_in_chunks_decides_exactly_as_at_once(with_dob, monkeypatch):
    from include.etlkit.dedup import matcher as matcher_module

    sample = with_dob.candidates.iloc[:400]
    matcher = CustomerMatcher(with_dob.existing)
    whole = matcher.match(sample)
    monkeypatch.setattr(matcher_module, "CHUNK_RECORDS", 7)
    assert matcher.match(sample) == whole

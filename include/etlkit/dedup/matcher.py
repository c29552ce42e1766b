"""Match partner customer records to the customers the warehouse knows, or give them new ids.

How a decision is reached, and why:

1. **Normal forms.** Every field is normalised first (``normalise.py``) so formatting never counts
   as a difference.
2. **Blocking** (``blocking.py``). A partner record is compared only with the customers that share
   a key with it in one of several passes (postcode, phone, email, date of birth, name codes alone
   and with the district or birth year, house number with street or district, and a sorted
   neighbourhood of names), at most ``max_candidates`` of them: a true duplicate with a typo in its
   name and a new postcode is still compared with its customer, and the work per record is bounded.
3. **Evidence** (``comparison.py``, ``weights.py``). Each field of a compared pair is sorted into an
   agreement level (exact, a typo away, similar, different; missing says nothing). What each level is
   worth is estimated, Fellegi-Sunter style, never set by hand: ``u`` (how often two different people
   reach it) from the known customers blocked against each other, ``m`` (how often one person
   re-typed reaches it) by EM on the batch's own pairs, a common name agreeing counting less than a
   rare one. The bits add up on top of the prior and the score is the posterior probability in
   percent, ``100 / (1 + 2 ** -bits)``. One rule on top (``households``): a pair whose family name
   agrees but whose given name is another one, with no date of birth or email agreeing, scores at
   most 33: address, postcode and a shared landline say which household, not which person.
4. **Decision.** The best-scoring customer is a ``match`` at or above ``thresholds.match`` unless a
   second customer is nearly tied with it (both at or above ``match`` and within ``tie_margin``
   points: the warehouse may hold that person twice), which is a ``review``; a best score in
   ``[review, match)`` is a ``review``; below ``review`` the record is ``new``.
5. **Within the batch.** ``new`` records are compared with each other the same way; those at or
   above ``match`` (transitively) are one person and get one new id. ``review`` records are left to
   a person and get no id.
6. **Determinism.** Candidates are decided in the order of their ``partner_customer_ref``; ties in
   score go to the lower ``customer_id``; new ids are drawn from the caller's ``next_id`` in that
   order, one per new person. The same inputs always give the same decisions and ids (the weights are
   estimated from the same pairs in the same order).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from include.etlkit.dedup.blocking import (
    DEFAULT_MAX_BLOCK,
    DEFAULT_MAX_CANDIDATES,
    DEFAULT_WINDOW,
    BlockIndex,
)
from include.etlkit.dedup.comparison import FIELDS, LEVELS, Comparison, Records, level_matrix
from include.etlkit.dedup.normalise import name_tokens
from include.etlkit.dedup.weights import TermFrequencies, Weights, estimate_m, estimate_u

Decision = Literal["match", "new", "review"]
MATCH: Decision = "match"
NEW: Decision = "new"
REVIEW: Decision = "review"

EXISTING_COLUMNS = ("customer_id", "first_name", "last_name", "address", "postcode", "phone_number", "email")
CANDIDATE_COLUMNS = ("partner_customer_ref", "full_name", "address", "postcode", "phone_number", "email")
DECISION_COLUMNS = ("candidate_ref", "decision", "customer_id", "score", "best_candidate_id", "explanation")


@dataclass(frozen=True)
class MatchThresholds:
    """Score thresholds (0-100) of the decisions.

    ``match``: at or above, the record is that customer. ``review``: at or above (and below
    ``match``), a person decides. ``tie_margin``: a match is a review instead when a second customer
    also scores at or above ``match`` within this many points of the best.
    """

    match: float = 88.0
    review: float = 50.0
    tie_margin: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.review <= self.match <= 100:
            raise ValueError(f"need 0 <= review <= match <= 100, got review={self.review} match={self.match}")
        if self.tie_margin < 0:
            raise ValueError(f"tie_margin must not be negative, got {self.tie_margin}")


U_SAMPLE = 2_000  # known customers blocked against the others to count u
GIVEN_DIFFERENT = LEVELS["given"].index("different")
HOUSEHOLD_CAP_BITS = -1.0  # score 33: below the default review threshold, a new person
CHUNK_RECORDS = 2_000  # partner records compared at a time (their pairs' strings held at once)


class MatchDecision(NamedTuple):
    """What became of one partner record.

    ``customer_id``: the matched customer (``match``), the new id (``new``), or None (``review``).
    ``score``: the best existing customer's score, 0-100 (0 when no customer shared a blocking key).
    ``best_candidate_id``: that customer's id, or None.
    ``explanation``: the per-field evidence of the best pair, for people reading the review table.
    """

    candidate_ref: Any
    decision: Decision
    customer_id: int | None
    score: float
    best_candidate_id: int | None
    explanation: str


def decisions_frame(decisions: Sequence[MatchDecision]) -> pd.DataFrame:
    """The decisions as a DataFrame with columns ``DECISION_COLUMNS`` (ids as nullable Int64)."""
    frame = pd.DataFrame(list(decisions), columns=list(DECISION_COLUMNS))
    for column in ("customer_id", "best_candidate_id"):
        frame[column] = frame[column].astype("Int64")
    frame["score"] = frame["score"].astype(float)
    return frame


def _name_frequency(names: Mapping[str, TermFrequencies], comparison: Comparison) -> np.ndarray:
    """The term-frequency bits of each pair's exact name agreements (0 where none)."""
    given = names["given"].adjustment(comparison.given_value)
    return given + names["family"].adjustment(comparison.family_value)


def _evidence(
    levels: np.ndarray, tf: np.ndarray, weights: Weights, households: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: bits per field, whether the household rule applies, and the total bits.

    The household rule: the family name agrees, the given name is another one and nothing personal
    (date of birth, email) vouches for it. Where people live and which phone they share is
    household evidence, so it must not outweigh that (``HOUSEHOLD_CAP_BITS``).
    """
    bits = weights.field_bits(levels)
    total = weights.prior_bits + bits.sum(axis=1) + tf
    level = {field: levels[:, f] for f, field in enumerate(FIELDS)}
    household = (
        (level["given"] == GIVEN_DIFFERENT)
        & np.isin(level["family"], (0, 1, 2))  # exact, a typo away or similar
        & (level["dob"] != 0)
        & (level["email"] != 0)
        & households
    )
    return bits, household, np.where(household, np.minimum(total, HOUSEHOLD_CAP_BITS), total)


def _scores(total: np.ndarray) -> np.ndarray:
    """Bits as a score in (0, 100): the posterior probability in percent, to 2 places."""
    return np.round(100.0 / (1.0 + np.exp2(-np.clip(total, -60, 60))), 2)


class _Scored:
    """Compared pairs (``left[li[k]]`` vs ``right[ri[k]]``) with similarities kept, to explain them."""

    def __init__(
        self,
        comparison: Comparison,
        weights: Weights,
        names: Mapping[str, TermFrequencies],
        households: bool = True,
    ) -> None:
        self.comparison = comparison
        self.li, self.ri = comparison.li, comparison.ri
        self.weights = weights
        self.tf = _name_frequency(names, comparison)
        self.bits, self.household, self.total = _evidence(
            level_matrix(comparison), self.tf, weights, households
        )
        self.score = _scores(self.total)

    def __len__(self) -> int:
        return len(self.li)

    def explain(self, k: int) -> str:
        parts = []
        for f, field in enumerate(FIELDS):
            similarity = self.comparison.similarity[field][k]
            if np.isnan(similarity):
                if field not in ("dob", "email"):
                    parts.append(f"{field} missing")
            else:
                parts.append(f"{field} {similarity:.2f} ({self.bits[k, f]:+.1f})")
        tf = f", name frequency {self.tf[k]:+.1f}" if self.tf[k] else ""
        if self.household[k]:
            tf += f", another given name in the family: at most {HOUSEHOLD_CAP_BITS:+.0f} bits"
        return ", ".join(parts) + f"{tf}; {self.total[k]:+.1f} bits with prior {self.weights.prior_bits:+.1f}"


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)}")


def _sequential_ids(start: int) -> Callable[[], int]:
    counter = itertools.count(start)
    return lambda: next(counter)


class CustomerMatcher:
    """Decides, for partner customer records, which known customer each is, or that it is new.

    ``existing``: a DataFrame with ``customer_id`` (unique) and ``first_name``, ``last_name``;
    ``address``, ``postcode``, ``phone_number``, ``email``, ``date_of_birth`` are optional (missing
    columns count as missing values). It is normalised, indexed and its ``u`` counted once; ``match``
    can then be called per batch, and estimates that batch's ``m`` (``self.weights`` afterwards).

    ``max_block`` / ``max_candidates`` / ``window``: the blocking bounds (``blocking.py``).
    ``households``: apply the household rule (module docstring, README "Customer matching").
    """

    def __init__(
        self,
        existing: pd.DataFrame,
        thresholds: MatchThresholds | None = None,
        *,
        max_block: int = DEFAULT_MAX_BLOCK,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        window: int = DEFAULT_WINDOW,
        households: bool = True,
    ) -> None:
        _require(existing, ("customer_id", "first_name", "last_name"), "existing")
        if existing["customer_id"].duplicated().any():
            raise ValueError("existing has duplicate customer_id values")
        existing = existing.sort_values("customer_id", kind="stable").reset_index(drop=True)
        self.thresholds = thresholds or MatchThresholds()
        self.max_block = max_block
        self.households = households
        firsts, lasts = existing["first_name"].tolist(), existing["last_name"].tolist()
        names = [(name_tokens(first), name_tokens(last)) for first, last in zip(firsts, lasts, strict=True)]
        self._existing = Records([int(i) for i in existing["customer_id"].tolist()], names, existing)
        self._index = BlockIndex(
            self._existing, max_block=max_block, max_candidates=max_candidates, window=window
        )
        self._names = {
            "given": TermFrequencies(self._existing.given),
            "family": TermFrequencies(self._existing.family),
        }
        self.u = self._estimate_u()
        self.weights: Weights | None = None  # estimated by the last ``match``
        self._first_new_id = (max(self._existing.ids) + 1) if len(self._existing) else 1

    def _estimate_u(self) -> dict[str, np.ndarray]:
        """``u`` from known customers blocked against the others: pairs of two different people."""
        size = len(self._existing)
        sample = np.unique(np.linspace(0, size - 1, num=min(size, U_SAMPLE)).astype(np.int64)) if size else []
        left: list[int] = []
        right: list[int] = []
        for i in sample:
            found = self._index.candidates(self._existing, int(i), exclude=int(i))
            left.extend([int(i)] * len(found))
            right.extend(found)
        li, ri = np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)
        return estimate_u(level_matrix(Comparison(self._existing, li, self._existing, ri)))

    # -- public -----------------------------------------------------------------------------------

    def match(
        self, candidates: pd.DataFrame, next_id: Callable[[], int] | None = None
    ) -> list[MatchDecision]:
        """One decision per candidate row, ordered by ``partner_customer_ref``.

        ``candidates``: ``partner_customer_ref`` (unique, mutually comparable) and ``full_name``;
        ``address``, ``postcode``, ``phone_number``, ``email``, ``date_of_birth`` optional.
        ``next_id`` allocates the id of each new person (called once per person, in ref order); by
        default ids continue after the largest existing ``customer_id``.
        """
        records = self._prepare(candidates)
        allocate = next_id or _sequential_ids(self._first_new_id)
        li, ri, levels, tf = self._compare(records)
        self.weights = weights = estimate_m(levels, self.u, len(records))
        score = _scores(_evidence(levels, tf, weights, self.households)[2])
        del levels, tf
        # Best and runner-up per record (ties: the lower customer_id; existing rows are in id order).
        order = np.lexsort((ri, -score, li))
        starts = np.searchsorted(li[order], np.arange(len(records) + 1))
        has = starts[1:] > starts[:-1]
        best = order[starts[:-1][has]]
        best_pairs = Comparison(records, li[best], self._existing, ri[best])
        explained = _Scored(best_pairs, weights, self._names, self.households)  # same scores, with reasons
        decisions: list[MatchDecision] = []
        new_rows: list[int] = []
        k = 0
        for i in range(len(records)):
            runner = None
            if has[i] and starts[i + 1] - starts[i] > 1:
                second = order[starts[i] + 1]
                runner = (self._existing.ids[ri[second]], float(score[second]))
            decision = self._decide(records.ids[i], explained if has[i] else None, k, runner)
            k += bool(has[i])
            if decision.decision == NEW:
                new_rows.append(i)
            decisions.append(decision)
        for i, customer_id, note in self._new_people(records, new_rows, allocate, weights):
            old = decisions[i]
            decisions[i] = old._replace(customer_id=customer_id, explanation=f"{note}; {old.explanation}")
        return decisions

    def match_frame(self, candidates: pd.DataFrame, next_id: Callable[[], int] | None = None) -> pd.DataFrame:
        """``match`` as a DataFrame (columns ``DECISION_COLUMNS``)."""
        return decisions_frame(self.match(candidates, next_id))

    def blocked_customers(self, candidates: pd.DataFrame) -> dict[Any, list[int]]:
        """The customers each candidate is compared with (its blocks): to measure blocking recall."""
        records = self._prepare(candidates)
        return {
            ref: [self._existing.ids[j] for j in self._index.candidates(records, i)]
            for i, ref in enumerate(records.ids)
        }

    # -- steps ------------------------------------------------------------------------------------

    def _prepare(self, candidates: pd.DataFrame) -> Records:
        _require(candidates, ("partner_customer_ref", "full_name"), "candidates")
        duplicated = candidates["partner_customer_ref"][candidates["partner_customer_ref"].duplicated()]
        if not duplicated.empty:
            raise ValueError(f"partner_customer_ref not unique: {sorted(set(duplicated.tolist()))[:5]}")
        ordered = candidates.sort_values("partner_customer_ref", kind="stable").reset_index(drop=True)
        # Written order, "Last, First" already turned round: the first word is the given name.
        names = [(words[:1], words[1:]) for words in map(name_tokens, ordered["full_name"].tolist())]
        return Records(ordered["partner_customer_ref"].tolist(), names, ordered)

    def _compare(self, records: Records) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(li, ri, levels, name-frequency bits)`` of every blocked pair, ``CHUNK_RECORDS`` at a time.

        Only the levels (7 bytes a pair) and the bits are kept: the strings and similarities of a
        chunk are dropped before the next, so a batch's pairs cost ~40 bytes each, not hundreds.
        """
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for start in range(0, len(records), CHUNK_RECORDS):
            li, ri = self._index.pairs(records, range(start, min(start + CHUNK_RECORDS, len(records))))
            comparison = Comparison(records, li, self._existing, ri)
            parts.append((li, ri, level_matrix(comparison), _name_frequency(self._names, comparison)))
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros((0, len(FIELDS)), dtype=np.int8), np.zeros(0)
        li, ri, levels, tf = (np.concatenate(column) for column in zip(*parts, strict=True))
        return li, ri, levels, tf

    def _decide(
        self, ref: Any, explained: _Scored | None, k: int, runner: tuple[int, float] | None
    ) -> MatchDecision:
        """The decision of one record from its best pair (``explained[k]``) and runner-up."""
        limits = self.thresholds
        if explained is None:
            return MatchDecision(ref, NEW, None, 0.0, None, "no known customer shares a blocking key")
        score = float(explained.score[k])
        best_id = self._existing.ids[explained.ri[k]]
        explanation = explained.explain(k)
        if runner is not None:
            runner_id, runner_score = runner
            explanation += f"; runner-up {runner_id} at {runner_score:.2f}"
            if runner_score >= limits.match and score - runner_score < limits.tie_margin:
                return MatchDecision(ref, REVIEW, None, score, best_id, "nearly tied: " + explanation)
        if score >= limits.match:
            return MatchDecision(ref, MATCH, best_id, score, best_id, explanation)
        if score >= limits.review:
            return MatchDecision(ref, REVIEW, None, score, best_id, explanation)
        return MatchDecision(ref, NEW, None, score, best_id, explanation)

    def _new_people(
        self, records: Records, rows: list[int], allocate: Callable[[], int], weights: Weights
    ) -> Iterable[tuple[int, int, str]]:
        """``(row, new id, note)`` for the new rows, one id per person found within the batch."""
        parent = {row: row for row in rows}

        def root(row: int) -> int:
            while parent[row] != row:
                parent[row] = parent[parent[row]]
                row = parent[row]
            return row

        index = BlockIndex(
            records,
            rows,
            max_block=self.max_block,
            max_candidates=self._index.max_candidates,
            window=self._index.window,
        )
        li, ri = index.within(records, rows)
        if len(li):
            pairs = _Scored(Comparison(records, li, records, ri), weights, self._names, self.households)
            for a, b, score in zip(li.tolist(), ri.tolist(), pairs.score.tolist(), strict=True):
                if score >= self.thresholds.match:
                    low, high = sorted((root(a), root(b)))
                    parent[high] = low  # the person's root is its lowest row, so its first ref

        ids: dict[int, int] = {}
        for row in rows:  # ref order: the first record of each person draws its id
            person = root(row)
            if person not in ids:
                ids[person] = allocate()
            if person == row:
                yield row, ids[person], "new customer"
            else:
                yield row, ids[person], f"new customer, same person as {records.ids[person]} in this batch"

"""Match partner customer records to the customers the warehouse knows, or give them new ids.

How a decision is reached, and why:

1. **Normal forms.** Every field is normalised first (``normalise.py``) so formatting never counts
   as a difference.
2. **Blocking.** A partner record is compared only with the customers that share at least one
   blocking key with it: its postcode, its phone, its email, or the Soundex codes of all its name
   words (order-independent). A true duplicate keeps at least one of them in practice (a move keeps
   the phone or email, a typo in the name keeps the postcode), so recall survives, and the work is
   about ``len(candidates) * block size`` instead of ``len(candidates) * len(existing)``. A key shared
   by more than ``max_block`` customers (a placeholder phone, say) is ignored as evidence-free.
3. **Evidence.** Each field of a compared pair gives a similarity in [0, 1], with rapidfuzz. Names:
   the mean of the whole name's (best of ``ratio`` in written order, in reversed order and
   ``token_sort_ratio``) and of the weaker of given and family name, so a shared surname cannot
   hide a different first name. Addresses: ``token_sort_ratio`` / ``token_set_ratio``, capped when
   the house numbers differ. Phone and email: equality. Postcodes: 1 equal, 0.5 same district. A
   similarity becomes bits of evidence, Fellegi-Sunter style: from ``-disagree`` at or below the
   field's ``floor`` to ``+agree`` at or above its ``ceiling`` (``DEFAULT_EVIDENCE``). A field
   missing on either side gives 0 bits: a missing email says nothing.
   The bits add up on top of a prior (most compared pairs are different people) and the sum becomes
   a score in (0, 100) by the logistic ``100 / (1 + 2 ** -bits)``. So an exact phone or email is
   strong evidence but not proof on its own: a name that clearly disagrees (another member of the
   household) outweighs it.
4. **Decision.** The best-scoring customer is a ``match`` at or above ``thresholds.match`` unless a
   second customer is nearly tied with it (both at or above ``match`` and within ``tie_margin``
   points: the warehouse may hold that person twice), which is a ``review``; a best score in
   ``[review, match)`` is a ``review``; below ``review`` the record is ``new``.
5. **Within the batch.** ``new`` records are compared with each other the same way; those at or
   above ``match`` (transitively) are one person and get one new id. ``review`` records are left to
   a person and get no id.
6. **Determinism.** Candidates are decided in the order of their ``partner_customer_ref``; ties in
   score go to the lower ``customer_id``; new ids are drawn from the caller's ``next_id`` in that
   order, one per new person. The same inputs always give the same decisions and ids.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from include.etlkit.dedup.normalise import (
    name_tokens,
    normalise_address,
    normalise_email,
    normalise_phone,
    normalise_postcode,
    phonetic,
    postcode_outward,
)

Decision = Literal["match", "new", "review"]
MATCH: Decision = "match"
NEW: Decision = "new"
REVIEW: Decision = "review"

EXISTING_COLUMNS = ("customer_id", "first_name", "last_name", "address", "postcode", "phone_number", "email")
CANDIDATE_COLUMNS = ("partner_customer_ref", "full_name", "address", "postcode", "phone_number", "email")
Words = tuple[str, ...]
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


@dataclass(frozen=True)
class FieldEvidence:
    """How one field's similarity turns into bits of evidence.

    ``-disagree`` at or below ``floor``, ``+agree`` at or above ``ceiling``, linear in between: below
    the floor two values are as good as unrelated, above the ceiling as good as equal (a typo).
    """

    floor: float
    agree: float
    disagree: float
    ceiling: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.floor < self.ceiling <= 1:
            raise ValueError(f"need 0 <= floor < ceiling <= 1, got {self.floor} and {self.ceiling}")

    def bits(self, similarity: np.ndarray) -> np.ndarray:
        """Evidence per pair; 0 where the similarity is NaN (the field missing on a side)."""
        share = np.clip((similarity - self.floor) / (self.ceiling - self.floor), 0.0, 1.0)
        return np.nan_to_num(self.agree * share - self.disagree * (1.0 - share), nan=0.0)


# Tuned on tests.support.labelled.labelled_set (tests/unit/test_dedup.py prints the figures).
# Names disagree strongly (a different first name is a different person); address, postcode, phone
# and email disagree weakly (people move, change numbers, use another address) but agree strongly.
DEFAULT_EVIDENCE: Mapping[str, FieldEvidence] = {
    "name": FieldEvidence(floor=0.6, agree=6.0, disagree=10.0, ceiling=0.9),
    "address": FieldEvidence(floor=0.5, agree=6.0, disagree=2.0),
    "postcode": FieldEvidence(floor=0.0, agree=5.0, disagree=2.0),
    "phone": FieldEvidence(floor=0.0, agree=6.0, disagree=2.0),
    "email": FieldEvidence(floor=0.0, agree=8.0, disagree=1.0),
}
PRIOR_BITS = -8.0  # before any field is compared, a pair in a block is most likely two people
HOUSE_NUMBER_CAP = 0.3  # address similarity when both carry house numbers and none is shared
DEFAULT_MAX_BLOCK = 1_000


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


class _Records:
    """Normalised columns of a record set, as numpy object arrays so pairs index them in one go."""

    def __init__(self, ids: list[Any], names: list[tuple[Words, Words]], frame: pd.DataFrame) -> None:
        """``names``: per record its (given-name words, family-name words), as written."""

        def column(name: str, normalise: Callable[[Any], str]) -> np.ndarray:
            values = frame[name].tolist() if name in frame else [None] * len(frame)
            return np.array([normalise(value) for value in values], dtype=object)

        def strings(words: Iterable[tuple[str, ...]]) -> np.ndarray:
            return np.array([" ".join(w) for w in words], dtype=object)

        self.ids = ids
        self.given = strings(given for given, _ in names)
        self.family = strings(family for _, family in names)
        self.natural = strings(given + family for given, family in names)
        self.reversed = strings(family + given for given, family in names)
        self.name = strings(tuple(sorted(given + family)) for given, family in names)
        self.name_key = [".".join(sorted(phonetic(w) for w in given + family)) for given, family in names]
        self.address = column("address", normalise_address)
        self.numbers = np.array(
            [frozenset(word for word in address.split() if word[0].isdigit()) for address in self.address],
            dtype=object,
        )
        self.postcode = column("postcode", normalise_postcode)
        self.outward = np.array([postcode_outward(postcode) for postcode in self.postcode], dtype=object)
        self.phone = column("phone_number", normalise_phone)
        self.email = column("email", normalise_email)

    def __len__(self) -> int:
        return len(self.ids)

    def keys(self, i: int) -> list[str]:
        """The blocking keys of record ``i``: postcode, phone, email and the name's Soundex codes."""
        keys = []
        if len(self.postcode[i]) >= 5:
            keys.append("p:" + self.postcode[i])
        if len(self.phone[i]) >= 9:
            keys.append("t:" + self.phone[i])
        if self.email[i]:
            keys.append("e:" + self.email[i])
        if self.name_key[i]:
            keys.append("n:" + self.name_key[i])
        return keys

    def index(self) -> dict[str, list[int]]:
        blocks: dict[str, list[int]] = defaultdict(list)
        for i in range(len(self)):
            for key in self.keys(i):
                blocks[key].append(i)
        return blocks


class _Pairs:
    """Compared pairs (``left[i]`` vs ``right[j]``): similarities, evidence bits and scores."""

    FIELDS = ("name", "address", "postcode", "phone", "email")

    def __init__(
        self,
        left: _Records,
        li: np.ndarray,
        right: _Records,
        ri: np.ndarray,
        evidence: Mapping[str, FieldEvidence],
    ) -> None:
        self.li, self.ri = li, ri
        self.similarity = _similarities(left, li, right, ri)
        self.bits = {field: evidence[field].bits(self.similarity[field]) for field in self.FIELDS}
        total = PRIOR_BITS + sum(self.bits.values()) if len(li) else np.zeros(0)
        self.total = np.asarray(total, dtype=float)
        self.score = np.round(100.0 / (1.0 + np.exp2(-self.total)), 2)

    def __len__(self) -> int:
        return len(self.li)

    def explain(self, k: int) -> str:
        parts = []
        for field in self.FIELDS:
            similarity = self.similarity[field][k]
            if np.isnan(similarity):
                parts.append(f"{field} missing")
            else:
                parts.append(f"{field} {similarity:.2f} ({self.bits[field][k]:+.1f})")
        return ", ".join(parts) + f"; {self.total[k]:+.1f} bits with prior {PRIOR_BITS:+.0f}"


def _missing(*columns: np.ndarray) -> np.ndarray:
    result = np.zeros(len(columns[0]), dtype=bool)
    for column in columns:
        result |= column == ""
    return result


def _similarities(
    left: _Records, li: np.ndarray, right: _Records, ri: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-field similarity in [0, 1] of each pair; NaN where the field is missing on either side."""
    if len(li) == 0:
        return {field: np.zeros(0) for field in _Pairs.FIELDS}

    def fuzzy(scorer: Callable[..., float], a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return cpdist(a, b, scorer=scorer, workers=-1).astype(float) / 100.0

    def masked(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.where(_missing(a, b), np.nan, values)

    natural = left.natural[li]
    whole = np.maximum.reduce(
        [
            fuzzy(fuzz.ratio, natural, right.natural[ri]),
            fuzzy(fuzz.ratio, natural, right.reversed[ri]),
            fuzzy(fuzz.ratio, left.name[li], right.name[ri]),  # sorted words: token_sort_ratio
        ]
    )
    # The weaker of given and family name, in the better of the two alignments: a shared surname
    # must not hide a different first name (a household), as it does in the whole-name ratio.
    given, family = left.given[li], left.family[li]
    straight = (fuzzy(fuzz.ratio, given, right.given[ri]), fuzzy(fuzz.ratio, family, right.family[ri]))
    crossed = (fuzzy(fuzz.ratio, given, right.family[ri]), fuzzy(fuzz.ratio, family, right.given[ri]))
    weakest = np.where(
        straight[0] + straight[1] >= crossed[0] + crossed[1],
        np.minimum(*straight),
        np.minimum(*crossed),
    )
    name = (whole + weakest) / 2
    la, ra = left.address[li], right.address[ri]
    address = np.maximum(
        fuzzy(fuzz.token_sort_ratio, la, ra), 0.95 * fuzzy(fuzz.token_set_ratio, la, ra)
    )
    # "12 High Street" and "14 High Street" are neighbours, not one address.
    other_house = np.fromiter(
        (
            bool(a) and bool(b) and not (a & b)
            for a, b in zip(left.numbers[li], right.numbers[ri], strict=True)
        ),
        dtype=bool,
        count=len(li),
    )
    address = np.where(other_house, np.minimum(address, HOUSE_NUMBER_CAP), address)

    lp, rp = left.postcode[li], right.postcode[ri]
    lo = left.outward[li]
    district = (lo == right.outward[ri]) & (lo != "")
    postcode = np.where(lp == rp, 1.0, np.where(district, 0.5, 0.0))
    lt, rt = left.phone[li], right.phone[ri]
    le, re_ = left.email[li], right.email[ri]
    return {
        "name": masked(name, natural, right.natural[ri]),
        "address": masked(address, la, ra),
        "postcode": masked(postcode, lp, rp),
        "phone": masked((lt == rt).astype(float), lt, rt),
        "email": masked((le == re_).astype(float), le, re_),
    }


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
    ``address``, ``postcode``, ``phone_number``, ``email`` are optional (missing columns count as
    missing values). It is normalised and indexed once; ``match`` can then be called per batch.
    """

    def __init__(
        self,
        existing: pd.DataFrame,
        thresholds: MatchThresholds | None = None,
        *,
        evidence: Mapping[str, FieldEvidence] = DEFAULT_EVIDENCE,
        max_block: int = DEFAULT_MAX_BLOCK,
    ) -> None:
        _require(existing, ("customer_id", "first_name", "last_name"), "existing")
        if existing["customer_id"].duplicated().any():
            raise ValueError("existing has duplicate customer_id values")
        existing = existing.sort_values("customer_id", kind="stable").reset_index(drop=True)
        self.thresholds = thresholds or MatchThresholds()
        self.evidence = dict(evidence)
        self.max_block = max_block
        firsts, lasts = existing["first_name"].tolist(), existing["last_name"].tolist()
        names = [(name_tokens(first), name_tokens(last)) for first, last in zip(firsts, lasts, strict=True)]
        self._existing = _Records([int(i) for i in existing["customer_id"].tolist()], names, existing)
        self._blocks = self._existing.index()
        self._first_new_id = (max(self._existing.ids) + 1) if len(self._existing) else 1

    # -- public -----------------------------------------------------------------------------------

    def match(
        self, candidates: pd.DataFrame, next_id: Callable[[], int] | None = None
    ) -> list[MatchDecision]:
        """One decision per candidate row, ordered by ``partner_customer_ref``.

        ``candidates``: ``partner_customer_ref`` (unique, mutually comparable) and ``full_name``;
        ``address``, ``postcode``, ``phone_number``, ``email`` optional. ``next_id`` allocates the id
        of each new person (called once per person, in ref order); by default ids continue after the
        largest existing ``customer_id``.
        """
        records = self._prepare(candidates)
        allocate = next_id or _sequential_ids(self._first_new_id)
        pairs = self._pairs(records)
        decisions: list[MatchDecision | None] = [None] * len(records)
        new_rows: list[int] = []
        for i, group in self._groups(pairs, len(records)):
            decision = self._decide(records, i, pairs, group)
            if decision.decision == NEW:
                new_rows.append(i)
            decisions[i] = decision
        for i, customer_id, note in self._new_people(records, new_rows, allocate):
            old = decisions[i]
            assert old is not None
            decisions[i] = old._replace(customer_id=customer_id, explanation=f"{note}; {old.explanation}")
        return [decision for decision in decisions if decision is not None]

    def match_frame(
        self, candidates: pd.DataFrame, next_id: Callable[[], int] | None = None
    ) -> pd.DataFrame:
        """``match`` as a DataFrame (columns ``DECISION_COLUMNS``)."""
        return decisions_frame(self.match(candidates, next_id))

    def blocked_customers(self, candidates: pd.DataFrame) -> dict[Any, list[int]]:
        """The customers each candidate is compared with (its blocks): to measure blocking recall."""
        records = self._prepare(candidates)
        pairs = self._block_pairs(records)
        result: dict[Any, list[int]] = {ref: [] for ref in records.ids}
        for i, j in zip(*pairs, strict=True):
            result[records.ids[i]].append(self._existing.ids[j])
        return result

    # -- steps ------------------------------------------------------------------------------------

    def _prepare(self, candidates: pd.DataFrame) -> _Records:
        _require(candidates, ("partner_customer_ref", "full_name"), "candidates")
        duplicated = candidates["partner_customer_ref"][candidates["partner_customer_ref"].duplicated()]
        if not duplicated.empty:
            raise ValueError(f"partner_customer_ref not unique: {sorted(set(duplicated.tolist()))[:5]}")
        ordered = candidates.sort_values("partner_customer_ref", kind="stable").reset_index(drop=True)
        # Written order, "Last, First" already turned round: the first word is the given name.
        names = [(words[:1], words[1:]) for words in map(name_tokens, ordered["full_name"].tolist())]
        return _Records(ordered["partner_customer_ref"].tolist(), names, ordered)

    def _block_pairs(self, records: _Records) -> tuple[np.ndarray, np.ndarray]:
        left: list[int] = []
        right: list[int] = []
        for i in range(len(records)):
            found: set[int] = set()
            for key in records.keys(i):
                block = self._blocks.get(key)
                if block and len(block) <= self.max_block:
                    found.update(block)
            left.extend(itertools.repeat(i, len(found)))
            right.extend(sorted(found))
        return np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)

    def _pairs(self, records: _Records) -> _Pairs:
        li, ri = self._block_pairs(records)
        return _Pairs(records, li, self._existing, ri, self.evidence)

    @staticmethod
    def _groups(pairs: _Pairs, size: int) -> Iterable[tuple[int, np.ndarray]]:
        """Each candidate with its pairs' positions, best score first (ties: lower customer_id)."""
        order = np.lexsort((pairs.ri, -pairs.score, pairs.li))  # existing rows are in id order
        starts = np.searchsorted(pairs.li[order], np.arange(size + 1))
        for i in range(size):
            yield i, order[starts[i] : starts[i + 1]]

    def _decide(self, records: _Records, i: int, pairs: _Pairs, group: np.ndarray) -> MatchDecision:
        ref = records.ids[i]
        limits = self.thresholds
        if len(group) == 0:
            return MatchDecision(ref, NEW, None, 0.0, None, "no known customer shares a blocking key")
        best = int(group[0])
        score = float(pairs.score[best])
        best_id = self._existing.ids[pairs.ri[best]]
        explanation = pairs.explain(best)
        if len(group) > 1:
            runner = int(group[1])
            runner_score = float(pairs.score[runner])
            explanation += f"; runner-up {self._existing.ids[pairs.ri[runner]]} at {runner_score:.2f}"
            if runner_score >= limits.match and score - runner_score < limits.tie_margin:
                return MatchDecision(ref, REVIEW, None, score, best_id, "nearly tied: " + explanation)
        if score >= limits.match:
            return MatchDecision(ref, MATCH, best_id, score, best_id, explanation)
        if score >= limits.review:
            return MatchDecision(ref, REVIEW, None, score, best_id, explanation)
        return MatchDecision(ref, NEW, None, score, best_id, explanation)

    def _new_people(
        self, records: _Records, rows: list[int], allocate: Callable[[], int]
    ) -> Iterable[tuple[int, int, str]]:
        """``(row, new id, note)`` for the new rows, one id per person found within the batch."""
        parent = {row: row for row in rows}

        def root(row: int) -> int:
            while parent[row] != row:
                parent[row] = parent[parent[row]]
                row = parent[row]
            return row

        li, ri = self._batch_pairs(records, rows)
        if len(li):
            pairs = _Pairs(records, li, records, ri, self.evidence)
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

    def _batch_pairs(self, records: _Records, rows: list[int]) -> tuple[np.ndarray, np.ndarray]:
        blocks: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            for key in records.keys(row):
                blocks[key].append(row)
        found: set[tuple[int, int]] = set()
        for block in blocks.values():
            if 1 < len(block) <= self.max_block:
                found.update(itertools.combinations(block, 2))  # rows ascending: a < b
        ordered = sorted(found)
        return (
            np.array([a for a, _ in ordered], dtype=np.int64),
            np.array([b for _, b in ordered], dtype=np.int64),
        )

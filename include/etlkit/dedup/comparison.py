"""Record sets in normal form, and the comparison of a pair as one agreement level per field.

Fellegi-Sunter compares two records field by field and sorts each field into a few agreement levels
(exact, a typo away, similar, different); the weights of each level are then estimated from data
(``weights.py``), not set by hand. A field missing on either side has level ``MISSING``: it says
nothing either way. The similarities behind the levels are kept for the explanation a reviewer reads.

Levels, strongest agreement first (index 0):

- ``given``, ``family``: exact; Jaro-Winkler >= 0.92 or one edit or transposition apart (a typo);
  Jaro-Winkler >= 0.80; different. Given and family
  name are aligned first: a partner may write "Last First" without a comma, or swap the two, so the
  better of the straight and the crossed alignment is compared.
- ``address``: rapidfuzz token similarity >= 0.95; >= 0.85; >= 0.70; different. Two addresses whose
  house numbers share none are different, however alike the street ("12 High St" / "14 High St").
- ``postcode``: equal; same district; different.
- ``phone``, ``email``: equal; different.
- ``dob``: equal; one digit or a day/month swap apart (a typo); different.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from rapidfuzz import fuzz
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein
from rapidfuzz.process import cpdist

from include.etlkit.dedup.normalise import (
    normalise_address,
    normalise_date,
    normalise_email,
    normalise_phone,
    normalise_postcode,
    postcode_outward,
)

Words = tuple[str, ...]
MISSING = -1
LEVELS: Mapping[str, tuple[str, ...]] = {
    "given": ("exact", "typo", "similar", "different"),
    "family": ("exact", "typo", "similar", "different"),
    "address": ("same", "close", "similar", "different"),
    "postcode": ("exact", "district", "different"),
    "phone": ("exact", "different"),
    "email": ("exact", "different"),
    "dob": ("exact", "typo", "different"),
}
FIELDS = tuple(LEVELS)
NAME_TYPO, NAME_SIMILAR = 0.92, 0.80
ADDRESS_CUTS = (0.95, 0.85, 0.70)
HOUSE_NUMBER_CAP = 0.75  # at most "similar" when both carry house numbers and none is shared


class Records:
    """Normalised columns of a record set, as numpy object arrays so pairs index them in one go."""

    def __init__(self, ids: list[Any], names: list[tuple[Words, Words]], frame: pd.DataFrame) -> None:
        """``names``: per record its (given-name words, family-name words), as written."""

        def column(name: str, normalise: Callable[[Any], str]) -> np.ndarray:
            values = frame[name].tolist() if name in frame else [None] * len(frame)
            return np.array([normalise(value) for value in values], dtype=object)

        def strings(words: Iterable[Words]) -> np.ndarray:
            return np.array([" ".join(w) for w in words], dtype=object)

        self.ids = ids
        self.given = strings(given for given, _ in names)
        self.family = strings(family for _, family in names)
        self.natural = strings(given + family for given, family in names)
        self.address = column("address", normalise_address)
        shared: dict[tuple[str, ...], frozenset[str]] = {}  # one set per distinct house number(s)
        self.numbers = np.array(
            [
                shared.setdefault(key, frozenset(key))
                for key in (tuple(w for w in address.split() if w[0].isdigit()) for address in self.address)
            ],
            dtype=object,
        )
        self.postcode = column("postcode", normalise_postcode)
        self.outward = np.array([postcode_outward(postcode) for postcode in self.postcode], dtype=object)
        self.phone = column("phone_number", normalise_phone)
        self.email = column("email", normalise_email)
        self.dob = column("date_of_birth", normalise_date)

    def __len__(self) -> int:
        return len(self.ids)


class Comparison:
    """The pairs ``left[li[k]]`` / ``right[ri[k]]``: per field a similarity and a level per pair.

    ``given_value`` / ``family_value``: the left record's aligned name values, for the
    term-frequency adjustment of an exact agreement.
    """

    def __init__(self, left: Records, li: np.ndarray, right: Records, ri: np.ndarray) -> None:
        self.li, self.ri = li, ri
        self.similarity: dict[str, np.ndarray] = {}
        self.levels: dict[str, np.ndarray] = {}
        if len(li) == 0:
            for field in FIELDS:
                self.similarity[field] = np.zeros(0)
                self.levels[field] = np.zeros(0, dtype=np.int8)
            self.given_value = self.family_value = np.zeros(0, dtype=object)
            return
        self._names(left, li, right, ri)
        self._address(left, li, right, ri)
        self._exact("postcode", left.postcode[li], right.postcode[ri])
        lo = left.outward[li]
        district = (lo == right.outward[ri]) & (lo != "")
        postcode = self.similarity["postcode"]
        self.similarity["postcode"] = np.where(postcode == 0.0, np.where(district, 0.5, 0.0), postcode)
        self.levels["postcode"] = self._graded(self.similarity["postcode"], (1.0, 0.5))
        self._exact("phone", left.phone[li], right.phone[ri])
        self._exact("email", left.email[li], right.email[ri])
        self._dob(left.dob[li], right.dob[ri])

    def __len__(self) -> int:
        return len(self.li)

    @staticmethod
    def _graded(similarity: np.ndarray, cuts: Iterable[float]) -> np.ndarray:
        """Level per pair: 0 at or above the first cut, 1 at or above the second, ...; MISSING if NaN."""
        cuts = list(cuts)
        level = np.full(len(similarity), len(cuts), dtype=np.int8)
        for index in range(len(cuts) - 1, -1, -1):
            level[similarity >= cuts[index]] = index
        level[np.isnan(similarity)] = MISSING
        return level

    def _exact(self, field: str, a: np.ndarray, b: np.ndarray) -> None:
        missing = (a == "") | (b == "")
        self.similarity[field] = np.where(missing, np.nan, (a == b).astype(float))
        self.levels[field] = self._graded(self.similarity[field], (1.0,))

    def _names(self, left: Records, li: np.ndarray, right: Records, ri: np.ndarray) -> None:
        lg, lf, rg, rf = left.given[li], left.family[li], right.given[ri], right.family[ri]

        def jw(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            similarity = cpdist(a, b, scorer=JaroWinkler.normalized_similarity, workers=-1).astype(float)
            return np.where((a == "") | (b == ""), np.nan, similarity)

        def typo(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """One edit or transposition apart ("lea" / "lae", "mei" / "mi"): JW is harsh on short names."""
            return cpdist(a, b, scorer=OSA.distance, workers=-1) <= 1

        straight_g, straight_f, crossed_g, crossed_f = jw(lg, rg), jw(lf, rf), jw(lg, rf), jw(lf, rg)
        crossed_sum = np.nan_to_num(crossed_g) + np.nan_to_num(crossed_f)
        # Swapped only when that is clearly better: a crossed name at least a typo away, and more alike.
        crossed = (np.fmax(crossed_g, crossed_f) >= NAME_TYPO) & (
            crossed_sum > np.nan_to_num(straight_g) + np.nan_to_num(straight_f)
        )
        given = np.where(crossed, crossed_g, straight_g)
        family = np.where(crossed, crossed_f, straight_f)
        given_other, family_other = np.where(crossed, rf, rg), np.where(crossed, rg, rf)
        aligned = (("given", given, lg, given_other), ("family", family, lf, family_other))
        for field, similarity, mine, other in aligned:
            present = ~np.isnan(similarity)
            self.similarity[field] = similarity
            level = self._graded(similarity, (2.0, NAME_TYPO, NAME_SIMILAR))  # 2.0: exact is set below
            level[present & (level > 1) & typo(mine, other)] = 1
            level[present & (mine == other)] = 0
            self.levels[field] = level
        exact_g = self.levels["given"] == 0
        exact_f = self.levels["family"] == 0
        self.given_value = np.where(exact_g, lg, "")
        self.family_value = np.where(exact_f, lf, "")

    def _address(self, left: Records, li: np.ndarray, right: Records, ri: np.ndarray) -> None:
        la, ra = left.address[li], right.address[ri]

        def fuzzy(scorer: Callable[..., float]) -> np.ndarray:
            return cpdist(la, ra, scorer=scorer, workers=-1).astype(float) / 100.0

        address = np.maximum(fuzzy(fuzz.token_sort_ratio), 0.95 * fuzzy(fuzz.token_set_ratio))
        other_house = np.fromiter(
            (
                bool(a) and bool(b) and not (a & b)
                for a, b in zip(left.numbers[li], right.numbers[ri], strict=True)
            ),
            dtype=bool,
            count=len(li),
        )
        address = np.where(other_house, np.minimum(address, HOUSE_NUMBER_CAP), address)
        self.similarity["address"] = np.where((la == "") | (ra == ""), np.nan, address)
        self.levels["address"] = self._graded(self.similarity["address"], ADDRESS_CUTS)

    def _dob(self, a: np.ndarray, b: np.ndarray) -> None:
        missing = (a == "") | (b == "")
        distance = cpdist(a, b, scorer=Levenshtein.distance, workers=-1)
        swapped = np.fromiter(
            (x[:4] == y[:4] and x[4:6] == y[6:8] and x[6:8] == y[4:6] for x, y in zip(a, b, strict=True)),
            dtype=bool,
            count=len(a),
        )
        similarity = np.where(distance == 0, 1.0, np.where((distance == 1) | swapped, 0.5, 0.0))
        self.similarity["dob"] = np.where(missing, np.nan, similarity)
        self.levels["dob"] = self._graded(self.similarity["dob"], (1.0, 0.5))


def level_matrix(comparison: Comparison) -> np.ndarray:
    """The levels as one ``(pairs, fields)`` int8 matrix, fields in ``FIELDS`` order."""
    if len(comparison) == 0:
        return np.zeros((0, len(FIELDS)), dtype=np.int8)
    return np.stack([comparison.levels[field] for field in FIELDS], axis=1).astype(np.int8)

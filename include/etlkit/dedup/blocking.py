"""Which known customers a partner record is compared with: several blocking passes, bounded work.

A record is compared only with the customers that share a blocking key with it. One key alone loses
true pairs (a typo in the name changes its Soundex code, a move changes the postcode), so each pass
keys on a different, small combination of fields, and a true duplicate with a few fields corrupted
still shares at least one:

- ``p``: the postcode; ``t``: the phone; ``e``: the email; ``d``: the date of birth;
- ``n``: the Soundex codes of all name words, in any order;
- ``f``: the family name's Soundex code with the given name's initial (a typo in the given name);
- ``g``: the given name's Soundex code with the postcode district (a new family name, a typo in it);
- ``s``: the family name's Soundex code with the postcode district or the year of birth;
- ``a``: the house number with the street's first word's Soundex code, or with the postcode district;
- sorted neighbourhood: the ``window`` nearest names on either side in the sorted list of family +
  given name (and of given + family: the order may be swapped), which also finds typos a phonetic
  code misses.

Bounded: a key shared by more than ``max_block`` customers (a placeholder phone, a very common name
in a district) is dropped as evidence-free, and a record keeps at most ``max_candidates`` customers,
those sharing the most keys with it (ties: the lower customer id). So the work is at most
``len(candidates) * max_candidates`` comparisons, whatever the number of known customers.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from include.etlkit.dedup.comparison import Records
from include.etlkit.dedup.normalise import phonetic

DEFAULT_MAX_BLOCK = 1_000
DEFAULT_MAX_CANDIDATES = 30
DEFAULT_WINDOW = 3
INDEX_CHUNK = 10_000  # known customers keyed at a time while the index is built


@lru_cache(maxsize=262_144)
def _soundex(words: str) -> str:
    return ".".join(sorted(phonetic(word) for word in words.split()))


def blocking_keys(records: Records, i: int) -> list[str]:
    """The blocking keys of record ``i`` (see the module docstring for what each pass is for)."""
    given, family = records.given[i], records.family[i]
    postcode, district, phone = records.postcode[i], records.outward[i], records.phone[i]
    dob, address = records.dob[i], records.address[i]
    keys = []
    if len(postcode) >= 4:
        keys.append("p:" + postcode)
    if len(phone) >= 9:
        keys.append("t:" + phone)
    if records.email[i]:
        keys.append("e:" + records.email[i])
    if dob:
        keys.append("d:" + dob)
    if given or family:
        keys.append("n:" + _soundex(f"{given} {family}"))
    # A single word may be either name (one of them missing, or the two swapped): key it both ways.
    for first, last in dict.fromkeys([(given, family), (family, given)]):
        if not (first and last):
            continue
        keys.append(f"f:{_soundex(last)}.{first[0]}")
        if district:
            keys.append(f"g:{_soundex(first)}.{district}")
    for name in (family, given) if not (family and given) else (family,):
        if name and district:
            keys.append(f"s:{_soundex(name)}.{district}")
        if name and dob:
            keys.append(f"s:{_soundex(name)}.{dob[:4]}")
    numbers = [word for word in address.split() if word[0].isdigit()]
    street = [word for word in address.split() if not word[0].isdigit()]
    if numbers and street:
        keys.append(f"a:{numbers[0]}.{phonetic(street[0])}")
    if numbers and district:
        keys.append(f"a:{numbers[0]}.{district}")
    return keys


def name_sort_keys(records: Records, i: int) -> list[str]:
    """Sorted-neighbourhood keys: family + given, and given + family (the order may be swapped)."""
    given, family = records.given[i].replace(" ", ""), records.family[i].replace(" ", "")
    keys = {f"{family} {given}".strip(), f"{given} {family}".strip()}
    return sorted(key for key in keys if key)


class BlockIndex:
    """The known customers' blocks and sorted names, built once; ``candidates`` per record.

    The blocks are two numpy arrays, not a dict of lists: each (key, customer row) entry is the
    key's hash (int64) and the row (int32), sorted by hash, so a block is one ``searchsorted``
    slice and 100,000 customers' ~1.2 million entries take ~15 MB instead of ~150 MB of Python
    objects. A hash is only ever compared within this process (the index is never stored), and a
    collision of two 64-bit hashes could at worst add a few customers to a comparison.
    """

    def __init__(
        self,
        existing: Records,
        rows: Sequence[int] | None = None,
        *,
        max_block: int = DEFAULT_MAX_BLOCK,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.max_block, self.max_candidates, self.window = max_block, max_candidates, window
        hash_parts: list[np.ndarray] = []
        row_parts: list[np.ndarray] = []
        names: list[tuple[str, int]] = []
        indexed = list(rows) if rows is not None else range(len(existing))
        for start in range(0, len(indexed), INDEX_CHUNK):  # arrays per chunk: few Python ints alive
            hashes: list[int] = []
            positions: list[int] = []
            for j in indexed[start : start + INDEX_CHUNK]:
                keys = blocking_keys(existing, j)
                hashes.extend(map(hash, keys))
                positions.extend([j] * len(keys))
                names.extend((key, j) for key in name_sort_keys(existing, j))
            hash_parts.append(np.array(hashes, dtype=np.int64))
            row_parts.append(np.array(positions, dtype=np.int32))
        key_hash = np.concatenate(hash_parts) if hash_parts else np.zeros(0, dtype=np.int64)
        row = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.int32)
        del hash_parts, row_parts
        order = np.lexsort((row, key_hash))
        key_hash, row = key_hash[order], row[order]
        _, sizes = np.unique(key_hash, return_counts=True)
        small = np.repeat(sizes <= max_block, sizes)  # a key shared by too many says nothing
        self._hashes, self._rows = key_hash[small], row[small]
        names.sort()
        self.sorted_names = [name for name, _ in names]
        self.sorted_rows = np.array([row for _, row in names], dtype=np.int32)

    def block(self, key: str) -> np.ndarray:
        """The rows of the known customers with blocking key ``key`` (empty if none, or too many)."""
        at = hash(key)
        return self._rows[
            np.searchsorted(self._hashes, at, "left") : np.searchsorted(self._hashes, at, "right")
        ]

    def _neighbours(self, key: str) -> np.ndarray:
        at = bisect.bisect_left(self.sorted_names, key)
        return self.sorted_rows[max(0, at - self.window) : at + self.window]

    def candidates(self, records: Records, i: int, exclude: int | None = None) -> list[int]:
        """The known customers record ``i`` is compared with, at most ``max_candidates``, ascending."""
        shared: Counter[int] = Counter()
        for key in blocking_keys(records, i):
            shared.update(self.block(key).tolist())
        for key in name_sort_keys(records, i):
            shared.update(self._neighbours(key).tolist())
        shared.pop(exclude, None)  # type: ignore[arg-type]
        if len(shared) > self.max_candidates:
            ranked = sorted(shared.items(), key=lambda item: (-item[1], item[0]))
            return sorted(row for row, _ in ranked[: self.max_candidates])
        return sorted(shared)

    def pairs(self, records: Records, rows: Iterable[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(left, right)`` row positions of every compared pair, by left row then right row."""
        left: list[int] = []
        right: list[int] = []
        for i in rows if rows is not None else range(len(records)):
            found = self.candidates(records, i)
            left.extend([i] * len(found))
            right.extend(found)
        return np.array(left, dtype=np.int64), np.array(right, dtype=np.int64)

    def within(self, records: Records, rows: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """Pairs ``(a, b)``, ``a < b``, among the indexed rows of ``records`` itself (one batch).

        Each row is compared with at most ``max_candidates`` others, found as for known customers.
        """
        found: set[tuple[int, int]] = set()
        for i in rows:
            found.update((min(i, j), max(i, j)) for j in self.candidates(records, i, exclude=i))
        ordered = sorted(found)
        return (
            np.array([a for a, _ in ordered], dtype=np.int64),
            np.array([b for _, b in ordered], dtype=np.int64),
        )

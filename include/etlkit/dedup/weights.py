"""Fellegi-Sunter evidence weights, estimated from the data instead of set by hand.

For each field and agreement level (``comparison.LEVELS``) two probabilities are needed:

- ``u``: how often two *different* people who were compared reach that level. It is counted on the
  known customers themselves: a sample of them is blocked against the others exactly as partner
  records are (``estimate_u``), and a customer table holds each person once, so every such pair is a
  non-match. This is the ``u`` of the pairs the matcher really compares (blocking makes surnames and
  postcodes agree far more often than in random pairs), known before any partner file is seen.
- ``m``: how often the *same* person reaches it: a partner's typing habits, which no one knows in
  advance. It is learned by expectation-maximisation on the batch's own compared pairs
  (``estimate_m``, as splink and recordlinkage do), together with the share ``prior`` of compared
  pairs that are the same person. ``u`` stays fixed while EM runs, which keeps EM from drifting to
  another split of the pairs (households, namesakes) than "same person or not".

Both are maximum-a-posteriori estimates: ``PRIOR_M`` / ``PRIOR_U`` act as ``M_STRENGTH`` /
``U_STRENGTH`` pseudo-pairs, so a batch of three records (or a table of ten customers) gets sensible
weights and a batch of thousands is ruled by its own evidence.

A pair's evidence is ``log2(prior / (1 - prior)) + sum(log2(m / u))`` over its fields (a missing
field adds 0), plus the term-frequency adjustment of an exact name agreement
(``TermFrequencies``: a common surname agreeing is weaker evidence than a rare one, as in splink).
The score is the posterior probability in percent, ``100 / (1 + 2 ** -bits)``: a score of 88 means
that, on this model, 88 pairs in 100 scoring so are the same person.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from include.etlkit.dedup.comparison import FIELDS, LEVELS, MISSING

# Starting points and pseudo-counts of the estimates, strongest agreement level first. m: a partner
# types a field right most of the time and a given name differs in earnest very rarely; u: two
# different people in one block share a name or district often (blocking puts them there: the FEBRL
# and labelled tables measure 0.2 to 0.4 for a given name), a phone or email hardly ever.
PRIOR_M: Mapping[str, tuple[float, ...]] = {
    "given": (0.85, 0.1, 0.04, 0.01),
    "family": (0.85, 0.1, 0.04, 0.01),
    "address": (0.8, 0.1, 0.05, 0.05),
    "postcode": (0.85, 0.07, 0.08),
    "phone": (0.9, 0.1),
    "email": (0.9, 0.1),
    "dob": (0.9, 0.07, 0.03),
}
PRIOR_U: Mapping[str, tuple[float, ...]] = {
    "given": (0.2, 0.02, 0.08, 0.7),
    "family": (0.2, 0.03, 0.07, 0.7),
    "address": (0.02, 0.01, 0.03, 0.94),
    "postcode": (0.1, 0.2, 0.7),
    "phone": (0.005, 0.995),
    "email": (0.001, 0.999),
    "dob": (0.005, 0.01, 0.985),
}
M_STRENGTH = 20.0
U_STRENGTH = 50.0
PRIOR_STRENGTH = 10.0
MAX_START = 0.2
EM_ITERATIONS = 200
EM_TOLERANCE = 1e-7
PROBABILITY_FLOOR = 1e-6  # no level is impossible: keeps every log finite
TF_CLIP = 4.0  # bits: a term-frequency adjustment is a correction, never the whole decision


@dataclass(frozen=True)
class Weights:
    """The estimated model: ``prior`` share of compared pairs that match, ``m`` and ``u`` per level."""

    prior: float
    m: Mapping[str, np.ndarray]
    u: Mapping[str, np.ndarray]

    @property
    def prior_bits(self) -> float:
        return float(np.log2(self.prior / (1.0 - self.prior)))

    def table(self, field: str) -> np.ndarray:
        """``log2(m / u)`` per level, with a trailing 0 so that ``table[MISSING]`` is no evidence."""
        return np.append(np.log2(self.m[field] / self.u[field]), 0.0)

    def field_bits(self, levels: np.ndarray) -> np.ndarray:
        """Bits per pair and field for a ``(pairs, fields)`` level matrix."""
        if len(levels) == 0:
            return np.zeros((0, len(FIELDS)))
        return np.stack([self.table(field)[levels[:, f]] for f, field in enumerate(FIELDS)], axis=1)

    def describe(self) -> str:
        """One line per field: its levels with m, u and bits, for logs and the README."""
        lines = [f"prior {self.prior:.5f} ({self.prior_bits:+.1f} bits)"]
        for field in FIELDS:
            cells = [
                f"{name} m={m:.4f} u={u:.4f} ({np.log2(m / u):+.1f})"
                for name, m, u in zip(LEVELS[field], self.m[field], self.u[field], strict=True)
            ]
            lines.append(f"{field}: " + ", ".join(cells))
        return "\n".join(lines)


def _normalised(counts: np.ndarray) -> np.ndarray:
    probabilities = np.maximum(counts / counts.sum(), PROBABILITY_FLOOR)
    return probabilities / probabilities.sum()


def _level_counts(levels: np.ndarray, weights: np.ndarray, field: int, size: int) -> np.ndarray:
    column = levels[:, field]
    present = column != MISSING
    return np.bincount(column[present], weights=weights[present], minlength=size).astype(float)


def estimate_u(levels: np.ndarray) -> dict[str, np.ndarray]:
    """``u`` per field from the levels of known non-matching pairs, ``PRIOR_U`` as pseudo-counts."""
    ones = np.ones(len(levels))
    return {
        field: _normalised(
            _level_counts(levels, ones, f, len(LEVELS[field])) + U_STRENGTH * np.array(PRIOR_U[field])
        )
        for f, field in enumerate(FIELDS)
    }


def estimate_m(levels: np.ndarray, u: Mapping[str, np.ndarray], records: int) -> Weights:
    """``m`` and the prior by EM over a batch's compared pairs (``levels``), ``u`` held fixed.

    ``records``: how many partner records the pairs come from; the prior's starting point assumes
    half of them are known customers, one true pair each, and at most one pair in ``MAX_START``
    (a batch of one record compared with one customer says nothing about how likely a match is).
    """
    start = min(MAX_START, 0.5 * records / len(levels)) if len(levels) else MAX_START
    start = max(start, 1e-4)
    m = {field: np.array(PRIOR_M[field], dtype=float) for field in FIELDS}
    prior = start
    if len(levels) == 0:
        return Weights(prior, m, dict(u))
    # EM runs on the distinct level patterns (a few hundred), each with its count of pairs.
    radix = np.array([len(LEVELS[field]) + 1 for field in FIELDS], dtype=np.int64)
    places = np.cumprod(np.concatenate([[1], radix[:-1]]))
    codes = (levels.astype(np.int64) + 1) @ places
    _, first, counts = np.unique(codes, return_index=True, return_counts=True)
    patterns = levels[first]
    counts = counts.astype(float)
    for _ in range(EM_ITERATIONS):
        weights = Weights(prior, m, u)
        bits = weights.prior_bits + weights.field_bits(patterns).sum(axis=1)
        posterior = 1.0 / (1.0 + np.exp2(-np.clip(bits, -60, 60)))
        expected = posterior * counts
        new_m = {
            field: _normalised(
                _level_counts(patterns, expected, f, len(LEVELS[field]))
                + M_STRENGTH * np.array(PRIOR_M[field])
            )
            for f, field in enumerate(FIELDS)
        }
        new_prior = (expected.sum() + PRIOR_STRENGTH * start) / (counts.sum() + PRIOR_STRENGTH)
        new_prior = float(np.clip(new_prior, 1e-6, 1 - 1e-6))
        change = max(abs(new_prior - prior), *(np.abs(new_m[f] - m[f]).max() for f in FIELDS))
        m, prior = new_m, new_prior
        if change < EM_TOLERANCE:
            break
    return Weights(prior, m, dict(u))


class TermFrequencies:
    """How common each value of a name field is among the known customers.

    An exact agreement on value ``v`` is worth ``log2(m / u)`` on average; splink's adjustment adds
    ``log2(u_exact / tf(v))``, where ``u_exact`` is the chance two random customers share a value
    (``sum tf**2``): positive for a rare name, negative for a common one. Clipped to +-``TF_CLIP``.
    """

    def __init__(self, values: Iterable[str]) -> None:
        self.counts = Counter(value for value in values if value)
        self.total = sum(self.counts.values())
        self.u_exact = (
            sum(count * count for count in self.counts.values()) / self.total**2 if self.total else 0.0
        )

    def adjustment(self, values: np.ndarray) -> np.ndarray:
        """Bits to add per pair; ``values`` holds the agreed value, ``""`` where there is none."""
        if not self.total or len(values) == 0:
            return np.zeros(len(values))
        counts = pd.Series(values, dtype=object).map(self.counts).fillna(1.0).to_numpy(dtype=float)
        adjustment = np.log2(self.u_exact * self.total / np.maximum(counts, 1.0))
        return np.where(values == "", 0.0, np.clip(adjustment, -TF_CLIP, TF_CLIP))

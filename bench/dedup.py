"""Benchmark: customer matching of N partner records against M known customers; prints tables.

``python -m bench.dedup [--existing M] [--candidates N] [--seed S] [--no-febrl]`` (or ``python -m
bench.run --dedup``; default 100,000 known customers and 10,000 partner records). Figures, never a
test (``tests/unit/test_dedup*.py`` assert them loosely).

Needs no server. Three parts:

1. Speed and memory: the population and the partner batch come from
   ``tests.support.labelled.labelled_set`` (deterministic for a seed). The clock covers,
   separately, indexing the known customers (normalising, blocking, counting ``u``:
   ``CustomerMatcher(existing)``) and matching the batch (``matcher.match``: blocking, comparing, EM,
   deciding, within-batch de-duplication); generating the data is not timed. Precision, recall,
   review share and blocking recall against the truth are printed too.
2. The project's own labelled set at the size the tests use (3,000 known, 3,000 partner records).
3. FEBRL 4 (``tests/data/febrl4/``, via ``bench/febrl.py``), a public benchmark nobody here wrote:
   with and without the date of birth, and without it with the household rule off.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_EXISTING = 100_000
DEFAULT_CANDIDATES = 10_000


def _peak_mb(field: str = "VmHWM") -> float:
    """Peak (``VmHWM``) or current (``VmRSS``) resident memory of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _truth(labelled: Any) -> dict[Any, int | None]:
    """A labelled set's truth as ``{partner ref: true customer id or None}``."""
    frame = labelled.truth
    return {
        ref: None if pd.isna(customer) else int(customer)
        for ref, customer in zip(frame["partner_customer_ref"], frame["true_customer_id"], strict=True)
    }


def _quality_table() -> None:
    """Precision, recall, review share and blocking recall on the labelled set and on FEBRL 4."""
    from bench.febrl import blocking_recall, febrl4, figures
    from include.etlkit.dedup import CustomerMatcher
    from tests.support.labelled import labelled_set

    labelled = labelled_set(3_000, 3_000)
    runs = [("labelled_set(3000, 3000)", labelled.existing, labelled.candidates, _truth(labelled), True)]
    for dob, households in ((True, True), (False, True), (False, False)):
        linkage = febrl4(with_dob=dob)
        name = f"FEBRL 4, {'with' if dob else 'no'} date of birth" + ("" if households else ", rule off")
        runs.append((name, linkage.existing, linkage.candidates, linkage.truth, households))
    header = ("set (household rule on unless said)", "precision", "recall", "review", "blocking", "per rec")
    rows = [(*header, "s")]
    for name, existing, candidates, truth, households in runs:
        started = time.perf_counter()
        matcher = CustomerMatcher(existing, households=households)
        result = figures(matcher.match(candidates), truth)
        seconds = time.perf_counter() - started
        kept, per_record = blocking_recall(matcher.blocked_customers(candidates), truth)
        rows.append(
            (
                name,
                f"{result.precision:.4f}",
                f"{result.recall:.4f}",
                f"{result.review_share:.2%}",
                f"{kept:.4f}",
                f"{per_record:.1f}",
                f"{seconds:.1f}",
            )
        )
    print()
    _print_table(rows)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        print("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in pairs))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def bench_dedup(
    existing: int = DEFAULT_EXISTING, candidates: int = DEFAULT_CANDIDATES, seed: int = 1, febrl: bool = True
) -> int:
    import rapidfuzz

    from bench.febrl import blocking_recall
    from include.etlkit.dedup import CustomerMatcher
    from tests.support.labelled import evaluate, labelled_set

    started = time.perf_counter()
    labelled = labelled_set(existing, candidates, seed=seed)
    print(
        f"generated {existing:,} customers and {candidates:,} partner records (seed {seed}) "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

    generated_mb = _peak_mb("VmRSS")
    started = time.perf_counter()
    matcher = CustomerMatcher(labelled.existing)
    index_s = time.perf_counter() - started
    started = time.perf_counter()
    decisions = matcher.match(labelled.candidates)
    match_s = time.perf_counter() - started
    result = evaluate(labelled, decisions)

    def rate(records: int, seconds: float) -> tuple[str, str, str]:
        return f"{records:,}", f"{seconds:.2f}", f"{records / seconds:,.0f}"

    rows = [
        ("step", "records", "seconds", "records/s"),
        ("index: normalise + block known customers", *rate(existing, index_s)),
        ("match: score + decide + batch dedup", *rate(candidates, match_s)),
        ("both (a batch against a fresh index)", *rate(candidates, index_s + match_s)),
    ]
    print()
    _print_table(rows)
    print()
    blocked = matcher.blocked_customers(labelled.candidates)
    kept, per_record = blocking_recall(blocked, _truth(labelled))
    print(
        f"precision {result.precision:.4f}, recall {result.recall:.4f}, review {result.review_share:.2%} "
        f"({result.matches:,} matches, {result.positives:,} true duplicates, {result.reviews:,} reviews)"
    )
    print(f"blocking recall {kept:.4f}, {per_record:.1f} known customers compared per partner record")
    print(
        f"peak RSS {_peak_mb():.0f} MB (this process; {generated_mb:.0f} MB held after generating the data)"
    )
    print(f"cores: {os.cpu_count()}; Python {platform.python_version()}, rapidfuzz {rapidfuzz.__version__}")
    if febrl:
        _quality_table()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=DEFAULT_EXISTING, help="known customers")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES, help="partner records")
    parser.add_argument("--seed", type=int, default=1, help="labelled-set seed")
    parser.add_argument("--no-febrl", action="store_true", help="skip the quality table (FEBRL 4)")
    args = parser.parse_args(argv)
    if args.existing < 1 or args.candidates < 2:
        parser.error("need at least 1 known customer and 2 partner records")
    return bench_dedup(args.existing, args.candidates, args.seed, febrl=not args.no_febrl)


if __name__ == "__main__":
    raise SystemExit(main())

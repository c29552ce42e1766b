"""Benchmark: customer matching of N partner records against M known customers; prints a table.

``python -m bench.dedup [--existing M] [--candidates N] [--seed S]`` (or ``python -m bench.run
--dedup``; default 100,000 known customers and 10,000 partner records). A figure, never a test.

Needs no server: the population and the partner batch come from
``tests.support.labelled.labelled_set`` (deterministic for a seed), so the run also reports
precision, recall and review share against the truth. The clock covers, separately, indexing the
known customers (normalising and blocking, ``CustomerMatcher(existing)``) and matching the batch
(``matcher.match``, within-batch de-duplication included); generating the data is not timed.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

DEFAULT_EXISTING = 100_000
DEFAULT_CANDIDATES = 10_000


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_dedup(existing: int = DEFAULT_EXISTING, candidates: int = DEFAULT_CANDIDATES, seed: int = 1) -> int:
    import rapidfuzz

    from include.etlkit.dedup import CustomerMatcher
    from tests.support.labelled import evaluate, labelled_set

    started = time.perf_counter()
    labelled = labelled_set(existing, candidates, seed=seed)
    print(
        f"generated {existing:,} customers and {candidates:,} partner records (seed {seed}) "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

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
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print()
    for n, row in enumerate(rows):
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in pairs]
        print("  ".join(cells))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print()
    print(
        f"precision {result.precision:.4f}, recall {result.recall:.4f}, review {result.review_share:.2%} "
        f"({result.matches:,} matches, {result.positives:,} true duplicates, {result.reviews:,} reviews)"
    )
    print(f"peak RSS {_peak_mb():.0f} MB (this process, data generation included)")
    print(
        f"cores: {os.cpu_count()}; Python {platform.python_version()}, rapidfuzz {rapidfuzz.__version__}"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dedup", description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=DEFAULT_EXISTING, help="known customers")
    parser.add_argument("--candidates", type=int, default=DEFAULT_CANDIDATES, help="partner records")
    parser.add_argument("--seed", type=int, default=1, help="labelled-set seed")
    args = parser.parse_args(argv)
    if args.existing < 1 or args.candidates < 2:
        parser.error("need at least 1 known customer and 2 partner records")
    return bench_dedup(args.existing, args.candidates, args.seed)


if __name__ == "__main__":
    raise SystemExit(main())

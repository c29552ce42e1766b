"""Extract windows: which rows of a table an incremental run lands. The one definition of it.

A run lands rows whose cursor (``last_updated``) is in ``[lower, upper)`` where ``upper`` is the run's
data-interval end and ``lower`` is where the table had got to (or the interval start, whichever is
earlier) minus an overlap for transactions that commit late. So:

- no gaps: a version committed before ``upper`` is landed by this run or, if it commits late, by a
  later run whose overlap still covers it; a failed run leaves the state behind and the next run
  starts from there;
- a backfill of an old interval re-lands exactly that interval (its ``lower`` is the interval's own
  start), and since the state only moves forward it never rewinds later runs;
- the first run of a table has no state: it lands a full snapshot.

Rows landed twice (overlaps, reruns) are the same versions and are deduplicated downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_OVERLAP = timedelta(minutes=15)


@dataclass(frozen=True)
class ExtractWindow:
    lower: datetime | None  # None: a full snapshot
    upper: datetime
    refresh: str | None = None  # the run id of a re-landing a person asked for (full_refresh, since)

    @property
    def mode(self) -> str:
        return "full" if self.lower is None else "incremental"

    def describe(self) -> str:
        return f"[{self.lower.isoformat() if self.lower else 'beginning'}, {self.upper.isoformat()})"


def run_interval(context: Any) -> tuple[datetime, datetime]:
    """The run's data interval, or, for a run triggered without a logical date, the instant it ran.

    Airflow 3 creates no data interval for a run triggered without a logical date (``airflow dags
    trigger`` without ``-l``); such a run then lands what changed up to the moment it was started,
    which is what the person who triggered it expects.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None:
        return start, end
    moment = context["dag_run"].run_after
    return moment, moment


def source_clock(moment: datetime) -> datetime:
    """An aware datetime as the naive UTC timestamps the sources store."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def incremental_window(
    interval_start: datetime,
    interval_end: datetime,
    landed_until: datetime | None,
    overlap: timedelta = DEFAULT_OVERLAP,
) -> ExtractWindow:
    upper = source_clock(interval_end)
    if landed_until is None:
        return ExtractWindow(None, upper)
    lower = min(source_clock(landed_until), source_clock(interval_start)) - overlap
    return ExtractWindow(lower, upper)

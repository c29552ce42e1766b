"""Extract windows (include/etlkit/windows.py): full first, overlap, no gaps after failures, no rewinds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from include.etlkit.windows import DEFAULT_OVERLAP, ExtractWindow, incremental_window, source_clock

HALF_HOUR = timedelta(minutes=30)
OVERLAP = timedelta(minutes=15)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def naive(*args: int) -> datetime:
    return datetime(*args)


def test_first_run_without_state_is_a_full_snapshot_up_to_the_interval_end():
    window = incremental_window(utc(2024, 11, 15, 10, 0), utc(2024, 11, 15, 10, 30), None, OVERLAP)

    assert window.lower is None
    assert window.mode == "full"
    assert window.upper == naive(2024, 11, 15, 10, 30)
    assert window.describe() == "[beginning, 2024-11-15T10:30:00)"


def test_normal_run_lower_bound_is_interval_start_minus_overlap():
    # The previous run landed up to this interval's start: the usual case.
    window = incremental_window(
        utc(2024, 11, 15, 10, 0), utc(2024, 11, 15, 10, 30), naive(2024, 11, 15, 10, 0), OVERLAP
    )

    assert window == ExtractWindow(naive(2024, 11, 15, 9, 45), naive(2024, 11, 15, 10, 30))
    assert window.mode == "incremental"


def test_default_overlap_is_applied_when_none_is_given():
    window = incremental_window(utc(2024, 11, 15, 10, 0), utc(2024, 11, 15, 10, 30), naive(2024, 11, 15, 10))

    assert window.lower == naive(2024, 11, 15, 10, 0) - DEFAULT_OVERLAP


def test_lagging_state_after_failed_runs_starts_from_the_state_minus_overlap():
    # Runs for 09:00 and 09:30 failed: the state stayed at 09:00 while this run is for 10:00-10:30.
    window = incremental_window(
        utc(2024, 11, 15, 10, 0), utc(2024, 11, 15, 10, 30), naive(2024, 11, 15, 9, 0), OVERLAP
    )

    assert window.lower == naive(2024, 11, 15, 8, 45)
    assert window.upper == naive(2024, 11, 15, 10, 30)


def test_backfill_of_an_old_interval_uses_its_own_start_and_never_rewinds_to_the_beginning():
    # The state is days ahead; a backfill of 2024-11-01 10:00-10:30 lands exactly that interval.
    window = incremental_window(
        utc(2024, 11, 1, 10, 0), utc(2024, 11, 1, 10, 30), naive(2024, 11, 15, 12, 0), OVERLAP
    )

    assert window.lower == naive(2024, 11, 1, 9, 45)
    assert window.upper == naive(2024, 11, 1, 10, 30)
    assert window.mode == "incremental"


def test_aware_datetimes_become_naive_utc():
    plus_two = timezone(timedelta(hours=2))
    window = incremental_window(
        datetime(2024, 11, 15, 12, 0, tzinfo=plus_two),
        datetime(2024, 11, 15, 12, 30, tzinfo=plus_two),
        datetime(2024, 11, 15, 12, 0, tzinfo=plus_two),  # an aware state is converted too
        OVERLAP,
    )

    assert window.lower == naive(2024, 11, 15, 9, 45)
    assert window.upper == naive(2024, 11, 15, 10, 30)
    assert window.lower.tzinfo is None and window.upper.tzinfo is None


def test_full_snapshot_upper_of_an_aware_interval_end_is_naive_utc():
    minus_five = timezone(timedelta(hours=-5))
    window = incremental_window(
        datetime(2024, 11, 15, 4, 30, tzinfo=minus_five),
        datetime(2024, 11, 15, 5, 0, tzinfo=minus_five),
        None,
    )

    assert window.upper == naive(2024, 11, 15, 10, 0)
    assert window.upper.tzinfo is None


def test_source_clock_leaves_naive_datetimes_alone():
    moment = naive(2024, 11, 15, 10, 0, 0)

    assert source_clock(moment) is moment


def _uncovered(windows: list[ExtractWindow], until: datetime) -> list[tuple[datetime | None, datetime]]:
    """The gaps in the union of ``windows`` before ``until`` (a full snapshot starts at the beginning)."""
    gaps: list[tuple[datetime | None, datetime]] = []
    spans = sorted(((w.lower or datetime.min, w.upper) for w in windows), key=lambda span: span[0])
    covered_to: datetime | None = None
    for lower, upper in spans:
        if covered_to is None:
            if lower != datetime.min:
                gaps.append((None, lower))
            covered_to = upper
            continue
        if lower > covered_to:
            gaps.append((covered_to, lower))
        covered_to = max(covered_to, upper)
    if covered_to is None or covered_to < until:
        gaps.append((covered_to, until))
    return gaps


@pytest.mark.parametrize("seed", range(25))
def test_consecutive_runs_with_random_failures_cover_every_instant_without_a_gap(seed: int):
    rng = random.Random(seed)
    start = utc(2024, 11, 15, 0, 0)
    state: datetime | None = None
    landed: list[ExtractWindow] = []
    for i in range(200):
        interval_start = start + i * HALF_HOUR
        window = incremental_window(interval_start, interval_start + HALF_HOUR, state, OVERLAP)
        if rng.random() < 0.3:
            continue  # the run failed: nothing landed, the state did not move
        landed.append(window)
        # What the ledger does: the state only moves forward (GREATEST).
        state = window.upper if state is None else max(state, window.upper)

    assert landed, "every run failed: the seed proves nothing"
    assert landed[0].mode == "full"
    assert all(w.mode == "incremental" for w in landed[1:])
    assert all(w.lower < w.upper for w in landed[1:])
    assert _uncovered(landed, state) == []


def test_gap_detector_finds_a_gap_so_the_coverage_property_can_fail():
    windows = [
        ExtractWindow(None, naive(2024, 11, 15, 10, 0)),
        ExtractWindow(naive(2024, 11, 15, 10, 30), naive(2024, 11, 15, 11, 0)),
    ]

    assert _uncovered(windows, naive(2024, 11, 15, 11, 0)) == [
        (naive(2024, 11, 15, 10, 0), naive(2024, 11, 15, 10, 30))
    ]


def test_a_run_without_a_logical_date_uses_the_moment_it_ran_as_its_interval():
    from types import SimpleNamespace

    from include.etlkit.windows import run_interval

    ran = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
    manual = {
        "data_interval_start": None,
        "data_interval_end": None,
        "dag_run": SimpleNamespace(run_after=ran),
    }
    assert run_interval(manual) == (ran, ran)
    start = datetime(2026, 11, 22, 9, tzinfo=UTC)
    scheduled = {"data_interval_start": start, "data_interval_end": ran, "dag_run": None}
    assert run_interval(scheduled) == (start, ran)

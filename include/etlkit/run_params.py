"""What a person can ask of an ingest run: which feeds, from scratch or from a moment.

The ingest DAGs carry these as Airflow Params, so the trigger form shows them (with the feed names to
choose from) and ``airflow dags trigger -c`` / ``dags test -c`` / the REST API take them as JSON:

- ``tables``: the feeds to run (empty: all of them); the others end skipped, saying why;
- ``full_refresh``: re-land a table feed from scratch (a full snapshot), as new immutable objects;
- ``since``: re-land a table feed's rows whose cursor is at or after this moment.

A re-landing goes through the transform and the load like any other, so the warehouse ends as a
fresh load would: dimensions take the same values again, facts add no version they already hold.
Its objects are new ones (under ``refresh=<run id>/``), never the earlier objects again. File and
API feeds land what is new whatever these say (a refresh of them is a redelivery by the sender).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

TABLES = "tables"
FULL_REFRESH = "full_refresh"
SINCE = "since"


def ingest_params(feeds: Sequence[str]) -> dict[str, Any]:
    """The Params of an ingest DAG whose feeds are ``feeds``."""
    from airflow.sdk import Param

    return {
        TABLES: Param(
            [],
            type="array",
            items={"type": "string", "enum": list(feeds)},
            uniqueItems=True,
            description="The feeds to run; empty runs them all.",
        ),
        FULL_REFRESH: Param(
            False,
            type="boolean",
            description="Re-land the chosen table feeds from scratch (a full snapshot), as new objects.",
        ),
        SINCE: Param(
            None,
            type=["null", "string"],
            format="date-time",
            description="Re-land the chosen table feeds' rows changed at or after this moment (UTC).",
        ),
    }


def _params(context: Any) -> dict[str, Any]:
    return dict(context.get("params") or {})


def requested_feeds(context: Any) -> list[str]:
    return list(_params(context).get(TABLES) or [])


def refresh_from(context: Any) -> tuple[bool, datetime | None]:
    """``(True, None)`` for a full refresh, ``(True, moment)`` for ``since``, ``(False, None)`` otherwise."""
    params = _params(context)
    if params.get(FULL_REFRESH):
        return True, None
    since = params.get(SINCE)
    if since:
        moment = since if isinstance(since, datetime) else datetime.fromisoformat(str(since))
        return True, moment
    return False, None


class RunOnlyRequestedFeed:
    """A ``pre_execute`` hook: the task of feed ``feed`` ends skipped when the run asked for others."""

    def __init__(self, feed: str) -> None:
        self.feed = feed

    def __call__(self, context: Any) -> None:
        wanted = requested_feeds(context)
        if wanted and self.feed not in wanted:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(f"this run asked for {wanted}, not {self.feed!r} (param {TABLES})")

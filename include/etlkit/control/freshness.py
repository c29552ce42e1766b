"""Freshness: a feed that has landed nothing within its declared interval alerts, once.

A feed declares ``freshness_hours`` in its pipeline's YAML (``include/config/<source>.yaml``). The
``etl_freshness`` DAG checks every such feed hourly: a feed whose last landed object is older than
that (or that never landed anything) is stale. The first check that finds it stale sends an alert
through the failure alerts' channels (email or SES, and SNS) and records it in
``etl.freshness_alert``; later checks stay quiet while it stays stale; once it lands again the row
goes, so the next staleness alerts again.

Why not an Airflow SLA or deadline: they watch DAG runs, and a run can succeed every hour while a
partner has stopped sending files or a source table has stopped changing. Freshness here is about
the data that arrived.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseOperator

from include.etlkit.control.accounting import report_rows
from include.etlkit.control.store import ControlStore


@dataclass(frozen=True)
class FreshnessRule:
    source: str
    feed: str
    max_age_hours: float


@dataclass(frozen=True)
class FeedAge:
    rule: FreshnessRule
    last_landed: datetime | None

    def stale(self, now: datetime) -> bool:
        if self.last_landed is None:
            return True
        return now - self.last_landed > timedelta(hours=self.rule.max_age_hours)


class FreshnessWatch:
    """``etl.freshness_alert`` and the feeds' last landings (DDL: ``sql/postgres/control/freshness.sql``)."""

    def __init__(self, store: ControlStore | None = None) -> None:
        self.store = store or ControlStore()

    def ages(self, rules: Sequence[FreshnessRule]) -> list[FeedAge]:
        rows = self.store.query(
            "SELECT source, table_name, max(landed_at) FROM etl.landed_object "
            "WHERE (source, table_name) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            "GROUP BY source, table_name",
            ([r.source for r in rules], [r.feed for r in rules]),
        )
        last = {(source, feed): landed for source, feed, landed in rows}
        return [FeedAge(rule, last.get((rule.source, rule.feed))) for rule in rules]

    def alerted(self) -> set[tuple[str, str]]:
        return {(s, f) for s, f in self.store.query("SELECT source, feed FROM etl.freshness_alert")}

    def record_alert(self, age: FeedAge) -> bool:
        """Record that ``age``'s feed was alerted about; False when another check already had."""
        rows = self.store.query(
            "INSERT INTO etl.freshness_alert (source, feed, last_landed, max_age_hours) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (source, feed) DO NOTHING RETURNING 1",
            (age.rule.source, age.rule.feed, age.last_landed, age.rule.max_age_hours),
        )
        return bool(rows)

    def clear(self, rule: FreshnessRule) -> None:
        self.store.query(
            "DELETE FROM etl.freshness_alert WHERE source = %s AND feed = %s", (rule.source, rule.feed)
        )


def freshness_alert(age: FeedAge, now: datetime) -> Any:
    from include.etlkit.alerts import Alert

    rule = age.rule
    last = age.last_landed.isoformat(sep=" ", timespec="seconds") if age.last_landed else "never"
    subject = (
        f"Airflow alert: {rule.source}.{rule.feed} is stale (nothing landed for {rule.max_age_hours:g} h)"
    )
    text = (
        f"Feed {rule.source}.{rule.feed} has landed nothing within {rule.max_age_hours:g} hours.\n"
        f"Last landed: {last}\nChecked: {now.isoformat(sep=' ', timespec='seconds')}\n"
        "It alerts again only after it has landed something and gone stale once more."
    )
    body = "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines())
    attributes: dict[str, str | int] = {"source": rule.source, "feed": rule.feed, "kind": "freshness"}
    return Alert(f"freshness of {rule.source}.{rule.feed}", subject, text, body, attributes)


class CheckFreshnessOperator(BaseOperator):
    """Alert once about every declared feed that has landed nothing within its ``freshness_hours``.

    The task itself succeeds (a stale feed is news, not a failed check); its task-log row counts the
    feeds checked (rows in) and the stale ones (rows rejected).
    """

    ui_color = "#fff4d6"

    def __init__(self, *, rules: Sequence[FreshnessRule], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rules = list(rules)

    def execute(self, context: Any) -> dict[str, list[str]]:
        from include.etlkit.alerts import AlertChannels

        watch = FreshnessWatch()
        now = datetime.now(UTC)
        already = watch.alerted()
        summary: dict[str, list[str]] = {"fresh": [], "stale": [], "alerted": []}
        for age in watch.ages(self.rules):
            name = f"{age.rule.source}.{age.rule.feed}"
            if not age.stale(now):
                summary["fresh"].append(name)
                if (age.rule.source, age.rule.feed) in already:
                    watch.clear(age.rule)
                    self.log.info("%s is fresh again", name)
                continue
            summary["stale"].append(name)
            if (age.rule.source, age.rule.feed) in already or not watch.record_alert(age):
                self.log.info("%s is still stale (already alerted)", name)
                continue
            AlertChannels().deliver(freshness_alert(age, now))
            summary["alerted"].append(name)
            self.log.warning("%s is stale: alerted", name)
        report_rows(
            context,
            rows_in=len(self.rules),
            rows_out=len(summary["fresh"]),
            rows_rejected=len(summary["stale"]),
        )
        return summary


def declared_rules() -> list[FreshnessRule]:
    """The ``freshness_hours`` of every feed of every pipeline in ``include/config/``."""
    from include.etlkit.pipelines.config import CONFIG_DIR, load_pipeline

    rules = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        config = load_pipeline(path.stem)
        rules += [
            FreshnessRule(config.source, feed.name, float(feed.option("freshness_hours")))
            for feed in config.feeds
            if feed.option("freshness_hours") is not None
        ]
    return rules

"""Freshness alerts on the real control database and a real SMTP server: a stale feed alerts once.

A feed of the test's own lands an object; with the landing made two days old it is stale for a
24-hour rule: the first check alerts by email, the second stays quiet, a new landing clears it, and
going stale again alerts anew. A feed that never landed anything is stale from the start.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from include.etlkit.control.freshness import CheckFreshnessOperator, FreshnessRule, declared_rules
from include.etlkit.control.ledger import Ledger
from include.etlkit.storage import StoredObject
from include.etlkit.windows import ExtractWindow
from infra.local import settings
from tests.conftest import TaskTry
from tests.integration.airflow_server import dsn
from tests.integration.test_alerts import smtp_server  # noqa: F401 - the fixture, used by name

pytestmark = pytest.mark.integration


def _land(source: str, feed: str) -> None:
    key = f"{source}/{feed}/{uuid.uuid4().hex}.parquet"
    Ledger().record_landing(
        source=source,
        table_name=feed,
        window=ExtractWindow(None, datetime(2024, 11, 15)),
        run_id="scheduled__fresh",
        stored=StoredObject("bucket", key, "0" * 64, 1, created=True),
        rows=1,
        mode="full",
        advance_state=False,
    )


def _age_landings(source: str, hours: int) -> None:
    with psycopg.connect(dsn(settings.database("warehouse")), autocommit=True) as conn:
        conn.execute(
            "UPDATE etl.landed_object SET landed_at = landed_at - %s WHERE source = %s",
            (timedelta(hours=hours), source),
        )


def _check(rules: list[FreshnessRule]) -> dict:
    operator = CheckFreshnessOperator(task_id="check_freshness", rules=rules)
    task = TaskTry(operator, "etl_freshness", f"scheduled__{uuid.uuid4().hex[:8]}")
    summary = task.execute()
    _check.outcome = task.outcome
    return summary


@pytest.fixture
def source(source_name, control_plane, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_EMAILS", "oncall@example.com")
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN", "")
    yield source_name
    control_plane.query("DELETE FROM etl.freshness_alert WHERE source = %s", (source_name,))


def test_a_stale_feed_alerts_once_and_again_only_after_it_was_fresh(source, smtp_server):  # noqa: F811
    _, inbox = smtp_server
    rule = FreshnessRule(source, "sales", 24)
    never = FreshnessRule(source, "never_landed", 24)
    _land(source, "sales")

    assert _check([rule]) == {"fresh": [f"{source}.sales"], "stale": [], "alerted": []}
    assert inbox.received == []

    _age_landings(source, 48)
    first = _check([rule, never])
    assert first["alerted"] == [f"{source}.sales", f"{source}.never_landed"]
    assert (_check.outcome.rows_in, _check.outcome.rows_rejected) == (2, 2)
    assert len(inbox.received) == 2
    subjects = sorted(message["Subject"] for _, _, message in inbox.received)
    assert subjects[1] == f"Airflow alert: {source}.sales is stale (nothing landed for 24 h)"

    assert _check([rule, never])["alerted"] == []  # still stale: no second alert
    assert len(inbox.received) == 2

    _land(source, "sales")  # it lands again: fresh, and its alert is cleared
    assert _check([rule])["fresh"] == [f"{source}.sales"]
    _age_landings(source, 48)
    assert _check([rule])["alerted"] == [f"{source}.sales"]  # stale anew: alerted anew
    assert len(inbox.received) == 3


def test_the_pipelines_declare_freshness_per_feed():
    rules = {(r.source, r.feed): r.max_age_hours for r in declared_rules()}
    assert rules[("retail", "sales")] == 30 and rules[("totesys", "sales_order")] == 24

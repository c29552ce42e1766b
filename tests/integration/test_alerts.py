"""Failure alerts end to end: a real SMTP server (aiosmtpd) receives the email, and an SQS queue
subscribed to an SNS topic on the local moto server receives the SNS message.

The fixture DAG runs through ``dag.test()`` with the project's default_args, so the alert is wired
exactly as on every project task; the ``etl.task_log`` listener runs in the same process.
"""

from __future__ import annotations

import email
import json
import logging
import socket
import time
import uuid
from collections.abc import Iterator
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from include.etlkit.alerts import FailureReport, recipients
from include.etlkit.control.store import ControlStore
from infra.local import settings
from tests.conftest import FIXTURE_DAGS, load_dag

pytestmark = pytest.mark.integration

DAG_ID = "alert_probe"
FAILING = ("fails_on_purpose", "quotes_a_password")
ALERT_EMAILS = "oncall@example.com, data-eng@example.com"
SECRET = "h4-s3cret-Pa55word"


# -- a real SMTP server ------------------------------------------------------------------------------


class Inbox:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        message = email.message_from_bytes(envelope.original_content or envelope.content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((settings.LOOPBACK, 0))
        return sock.getsockname()[1]


def _smtp_connection(port: int) -> str:
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": settings.LOOPBACK,
            "port": port,
            "extra": {
                "disable_ssl": True,
                "disable_tls": True,
                "from_email": "etl@example.com",
                "timeout": 5,
            },
        }
    )


@pytest.fixture
def smtp_server(monkeypatch) -> Iterator[tuple[Controller, Inbox]]:
    """A real SMTP server on a free loopback port, with ``smtp_default`` pointing at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname=settings.LOOPBACK, port=_free_port())
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(controller.port))
    try:
        yield controller, inbox
    finally:
        controller.stop()


# -- an SNS topic and the SQS queue subscribed to it, on the local moto server ------------------------


@pytest.fixture
def alert_topic(local_services, monkeypatch) -> Iterator[tuple[str, str]]:
    """(topic ARN, queue URL); ``alert_sns_topic_arn`` names the topic."""
    from airflow.providers.amazon.aws.hooks.sns import SnsHook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    sns, sqs = SnsHook(aws_conn_id="aws_default").get_conn(), SqsHook(aws_conn_id="aws_default").get_conn()
    name = f"etl-alerts-{uuid.uuid4().hex[:10]}"
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN", topic_arn)
    try:
        yield topic_arn, queue_url
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
        sns.delete_topic(TopicArn=topic_arn)


def _sns_messages(queue_url: str, expected: int, wait: float = 5.0) -> list[dict]:
    """The SNS envelopes in the queue; waits up to ``wait`` seconds for ``expected`` of them."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    sqs = SqsHook(aws_conn_id="aws_default").get_conn()
    found: list[dict] = []
    deadline = time.monotonic() + wait
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for item in batch.get("Messages", []):
            found.append(json.loads(item["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=item["ReceiptHandle"])
        if len(found) >= expected or time.monotonic() > deadline:
            return found


# -- the DAG, its audit rows and its task-log rows ----------------------------------------------------


@pytest.fixture
def probe(airflow_db, control_plane, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_EMAILS", ALERT_EMAILS)
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN", "")
    monkeypatch.setenv(
        "AIRFLOW_CONN_ALERT_PROBE_SECRET",
        json.dumps({"conn_type": "generic", "login": "probe", "password": SECRET}),
    )
    _reset(control_plane)
    dag = load_dag(DAG_ID, FIXTURE_DAGS)
    for task in dag.tasks:
        task.retries = 0
    control_plane.register([(DAG_ID, t) for t in dag.task_ids])
    yield dag
    _reset(control_plane)


def _reset(store: ControlStore) -> None:
    store.query("DELETE FROM etl.audit WHERE dag_id = %s", (DAG_ID,))
    store.query("DELETE FROM etl.task_log WHERE dag_id = %s", (DAG_ID,))


def _task_log(store: ControlStore, run_id: str) -> dict[str, tuple[int, str, str | None]]:
    rows = store.query(
        "SELECT task_id, try_number, status, error FROM etl.task_log WHERE dag_id = %s AND run_id = %s",
        (DAG_ID, run_id),
    )
    return {task_id: (try_number, status, error) for task_id, try_number, status, error in rows}


def _states(run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in run.get_task_instances()}


def _html(message: Message) -> str:
    part = next(p for p in message.walk() if p.get_content_type() == "text/html")
    return part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")


def _log_url(run_id: str, task_id: str) -> str:
    from urllib.parse import quote

    return f"/dags/{DAG_ID}/runs/{quote(run_id)}/tasks/{task_id}?try_number=1"


# -- tests ---------------------------------------------------------------------------------------------


def test_a_failed_task_is_emailed_and_published_to_sns_with_every_fact(
    probe, smtp_server, alert_topic, control_plane
):
    _, inbox = smtp_server
    _, queue_url = alert_topic

    run = probe.test()

    assert _states(run) == {
        "fails_on_purpose": "failed",
        "quotes_a_password": "failed",
        "succeeds": "success",
    }

    # One email per failed task, none for the task that succeeded.
    by_subject = {message["Subject"]: (sender, to, message) for sender, to, message in inbox.received}
    assert len(inbox.received) == 2
    assert set(by_subject) == {f"Airflow alert: {DAG_ID}.{task} failed (try 1 of 1)" for task in FAILING}
    sender, to, message = by_subject[f"Airflow alert: {DAG_ID}.fails_on_purpose failed (try 1 of 1)"]
    assert sender == "etl@example.com"  # the connection's from_email
    assert to == ["oncall@example.com", "data-eng@example.com"]
    body = _html(message)
    for fact in (
        f"<td>{DAG_ID}</td>",
        "<td>fails_on_purpose</td>",
        f"<td>{run.run_id}</td>",
        "<td>1 of 1</td>",
        "ValueError: the alert probe failed on purpose",
        _log_url(run.run_id, "fails_on_purpose"),
        run.logical_date.isoformat() if run.logical_date else "none (manual run)",
    ):
        assert fact in body, f"{fact!r} missing from the email:\n{body}"
    assert "succeeds" not in "".join(m["Subject"] for _, _, m in inbox.received)

    # The same facts reach SNS subscribers, with attributes to filter on.
    envelopes = {e["MessageAttributes"]["task_id"]["Value"]: e for e in _sns_messages(queue_url, 2)}
    assert set(envelopes) == set(FAILING)
    published = envelopes["fails_on_purpose"]
    assert published["Subject"] == f"Airflow alert: {DAG_ID}.fails_on_purpose failed (try 1 of 1)"
    text = published["Message"]
    for fact in (
        f"DAG: {DAG_ID}",
        "Task: fails_on_purpose",
        f"Run: {run.run_id}",
        "Try: 1 of 1",
        "ValueError: the alert probe failed on purpose",
        "Log: http",
        _log_url(run.run_id, "fails_on_purpose"),
    ):
        assert fact in text, f"{fact!r} missing from the SNS message:\n{text}"
    assert published["MessageAttributes"]["dag_id"]["Value"] == DAG_ID
    assert published["MessageAttributes"]["run_id"]["Value"] == run.run_id

    # A password the task fetched and quoted reaches neither channel.
    leaked_email = _html(by_subject[f"Airflow alert: {DAG_ID}.quotes_a_password failed (try 1 of 1)"][2])
    for alert_text in (leaked_email, envelopes["quotes_a_password"]["Message"]):
        assert "PermissionError: login refused with password ***" in alert_text
        assert SECRET not in alert_text

    # The task log holds the failed try too: the listener ran after the alert.
    log_rows = _task_log(control_plane, run.run_id)
    assert log_rows["fails_on_purpose"][:2] == (1, "failed")
    assert "the alert probe failed on purpose" in log_rows["fails_on_purpose"][2]
    assert log_rows["succeeds"][:2] == (1, "success")


def test_an_smtp_outage_is_logged_and_the_task_fails_for_its_own_reason(
    probe, alert_topic, control_plane, caplog, monkeypatch
):
    inbox = Inbox()
    controller = Controller(inbox, hostname=settings.LOOPBACK, port=_free_port())
    controller.start()
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", _smtp_connection(controller.port))
    controller.stop()  # the connection still points at its port: nothing listens there now
    _, queue_url = alert_topic

    with caplog.at_level(logging.ERROR, logger="include.etlkit.alerts"):
        run = probe.test()

    assert _states(run) == {
        "fails_on_purpose": "failed",
        "quotes_a_password": "failed",
        "succeeds": "success",
    }
    assert inbox.received == []
    undelivered = [
        r.getMessage() for r in caplog.records if "send_email could not deliver it" in r.getMessage()
    ]
    assert len(undelivered) == 2, caplog.text
    assert any("ConnectionRefusedError" in line for line in undelivered), undelivered

    # The failure on record is the task's own, and SNS still went out.
    log_rows = _task_log(control_plane, run.run_id)
    assert log_rows["fails_on_purpose"][:2] == (1, "failed")
    assert log_rows["fails_on_purpose"][2].startswith("ValueError: the alert probe failed on purpose")
    assert {e["MessageAttributes"]["task_id"]["Value"] for e in _sns_messages(queue_url, 2)} == set(FAILING)


def test_tasks_that_succeed_or_are_skipped_send_nothing(probe, smtp_server, alert_topic, control_plane):
    _, inbox = smtp_server
    _, queue_url = alert_topic
    for task_id in FAILING:
        control_plane.set_enabled(DAG_ID, task_id, False, reason="switched off by the alert test")

    run = probe.test()

    assert _states(run) == {
        "fails_on_purpose": "skipped",
        "quotes_a_password": "skipped",
        "succeeds": "success",
    }
    assert inbox.received == []
    assert _sns_messages(queue_url, 1, wait=2.0) == []


def test_without_a_topic_only_the_email_goes_and_sns_is_skipped_with_a_log_line(probe, smtp_server, caplog):
    _, inbox = smtp_server

    with caplog.at_level(logging.INFO, logger="include.etlkit.alerts"):
        probe.test()

    assert len(inbox.received) == 2
    assert caplog.text.count("Variable alert_sns_topic_arn is empty, no SNS message sent") == 2


def test_sns_subject_is_short_printable_ascii_and_recipients_split_on_commas_and_semicolons():
    report = FailureReport(
        dag_id="d" * 80,
        task_id="t\u00e9che",
        run_id="manual__2024",
        map_index=3,
        try_number=2,
        max_tries=4,
        logical_date="none (manual run)",
        error="boom",
        log_url="http://localhost:8080/x",
        hostname="h",
    )
    subject = report.sns_subject()
    assert len(subject) <= 100 and subject.isascii() and subject.isprintable()
    assert report.subject.endswith("t\u00e9che[3] failed (try 2 of 4)")
    assert recipients(" a@example.com; b@example.com ,,") == ["a@example.com", "b@example.com"]


def test_with_an_ses_sender_the_email_goes_through_ses_and_not_smtp(probe, smtp_server, monkeypatch):
    """No SMTP secret needed: SES, called with the AWS connection (MWAA's execution role), sends it.

    SES's mailbox simulator address and the sender domain's delivery notifications (SNS -> SQS) show
    what SES did with each message, as they would on AWS."""
    from airflow.providers.amazon.aws.hooks.ses import SesHook
    from airflow.providers.amazon.aws.hooks.sns import SnsHook
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    _, inbox = smtp_server
    ses = SesHook(aws_conn_id="aws_default").get_conn()
    sns, sqs = SnsHook(aws_conn_id="aws_default").get_conn(), SqsHook(aws_conn_id="aws_default").get_conn()
    domain = f"alerts-{uuid.uuid4().hex[:8]}.example.com"
    ses.verify_domain_identity(Domain=domain)
    topic_arn = sns.create_topic(Name=f"ses-deliveries-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"ses-deliveries-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    ses.set_identity_notification_topic(Identity=domain, NotificationType="Delivery", SnsTopic=topic_arn)
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_SES_SENDER", f"airflow@{domain}")
    monkeypatch.setenv("AIRFLOW_VAR_ALERT_EMAILS", "success@simulator.amazonses.com")
    sent_before = ses.get_send_quota()["SentLast24Hours"]
    try:
        run = probe.test()
        assert _states(run)["fails_on_purpose"] == "failed"
        assert inbox.received == []  # SMTP is not used at all
        assert ses.get_send_quota()["SentLast24Hours"] - sent_before >= len(FAILING)
        deliveries = _sns_messages(queue_url, len(FAILING))
        assert len(deliveries) == len(FAILING)
        notices = [m if isinstance(m, dict) else json.loads(m) for m in (d["Message"] for d in deliveries)]
        assert all("delivery" in notice for notice in notices)  # SES's delivery notifications
    finally:
        sqs.delete_queue(QueueUrl=queue_url)
        sns.delete_topic(TopicArn=topic_arn)

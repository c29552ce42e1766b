"""Task-failure alerts: an email (SMTP or Amazon SES) and an SNS message when a task fails for good.

:class:`TaskFailureNotifier` is every task's ``on_failure_callback`` (``dag_defaults.default_args()``
puts it there, the DAG integrity tests check it), so no DAG can forget to alert. Airflow calls it once
the last try has failed, not on a retry, in the process that ran the task.

What an alert says is what the on-call engineer needs to start: DAG, task, run, try out of tries,
the error and the link to the try's log (the ``etl.task_log`` row of the try holds the same error
and the rows it moved). Recipients are Airflow Variables read when the alert is sent, never while a
DAG file is parsed: ``alert_emails`` (comma separated) and ``alert_sns_topic_arn`` (empty: no SNS).

The email goes through the ``smtp_default`` connection, or, when the Variable ``alert_ses_sender``
names an SES-verified sender, through Amazon SES with the AWS connection (on MWAA the execution
role), so no SMTP password has to be stored anywhere.

An alert never fails anything: each channel that cannot deliver logs an error and the task keeps
its own failure. Nothing from a connection goes into a message, and the error text is passed
through Airflow's secrets masker, so a password the task fetched and then quoted in its exception
reaches the alert as ``***``.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseNotifier

from include.etlkit.redaction import redact

log = logging.getLogger(__name__)

ALERT_EMAILS_VARIABLE = "alert_emails"
ALERT_SNS_TOPIC_VARIABLE = "alert_sns_topic_arn"
ALERT_SES_SENDER_VARIABLE = "alert_ses_sender"
SMTP_CONN_ID = "smtp_default"
AWS_CONN_ID = "aws_default"
# Used when neither the notifier nor the SMTP connection (extra ``from_email``) names a sender.
DEFAULT_FROM_EMAIL = "airflow-alerts@localhost"

MAX_ERROR_CHARS = 4000
# SNS: a subject is at most 100 printable ASCII characters, without line breaks.
SNS_SUBJECT_MAX = 100


@dataclass(frozen=True)
class FailureReport:
    """The facts of one failed task try, as every alert channel states them."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int
    try_number: int
    max_tries: int
    logical_date: str
    error: str
    log_url: str
    hostname: str

    @classmethod
    def from_context(cls, context: Any) -> FailureReport:
        ti = context["ti"]
        dag_run = context.get("dag_run")
        logical_date = context.get("logical_date") or getattr(dag_run, "logical_date", None)
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            map_index=-1 if map_index is None else map_index,
            try_number=ti.try_number,
            # Airflow counts retries: the last try is number max_tries + 1.
            max_tries=(getattr(ti, "max_tries", 0) or 0) + 1,
            logical_date=logical_date.isoformat() if logical_date is not None else "none (manual run)",
            error=_error_text(context.get("exception")),
            log_url=getattr(ti, "log_url", None) or "unavailable",
            hostname=getattr(ti, "hostname", None) or "unknown",
        )

    @property
    def task_label(self) -> str:
        mapped = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{mapped}"

    @property
    def subject(self) -> str:
        return f"Airflow alert: {self.task_label} failed (try {self.try_number} of {self.max_tries})"

    def facts(self) -> list[tuple[str, str]]:
        task = self.task_id if self.map_index < 0 else f"{self.task_id} (map index {self.map_index})"
        return [
            ("DAG", self.dag_id),
            ("Task", task),
            ("Run", self.run_id),
            ("Logical date", self.logical_date),
            ("Try", f"{self.try_number} of {self.max_tries}"),
            ("Host", self.hostname),
            ("Log", self.log_url),
        ]

    def text(self) -> str:
        """Plain text: the SNS message (and what an SNS email subscriber reads)."""
        lines = [f"{name}: {value}" for name, value in self.facts()]
        return "\n".join([f"Task failed: {self.task_label}", *lines, "Error:", self.error])

    def html(self) -> str:
        rows = "".join(
            f"<tr><th align='left'>{html.escape(name)}</th><td>{_html_value(name, value)}</td></tr>"
            for name, value in self.facts()
        )
        return (
            f"<p>Task <b>{html.escape(self.task_label)}</b> failed.</p>"
            f"<table>{rows}</table>"
            f"<p><b>Error</b></p><pre>{html.escape(self.error)}</pre>"
        )

    def sns_subject(self) -> str:
        return self.alert().sns_subject()

    def alert(self) -> Alert:
        return Alert(self.task_label, self.subject, self.text(), self.html(), self.sns_attributes())

    def sns_attributes(self) -> dict[str, str | int]:
        """Message attributes, so subscribers can filter (say, one DAG's alerts to its owners)."""
        return {
            "dag_id": self.dag_id,
            "task_id": self.task_id,
            "run_id": self.run_id,
            "try_number": self.try_number,
        }


def _html_value(name: str, value: str) -> str:
    escaped = html.escape(value)
    return f"<a href='{escaped}'>{escaped}</a>" if name == "Log" and value.startswith("http") else escaped


def _error_text(error: object) -> str:
    if error is None:
        return "no exception was recorded for this try; see the log"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return redact(text)[:MAX_ERROR_CHARS]


def _variable(name: str) -> str:
    from airflow.sdk import Variable

    return (Variable.get(name, default="") or "").strip()


def recipients(value: str) -> list[str]:
    """The addresses of a comma (or semicolon) separated list, blanks dropped."""
    return [address.strip() for address in value.replace(";", ",").split(",") if address.strip()]


@dataclass(frozen=True)
class Alert:
    """One alert, as every channel states it: what it is about, a subject, plain text and HTML."""

    about: str  # for the log lines: "totesys_load.load_processed", "freshness of retail.sales"
    subject: str
    text: str
    html: str
    attributes: dict[str, str | int]  # SNS message attributes, so subscribers can filter

    def sns_subject(self) -> str:
        printable = "".join(c if " " <= c <= "~" else "?" for c in self.subject)
        return printable[:SNS_SUBJECT_MAX]


class AlertChannels:
    """Email (SMTP, or SES with ``alert_ses_sender``) and SNS, each best effort: never raises.

    :param smtp_conn_id: the SMTP connection (host, port, TLS and sender in its extras).
    :param aws_conn_id: the AWS connection SES and SNS are called with (MWAA: the execution role).
    :param from_email: the SMTP sender; default the connection's ``from_email`` extra.
    """

    def __init__(
        self,
        *,
        smtp_conn_id: str = SMTP_CONN_ID,
        aws_conn_id: str = AWS_CONN_ID,
        from_email: str | None = None,
    ) -> None:
        self.smtp_conn_id = smtp_conn_id
        self.aws_conn_id = aws_conn_id
        self.from_email = from_email

    def deliver(self, alert: Alert) -> None:
        for channel in (self.send_email, self.publish_sns):
            try:
                channel(alert)
            except Exception as exc:
                # Logged, never raised: what the alert is about is the failure that counts.
                log.error(
                    "Alert for %s: %s could not deliver it: %s: %s",
                    alert.about,
                    channel.__name__,
                    type(exc).__name__,
                    redact(str(exc)),
                )

    def send_email(self, alert: Alert) -> None:
        to = recipients(_variable(ALERT_EMAILS_VARIABLE))
        if not to:
            log.warning(
                "Alert for %s: Variable %s is empty, no email sent", alert.about, ALERT_EMAILS_VARIABLE
            )
            return
        ses_sender = _variable(ALERT_SES_SENDER_VARIABLE)
        if ses_sender:
            from airflow.providers.amazon.aws.hooks.ses import SesHook

            SesHook(aws_conn_id=self.aws_conn_id).send_email(
                mail_from=ses_sender, to=to, subject=alert.subject, html_content=alert.html
            )
            log.info("Alert for %s emailed through SES to %s", alert.about, ", ".join(to))
            return
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        with SmtpHook(smtp_conn_id=self.smtp_conn_id) as smtp:
            smtp.send_email_smtp(
                to=to,
                from_email=self.from_email or smtp.from_email or DEFAULT_FROM_EMAIL,
                subject=alert.subject,
                html_content=alert.html,
            )
        log.info("Alert for %s emailed to %s", alert.about, ", ".join(to))

    def publish_sns(self, alert: Alert) -> None:
        topic_arn = _variable(ALERT_SNS_TOPIC_VARIABLE)
        if not topic_arn:
            log.info(
                "Alert for %s: Variable %s is empty, no SNS message sent",
                alert.about,
                ALERT_SNS_TOPIC_VARIABLE,
            )
            return
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        SnsHook(aws_conn_id=self.aws_conn_id).publish_to_target(
            target_arn=topic_arn,
            message=alert.text,
            subject=alert.sns_subject(),
            message_attributes=alert.attributes,
        )
        log.info("Alert for %s published to %s", alert.about, topic_arn)


class TaskFailureNotifier(BaseNotifier):
    """Send a task-failure alert through :class:`AlertChannels`; use as ``on_failure_callback``.

    :param smtp_conn_id: the SMTP connection (host, port, TLS and sender in its extras).
    :param aws_conn_id: the AWS connection SES and SNS are called with.
    :param from_email: the sender; default the connection's ``from_email`` extra.
    """

    def __init__(
        self,
        *,
        smtp_conn_id: str = SMTP_CONN_ID,
        aws_conn_id: str = AWS_CONN_ID,
        from_email: str | None = None,
    ) -> None:
        super().__init__()
        self.smtp_conn_id = smtp_conn_id
        self.aws_conn_id = aws_conn_id
        self.from_email = from_email

    def notify(self, context: Any) -> None:
        try:
            report = FailureReport.from_context(context)
        except Exception:
            log.exception("Failure alert: could not describe the failed task; no alert sent")
            return
        channels = AlertChannels(
            smtp_conn_id=self.smtp_conn_id, aws_conn_id=self.aws_conn_id, from_email=self.from_email
        )
        channels.deliver(report.alert())


def has_failure_alert(task: Any) -> bool:
    """Whether ``task`` (mapped or not) alerts on failure through :class:`TaskFailureNotifier`."""
    callbacks = task.on_failure_callback
    if not isinstance(callbacks, list | tuple):
        callbacks = [callbacks]
    return any(isinstance(callback, TaskFailureNotifier) for callback in callbacks)

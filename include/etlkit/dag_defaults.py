"""Defaults every DAG of the project shares: owner, retries with exponential backoff, timeouts,
and the failure alert (email and SNS, ``include.etlkit.alerts``).

One definition, so "every DAG retries with backoff" and "every failed task alerts" are true by
construction and checked by the DAG integrity tests rather than remembered per file.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from include.etlkit.alerts import TaskFailureNotifier

OWNER = "data-engineering"


def default_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(hours=2),
        # Called once the last try has failed (not on retries): email and SNS, never raising.
        "on_failure_callback": TaskFailureNotifier(),
    }
    return args | overrides

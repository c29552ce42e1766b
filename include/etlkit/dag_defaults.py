"""Defaults every DAG of the project shares: owner, retries with exponential backoff, timeouts.

One definition, so "every DAG retries with backoff" is true by construction and checked by the DAG
integrity tests rather than remembered per file.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

OWNER = "data-engineering"


def default_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=20),
        "execution_timeout": timedelta(hours=2),
    }
    return args | overrides

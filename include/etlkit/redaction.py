"""Secrets out of every text the framework stores or sends: task-log errors, alerts, file reasons.

Airflow's secrets masker knows the values this process has seen as secrets (connection passwords,
sensitive extras, Variables with sensitive names) and masks them wherever they appear. It cannot
know a token that only ever travelled in a URL, so two shapes are masked by pattern as well:
credentials in a URL (``https://user:secret@host``) and the values of query parameters whose names
say secret (``?api_key=...&token=...``), as an HTTP client's exception quotes the URL it called.
"""

from __future__ import annotations

import re

MASK = "***"
SENSITIVE_PARAMETER = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*?(?:key|token|secret|password|passwd|pwd|signature|sig|auth|credential)"
    r"[a-z0-9_.-]*)=)[^&#\s'\"]+"
)
URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^@\s/]+(@)")


def redact(text: str) -> str:
    """``text`` with every known secret, URL password and sensitive query value replaced by ``***``."""
    try:
        from airflow.sdk._shared.secrets_masker import redact as mask_known
    except ImportError:  # pragma: no cover - the masker moved: the patterns below still apply
        masked = text
    else:
        masked = str(mask_known(text))
    masked = URL_CREDENTIALS.sub(rf"\g<1>{MASK}\g<2>", masked)
    return SENSITIVE_PARAMETER.sub(rf"\g<1>{MASK}", masked)

"""Secrets out of every text the framework stores or sends: task-log errors, alerts, file reasons, logs.

Airflow's secrets masker knows the values this process has seen as secrets (connection passwords,
sensitive extras, Variables with sensitive names) and masks them wherever they appear, in the
task's log lines and tracebacks as the worker writes them. It cannot know a token that only ever
travelled in a URL (an API key templated into a query string from a Variable with an ordinary name,
a signature in a next link), so:

- :func:`mask_sensitive_parameters` registers the values of query parameters whose names say secret
  with the masker before a request is sent, so whatever quotes the URL afterwards (an HTTP
  client's exception, its traceback in the worker's log file) is masked by Airflow itself;
- :func:`redact` masks, in a text the framework stores, the known secrets and, by pattern,
  credentials in a URL (``https://user:secret@host``) and sensitive query values
  (``?api_key=...&token=...``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "***"
# A query parameter whose name contains one of these is a secret (api_key, apikey, access_token,
# X-Amz-Signature, sig, client_secret, password, ...).
SENSITIVE_NAME = (
    r"[a-z0-9_.-]*?(?:key|token|secret|password|passwd|pwd|signature|sig|auth|credential)[a-z0-9_.-]*"
)
SENSITIVE_PARAMETER = re.compile(rf"(?i)([?&;](?:{SENSITIVE_NAME})=)[^&#\s'\"]+")
# Stricter, for registering values with the masker (which then masks them everywhere): a word of the
# name (split at ``_``, ``-``, ``.``) must end in one of these, so ``keyword`` or ``author`` are not
# secrets but ``api_key``, ``apikey``, ``access_token``, ``X-Amz-Signature`` and ``sig`` are.
SECRET_WORD_ENDINGS = (
    "key",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "signature",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
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


def is_sensitive_name(name: str) -> bool:
    """Whether a query parameter called ``name`` carries a secret (see ``SECRET_WORD_ENDINGS``)."""
    return any(word.endswith(SECRET_WORD_ENDINGS) for word in re.split(r"[^a-z0-9]+", name.lower()) if word)


def sensitive_parameters(url_or_params: str | Mapping[str, Any]) -> list[str]:
    """The values of the query parameters of a URL (or of a mapping of them) whose names say secret,
    and the password of a URL's ``user:password@``."""
    if isinstance(url_or_params, str):
        parts = urlsplit(url_or_params)
        pairs: list[tuple[str, Any]] = parse_qsl(parts.query, keep_blank_values=False)
        found = [parts.password] if parts.password else []
    else:
        pairs = list(url_or_params.items())
        found = []
    for name, value in pairs:
        if value is None or not is_sensitive_name(str(name)):
            continue
        values = value if isinstance(value, list | tuple) else [value]
        found.extend(str(v) for v in values if str(v))
    return found


def mask_sensitive_parameters(url_or_params: str | Mapping[str, Any]) -> list[str]:
    """Register the secret query values of ``url_or_params`` with Airflow's secrets masker.

    Call it before a request goes out: from then on every log line, traceback and stored error
    of this task (and of its supervisor, which writes the log file) shows them as ``***``.
    Returns the values registered (for tests; never log them).
    """
    from airflow.sdk.log import mask_secret

    found = sensitive_parameters(url_or_params)
    for value in found:
        mask_secret(value)
    return found

"""The REST extract's hook: the http provider's :class:`HttpHook` with bearer tokens from the connection.

Kept apart from :mod:`include.etlkit.extract.http` because the provider imports ``requests`` and
``aiohttp``: the operator module stays light for DAG parsing and imports this when its task runs.
"""

from __future__ import annotations

from typing import Any

import requests
from airflow.providers.http.hooks.http import HttpHook

from include.etlkit.extract.http import HttpAuthError

__all__ = ["ApiHttpHook", "BearerAuth"]


class BearerAuth(requests.auth.AuthBase):
    """``Authorization: Bearer <token>``; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


class ApiHttpHook(HttpHook):
    """:class:`HttpHook` that also reads ``auth_type`` from the connection's extras.

    The provider (6.0.5) only does basic auth from login/password and sends every other extra as a
    request header, so ``{"auth_type": "bearer"}`` would go out as a header and the token in the
    password would be ignored. Here ``auth_type`` ``"bearer"`` sends the password as a bearer token,
    ``"basic"`` (or none) keeps the provider's basic auth, and ``auth_type`` is never sent.
    """

    AUTH_EXTRA = "auth_type"

    def _extract_auth(self, connection: Any) -> Any | None:
        auth_type = str(connection.extra_dejson.get(self.AUTH_EXTRA) or "basic").lower()
        if auth_type == "bearer":
            if not connection.password:
                raise HttpAuthError(
                    f"connection {self.http_conn_id!r} asks for bearer auth but has no token in its password"
                )
            return BearerAuth(connection.password)
        if auth_type == "basic":
            return super()._extract_auth(connection)
        raise HttpAuthError(
            f"connection {self.http_conn_id!r}: unsupported auth_type {auth_type!r} (use 'bearer' or 'basic')"
        )

    def _configure_session_from_extra(
        self, session: requests.Session, connection: Any, extra_options: dict[str, Any]
    ) -> requests.Session:
        session = super()._configure_session_from_extra(session, connection, extra_options)
        session.headers.pop(self.AUTH_EXTRA, None)
        return session

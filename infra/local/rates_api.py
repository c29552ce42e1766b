"""A small local REST API of daily exchange rates, for exercising the HTTP client operator for real.

``python -m infra.local.rates_api --port N [--host ADDR]`` serves, on ``settings.BIND_HOST``
(127.0.0.1 unless ``ETL_BIND_HOST`` says otherwise; docker-compose.yaml sets 0.0.0.0):

* ``GET /health`` -> ``{"status": "ok"}`` (no auth), what the service manager polls;
* ``GET /v1/rates?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD`` paginated either with
  ``page``/``page_size`` (the default style) or with ``offset``/``limit``;
* ``GET /v1/rates/links?start_date=...&end_date=...&limit=N`` paginated by cursor: every response
  carries ``links.next``, the URL of the next page (absolute, or relative with
  ``link_style=relative``), ``null`` on the last page.

Each row is ``{"date", "base": "GBP", "currency", "rate"}``; rows are sorted by date then currency.
The data is generated, not stored: a smooth function of the date plus a small noise seeded by
(date, currency), so every run and every process serves identical numbers and tests can compare
pages against each other without fixtures. Dates outside 2022-01-01..2030-12-31 simply have no rows.

Auth is a bearer token (``settings.API_TOKEN``) or HTTP basic (user ``etl``, the same token as
password); anything else gets 401, so both of the client's auth styles are testable.

Failure paths are driven by query parameters, so tests can hit a real server instead of mocks:

* ``fail_times=N&fail_key=K[&fail_status=503|429|500|502|504]``: the first N requests carrying key K
  answer ``fail_status`` (default 503; 429 also sends ``Retry-After: 1``), later ones succeed. The
  counters live in memory per key, so use a fresh key per test.
* ``truncate_after=P``: pages after page P (for offset style, offsets at or past ``P * limit``) come
  back empty while ``total``/``total_pages`` still promise more, and the cursor chain ends early:
  the shape of a source that cut a listing short, which a client must detect rather than trust.
* ``delay=SECONDS`` (at most 30): sleep before answering, for timeout tests.

Bad parameters (including unknown ones, so a client's typos surface at once) get a 400 JSON error.
The standard library is enough for all of this, so the server needs nothing installed.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime as dt
import functools
import hmac
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from infra.local import settings

BASE_CURRENCY = "GBP"
# Rough level of 1 GBP in each currency; the generated series wander a few percent around these.
ANCHOR_RATES = {"AUD": 1.93, "CHF": 1.12, "EUR": 1.17, "GBP": 1.0, "JPY": 185.0, "USD": 1.27}
CURRENCIES = tuple(sorted(ANCHOR_RATES))
FIRST_DATE = dt.date(2022, 1, 1)
LAST_DATE = dt.date(2030, 12, 31)
BASIC_AUTH_USER = "etl"

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_DELAY_SECONDS = 30.0
MAX_FAIL_TIMES = 1000
FAIL_STATUSES = (429, 500, 502, 503, 504)

_COMMON_PARAMS = frozenset(
    {"start_date", "end_date", "fail_times", "fail_key", "fail_status", "truncate_after", "delay"}
)
_PAGED_PARAMS = _COMMON_PARAMS | {"page", "page_size", "offset", "limit"}
_LINKS_PARAMS = _COMMON_PARAMS | {"limit", "cursor", "link_style"}


class BadRequest(Exception):
    """A client error, answered as 400 with the message."""


def rate_for(day: dt.date, currency: str) -> float:
    """The rate of ``currency`` per 1 GBP on ``day``: deterministic across runs and processes.

    Two sine waves (a yearly and a ~7-week cycle, phase-shifted per currency) and a gentle trend
    make a plausible smooth series; the noise comes from a ``random.Random`` seeded with a string,
    which Python hashes with SHA-512, so it does not depend on ``PYTHONHASHSEED``.
    """
    if currency == BASE_CURRENCY:
        return 1.0
    t = (day - FIRST_DATE).days
    phase = CURRENCIES.index(currency) * 0.9
    smooth = (
        0.04 * math.sin(2 * math.pi * t / 365.25 + phase)
        + 0.015 * math.sin(2 * math.pi * t / 47.0 + 2 * phase)
        + 0.03 * (t / (LAST_DATE - FIRST_DATE).days - 0.5)
    )
    noise = random.Random(f"{day.isoformat()}:{currency}").uniform(-0.003, 0.003)
    return round(ANCHOR_RATES[currency] * (1 + smooth) * (1 + noise), 6)


@functools.cache
def all_rows() -> tuple[dict[str, Any], ...]:
    """Every row the API can serve, sorted by (date, currency); ~11k rows, built once."""
    days = (LAST_DATE - FIRST_DATE).days + 1
    return tuple(
        {"date": day.isoformat(), "base": BASE_CURRENCY, "currency": ccy, "rate": rate_for(day, ccy)}
        for day in (FIRST_DATE + dt.timedelta(days=n) for n in range(days))
        for ccy in CURRENCIES
    )


def rows_between(start: dt.date, end: dt.date) -> tuple[dict[str, Any], ...]:
    """The rows with ``start <= date <= end``, clipped to the data's range.

    Rows are laid out one block of ``len(CURRENCIES)`` per day, so slicing is plain arithmetic.
    """
    start, end = max(start, FIRST_DATE), min(end, LAST_DATE)
    if start > end:
        return ()
    width = len(CURRENCIES)
    first = (start - FIRST_DATE).days * width
    last = ((end - FIRST_DATE).days + 1) * width
    return all_rows()[first:last]


class FailureInjector:
    """Per-key counters behind ``fail_times``/``fail_key``; shared by all handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, int] = {}

    def should_fail(self, key: str, times: int) -> int:
        """Return the 1-based failure number if this request must fail, else 0."""
        with self._lock:
            served = self._served.get(key, 0)
            if served >= times:
                return 0
            self._served[key] = served + 1
            return served + 1


def _int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BadRequest(f"{name} must be {bound}, got {value}")
    return value


def _date_param(params: Mapping[str, str], name: str) -> dt.date:
    raw = params.get(name)
    if not raw:
        raise BadRequest(f"{name} is required (YYYY-MM-DD)")
    try:
        # fromisoformat also takes "20240101" and week dates; the API promises exactly YYYY-MM-DD.
        if len(raw) != 10:
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a date in YYYY-MM-DD form, got {raw!r}") from None


def _encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    """Cursors are opaque to clients (they must follow ``links.next``, not build URLs)."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        offset = int(number)
        if prefix != "o" or offset < 0:
            raise ValueError(text)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest(f"cursor {cursor!r} is not valid: follow links.next as given") from None
    return offset


class RatesHandler(BaseHTTPRequestHandler):
    """Routes, auth, validation and fault injection; the data itself comes from ``rows_between``."""

    protocol_version = "HTTP/1.1"
    server_version = "LocalRatesAPI/1.0"
    injector = FailureInjector()

    # -- plumbing -------------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        # stdout, not stderr, so the service manager's single log file reads in order.
        print(f"{self.log_date_time_string()} {self.address_string()} {format % args}", flush=True)

    def _send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_error_json(
        self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        error = HTTPStatus(status).phrase.lower().replace(" ", "_")
        self._send_json(status, {"error": error, "message": message, **extra}, headers)

    def _not_allowed(self) -> None:
        # A body we do not read would corrupt the next request on a kept-alive connection.
        self.close_connection = True
        self._send_error_json(405, f"{self.command} is not supported: the API is read-only", {"Allow": "GET"})

    do_POST = do_PUT = do_PATCH = do_DELETE = _not_allowed

    # -- request handling ------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        if path == "/health":
            self._send_json(200, {"status": "ok"})
            return
        if path not in ("/v1/rates", "/v1/rates/links"):
            self._send_error_json(404, f"no such endpoint: {url.path}")
            return
        if not self._authorized():
            self._send_error_json(
                401,
                "missing or invalid credentials: send 'Authorization: Bearer <token>' or basic auth",
                {"WWW-Authenticate": 'Bearer realm="rates", Basic realm="rates"'},
            )
            return
        try:
            pairs = parse_qsl(url.query, keep_blank_values=True, strict_parsing=bool(url.query))
        except ValueError:
            self._send_error_json(400, f"malformed query string: {url.query!r}")
            return
        try:
            params = self._unique_params(pairs)
            if path == "/v1/rates":
                self._check_known(params, _PAGED_PARAMS)
                body = self._paged(params)
            else:
                self._check_known(params, _LINKS_PARAMS)
                body = self._linked(params, path)
            delay, failure = self._faults(params)
        except BadRequest as exc:
            self._send_error_json(400, str(exc))
            return
        if delay:
            time.sleep(delay)
        if failure:
            status, attempt = failure
            headers = {"Retry-After": "1"} if status == 429 else None
            self._send_error_json(status, "injected failure", headers, attempt=attempt)
            return
        self._send_json(200, body)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() == "bearer":
            return hmac.compare_digest(credentials.encode(), settings.API_TOKEN.encode())
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return hmac.compare_digest(
                f"{user}:{password}".encode(), f"{BASIC_AUTH_USER}:{settings.API_TOKEN}".encode()
            )
        return False

    @staticmethod
    def _unique_params(pairs: list[tuple[str, str]]) -> dict[str, str]:
        params: dict[str, str] = {}
        for name, value in pairs:
            if name in params:
                raise BadRequest(f"parameter {name!r} is given more than once")
            params[name] = value
        return params

    @staticmethod
    def _check_known(params: Mapping[str, str], allowed: frozenset[str]) -> None:
        unknown = sorted(set(params) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed))
            raise BadRequest(f"unknown parameter(s) {', '.join(unknown)}; allowed: {known}")

    @staticmethod
    def _date_range(params: Mapping[str, str]) -> tuple[dt.date, dt.date]:
        start, end = _date_param(params, "start_date"), _date_param(params, "end_date")
        if start > end:
            raise BadRequest(f"start_date {start} is after end_date {end}")
        return start, end

    def _faults(self, params: Mapping[str, str]) -> tuple[float, tuple[int, int] | None]:
        """Validate the fault parameters; return the delay and, if this request must fail, why."""
        delay_raw = params.get("delay")
        delay = 0.0
        if delay_raw is not None:
            try:
                delay = float(delay_raw)
            except ValueError:
                raise BadRequest(f"delay must be a number of seconds, got {delay_raw!r}") from None
            if not 0 <= delay <= MAX_DELAY_SECONDS:
                raise BadRequest(f"delay must be between 0 and {MAX_DELAY_SECONDS:g} seconds")
        if "fail_times" not in params:
            if "fail_key" in params or "fail_status" in params:
                raise BadRequest("fail_key and fail_status only make sense with fail_times")
            return delay, None
        times = _int_param(params, "fail_times", 0, 0, MAX_FAIL_TIMES)
        key = params.get("fail_key", "")
        if not key or len(key) > 200:
            raise BadRequest("fail_times needs a fail_key (1-200 characters) naming its counter")
        status = _int_param(params, "fail_status", 503, 0, None)
        if status not in FAIL_STATUSES:
            raise BadRequest(f"fail_status must be one of {', '.join(map(str, FAIL_STATUSES))}")
        attempt = self.injector.should_fail(key, times)
        return delay, ((status, attempt) if attempt else None)

    def _paged(self, params: Mapping[str, str]) -> dict[str, Any]:
        """``page``/``page_size`` (the default) or ``offset``/``limit`` when either is given."""
        start, end = self._date_range(params)
        truncate_after = _int_param(params, "truncate_after", 0, 1, None) or None
        rows = rows_between(start, end)
        total = len(rows)
        if {"offset", "limit"} & params.keys():
            if {"page", "page_size"} & params.keys():
                raise BadRequest("use either page/page_size or offset/limit, not both")
            offset = _int_param(params, "offset", 0, 0, None)
            limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
            cut = truncate_after is not None and offset >= truncate_after * limit
            data = [] if cut else list(rows[offset : offset + limit])
            return {"data": data, "offset": offset, "limit": limit, "total": total}
        page = _int_param(params, "page", 1, 1, None)
        page_size = _int_param(params, "page_size", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        cut = truncate_after is not None and page > truncate_after
        first = (page - 1) * page_size
        data = [] if cut else list(rows[first : first + page_size])
        total_pages = math.ceil(total / page_size)
        pages = {"page": page, "page_size": page_size, "total_pages": total_pages, "total": total}
        return {"data": data, **pages}

    def _linked(self, params: Mapping[str, str], path: str) -> dict[str, Any]:
        start, end = self._date_range(params)
        truncate_after = _int_param(params, "truncate_after", 0, 1, None) or None
        limit = _int_param(params, "limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
        offset = _decode_cursor(params["cursor"]) if "cursor" in params else 0
        link_style = params.get("link_style", "absolute")
        if link_style not in ("absolute", "relative"):
            raise BadRequest(f"link_style must be 'absolute' or 'relative', got {link_style!r}")
        rows = rows_between(start, end)
        cut = truncate_after is not None and offset >= truncate_after * limit
        data = [] if cut else list(rows[offset : offset + limit])
        next_url = None
        if not cut and offset + limit < len(rows):
            # Carry every other parameter forward: the next link is the whole request, re-aimed.
            query = urlencode({**params, "cursor": _encode_cursor(offset + limit)})
            next_url = f"{path}?{query}"
            if link_style == "absolute":
                host = self.headers.get("Host") or f"{settings.LOOPBACK}:{self.server.server_address[1]}"
                next_url = f"http://{host}{next_url}"
        return {"data": data, "links": {"next": next_url}}


def serve(port: int, host: str = settings.BIND_HOST) -> None:
    """Serve on ``host``:``port`` until SIGTERM/SIGINT."""
    server = ThreadingHTTPServer((host, port), RatesHandler)
    server.daemon_threads = True

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    all_rows()  # build the table before announcing readiness, so /health means "ready to serve"
    print(f"rates API listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("rates API shutting down", flush=True)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=settings.BIND_HOST,
        help="address to listen on (default: ETL_BIND_HOST or 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=settings.API_PORT, help="port to listen on")
    args = parser.parse_args(argv)
    serve(args.port, args.host)


if __name__ == "__main__":
    sys.exit(main())

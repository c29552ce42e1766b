"""Land the records of a paginated REST API, for one data interval, as one immutable NDJSON file.

Built on the http provider's :class:`HttpHook`: the connection gives the base URL and the
credentials, so no token ever appears in a DAG, a log line or a landed file. Every page is fetched
with a per-request timeout and retried with bounded exponential backoff on the failures that go
away by themselves (connection errors, timeouts, 429, 5xx); a 429's ``Retry-After`` is honoured.
Other 4xx are the caller's mistake and fail at once.

A listing is only landed once it is known to be whole: every pagination strategy checks what the
server promised (``total``, ``total_pages``, a ``next`` link) against what it delivered and raises
:class:`PaginationError` otherwise, because a silently truncated extract is worse than a failed one.
Records are spooled to a local file as they arrive (memory stays bounded by one page), then landed
through the path every extract shares (:mod:`include.etlkit.extract.landing`): created once in S3
under a key derived from their SHA-256, so a rerun of the same interval that receives the same
records finds its object already there.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urljoin, urlsplit

import tenacity
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from include.etlkit.lazy import lazy_module
from include.etlkit.lineage import DatasetRef, ReportsLineage, http_scheme, remote_dataset
from include.etlkit.redaction import mask_sensitive_parameters
from include.etlkit.windows import ExtractWindow, run_interval, source_clock

if TYPE_CHECKING:
    import requests

    from include.etlkit.extract.http_hook import ApiHttpHook
else:  # imported on first use, not while a DAG file is parsed
    requests = lazy_module("requests")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
JITTER = 0.25  # each backoff wait is stretched by up to this fraction, so clients do not retry in step
MAX_REDIRECTS = 5
ERROR_BODY_CHARS = 300  # how much of an error response goes into the exception message


class HttpApiError(AirflowException):
    """The API could not be read: a non-retryable answer, or retries exhausted."""


class HttpAuthError(HttpApiError, AirflowFailException):
    """401/403 or unusable credentials: retrying the task cannot help, so it fails without retries."""


class PaginationError(HttpApiError):
    """The server's listing is inconsistent (cut short, or not followable): nothing is landed."""


# -- pagination ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRequest:
    """One page to fetch: ``url`` None means the operator's endpoint; otherwise a URL the server gave."""

    params: Mapping[str, Any]
    url: str | None = None
    number: int = 1  # 1-based position in the listing, for messages


@dataclass
class Progress:
    """What one extract has received so far; owned by the operator, read by the strategy."""

    pages: int = 0
    rows: int = 0


@runtime_checkable
class Pagination(Protocol):
    """How a listing is walked. Strategies are stateless configuration (safe to share between runs).

    ``first`` builds the first request from the caller's query parameters; ``follow`` is given each
    page (its JSON body and record count, ``progress`` already counting it) and returns the next
    request, or ``None`` once the listing is complete, after checking it is complete: a strategy
    raises :class:`PaginationError` rather than end a listing short of what the server promised.
    """

    def first(self, params: Mapping[str, Any]) -> PageRequest: ...

    def follow(
        self, request: PageRequest, body: Mapping[str, Any], records: int, progress: Progress
    ) -> PageRequest | None: ...


def _dig(body: Any, path: Sequence[str]) -> Any:
    for part in path:
        if not isinstance(body, Mapping):
            return None
        body = body.get(part)
    return body


def _count(body: Mapping[str, Any], name: str, required: bool) -> int | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PaginationError(f"page field {name!r} must be a non-negative integer, got {value!r}")
    return value


def _check_total(total: int | None, progress: Progress) -> None:
    if total is not None and progress.rows != total:
        raise PaginationError(
            f"pagination cut short: expected {total} rows, got {progress.rows} in {progress.pages} page(s)"
        )


def _merge(params: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    clash = sorted(set(params) & set(extra))
    if clash:
        raise ValueError(f"query parameter(s) {clash} are set by the pagination strategy; remove them")
    return {**params, **extra}


@dataclass(frozen=True)
class PageNumberPagination:
    """``?page=1&page_size=N``: stops at ``total_pages`` (or at an empty page if the API gives none)."""

    page_param: str = "page"
    size_param: str = "page_size"
    size: int = 100
    total_pages_field: str = "total_pages"
    total_field: str = "total"

    def first(self, params: Mapping[str, Any]) -> PageRequest:
        return PageRequest(_merge(params, {self.page_param: 1, self.size_param: self.size}))

    def follow(
        self, request: PageRequest, body: Mapping[str, Any], records: int, progress: Progress
    ) -> PageRequest | None:
        page = int(request.params[self.page_param])
        total_pages = _count(body, self.total_pages_field, required=False)
        total = _count(body, self.total_field, required=False)
        if records and (total_pages is None or page < total_pages):
            return PageRequest({**request.params, self.page_param: page + 1}, number=page + 1)
        _check_total(total, progress)
        if total_pages is not None and page < total_pages:
            raise PaginationError(
                f"pagination cut short: expected {total_pages} pages, page {page} was empty"
            )
        return None


@dataclass(frozen=True)
class OffsetPagination:
    """``?offset=0&limit=N``: stops once ``total`` rows are in; the offset advances by rows received."""

    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    total_field: str = "total"

    def first(self, params: Mapping[str, Any]) -> PageRequest:
        return PageRequest(_merge(params, {self.offset_param: 0, self.limit_param: self.limit}))

    def follow(
        self, request: PageRequest, body: Mapping[str, Any], records: int, progress: Progress
    ) -> PageRequest | None:
        total = _count(body, self.total_field, required=True)
        # Advance by what arrived, not by the limit asked for: a server may cap page sizes.
        offset = int(request.params[self.offset_param]) + records
        if records and offset < total:
            return PageRequest({**request.params, self.offset_param: offset}, number=request.number + 1)
        _check_total(total, progress)
        return None


@dataclass(frozen=True)
class NextLinkPagination:
    """Follow ``links.next`` (absolute, or relative to the page) until it is null.

    Such listings carry no count, so the promise is the link itself: a page reached through a next
    link that is empty and ends the chain means the listing was cut short (set
    ``allow_empty_last_page`` for APIs that legitimately end that way). ``total_path`` checks a
    count when the API gives one. Links must stay on the connection's origin: credentials are never
    sent elsewhere.
    """

    link_path: tuple[str, ...] = ("links", "next")
    limit_param: str | None = "limit"
    limit: int | None = None
    total_path: tuple[str, ...] | None = None
    allow_empty_last_page: bool = False

    def first(self, params: Mapping[str, Any]) -> PageRequest:
        extra = {self.limit_param: self.limit} if self.limit_param and self.limit is not None else {}
        return PageRequest(_merge(params, extra))

    def follow(
        self, request: PageRequest, body: Mapping[str, Any], records: int, progress: Progress
    ) -> PageRequest | None:
        link = _dig(body, self.link_path)
        if link is not None and not isinstance(link, str):
            raise PaginationError(f"next link at {'.'.join(self.link_path)} is not a string: {link!r}")
        if link:
            # The link carries the whole next request (cursor included): nothing is added to it.
            return PageRequest({}, url=link, number=request.number + 1)
        if self.total_path is not None:
            _check_total(_count({"total": _dig(body, self.total_path)}, "total", required=True), progress)
        if not records and request.number > 1 and not self.allow_empty_last_page:
            raise PaginationError(
                f"pagination cut short: page {request.number}, promised by a next link, was empty "
                f"and ended the listing after {progress.rows} rows"
            )
        return None


class _Retryable(Exception):
    """A response worth asking again for (429/5xx), with the server's ``Retry-After`` if it gave one."""

    def __init__(self, status: int, retry_after: float | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _error_text(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return text[:ERROR_BODY_CHARS] + ("..." if len(text) > ERROR_BODY_CHARS else "")


def _finite_or_text(text: str) -> float | str:
    """A JSON number as a float, unless a float cannot hold it (``1e999``): then its text.

    With ``parse_constant=str`` (``NaN``, ``Infinity``) no value is lost or turned into a float
    JSON cannot write: the validation then quarantines such a value with its reason.
    """
    value = float(text)
    return value if math.isfinite(value) else text


def ndjson_line(record: Mapping[str, Any]) -> bytes:
    """One record as the landed file holds it: sorted keys, so equal records give equal bytes (and keys)."""
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


# -- the operator ----------------------------------------------------------------------------------


@dataclass
class _Spool:
    path: Path
    rows: int = 0
    pages: int = 0
    digest: Any = field(default_factory=hashlib.sha256)


class HttpApiExtractOperator(ReportsLineage, BaseOperator):
    """Land every record an API lists for the run's data interval, as one NDJSON file.

    :param http_conn_id: HTTP connection: base URL and credentials (``auth_type`` ``bearer`` in the
        extras sends the password as a bearer token; otherwise login/password as basic auth).
    :param endpoint: path of the listing, relative to the connection's base URL (templated).
    :param query_params: query parameters of the first request (templated), e.g.
        ``{"start_date": "{{ data_interval_start | ds }}", "end_date": "{{ data_interval_end | ds }}"}``.
        Not called ``params``: that name is BaseOperator's (DAG params, merged into it by Airflow).
    :param pagination: how the listing is walked: :class:`PageNumberPagination`,
        :class:`OffsetPagination` or :class:`NextLinkPagination`.
    :param records_path: where each page's list of records is in its JSON body.
    :param source: the source name: first part of the landed key and of the ledger's records.
    :param name: the feed's name: the ledger's table name and the file name of the landed key.
    :param bucket: the ingestion bucket (templated; e.g. ``{{ var.value.ingestion_bucket }}``).
    :param timeout: seconds per request (connect and read each).
    :param max_retries: retries per request after the first attempt, for retryable failures.
    :param backoff: first backoff wait in seconds; doubles per retry, plus up to 25% jitter.
    :param max_backoff: cap on any single wait, ``Retry-After`` included.
    :param max_pages: safety stop against a listing that never ends.
    """

    template_fields: Sequence[str] = ("endpoint", "query_params", "bucket")
    template_fields_renderers = {"query_params": "json"}
    ui_color = "#e8f4d9"

    def __init__(
        self,
        *,
        http_conn_id: str,
        endpoint: str,
        source: str,
        name: str,
        bucket: str,
        query_params: Mapping[str, Any] | None = None,
        pagination: Pagination | None = None,
        records_path: Sequence[str] = ("data",),
        aws_conn_id: str = "aws_default",
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_pages: int = 100_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0:
            raise ValueError("timeout must be positive; max_retries, backoff and max_backoff non-negative")
        self.http_conn_id = http_conn_id
        self.endpoint = endpoint
        self.query_params = dict(query_params or {})
        self.pagination = pagination or PageNumberPagination()
        self.records_path = tuple(records_path)
        self.source = source
        self.name = name
        self.bucket = bucket
        self.aws_conn_id = aws_conn_id
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_pages = max_pages

    def lineage_inputs(self) -> list[DatasetRef]:
        return [self.listing()]

    def listing(self) -> DatasetRef:
        """The API listing as an OpenLineage dataset: the connection's base URL and the endpoint."""
        from airflow.sdk import BaseHook

        scheme = http_scheme(BaseHook.get_connection(self.http_conn_id).schema)
        return remote_dataset(self.http_conn_id, scheme, self.endpoint)

    # -- execute ------------------------------------------------------------------------------------

    def execute(self, context: Any) -> dict[str, Any]:
        # The landing path (ledger, object store): imported when a task runs, not when a DAG file is parsed.
        from include.etlkit.extract.landing import Landing

        start, end = run_interval(context)
        window = ExtractWindow(lower=source_clock(start), upper=source_clock(end))
        self.log.info(
            "landing %s.%s from %s (connection %r) for %s",
            self.source,
            self.name,
            self.endpoint,
            self.http_conn_id,
            window.describe(),
        )
        with tempfile.TemporaryDirectory(prefix=f"land-{self.name}-") as tmp:
            spool = _Spool(Path(tmp) / f"{self.name}.ndjson")
            self._collect(spool)  # raises before anything lands if the listing is not whole
            if not spool.rows:
                self.log.info(
                    "no records for %s in %d page(s): nothing to land", window.describe(), spool.pages
                )
            landing = Landing(
                source=self.source,
                name=self.name,
                bucket=self.bucket,
                window=window,
                run_id=context["run_id"],
                log=self.log,
                aws_conn_id=self.aws_conn_id,
                lineage=self.lineage,
            )
            stored = landing.land(
                spool.path if spool.rows else None,
                rows=spool.rows,
                mode="incremental",
                advance_state=True,
                suffix=".ndjson",
                sha256=spool.digest.hexdigest(),
                detail=f"{spool.pages} pages",
            )
        landing.report(context, rows_in=spool.rows, rows_out=spool.rows)
        self.lineage.read(self.listing(), rows=spool.rows)
        return {
            "rows": spool.rows,
            "pages": spool.pages,
            "key": stored.key if stored else None,
            "window_start": window.lower.isoformat() if window.lower else None,
            "window_end": window.upper.isoformat(),
        }

    def _collect(self, spool: _Spool) -> None:
        """Walk the listing, spooling records to ``spool.path`` in the server's order."""
        from include.etlkit.extract.http_hook import ApiHttpHook  # the provider loads requests, aiohttp

        hook = ApiHttpHook(method="GET", http_conn_id=self.http_conn_id)
        session = hook.get_conn()
        first_url = hook.url_from_endpoint(self.endpoint)
        # Before any request: an API key in the query string (or the base URL) is masked in every
        # log line and traceback from here on, though the masker never saw it as a secret.
        mask_sensitive_parameters(self.query_params)
        mask_sensitive_parameters(first_url)
        origin = _origin(first_url)
        progress = Progress()
        request: PageRequest | None = self.pagination.first(self.query_params)
        url = first_url
        followed: set[str] = set()
        try:
            with spool.path.open("wb") as out:
                while request is not None:
                    if progress.pages >= self.max_pages:
                        raise PaginationError(f"more than {self.max_pages} pages: stopping (max_pages)")
                    if request.url is not None:
                        url = urljoin(url, request.url)  # relative links resolve against their page
                        mask_sensitive_parameters(url)  # a signed link carries its signature
                        if _origin(url) != origin:
                            raise PaginationError(
                                f"next link leaves the connection's origin ({url.split('?')[0]}): "
                                "refusing to send credentials there"
                            )
                        if url in followed:
                            raise PaginationError(
                                f"page {request.number}: the next link points back to a page already read "
                                f"({url.split('?')[0]}): the listing loops"
                            )
                        followed.add(url)
                    else:
                        url = first_url
                    body = self._get(hook, session, url, request.params)
                    records = _dig(body, self.records_path)
                    if not isinstance(records, list):
                        raise HttpApiError(
                            f"page {request.number}: expected a list of records at "
                            f"{'.'.join(self.records_path)}, got {type(records).__name__}"
                        )
                    for record in records:
                        if not isinstance(record, Mapping):
                            raise HttpApiError(f"page {request.number}: a record is not a JSON object")
                        line = ndjson_line(record)
                        out.write(line)
                        spool.digest.update(line)
                    progress.pages += 1
                    progress.rows += len(records)
                    self.log.debug("page %d: %d records", request.number, len(records))
                    request = self.pagination.follow(request, body, len(records), progress)
        finally:
            session.close()
        spool.rows, spool.pages = progress.rows, progress.pages

    # -- one request, with retries --------------------------------------------------------------------

    def _get(
        self, hook: ApiHttpHook, session: requests.Session, url: str, params: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        where = url.split("?")[0]
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type((_Retryable, requests.ConnectionError, requests.Timeout)),
            before_sleep=lambda state: self.log.warning(
                "GET %s: attempt %d failed (%s); retrying in %.2fs",
                where,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "?",
                state.next_action.sleep if state.next_action else 0,
            ),
            sleep=time.sleep,
            reraise=True,
        )
        try:
            response = retrying(self._attempt, hook, session, url, params)
        except (_Retryable, requests.ConnectionError, requests.Timeout) as exc:
            kind = "timed out" if isinstance(exc, requests.Timeout) else "failed"
            raise HttpApiError(
                f"GET {where} (connection {self.http_conn_id!r}) {kind} after "
                f"{self.max_retries + 1} attempt(s): {exc}"
            ) from exc
        try:
            body = json.loads(response.text, parse_float=_finite_or_text, parse_constant=str)
        except ValueError as exc:
            raise HttpApiError(
                f"GET {where} answered {response.status_code} with a body that is not JSON "
                f"({response.headers.get('Content-Type')!r})"
            ) from exc
        if not isinstance(body, Mapping):
            raise HttpApiError(f"GET {where}: expected a JSON object, got {type(body).__name__}")
        return body

    def _attempt(
        self, hook: ApiHttpHook, session: requests.Session, url: str, params: Mapping[str, Any]
    ) -> requests.Response:
        prepared = session.prepare_request(requests.Request("GET", url, params=dict(params)))
        options = {
            **hook.merged_extra,
            "timeout": self.timeout,
            "check_response": False,
            "allow_redirects": False,  # followed below, and only on the connection's origin
        }
        response = hook.run_and_check(session, prepared, options)
        where = url.split("?")[0]
        redirects = 0
        while response.is_redirect:
            target = urljoin(response.url or url, response.headers["Location"])
            if _origin(target) != _origin(url):
                raise HttpApiError(
                    f"GET {where} redirects to another origin ({target.split('?')[0]}): not followed, "
                    "so the connection's credentials never leave its host"
                )
            redirects += 1
            if redirects > MAX_REDIRECTS:
                raise HttpApiError(f"GET {where}: more than {MAX_REDIRECTS} redirects")
            follow = session.prepare_request(requests.Request("GET", target))
            response = hook.run_and_check(session, follow, options)
        status = response.status_code
        if status < 400:
            return response
        if status in RETRYABLE_STATUSES:
            raise _Retryable(
                status,
                parse_retry_after(response.headers.get("Retry-After")),
                f"{status}: {_error_text(response)}",
            )
        if status in (401, 403):
            raise HttpAuthError(
                f"GET {where} answered {status} {response.reason}: the credentials of connection "
                f"{self.http_conn_id!r} were refused (not retried)"
            )
        raise HttpApiError(f"GET {where} answered {status} {response.reason}: {_error_text(response)}")

    def _wait(self, state: tenacity.RetryCallState) -> float:
        """Retry-After when the server gave one, else exponential backoff with bounded jitter; capped."""
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        base = self.backoff * 2 ** (state.attempt_number - 1)
        return min(self.max_backoff, base * (1 + random.uniform(0, JITTER)))

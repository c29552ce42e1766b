"""HttpApiExtractOperator against the real local rates API, S3 (moto) and the etl ledger.

Failures are the server's own fault injection (``fail_times``, ``truncate_after``, ``delay``), so
every retry, timeout and truncation here goes over a real socket. Each test lands under a source
name of its own, so its S3 keys and ledger rows are its own (identical content under one source
would share a key by design).
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.http import (
    HttpApiError,
    HttpApiExtractOperator,
    HttpAuthError,
    NextLinkPagination,
    OffsetPagination,
    PageNumberPagination,
    PaginationError,
)
from infra.local import settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

NAME = "daily_rates"
START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 4, 1, tzinfo=UTC)
DATES = {"start_date": "2024-03-01", "end_date": "2024-03-31"}  # the API's end_date is inclusive
EXPECTED_ROWS = 31 * 6  # 31 days, 6 currencies

STYLES = {
    "page_number": ("/v1/rates", PageNumberPagination(size=25), {}),
    "offset": ("/v1/rates", OffsetPagination(limit=40), {}),
    "next_link_absolute": ("/v1/rates/links", NextLinkPagination(limit=30), {}),
    "next_link_relative": ("/v1/rates/links", NextLinkPagination(limit=30), {"link_style": "relative"}),
}


def _http_conn(**fields: Any) -> str:
    return json.dumps(
        {
            "conn_type": "http",
            "host": settings.LOOPBACK,
            "port": settings.API_PORT,
            "schema": "http",
            **fields,
        }
    )


@pytest.fixture(scope="module")
def reference(local_services) -> list[dict[str, Any]]:
    """The whole range in one unpaginated request (page size above the row count)."""
    response = requests.get(
        f"{settings.api_base_url()}/v1/rates",
        params={**DATES, "page_size": 1000},
        headers={"Authorization": f"Bearer {settings.API_TOKEN}"},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    assert body["total_pages"] == 1 and body["total"] == len(body["data"]) == EXPECTED_ROWS
    return body["data"]


@pytest.fixture
def s3(local_services):
    return s3_client()


@pytest.fixture
def attempts(monkeypatch) -> list[str]:
    """Every HTTP attempt the operator makes (URL without query), in order."""
    seen: list[str] = []
    original = HttpApiExtractOperator._attempt

    def counting(self, hook, session, url, params):
        seen.append(url.split("?")[0])
        return original(self, hook, session, url, params)

    monkeypatch.setattr(HttpApiExtractOperator, "_attempt", counting)
    return seen


@pytest.fixture
def extract(local_services, bucket, source_name):
    """Build the operator (rates_api, page-number style unless told) and run ``execute``."""

    def run(**overrides: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "task_id": "land_rates",
            "http_conn_id": "rates_api",
            "endpoint": "/v1/rates",
            "query_params": dict(DATES),
            "pagination": PageNumberPagination(size=25),
            "source": source_name,
            "name": NAME,
            "bucket": bucket,
            "timeout": 10,
            "max_retries": 3,
            "backoff": 0.05,
            **overrides,
        }
        operator = HttpApiExtractOperator(**kwargs)
        task = TaskTry(operator, "http_extract_test", f"scheduled__{START.isoformat()}", (START, END))
        result = task.execute()
        result["reported"] = task.outcome
        return result

    return run


def landed_records(s3, bucket: str, key: str) -> tuple[bytes, list[dict[str, Any]]]:
    raw = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    return raw, [json.loads(line) for line in raw.decode("utf-8").splitlines()]


def landed_objects(store, source_name: str) -> list[tuple]:
    return store.query(
        "SELECT key, table_name, mode, rows, window_start, window_end FROM etl.landed_object "
        "WHERE source = %s ORDER BY landed_at, key",
        (source_name,),
    )


def assert_nothing_landed(s3, bucket, store, source_name) -> None:
    assert bucket_keys(s3, bucket, source_name) == []
    assert landed_objects(store, source_name) == []
    assert Ledger().landed_until(source_name, NAME) is None


def fault(**params: Any) -> dict[str, Any]:
    """DATES plus fault-injection parameters, with a fresh ``fail_key`` when failures are asked for."""
    if "fail_times" in params:
        params["fail_key"] = f"http-extract-{uuid.uuid4().hex}"
    return {**DATES, **params}


# -- every pagination style lands the range exactly once ------------------------------------------


@pytest.mark.parametrize("style", list(STYLES))
def test_each_pagination_style_lands_exactly_the_rows_of_the_range(
    style, extract, reference, s3, bucket, source_name, control_plane, attempts
):
    endpoint, pagination, extra = STYLES[style]
    result = extract(endpoint=endpoint, pagination=pagination, query_params={**DATES, **extra})

    size = getattr(pagination, "size", None) or getattr(pagination, "limit", None)
    pages = -(-EXPECTED_ROWS // size)
    assert (result["rows"], result["pages"]) == (EXPECTED_ROWS, pages)
    assert len(attempts) == pages and set(attempts) == {f"{settings.api_base_url()}{endpoint}"}
    assert (result["reported"].rows_in, result["reported"].rows_out) == (EXPECTED_ROWS, EXPECTED_ROWS)
    assert result["key"].startswith(f"{source_name}/{NAME}/2024/04/01/{NAME}-")
    assert result["key"].endswith(".ndjson")
    assert bucket_keys(s3, bucket, source_name) == [result["key"]]

    raw, records = landed_records(s3, bucket, result["key"])
    assert records == reference  # every row once, in the server's order
    assert raw.endswith(b"\n") and raw.count(b"\n") == EXPECTED_ROWS
    first = raw.split(b"\n", 1)[0].decode()
    assert list(json.loads(first)) == sorted(json.loads(first))  # keys sorted
    assert settings.API_TOKEN.encode() not in raw

    assert landed_objects(control_plane, source_name) == [
        (result["key"], NAME, "incremental", EXPECTED_ROWS, datetime(2024, 3, 1), datetime(2024, 4, 1))
    ]
    assert Ledger().landed_until(source_name, NAME) == datetime(2024, 4, 1)


def test_all_styles_land_identical_bytes(extract, s3, bucket):
    """Same records, same file: the content key does not depend on how the listing was walked."""
    digests = set()
    for endpoint, pagination, extra in STYLES.values():
        result = extract(endpoint=endpoint, pagination=pagination, query_params={**DATES, **extra})
        digests.add(result["key"].rsplit("-", 1)[1])
    assert len(digests) == 1
    assert len(bucket_keys(s3, bucket, result["key"].split("/")[0])) == 1


def test_running_the_same_interval_twice_lands_no_second_object(
    extract, s3, bucket, source_name, control_plane
):
    first = extract()
    second = extract(pagination=OffsetPagination(limit=100))

    assert second["key"] == first["key"]
    assert bucket_keys(s3, bucket, source_name) == [first["key"]]
    assert len(landed_objects(control_plane, source_name)) == 1


def test_an_empty_range_lands_nothing_but_moves_the_state(extract, s3, bucket, source_name, control_plane):
    result = extract(query_params={"start_date": "2021-01-01", "end_date": "2021-01-31"})

    assert (result["rows"], result["key"], result["pages"]) == (0, None, 1)
    assert bucket_keys(s3, bucket, source_name) == []
    assert landed_objects(control_plane, source_name) == []
    assert Ledger().landed_until(source_name, NAME) == datetime(2024, 4, 1)


# -- auth -----------------------------------------------------------------------------------------


def test_basic_auth_works(extract, monkeypatch, reference, s3, bucket):
    monkeypatch.setenv("AIRFLOW_CONN_RATES_BASIC", _http_conn(login="etl", password=settings.API_TOKEN))
    result = extract(http_conn_id="rates_basic")

    assert result["rows"] == EXPECTED_ROWS
    raw, records = landed_records(s3, bucket, result["key"])
    assert records == reference
    assert settings.API_TOKEN.encode() not in raw


def test_a_wrong_token_fails_fast_with_401_and_no_retries(
    extract, monkeypatch, attempts, s3, bucket, source_name, control_plane, caplog
):
    monkeypatch.setenv(
        "AIRFLOW_CONN_RATES_BAD", _http_conn(password="not-the-token", extra={"auth_type": "bearer"})
    )
    started = time.monotonic()
    with pytest.raises(HttpAuthError, match=r"401.*'rates_bad'") as raised:
        extract(http_conn_id="rates_bad", max_retries=5, backoff=2.0)

    assert time.monotonic() - started < 2.0
    assert len(attempts) == 1
    assert "not-the-token" not in str(raised.value) and "not-the-token" not in caplog.text
    assert_nothing_landed(s3, bucket, control_plane, source_name)


def test_a_bearer_connection_without_a_token_is_refused_before_any_request(extract, monkeypatch, attempts):
    monkeypatch.setenv("AIRFLOW_CONN_RATES_NOTOKEN", _http_conn(extra={"auth_type": "bearer"}))
    with pytest.raises(HttpAuthError, match="no token"):
        extract(http_conn_id="rates_notoken")
    assert attempts == []


# -- retries, Retry-After, timeouts, a server that is down ----------------------------------------


def test_503_twice_then_success_is_retried_and_lands_everything(extract, attempts, reference, s3, bucket):
    result = extract(query_params=fault(fail_times=2, fail_status=503))

    assert result["rows"] == EXPECTED_ROWS
    assert len(attempts) == result["pages"] + 2
    assert landed_records(s3, bucket, result["key"])[1] == reference


def test_429_retry_after_is_honoured(extract, attempts, reference, s3, bucket):
    started = time.monotonic()
    result = extract(query_params=fault(fail_times=1, fail_status=429), backoff=0.01)
    elapsed = time.monotonic() - started

    assert elapsed >= 1.0  # the server's Retry-After: 1, far above the 0.01 s backoff
    assert len(attempts) == result["pages"] + 1
    assert landed_records(s3, bucket, result["key"])[1] == reference


def test_retries_are_bounded(extract, attempts, s3, bucket, source_name, control_plane):
    with pytest.raises(HttpApiError, match=r"failed after 3 attempt\(s\): 502"):
        extract(query_params=fault(fail_times=10, fail_status=502), max_retries=2)
    assert len(attempts) == 3
    assert_nothing_landed(s3, bucket, control_plane, source_name)


def test_a_server_that_is_down_fails_after_bounded_retries(
    extract, monkeypatch, attempts, s3, bucket, source_name, control_plane
):
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind((settings.LOOPBACK, 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_RATES_DOWN",
        json.dumps(
            {"conn_type": "http", "host": settings.LOOPBACK, "port": port, "schema": "http", "password": "x"}
        ),
    )
    started = time.monotonic()
    with pytest.raises(
        HttpApiError, match=rf"127\.0\.0\.1:{port}/v1/rates.*'rates_down'.*failed after 3 attempt"
    ):
        extract(http_conn_id="rates_down", max_retries=2, backoff=0.05)

    assert len(attempts) == 3
    assert time.monotonic() - started < 5
    assert_nothing_landed(s3, bucket, control_plane, source_name)


def test_the_request_timeout_triggers_on_a_slow_server(
    extract, attempts, s3, bucket, source_name, control_plane
):
    started = time.monotonic()
    with pytest.raises(HttpApiError, match=r"timed out after 2 attempt"):
        extract(query_params=fault(delay=3), timeout=0.5, max_retries=1)
    elapsed = time.monotonic() - started

    assert len(attempts) == 2
    assert 1.0 <= elapsed < 3.0  # two 0.5 s timeouts, never one full 3 s delay
    assert_nothing_landed(s3, bucket, control_plane, source_name)


# -- a listing cut short lands nothing ------------------------------------------------------------


@pytest.mark.parametrize("style", list(STYLES))
def test_a_listing_cut_short_raises_and_lands_nothing(style, extract, s3, bucket, source_name, control_plane):
    endpoint, pagination, extra = STYLES[style]
    with pytest.raises(PaginationError, match="pagination cut short"):
        extract(
            endpoint=endpoint, pagination=pagination, query_params={**DATES, **extra, "truncate_after": 2}
        )
    assert_nothing_landed(s3, bucket, control_plane, source_name)


def test_page_number_cut_short_names_the_counts(extract):
    with pytest.raises(PaginationError, match=rf"expected {EXPECTED_ROWS} rows, got 50"):
        extract(query_params={**DATES, "truncate_after": 2})


def test_a_client_error_is_not_retried(extract, attempts):
    with pytest.raises(HttpApiError, match=r"400 .*unknown parameter") as raised:
        extract(query_params={**DATES, "no_such_param": "1"})
    assert not isinstance(raised.value, HttpAuthError)
    assert len(attempts) == 1


def test_the_hook_sends_the_token_as_bearer_auth_and_never_auth_type_as_a_header(local_services):
    from include.etlkit.extract.http_hook import ApiHttpHook, BearerAuth

    session = ApiHttpHook(method="GET", http_conn_id="rates_api").get_conn()
    assert isinstance(session.auth, BearerAuth)
    assert "auth_type" not in {name.lower() for name in session.headers}
    assert settings.API_TOKEN not in repr(session.auth)

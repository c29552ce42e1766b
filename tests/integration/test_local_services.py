"""The local servers, for real: started by the service manager, then used the way the pipelines will.

Each test talks to the actual process (moto's S3 API, pyftpdlib, the rates API) over 127.0.0.1, so
a pass means ``make services`` gives the rest of the project working endpoints, not just that mocks
agree with themselves.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from ftplib import FTP
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urljoin
from urllib.request import ProxyHandler, Request, build_opener

import boto3
import pytest

from infra.local import rates_api, services, settings

pytestmark = pytest.mark.integration

API = settings.api_base_url()
BEARER = {"Authorization": f"Bearer {settings.API_TOKEN}"}
_opener = build_opener(ProxyHandler({}))


@pytest.fixture(scope="module", autouse=True)
def local_services() -> None:
    services.ensure_running()


def get(path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, Any, Any]:
    """GET ``path`` (relative to the API, or absolute); return status, parsed JSON and headers."""
    request = Request(urljoin(API, path), headers=BEARER if headers is None else headers)
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, json.load(response), response.headers
    except HTTPError as error:
        with error:
            return error.code, json.load(error), error.headers


def rates_url(path: str = "/v1/rates", **params: Any) -> str:
    return f"{path}?{urlencode({'start_date': START, 'end_date': END, **params})}"


# A range over a leap day and a month end, paged in sizes that do not divide the row count.
START, END = "2024-02-25", "2024-03-05"
DAYS = (dt.date.fromisoformat(END) - dt.date.fromisoformat(START)).days + 1
EXPECTED_ROWS = DAYS * len(rates_api.CURRENCIES)


def _key(row: dict[str, Any]) -> tuple[str, str]:
    return row["date"], row["currency"]


@pytest.fixture(scope="module")
def all_rows() -> list[dict[str, Any]]:
    status, body, _ = get(rates_url(page_size=rates_api.MAX_PAGE_SIZE))
    assert status == 200
    assert body["total"] == EXPECTED_ROWS == len(body["data"])
    return body["data"]


# -- the manager -------------------------------------------------------------------------------------


def test_ensure_running_is_idempotent() -> None:
    before = services.status()
    assert all(row.healthy for row in before.values()), services.format_status(before)

    services.ensure_running()

    after = services.status()
    assert {name: row.pid for name, row in after.items()} == {name: row.pid for name, row in before.items()}
    assert all(row.healthy for row in after.values())


def test_stop_frees_ports_and_start_again() -> None:
    services.stop()
    services.stop()  # idempotent: nothing left to stop

    stopped = services.status()
    assert {row.state for row in stopped.values()} == {"stopped"}, services.format_status(stopped)
    for service in services.SERVICES.values():
        assert not service.pid_file.exists()
        assert not services.port_in_use(service.port)

    services.ensure_running()
    restarted = services.status()
    assert {row.state for row in restarted.values()} == {"running"}, services.format_status(restarted)
    assert all(row.pid for row in restarted.values())


def test_stale_pid_file_is_cleaned() -> None:
    service = services.SERVICES["api"]
    services.stop(["api"])
    # PID 1 is alive but is not the rates API: must be treated as stale, never signalled.
    service.pid_file.write_text("1\n")

    services.ensure_running(["api"])

    assert int(service.pid_file.read_text()) != 1
    assert services.status(["api"])["api"].state == "running"


def test_unknown_service_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        services.ensure_running(["s4"])


# -- S3 ----------------------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint(),
        aws_access_key_id=settings.S3_ACCESS_KEY,
        aws_secret_access_key=settings.S3_SECRET_KEY,
        region_name=settings.S3_REGION,
    )


def test_s3_bucket_and_object_round_trip(s3: Any) -> None:
    bucket = f"test-local-services-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    try:
        body = b"date,rate\n2024-02-29,1.27\n"
        s3.put_object(Bucket=bucket, Key="landing/rates.csv", Body=body)

        assert s3.get_object(Bucket=bucket, Key="landing/rates.csv")["Body"].read() == body
        listed = s3.list_objects_v2(Bucket=bucket, Prefix="landing/")
        assert [item["Key"] for item in listed["Contents"]] == ["landing/rates.csv"]
    finally:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)


# -- FTP ---------------------------------------------------------------------------------------------


@pytest.fixture
def ftp() -> Iterator[FTP]:
    with FTP(timeout=10) as client:
        client.connect(settings.LOOPBACK, settings.FTP_PORT)
        client.login(settings.FTP_USER, settings.FTP_PASSWORD)
        yield client


def test_ftp_login_upload_and_list(ftp: FTP) -> None:
    folder = f"test-local-services-{uuid.uuid4().hex[:12]}"
    ftp.mkd(folder)
    try:
        ftp.cwd(folder)
        ftp.storbinary("STOR sales.csv", io.BytesIO(b"id,amount\n1,9.99\n"))

        assert ftp.nlst() == ["sales.csv"]
        ftp.voidcmd("TYPE I")  # SIZE is refused in ASCII mode, the ftplib default
        assert ftp.size("sales.csv") == len(b"id,amount\n1,9.99\n")
        downloaded = io.BytesIO()
        ftp.retrbinary("RETR sales.csv", downloaded.write)
        assert downloaded.getvalue() == b"id,amount\n1,9.99\n"
        assert (services.FTP_ROOT / folder / "sales.csv").is_file()
    finally:
        ftp.cwd("/")
        if folder in ftp.nlst():
            for name in ftp.nlst(folder):
                ftp.delete(name if "/" in name else f"{folder}/{name}")
            ftp.rmd(folder)


def test_ftp_rejects_wrong_password() -> None:
    with FTP(timeout=10) as client:
        client.connect(settings.LOOPBACK, settings.FTP_PORT)
        with pytest.raises(Exception, match="530"):
            client.login(settings.FTP_USER, "wrong")


# -- rates API: health and auth ----------------------------------------------------------------------


def test_health_needs_no_auth() -> None:
    assert get("/health", headers={})[:2] == (200, {"status": "ok"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Token {settings.API_TOKEN}"},
        {"Authorization": "Basic " + base64.b64encode(f"someone:{settings.API_TOKEN}".encode()).decode()},
        {"Authorization": "Basic not-base64!"},
    ],
    ids=["missing", "wrong-bearer", "wrong-scheme", "wrong-basic-user", "garbled-basic"],
)
def test_api_rejects_bad_credentials(headers: dict[str, str]) -> None:
    status, body, response_headers = get(rates_url(), headers=headers)
    assert status == 401
    assert body["error"] == "unauthorized"
    assert "Bearer" in response_headers["WWW-Authenticate"]


def test_api_accepts_basic_auth() -> None:
    token = base64.b64encode(f"{rates_api.BASIC_AUTH_USER}:{settings.API_TOKEN}".encode()).decode()
    status, body, _ = get(rates_url(page_size=5), headers={"Authorization": f"Basic {token}"})
    assert status == 200
    assert len(body["data"]) == 5


# -- rates API: data and pagination ------------------------------------------------------------------


def test_rows_are_complete_sorted_and_deterministic(all_rows: list[dict[str, Any]]) -> None:
    assert [_key(row) for row in all_rows] == sorted(_key(row) for row in all_rows)
    assert {row["currency"] for row in all_rows} >= {"GBP", "USD", "EUR"}
    assert {row["base"] for row in all_rows} == {"GBP"}
    assert all(row["rate"] == 1.0 for row in all_rows if row["currency"] == "GBP")
    assert all(round(row["rate"], 6) == row["rate"] > 0 for row in all_rows)
    assert "2024-02-29" in {row["date"] for row in all_rows}
    # The server's numbers are the module's: the same function in another process, same output.
    assert all(
        row["rate"] == rates_api.rate_for(dt.date.fromisoformat(row["date"]), row["currency"])
        for row in all_rows
    )


def test_page_and_page_size(all_rows: list[dict[str, Any]]) -> None:
    rows, page, total_pages = [], 1, None
    while total_pages is None or page <= total_pages:
        status, body, _ = get(rates_url(page=page, page_size=7))
        assert status == 200
        assert (body["page"], body["page_size"], body["total"]) == (page, 7, EXPECTED_ROWS)
        total_pages = body["total_pages"]
        rows += body["data"]
        page += 1
    assert total_pages == -(-EXPECTED_ROWS // 7)
    assert rows == all_rows


def test_offset_and_limit(all_rows: list[dict[str, Any]]) -> None:
    rows, offset = [], 0
    while True:
        status, body, _ = get(rates_url(offset=offset, limit=11))
        assert status == 200
        assert (body["offset"], body["limit"], body["total"]) == (offset, 11, EXPECTED_ROWS)
        if not body["data"]:
            break
        rows += body["data"]
        offset += len(body["data"])
    assert rows == all_rows


@pytest.mark.parametrize("link_style", ["absolute", "relative"])
def test_cursor_next_links(all_rows: list[dict[str, Any]], link_style: str) -> None:
    rows, url, pages = [], rates_url("/v1/rates/links", limit=13, link_style=link_style), 0
    while url:
        status, body, _ = get(url)
        assert status == 200
        rows += body["data"]
        url = body["links"]["next"]
        pages += 1
        if url:
            assert url.startswith("http://" if link_style == "absolute" else "/v1/rates/links?")
    assert pages == -(-EXPECTED_ROWS // 13)
    assert rows == all_rows


def test_truncate_after_cuts_the_listing_short() -> None:
    status, body, _ = get(rates_url(page=2, page_size=10, truncate_after=2))
    assert status == 200 and len(body["data"]) == 10 and body["total_pages"] > 2
    status, body, _ = get(rates_url(page=3, page_size=10, truncate_after=2))
    assert status == 200
    assert body["data"] == [] and body["total"] == EXPECTED_ROWS  # promised more, delivered nothing

    _, body, _ = get(rates_url("/v1/rates/links", limit=10, truncate_after=1))
    assert body["links"]["next"]
    _, body, _ = get(body["links"]["next"])
    assert body == {"data": [], "links": {"next": None}}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start_date": "2024-02-30"}, "start_date"),
        ({"end_date": "20240305"}, "end_date"),
        ({"start_date": "2024-03-06"}, "after end_date"),
        ({"page": 0}, "page"),
        ({"page_size": 5000}, "page_size"),
        ({"page": 1, "limit": 5}, "not both"),
        ({"offset": -1}, "offset"),
        ({"delay": "soon"}, "delay"),
        ({"fail_times": 1}, "fail_key"),
        ({"fail_times": 1, "fail_key": "k", "fail_status": 418}, "fail_status"),
        ({"colour": "blue"}, "unknown parameter"),
    ],
)
def test_invalid_parameters_are_400(params: dict[str, Any], message: str) -> None:
    status, body, _ = get(rates_url(**params))
    assert status == 400
    assert message in body["message"]


def test_missing_dates_are_400() -> None:
    status, body, _ = get("/v1/rates?page=1")
    assert status == 400 and "start_date is required" in body["message"]


def test_bad_cursor_is_400() -> None:
    status, body, _ = get(rates_url("/v1/rates/links", cursor="not-a-cursor"))
    assert status == 400 and "cursor" in body["message"]


# -- rates API: fault injection ----------------------------------------------------------------------


def test_fail_times_answers_503_then_succeeds() -> None:
    url = rates_url(page_size=5, fail_times=2, fail_key=f"test-{uuid.uuid4().hex}")
    assert [get(url)[0] for _ in range(4)] == [503, 503, 200, 200]


def test_fail_status_429_sends_retry_after() -> None:
    url = rates_url(page_size=5, fail_times=1, fail_key=f"test-{uuid.uuid4().hex}", fail_status=429)
    status, body, headers = get(url)
    assert (status, headers["Retry-After"], body["attempt"]) == (429, "1", 1)
    assert get(url)[0] == 200


def test_delay_makes_a_short_timeout_expire() -> None:
    with pytest.raises(TimeoutError):
        get(rates_url(page_size=5, delay=2), timeout=0.5)
    assert get(rates_url(page_size=5, delay=0.2), timeout=5)[0] == 200

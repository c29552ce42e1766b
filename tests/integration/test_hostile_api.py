"""An API that misbehaves, served for real on loopback: each answer rejected or quarantined with a reason.

A small HTTP server of the test's own answers what a broken or hostile API might: HTML with status 200,
NaN and 1e999 as numbers, a next link that points back at its own page, a redirect to another host
(and, for contrast, one on the same host). The extract either lands the listing or fails with a reason
and lands nothing; what lands goes through the validation, which quarantines what it cannot type.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from include.etlkit.control.ledger import Ledger
from include.etlkit.extract.http import (
    HttpApiError,
    HttpApiExtractOperator,
    NextLinkPagination,
    PageNumberPagination,
    PaginationError,
)
from include.etlkit.files.operators import ValidateLandedFilesOperator
from infra.local import settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 2, tzinfo=UTC)
RATES = {
    "key": ["date", "currency"],
    "columns": [
        {"name": "date", "type": "date"},
        {"name": "currency", "type": "string"},
        {"name": "rate", "type": "decimal(18,8)", "min": 0.00000001},
    ],
}


class HostileApi(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _json(self, body: str, status: int = 200, content_type: str = "application/json") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/html":
            self._json("<html><body>Maintenance: back soon</body></html>", content_type="text/html")
        elif path == "/nan":
            self._json(
                '{"data": [{"date": "2024-03-01", "currency": "EUR", "rate": 1.17},'
                ' {"date": "2024-03-01", "currency": "USD", "rate": NaN},'
                ' {"date": "2024-03-01", "currency": "JPY", "rate": 1e999}], "total": 3, "total_pages": 1}'
            )
        elif path == "/loop":
            self._json(json.dumps({"data": [{"id": 1}], "links": {"next": "/loop?cursor=same"}}))
        elif path == "/elsewhere":
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.2:{self.server.server_port}/nan")
            self.end_headers()
        elif path == "/moved":
            self.send_response(301)
            self.send_header("Location", "/nan")
            self.end_headers()
        else:
            self._json('{"error": "not found"}', status=404)


@pytest.fixture(scope="module")
def api() -> Iterator[int]:
    server = ThreadingHTTPServer((settings.LOOPBACK, 0), HostileApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()


@pytest.fixture
def extract(api, monkeypatch, local_services, bucket, source_name):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HOSTILE_API",
        json.dumps({"conn_type": "http", "host": settings.LOOPBACK, "port": api, "schema": "http"}),
    )

    def run(endpoint: str, pagination: Any | None = None) -> dict[str, Any]:
        operator = HttpApiExtractOperator(
            task_id="land_hostile",
            http_conn_id="hostile_api",
            endpoint=endpoint,
            pagination=pagination or PageNumberPagination(size=100),
            source=source_name,
            name="rates",
            bucket=bucket,
            timeout=5,
            max_retries=0,
        )
        return TaskTry(operator, "hostile_api", f"manual__{uuid.uuid4().hex[:8]}", (START, END)).execute()

    return run


def test_html_with_status_200_is_rejected_with_a_reason_and_lands_nothing(extract, bucket, source_name):
    with pytest.raises(HttpApiError, match=r"answered 200 with a body that is not JSON \('text/html'\)"):
        extract("/html")
    assert bucket_keys(s3_client(), bucket, source_name) == []


def test_a_next_link_that_points_at_its_own_page_stops_at_once(extract, bucket, source_name):
    with pytest.raises(PaginationError, match="points back to a page already read"):
        extract("/loop", NextLinkPagination(limit_param=None))
    assert bucket_keys(s3_client(), bucket, source_name) == []


def test_a_redirect_to_another_host_is_not_followed(extract, bucket, source_name):
    with pytest.raises(HttpApiError, match=r"redirects to another origin \(http://127\.0\.0\.2:\d+/nan\)"):
        extract("/elsewhere")
    assert bucket_keys(s3_client(), bucket, source_name) == []


def test_nan_and_1e999_land_as_text_and_are_quarantined_with_their_reason(
    extract, bucket, source_name, control_plane
):
    landed = extract("/moved")  # a redirect on the same host is followed
    assert landed["rows"] == 3
    validate = ValidateLandedFilesOperator(
        task_id="validate",
        source=source_name,
        datasets={"rates": RATES},
        ingestion_bucket=bucket,
        processed_bucket=bucket,
    )
    summary = TaskTry(validate, "hostile_api", f"manual__{uuid.uuid4().hex[:8]}").execute()
    assert summary["partially_quarantined"] == [landed["key"]]
    (status,) = control_plane.query(
        "SELECT rows_read, rows_loaded, rows_rejected, reason FROM etl.file_status WHERE source = %s",
        (source_name,),
    )
    assert status[:3] == (3, 1, 2)
    assert "2 of 3 row(s) quarantined" in status[3] and "rate='NaN' is not a decimal" in status[3]
    assert [o.key for o in Ledger().pending_processed(source_name)]  # the good row waits for the load
    control_plane.query("DELETE FROM etl.file_status WHERE source = %s", (source_name,))

"""A local MWAA control-plane API for the deploy test: moto (5.2.5) has no MWAA, so this serves the
three operations ``make deploy`` and its test use, over real HTTP in MWAA's REST-JSON protocol.

- ``PUT /environments/{Name}`` (CreateEnvironment), ``GET`` (GetEnvironment) and ``PATCH``
  (UpdateEnvironment), spoken to by an unmodified boto3 ``mwaa`` client through
  ``AWS_ENDPOINT_URL_MWAA``.
- It refuses what MWAA refuses: an unknown environment (ResourceNotFoundException), an update while
  the environment is not AVAILABLE, and an update naming an S3 object version that does not exist in
  the environment's source bucket (checked against the real local S3 server).

An update runs like the real one, in short: the environment is ``UPDATING`` (its last update
``PENDING``) for ``update_seconds`` (the real service takes 20-30 minutes), then ``AVAILABLE``; or,
when ``fail_updates`` holds an error message, ``UPDATE_FAILED`` with the previous configuration back
and the error in ``LastUpdate``. ``updates`` counts the updates, so a test can tell "nothing to do"
from "updated to the same values"; ``finished`` records, for each update as it ends, when, how, and
the ``dags/`` objects the bucket held at that moment (key -> version id), so a test can prove what
was or was not written before the environment was ready.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = re.compile(r"^/environments/(?P<name>[^/?]+)$")
VERSIONED = (
    ("PluginsS3Path", "PluginsS3ObjectVersion"),
    ("RequirementsS3Path", "RequirementsS3ObjectVersion"),
    ("StartupScriptS3Path", "StartupScriptS3ObjectVersion"),
)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class MwaaApi:
    """The environments and the rules; the HTTP handler below only translates."""

    def __init__(self, s3, region: str, account: str = "123456789012", update_seconds: float = 0.0) -> None:
        self.s3, self.region, self.account = s3, region, account
        self.update_seconds = update_seconds
        self.fail_updates: str | None = None  # an error message: updates end in UPDATE_FAILED
        self.environments: dict[str, dict[str, Any]] = {}
        self.updates: dict[str, int] = {}
        self.finished: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.RLock()
        self._timers: list[threading.Timer] = []

    def _bucket(self, environment: dict[str, Any]) -> str:
        return environment["SourceBucketArn"].rsplit(":", 1)[-1]

    def _check_versions(self, environment: dict[str, Any]) -> None:
        for path_arg, version_arg in VERSIONED:
            key, version = environment.get(path_arg), environment.get(version_arg)
            if key and version:
                try:
                    self.s3.head_object(Bucket=self._bucket(environment), Key=key, VersionId=version)
                except Exception as error:
                    raise ApiError(400, "ValidationException", f"{key} version {version}: {error}") from None

    def create(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if name in self.environments:
                raise ApiError(400, "ValidationException", f"environment {name} already exists")
            arn = f"arn:aws:airflow:{self.region}:{self.account}:environment/{name}"
            environment = {**body, "Name": name, "Arn": arn, "Status": "AVAILABLE", "CreatedAt": time.time()}
            self._check_versions(environment)
            self.environments[name] = environment
            self.updates[name] = 0
            self.finished[name] = []
            return {"Arn": arn}

    def get(self, name: str) -> dict[str, Any]:
        with self.lock:
            return {"Environment": self._find(name)}

    def update(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            environment = self._find(name)
            if environment["Status"] not in {"AVAILABLE", "UPDATE_FAILED"}:
                raise ApiError(400, "ValidationException", f"environment {name} is {environment['Status']}")
            candidate = {**environment, **body}
            self._check_versions(candidate)
            candidate["Status"] = "UPDATING"
            candidate["LastUpdate"] = {"Status": "PENDING", "CreatedAt": time.time(), "Source": "API"}
            self.environments[name] = candidate
            self.updates[name] += 1
            if self.update_seconds > 0:
                timer = threading.Timer(self.update_seconds, self._finish, (name, environment))
                timer.daemon = True
                self._timers.append(timer)
                timer.start()
            else:
                self._finish(name, environment)
            return {"Arn": candidate["Arn"]}

    def _finish(self, name: str, previous: dict[str, Any]) -> None:
        """End the update of ``name``: AVAILABLE, or UPDATE_FAILED back on ``previous``."""
        with self.lock:
            environment = self.environments[name]
            last = dict(environment["LastUpdate"])
            if self.fail_updates:
                last |= {
                    "Status": "FAILED",
                    "Error": {"ErrorCode": "UpdateFailed", "ErrorMessage": self.fail_updates},
                }
                environment = {**previous, "Status": "UPDATE_FAILED", "LastUpdate": last}
            else:
                environment = {
                    **environment,
                    "Status": "AVAILABLE",
                    "LastUpdate": last | {"Status": "SUCCESS"},
                }
            self.environments[name] = environment
            self.finished[name].append(
                {
                    "status": environment["Status"],
                    "at": time.time(),
                    "dags": self.dags(self._bucket(environment)),
                }
            )

    def dags(self, bucket: str) -> dict[str, str]:
        """The current ``dags/`` objects of ``bucket``: key -> version id."""
        current = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix="dags/"):
            current |= {
                item["Key"]: item["VersionId"] for item in page.get("Versions", []) if item["IsLatest"]
            }
        return current

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()

    def _find(self, name: str) -> dict[str, Any]:
        if name not in self.environments:
            raise ApiError(404, "ResourceNotFoundException", f"environment {name} not found")
        return self.environments[name]


class _Handler(BaseHTTPRequestHandler):
    api: MwaaApi

    def _serve(self) -> None:
        match = PATH.match(self.path.split("?", 1)[0])
        try:
            if not match:
                raise ApiError(404, "ResourceNotFoundException", f"no route {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            operation = {"PUT": self.api.create, "PATCH": self.api.update}.get(self.command)
            name = match["name"]
            result = self.api.get(name) if self.command == "GET" else operation(name, body)
            self._reply(200, result)
        except ApiError as error:
            self._reply(error.status, {"message": str(error)}, error.code)

    do_GET = do_PUT = do_PATCH = _serve

    def _reply(self, status: int, payload: dict[str, Any], error_type: str | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


class MwaaApiServer:
    """``with MwaaApiServer(s3, region) as server:`` serves on ``server.url`` until the block ends."""

    def __init__(self, s3, region: str, update_seconds: float = 0.0) -> None:
        self.api = MwaaApi(s3, region, update_seconds=update_seconds)
        handler = type("Handler", (_Handler,), {"api": self.api})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> MwaaApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.close()
        self._server.shutdown()
        self._server.server_close()

"""FTPS feeds against a real TLS FTP server (pyftpdlib's TLS handler) started by the test.

The server refuses anything not encrypted (control and data channels), its certificate is generated
here for 127.0.0.1 and trusted through ``SSL_CERT_FILE`` only: the extract lands the drop's files
over TLS, each once, and refuses a server whose certificate it cannot verify.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from include.etlkit.extract.ftp import FtpExtractError, FtpFileExtractOperator
from infra.local import settings
from tests.conftest import TaskTry, bucket_keys, s3_client

pytestmark = pytest.mark.integration

LOGIN, PASSWORD = "partner", "ftps-Secret-1"
LONG_AGO = dt.datetime(2024, 11, 15, 9, 0, tzinfo=dt.UTC).timestamp()


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "etl-test-ftps")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(settings.LOOPBACK))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def ftps_server(tmp_path_factory) -> Iterator[tuple[int, Path, Path]]:
    """(port, served root, certificate): a TLS-only FTP server in a thread of the test."""
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import TLS_FTPHandler
    from pyftpdlib.servers import ThreadedFTPServer

    folder = tmp_path_factory.mktemp("ftps")
    root = folder / "root"
    root.mkdir()
    cert, key = _certificate(folder)
    authorizer = DummyAuthorizer()
    authorizer.add_user(LOGIN, PASSWORD, str(root), perm="elr")

    class Handler(TLS_FTPHandler):
        pass

    Handler.authorizer = authorizer
    Handler.certfile, Handler.keyfile = str(cert), str(key)
    Handler.tls_control_required = True  # no login in clear text
    Handler.tls_data_required = True  # no file content in clear text
    with socket.socket() as probe:
        probe.bind((settings.LOOPBACK, 0))
        port = probe.getsockname()[1]
    server = ThreadedFTPServer((settings.LOOPBACK, port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.5}, daemon=True)
    thread.start()
    yield port, root, cert
    server.close_all()


@pytest.fixture
def drop(ftps_server, monkeypatch) -> Path:
    port, root, cert = ftps_server
    monkeypatch.setenv(
        "AIRFLOW_CONN_FTPS_PARTNER",
        json.dumps(
            {
                "conn_type": "ftp",
                "host": settings.LOOPBACK,
                "port": port,
                "login": LOGIN,
                "password": PASSWORD,
            }
        ),
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the only CA the client trusts here
    folder = root / f"drop_{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


def _extract(drop: Path, source: str, bucket: str) -> dict:
    operator = FtpFileExtractOperator(
        task_id="land_sales",
        ftp_conn_id="ftps_partner",
        remote_dir=f"/{drop.name}",
        pattern="sales_*.csv",
        source=source,
        name="sales",
        bucket=bucket,
        secure=True,
        settle_seconds=0,
        timeout=10,
    )
    interval = (
        dt.datetime(2024, 11, 15, 9, 30, tzinfo=dt.UTC),
        dt.datetime(2024, 11, 15, 10, 0, tzinfo=dt.UTC),
    )
    return TaskTry(operator, "ftps_ingest", f"scheduled__{uuid.uuid4().hex[:8]}", interval).execute()


def test_an_ftps_drop_lands_each_file_once_over_tls(drop, source_name, bucket, local_services, control_plane):
    data = b"id,amount\n1,9.99\n2,0.50\n"
    path = drop / "sales_1.csv"
    path.write_bytes(data)
    os.utime(path, (LONG_AGO, LONG_AGO))

    summary = _extract(drop, source_name, bucket)

    assert [f["path"] for f in summary["landed"]] == [f"/{drop.name}/sales_1.csv"]
    (key,) = bucket_keys(s3_client(), bucket, source_name)
    assert s3_client().get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert hashlib.sha256(data).hexdigest()[:16] in key
    assert _extract(drop, source_name, bucket)["landed"] == []  # once


def test_a_server_whose_certificate_cannot_be_verified_is_refused(drop, source_name, bucket, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")  # trust nothing
    with pytest.raises(FtpExtractError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        _extract(drop, source_name, bucket)

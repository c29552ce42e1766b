"""A real local FTP server (pyftpdlib) for the FTP ingestion pipelines and their tests.

``python -m infra.local.ftp_server --port N --root DIR [--host ADDR]`` serves one account,
``settings.FTP_USER``/``settings.FTP_PASSWORD``, with full permissions on ``DIR`` (default
``STATE_DIR/ftp``, created if missing), on ``settings.BIND_HOST``: 127.0.0.1 unless
``ETL_BIND_HOST`` says otherwise (docker-compose.yaml sets 0.0.0.0 so other containers connect).

Passive mode uses a small fixed port range (default 30000-30009, ``--passive-ports`` or
``ETL_FTP_PASSIVE_PORTS``) rather than random ports: the listing of what the project opens stays
predictable, and the range sits below Linux's ephemeral range (32768+) so outgoing connections never
squat on it. A PASV reply advertises the address the client reached the control connection on
(pyftpdlib's default without ``masquerade_address``), so binding 0.0.0.0 in a container still hands
out the container's own address, which is right for clients on the same compose network. Logs go
to stdout, which the service manager sends to ``STATE_DIR/logs/ftp.log``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import FTPHandler
from pyftpdlib.servers import FTPServer

from infra.local import settings

DEFAULT_PASSIVE_PORTS = os.environ.get("ETL_FTP_PASSIVE_PORTS") or "30000-30009"
# pyftpdlib's permission letters: every read ("elr") and write ("adfmwMT") operation.
FULL_PERMISSIONS = "elradfmwMT"

log = logging.getLogger(__name__)


def parse_port_range(text: str) -> range:
    """``"30000-30009"`` -> ``range(30000, 30010)`` (inclusive bounds, as humans write them)."""
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port range like 30000-30009, got {text!r}") from None
    if not 1024 <= first <= last <= 65535:
        raise argparse.ArgumentTypeError(f"port range {text!r} must lie within 1024-65535, low to high")
    return range(first, last + 1)


def build_server(port: int, root: Path, passive_ports: range, host: str = settings.BIND_HOST) -> FTPServer:
    """An FTP server bound to ``host``:``port`` with the single local account rooted at ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(settings.FTP_USER, settings.FTP_PASSWORD, str(root), perm=FULL_PERMISSIONS)

    # A subclass rather than mutating FTPHandler: the settings are this server's, not global.
    class LocalFTPHandler(FTPHandler):
        pass

    LocalFTPHandler.authorizer = authorizer
    LocalFTPHandler.passive_ports = list(passive_ports)
    LocalFTPHandler.banner = "etl local FTP server ready."
    # A failed login is answered after this delay; 3 s (the default) only slows tests down.
    LocalFTPHandler.auth_failed_timeout = 0.5
    return FTPServer((host, port), LocalFTPHandler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=settings.BIND_HOST,
        help="address to listen on (default: ETL_BIND_HOST or 127.0.0.1)",
    )
    parser.add_argument("--port", type=int, default=settings.FTP_PORT, help="control port")
    parser.add_argument("--root", type=Path, default=settings.STATE_DIR / "ftp", help="the user's home")
    parser.add_argument(
        "--passive-ports",
        type=parse_port_range,
        default=DEFAULT_PASSIVE_PORTS,  # argparse runs string defaults through ``type`` too
        help="inclusive range of passive data ports, e.g. 30000-30009",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = build_server(args.port, args.root.resolve(), args.passive_ports, host=args.host)

    def _stop(signum: int, frame: Any) -> None:
        # serve_forever() turns SystemExit into a clean shutdown that closes every socket.
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    log.info(
        "FTP on %s:%d, root %s, user %r, passive ports %d-%d",
        args.host,
        args.port,
        args.root.resolve(),
        settings.FTP_USER,
        args.passive_ports.start,
        args.passive_ports.stop - 1,
    )
    server.serve_forever()


if __name__ == "__main__":
    main()

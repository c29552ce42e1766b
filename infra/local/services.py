"""Start, stop and inspect the project's local servers: S3 (moto), FTP (pyftpdlib) and the rates API.

``python -m infra.local.services start|stop|restart|status [s3 ftp api]`` (default: all). The same
functions back the Makefile and the integration-test fixtures:

* :func:`ensure_running` is idempotent. A healthy server already answering on the port is reused
  (whoever started it); a PID file whose process is gone, or now belongs to another program, is
  removed; otherwise the server is started detached, in its own session so it outlives the caller
  (``make services`` returns, later commands use the servers), and polled until healthy.
* :func:`stop` signals only the process recorded in the PID file (SIGTERM, then SIGKILL), and only
  if that process is still the server it recorded: a recycled PID is never signalled.
* :func:`status` reports each server: state, PID, health, endpoint and log file.

Everything binds 127.0.0.1. State lives under ``settings.STATE_DIR``: ``run/<name>.pid`` and
``run/<name>.lock`` (serialises concurrent callers, e.g. parallel test workers), and
``logs/<name>.log`` (appended to, with a header line per start).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import ftplib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from infra.local import settings

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
HEALTH_TIMEOUT = 2.0
LOG_TAIL_LINES = 20

RUN_DIR = settings.STATE_DIR / "run"
LOG_DIR = settings.STATE_DIR / "logs"
FTP_ROOT = settings.STATE_DIR / "ftp"


class ServiceError(RuntimeError):
    """A local server could not be started or stopped; the message says why and where to look."""


class PortInUseError(ServiceError):
    """The port is held by something that is not a healthy instance of the expected server."""


# -- health checks -----------------------------------------------------------------------------------

# No proxies: an HTTP(S)_PROXY in the developer's environment must not intercept loopback calls.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_ok(url: str) -> bool:
    try:
        with _http.open(url, timeout=HEALTH_TIMEOUT) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _s3_healthy(port: int) -> bool:
    # moto's own dashboard: answers only on a moto server, and costs nothing (no model dump).
    return _http_ok(f"http://{settings.LOOPBACK}:{port}/moto-api/")


def _api_healthy(port: int) -> bool:
    return _http_ok(f"http://{settings.LOOPBACK}:{port}/health")


def _ftp_healthy(port: int) -> bool:
    # A login, not just a banner: proves the server is ours, with the credentials the project uses.
    try:
        with ftplib.FTP(timeout=HEALTH_TIMEOUT) as ftp:
            ftp.connect(settings.LOOPBACK, port)
            ftp.login(settings.FTP_USER, settings.FTP_PASSWORD)
            ftp.quit()
    except (OSError, EOFError, ftplib.Error):
        return False
    return True


# -- the services ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Service:
    """How to run, recognise and health-check one local server."""

    name: str
    port: int
    module: str  # the ``python -m`` module; also how a PID is recognised as this server's
    args: tuple[str, ...]
    check: Callable[[int], bool]
    endpoint: str

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module, *self.args]

    @property
    def pid_file(self) -> Path:
        return RUN_DIR / f"{self.name}.pid"

    @property
    def lock_file(self) -> Path:
        return RUN_DIR / f"{self.name}.lock"

    @property
    def log_file(self) -> Path:
        return LOG_DIR / f"{self.name}.log"

    def healthy(self) -> bool:
        return self.check(self.port)


SERVICES: dict[str, Service] = {
    "s3": Service(
        name="s3",
        port=settings.S3_PORT,
        module="moto.server",
        args=("-H", settings.LOOPBACK, "-p", str(settings.S3_PORT)),
        check=_s3_healthy,
        endpoint=settings.s3_endpoint(),
    ),
    "ftp": Service(
        name="ftp",
        port=settings.FTP_PORT,
        module="infra.local.ftp_server",
        args=("--port", str(settings.FTP_PORT), "--root", str(FTP_ROOT)),
        check=_ftp_healthy,
        endpoint=f"ftp://{settings.LOOPBACK}:{settings.FTP_PORT}",
    ),
    "api": Service(
        name="api",
        port=settings.API_PORT,
        module="infra.local.rates_api",
        args=("--port", str(settings.API_PORT)),
        check=_api_healthy,
        endpoint=settings.api_base_url(),
    ),
}


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """One row of :func:`status`.

    ``state`` is ``running`` (ours, healthy), ``external`` (healthy, but not started by us: no PID
    file), ``unhealthy`` (our process is alive but not answering), ``port-busy`` (something else
    holds the port) or ``stopped``.
    """

    name: str
    state: str
    pid: int | None
    healthy: bool
    endpoint: str
    log_file: Path

    def __str__(self) -> str:
        pid = str(self.pid) if self.pid else "-"
        return f"{self.name:<4} {self.state:<10} {pid:>7}  {self.endpoint:<28} {self.log_file}"


def _select(names: Iterable[str] | None) -> list[Service]:
    if names is None:
        return list(SERVICES.values())
    if isinstance(names, str):  # "s3" would otherwise iterate as "s", "3"
        names = [names]
    selected = list(dict.fromkeys(names))
    unknown = [name for name in selected if name not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    return [SERVICES[name] for name in selected]


# -- processes and PID files -------------------------------------------------------------------------

# Servers started by this process, so stop() can reap them: otherwise a stopped child lingers as a
# zombie and still looks alive to ``kill(pid, 0)`` for as long as the caller (e.g. pytest) runs.
_children: dict[int, subprocess.Popen[bytes]] = {}


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None if it cannot be read (or the process is gone)."""
    if Path("/proc/self/cmdline").exists():
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
    try:  # macOS and other systems without procfs
        result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    except OSError:
        return None
    return result.stdout.strip() or None


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie is dead for our purposes
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _read_pid(service: Service) -> int | None:
    try:
        return int(service.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _managed_pid(service: Service) -> int | None:
    """The PID in the PID file if that process is alive and still this server; else None.

    A PID file that fails the test is stale (crash, reboot, recycled PID) and is removed here.
    """
    pid = _read_pid(service)
    if pid is None:
        if service.pid_file.exists():
            log.warning("%s: removing unreadable PID file %s", service.name, service.pid_file)
            service.pid_file.unlink(missing_ok=True)
        return None
    cmdline = _cmdline(pid) if _alive(pid) else None
    if cmdline is not None and service.module in cmdline:
        return pid
    log.info("%s: removing stale PID file %s (pid %d is not running it)", service.name, service.pid_file, pid)
    service.pid_file.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _locked(service: Service) -> Iterator[None]:
    """Serialise start/stop of one service across processes (parallel test workers, make -j)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with service.lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def port_in_use(port: int) -> bool:
    """True if something listens on 127.0.0.1:``port`` (binding fails; TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.LOOPBACK, port))
        except OSError:
            return True
    return False


def _log_tail(path: Path, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail) if tail else "    (empty)"


def _wait_healthy(service: Service, pid: int, timeout: float, log_offset: int) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if service.healthy():
            return
        if not _alive(pid):
            child = _children.get(pid)
            code = f" with exit code {child.returncode}" if child is not None else ""
            service.pid_file.unlink(missing_ok=True)
            raise ServiceError(
                f"{service.name} (pid {pid}) exited{code} before becoming healthy; "
                f"log {service.log_file}:\n{_log_tail(service.log_file, log_offset)}"
            )
        if time.monotonic() >= deadline:
            raise ServiceError(
                f"{service.name} (pid {pid}) is not healthy on {service.endpoint} after "
                f"{timeout:g} s; log {service.log_file}:\n{_log_tail(service.log_file, log_offset)}"
            )
        time.sleep(0.2)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(settings.PROJECT_ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"  # the log file should be current, not a buffer behind
    return env


def _start(service: Service, timeout: float) -> None:
    if not 0 < service.port < 65536:
        raise ServiceError(f"{service.name}: port {service.port} is not a valid TCP port")
    pid = _managed_pid(service)
    if pid is not None:
        cmdline = (_cmdline(pid) or "").strip()
        if " ".join(service.args) not in cmdline:
            # Started under other settings (say, another ETL_*_PORT): waiting on the new port would
            # only time out, and two copies would fight over the PID file.
            raise ServiceError(
                f"{service.name} already runs (pid {pid}) as `{cmdline}`, not with the current settings "
                f"(`{' '.join(service.args)}`); stop it first: python -m infra.local.services stop "
                f"{service.name}"
            )
        # Ours and alive: healthy already, or still starting (a concurrent caller's start).
        _wait_healthy(service, pid, timeout, _log_size(service.log_file))
        log.info("%s: running (pid %d) on %s", service.name, pid, service.endpoint)
        return
    if service.healthy():
        log.info(
            "%s: reusing the healthy server already on %s (not ours: no PID file)",
            service.name,
            service.endpoint,
        )
        return
    if port_in_use(service.port):
        raise PortInUseError(
            f"{service.name}: port {service.port} on {settings.LOOPBACK} is taken by something that is not a "
            f"healthy {service.name} server; free it (e.g. `lsof -iTCP:{service.port} -sTCP:LISTEN`) or "
            f"choose another port with ETL_{service.name.upper()}_PORT"
        )

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with service.log_file.open("ab") as log_handle:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log_handle.write(f"\n=== {stamp} starting {service.name}: {' '.join(service.command)}\n".encode())
        log_handle.flush()
        offset = log_handle.tell()
        child = subprocess.Popen(
            service.command,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            cwd=settings.PROJECT_ROOT,
            env=_child_env(),
            start_new_session=True,  # own session: no SIGHUP/SIGINT from the caller's terminal
            close_fds=True,
        )
    _children[child.pid] = child
    service.pid_file.write_text(f"{child.pid}\n")
    try:
        _wait_healthy(service, child.pid, timeout, offset)
    except ServiceError:
        _terminate(service, child.pid)
        raise
    log.info(
        "%s: started (pid %d) on %s, log %s", service.name, child.pid, service.endpoint, service.log_file
    )


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _signal(pid: int, signum: int) -> None:
    # The server leads its own session and process group: signal the group, so anything it spawned
    # (moto's reloader, for one) goes too.
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _terminate(service: Service, pid: int, timeout: float = STOP_TIMEOUT) -> None:
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        log.warning("%s: pid %d ignored SIGTERM for %g s, sending SIGKILL", service.name, pid, timeout)
        _signal(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    if _alive(pid):
        raise ServiceError(f"{service.name}: pid {pid} survived SIGKILL")
    _children.pop(pid, None)
    service.pid_file.unlink(missing_ok=True)


# -- public API --------------------------------------------------------------------------------------


def ensure_running(names: Iterable[str] | None = None, timeout: float = START_TIMEOUT) -> None:
    """Make sure each named server (default: all) is up and healthy, starting it if needed.

    Raises :class:`PortInUseError` if the port is held by something else, and
    :class:`ServiceError` (with the tail of the log) if a server does not become healthy in time.
    """
    for service in _select(names):
        with _locked(service):
            _start(service, timeout)


def stop(names: Iterable[str] | None = None, timeout: float = STOP_TIMEOUT) -> None:
    """Stop each named server (default: all) that this project started; a no-op if none runs.

    A healthy server without a PID file was started by someone else and is left alone (logged).
    """
    for service in _select(names):
        with _locked(service):
            pid = _managed_pid(service)
            if pid is None:
                if service.healthy():
                    log.warning(
                        "%s: a server answers on %s but has no PID file here; not stopping it",
                        service.name,
                        service.endpoint,
                    )
                else:
                    log.info("%s: not running", service.name)
                continue
            _terminate(service, pid, timeout)
            log.info("%s: stopped (pid %d)", service.name, pid)


def status(names: Iterable[str] | None = None) -> dict[str, ServiceStatus]:
    """The state of each named server (default: all), keyed by name; ``print(format_status(...))``."""
    result = {}
    for service in _select(names):
        pid = _managed_pid(service)
        healthy = service.healthy()
        if healthy:
            state = "running" if pid is not None else "external"
        elif pid is not None:
            state = "unhealthy"
        elif port_in_use(service.port):
            state = "port-busy"
        else:
            state = "stopped"
        result[service.name] = ServiceStatus(
            service.name, state, pid, healthy, service.endpoint, service.log_file
        )
    return result


def format_status(statuses: dict[str, ServiceStatus]) -> str:
    header = f"{'name':<4} {'state':<10} {'pid':>7}  {'endpoint':<28} log"
    return "\n".join([header, *(str(row) for row in statuses.values())])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "restart", "status"))
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"any of {', '.join(SERVICES)} (default: all)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.names or None
    try:
        if args.command in ("stop", "restart"):
            stop(names)
        if args.command in ("start", "restart"):
            ensure_running(names)
        statuses = status(names)
    except (ServiceError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(format_status(statuses))
    # ``status`` doubles as a readiness probe: non-zero unless every named server is healthy.
    if args.command == "status":
        return 0 if all(row.healthy for row in statuses.values()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())

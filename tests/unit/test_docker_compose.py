"""The local docker compose stack: docker-compose.yaml, infra/docker/Dockerfile and their wiring.

The YAML is read with PyYAML (which resolves the anchors and `<<:` merge keys as Compose does);
`${VAR:-default}` substitutions are resolved to their defaults where a value is checked. When the
`docker compose` CLI is installed, Compose itself validates the file too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml

from infra.local import settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
DOCKER_DIR = ROOT / "infra" / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"

BASE_IMAGE = "apache/airflow:3.3.1-python3.12"
PROJECT_IMAGE = "etlkit-airflow:3.3.1"
AIRFLOW_COMMANDS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}
AIRFLOW_SERVICES = (*AIRFLOW_COMMANDS, "airflow-init")
SOURCE_SERVICES = ("sources-postgres", "mysql", "s3", "ftp", "rates-api")
DESIGN_CONNECTIONS = (
    "totesys",
    "retail_mysql",
    "ftp_drop",
    "rates_api",
    "aws_default",
    "warehouse",
    "etl_control",
)
# The stack's own servers: the design's names, never the test suite's suffixed ones.
DESIGN_VARIABLES = {
    "ingestion_bucket": "etl-ingestion",
    "processed_bucket": "etl-processed",
    "warehouse_conn_id": "warehouse",
    "alert_emails": "data-team@example.com",
    "alert_sns_topic_arn": "",
    "retail_sales_dir": "/sales",
}
POSTGRES_DATABASES = {"totesys", "warehouse"}
MYSQL_DATABASE = "retail"
PROJECT_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./include": "/opt/airflow/include",
    "./plugins": "/opt/airflow/plugins",
    "./sql": "/opt/airflow/sql",
    "./infra/local": "/opt/airflow/infra/local",
}

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_SUBSTITUTION_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?][^}]*)?\}")
_SECRET_NAME = re.compile(r"password|passwd|secret|token|fernet_key|access_key|private_key|api_key", re.I)
_URI_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]*)@", re.I)


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Resolve Compose's `$$`, `$VAR`, `${VAR}`, `${VAR:-default}` (and `-`, `?`, `+` forms) from ``env``."""
    env = env or {}

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2) or "", match.group(3) or ""
        current = env.get(name)
        if operator in (":-", "-"):
            return current if current or (operator == "-" and current is not None) else argument
        if operator in (":+", "+"):
            return argument if current else ""
        return current or ""

    return _VARIABLE.sub(replace, value)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def mounts_of(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, source, target) of each mount, kind 'bind' or 'volume', short or long syntax."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts.append((entry.get("type", "volume"), str(entry.get("source", "")), entry["target"]))
            continue
        source, _, rest = interpolate(entry).partition(":")
        target = rest.split(":", 1)[0]
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        mounts.append((kind, source, target))
    return mounts


def container_ports(service: dict[str, Any]) -> set[int]:
    ports = {int(str(port).split("/")[0]) for port in service.get("expose") or []}
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            ports.add(int(entry["target"]))
        else:
            ports.add(int(interpolate(str(entry)).split("/")[0].rsplit(":", 1)[-1]))
    return ports


def hard_coded_secrets(env: dict[str, str]) -> list[str]:
    """Names of values that carry a password-like literal instead of a `${...}` substitution."""
    found = []

    def walk_json(name: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and _SECRET_NAME.search(key):
                    if value and not _SUBSTITUTION_ONLY.fullmatch(value):
                        found.append(f"{name}.{key}")
                else:
                    walk_json(f"{name}.{key}", value)

    for key, value in env.items():
        if _SECRET_NAME.search(key) and value and not _SUBSTITUTION_ONLY.fullmatch(value):
            found.append(key)
        found.extend(
            f"{key} (URI password)"
            for password in _URI_PASSWORD.findall(value)
            if password and not _SUBSTITUTION_ONLY.fullmatch(password)
        )
        if value.lstrip().startswith("{"):
            walk_json(key, json.loads(value))
    return found


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def parse_connection(value: str) -> dict[str, Any]:
    """A connection (URI or JSON, defaults resolved): conn_type, host, port, login, password, schema..."""
    value = interpolate(value)
    if value.lstrip().startswith("{"):
        conn = json.loads(value)
        return {"extra": {}, **conn}
    uri = urlsplit(value)
    return {
        "conn_type": uri.scheme,
        "host": uri.hostname,
        "port": uri.port,
        "login": uri.username,
        "password": uri.password,
        "schema": uri.path.lstrip("/"),
        "extra": dict(parse_qsl(uri.query)),
    }


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def airflow_env(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    return environment_of(services["airflow-scheduler"])


def test_airflow_services_exist_and_share_the_project_image_built_from_the_dockerfile(services):
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service["image"] == PROJECT_IMAGE, name
        build = service["build"]
        assert build["dockerfile"] == "infra/docker/Dockerfile", name
        assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_dockerfile_extends_the_official_airflow_3_3_1_python_3_12_image():
    assert [args for keyword, args in dockerfile_instructions() if keyword == "FROM"] == [BASE_IMAGE]


def test_each_airflow_component_runs_its_own_command_with_the_local_executor(services, airflow_env):
    for name, command in AIRFLOW_COMMANDS.items():
        assert services[name]["command"] == command
    assert airflow_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert not {"redis", "airflow-worker", "flower"} & set(services)
    assert not [key for key in airflow_env if key.startswith("AIRFLOW__CELERY__")]
    assert 8080 in container_ports(services["airflow-apiserver"])


def test_every_depends_on_names_a_defined_service_with_a_valid_condition(services):
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {dependency: {} for dependency in depends_on}
        for dependency, options in depends_on.items():
            assert dependency in services, f"{name} depends on undefined service {dependency}"
            assert dependency != name
            assert options.get("condition", "service_started") in conditions, (name, dependency)


def test_healthy_conditions_only_wait_for_services_that_have_a_healthcheck(services):
    for name, service in services.items():
        for dependency, options in (service.get("depends_on") or {}).items():
            if options.get("condition") == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), (name, dependency)


def test_every_long_running_service_has_a_healthcheck(services):
    for name, service in services.items():
        if name == "airflow-init" or service.get("profiles"):
            continue  # one-shot and on-demand containers
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_every_named_volume_used_is_declared_at_the_top_level(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for kind, source, _ in mounts_of(service):
            if kind == "volume" and source:
                assert source in declared, f"{name} uses undeclared volume {source}"


def test_every_bind_mount_source_exists_in_the_repository(services):
    for name, service in services.items():
        for kind, source, _ in mounts_of(service):
            if kind == "bind":
                assert not Path(source).is_absolute(), f"{name} mounts a host path outside the repo"
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_airflow_containers_mount_the_project_and_can_import_it(services):
    for name in AIRFLOW_SERVICES:
        binds = {source: target for kind, source, target in mounts_of(services[name]) if kind == "bind"}
        assert {source: binds.get(source) for source in PROJECT_MOUNTS} == PROJECT_MOUNTS, name
        env = environment_of(services[name])
        assert env["PYTHONPATH"] == "/opt/airflow", name
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/dags", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false", name


def test_every_design_connection_is_set_in_every_airflow_service(services):
    conn_ids = {*DESIGN_CONNECTIONS, *settings.default_connections()}
    wanted = {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in conn_ids}
    for name in AIRFLOW_SERVICES:
        missing = wanted - set(environment_of(services[name]))
        assert not missing, f"{name} lacks {sorted(missing)}"


@pytest.mark.parametrize("conn_id", DESIGN_CONNECTIONS)
def test_each_connection_points_at_a_port_a_compose_service_listens_on(conn_id, services, airflow_env):
    conn = parse_connection(airflow_env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    if "endpoint_url" in conn["extra"]:  # AWS: the service is the endpoint, not a host field
        endpoint = urlsplit(conn["extra"]["endpoint_url"])
        host, port = endpoint.hostname, endpoint.port
    else:
        host, port = conn["host"], conn["port"]
    assert host in services, f"{conn_id} host {host!r} is not a compose service"
    assert host in SOURCE_SERVICES
    assert port in container_ports(services[host]), f"{conn_id} port {port} is not one {host} listens on"


@pytest.mark.parametrize("conn_id", sorted(settings.default_connections()))
def test_each_connection_matches_the_local_default_except_for_its_host(conn_id, airflow_env):
    ours = parse_connection(airflow_env[f"AIRFLOW_CONN_{conn_id.upper()}"])
    local = parse_connection(settings.default_connections()[conn_id])
    assert ours["conn_type"] == local["conn_type"]
    # The test suite suffixes local database names (settings.SUFFIX); the stack uses the plain ones.
    assert (ours.get("schema") or "") == (local.get("schema") or "").removesuffix(settings.SUFFIX)
    assert ours["extra"].keys() == local["extra"].keys()
    if local.get("password"):  # fixed credentials of the project's own local servers
        assert ours.get("login") == local.get("login")
        assert ours["password"] == local["password"]


def test_aws_connection_sends_s3_calls_to_the_compose_s3_service(airflow_env, services):
    extra = parse_connection(airflow_env["AIRFLOW_CONN_AWS_DEFAULT"])["extra"]
    assert extra["endpoint_url"] == "http://s3:9090"
    assert services["s3"]["image"] == "motoserver/moto:5.2.5"
    assert environment_of(services["s3"])["MOTO_PORT"] == "9090"


def test_the_airflow_variables_are_set_to_the_design_defaults(airflow_env):
    assert set(settings.default_variables()) <= set(DESIGN_VARIABLES)
    for name, expected in DESIGN_VARIABLES.items():
        assert interpolate(airflow_env[f"AIRFLOW_VAR_{name.upper()}"]) == expected, name


def test_no_environment_value_is_a_hard_coded_secret(services):
    for name, service in services.items():
        assert hard_coded_secrets(environment_of(service)) == [], name


def test_secret_check_flags_literal_passwords_and_accepts_substitutions():
    assert hard_coded_secrets({"DB_PASSWORD": "hunter2"}) == ["DB_PASSWORD"]
    assert hard_coded_secrets({"URL": "postgres://u:hunter2@db/x"}) == ["URL (URI password)"]
    assert hard_coded_secrets({"CONN": '{"login": "u", "password": "hunter2"}'}) == ["CONN.password"]
    assert hard_coded_secrets({"DB_PASSWORD": "${DB_PASSWORD:-local}", "URL": "postgres://u:${P}@db/x"}) == []


def test_every_variable_the_compose_file_reads_is_documented_in_env_example():
    yaml_lines = [line for line in COMPOSE_FILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    read = {m.group(1) or m.group(4) for m in _VARIABLE.finditer("\n".join(yaml_lines)) if m.group(0) != "$$"}
    documented = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    assert read <= documented, f"undocumented in .env.example: {sorted(read - documented)}"


def test_dockerfile_installs_requirements_txt_against_its_constraints_as_the_airflow_user():
    instructions = dockerfile_instructions()
    copied: dict[str, str] = {}
    for keyword, arguments in instructions:
        if keyword == "COPY":
            *sources, destination = [word for word in shlex.split(arguments) if not word.startswith("--")]
            for source in sources:
                copied[source] = destination + Path(source).name if destination.endswith("/") else destination
    requirements = copied["requirements.txt"]
    first_line = (ROOT / "requirements.txt").read_text().splitlines()[0].split()
    assert first_line[0] in ("--constraint", "-c")
    # pip resolves the relative constraint path against requirements.txt's own folder.
    constraint = first_line[1]
    assert copied[constraint] == str(Path(requirements).parent / constraint)
    assert (ROOT / constraint).is_file()

    user, installs = "root", []
    for keyword, arguments in instructions:
        if keyword == "USER":
            user = arguments
        elif keyword == "RUN" and "pip install" in arguments:
            installs.append((user, arguments))
    assert any(
        f"-r {requirements}" in command and ("--constraint" in command or " -c " in command)
        for _, command in installs
    ), installs
    assert installs and all(user == "airflow" for user, _ in installs)

    ignore = (DOCKER_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    assert all(f"!{source}" in ignore for source in copied), "a copied file is excluded from the context"


def test_sources_postgres_creates_the_databases_and_warehouse_schemas(services):
    mounts = mounts_of(services["sources-postgres"])
    binds = {target: source for kind, source, target in mounts if kind == "bind"}
    script = (ROOT / binds["/docker-entrypoint-initdb.d"] / "01-databases.sql").read_text()
    databases = set(re.findall(r"CREATE DATABASE (\w+)", script, re.I))
    schemas = set(re.findall(r"CREATE SCHEMA IF NOT EXISTS (\w+)", script, re.I))
    assert databases == POSTGRES_DATABASES
    assert schemas == set(settings.WAREHOUSE_SCHEMAS)
    assert services["sources-postgres"]["image"] == "postgres:15"
    mysql = services["mysql"]
    assert mysql["image"] == "mariadb:10.11"
    assert environment_of(mysql)["MARIADB_DATABASE"] == MYSQL_DATABASE


def test_airflow_init_bootstraps_the_project_once_the_sources_are_healthy(services):
    init = services["airflow-init"]
    assert "python -m infra.local.bootstrap" in " ".join(init["command"])
    waits_for = {
        name for name, options in init["depends_on"].items() if options["condition"] == "service_healthy"
    }
    assert {"postgres", "sources-postgres", "mysql", "s3"} <= waits_for


LOCAL_SERVERS = {"ftp": "infra.local.ftp_server", "rates-api": "infra.local.rates_api"}


def test_local_servers_run_the_project_modules_from_the_project_image(services):
    for name, module in LOCAL_SERVERS.items():
        service = services[name]
        assert service["image"] == PROJECT_IMAGE
        # Plain `python -m`: everything container-specific comes from the environment, not from code.
        assert service["command"][:3] == ["python", "-m", module], name
        assert environment_of(service)["PYTHONPATH"] == "/opt/airflow"


def _settings_in(env: dict[str, str]) -> dict[str, str]:
    """settings.BIND_HOST / FTP_PASSWORD / API_TOKEN as a fresh interpreter sees them with ``env``."""
    code = (
        "import json; from infra.local import settings as s; "
        "print(json.dumps({'bind': s.BIND_HOST, 'ftp': s.FTP_PASSWORD, 'api': s.API_TOKEN}))"
    )
    overridden = ("ETL_BIND_HOST", "ETL_FTP_PASSWORD", "ETL_API_TOKEN")
    clean = {key: value for key, value in os.environ.items() if key not in overridden}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=clean | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_local_servers_listen_on_every_interface_with_the_stacks_credentials(services, airflow_env):
    # What each container's settings resolve to, with a .env that changes the credentials: the
    # servers must pick up the same values the Airflow connections are built from.
    dot_env = {"ETL_FTP_PASSWORD": "ftp-from-dot-env", "ETL_API_TOKEN": "token-from-dot-env"}
    ftp_env = {k: interpolate(v, dot_env) for k, v in environment_of(services["ftp"]).items()}
    api_env = {k: interpolate(v, dot_env) for k, v in environment_of(services["rates-api"]).items()}
    ftp, api = _settings_in(ftp_env), _settings_in(api_env)

    assert ftp["bind"] == api["bind"] == "0.0.0.0"
    ftp_conn = json.loads(interpolate(airflow_env["AIRFLOW_CONN_FTP_DROP"], dot_env))
    api_conn = json.loads(interpolate(airflow_env["AIRFLOW_CONN_RATES_API"], dot_env))
    assert ftp["ftp"] == ftp_conn["password"] == "ftp-from-dot-env"
    assert api["api"] == api_conn["password"] == "token-from-dot-env"


def test_local_servers_bind_loopback_with_the_local_credentials_by_default():
    assert _settings_in({}) == {"bind": "127.0.0.1", "ftp": "etl-local", "api": "local-rates-token"}


def _docker_compose_works() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def test_docker_compose_accepts_the_file_with_the_example_env():
    if not _docker_compose_works():
        pytest.skip("`docker compose version` fails here: the Compose v2 CLI plugin is not installed")
    example = {
        key.strip(): value.strip()
        for key, _, value in (
            line.partition("=") for line in ENV_EXAMPLE.read_text().splitlines() if not line.startswith("#")
        )
        if key.strip()
    }
    result = subprocess.run(
        ["docker", "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=ROOT,
        env=os.environ | example,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_tasks_use_the_same_arrow_allocator_locally_in_compose_and_on_mwaa(airflow_env):
    """pyarrow's allocator bounds a task's peak memory (issue 11): one setting, declared three times."""
    from infra.mwaa.package import STARTUP

    local = settings.airflow_environment({})["ARROW_DEFAULT_MEMORY_POOL"]
    assert local == airflow_env["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    assert f"export ARROW_DEFAULT_MEMORY_POOL={local}" in STARTUP.splitlines()

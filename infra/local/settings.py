"""Local development settings: ports, folders and the default Airflow connections.

One place for every local default, so the Makefile, the service manager, the demo and the tests
agree. Each value can be overridden by an environment variable (named beside it); an
``AIRFLOW_CONN_<ID>`` or ``AIRFLOW_VAR_<NAME>`` already set in the environment always wins over the
defaults built here, which is how a developer points the project at other servers.

Nothing here is a secret: the local PostgreSQL and MariaDB use trust / empty-password auth, and the
S3 credentials are the fixed dummy values the local S3 API (moto) accepts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


# Where the project keeps its local state: PID files, logs, the FTP root, Airflow's home.
STATE_DIR = Path(_env("ETL_STATE_DIR", str(PROJECT_ROOT / ".local")))
AIRFLOW_HOME = Path(_env("AIRFLOW_HOME", str(PROJECT_ROOT / ".airflow")))

LOOPBACK = "127.0.0.1"
# Address the local FTP server and rates API listen on: 0.0.0.0 in containers, loopback otherwise.
BIND_HOST = _env("ETL_BIND_HOST", LOOPBACK)
S3_PORT = int(_env("ETL_S3_PORT", "9090"))
FTP_PORT = int(_env("ETL_FTP_PORT", "2121"))
API_PORT = int(_env("ETL_API_PORT", "8088"))
UI_PORT = int(_env("ETL_UI_PORT", "8080"))
# Failure alerts are emailed here (no server is started: `python -m aiosmtpd -n -l 127.0.0.1:1025`
# prints them; otherwise each alert logs that it could not be delivered and the task is unaffected).
SMTP_PORT = int(_env("ETL_SMTP_PORT", "1025"))

PG_HOST = _env("ETL_PG_HOST", LOOPBACK)
PG_PORT = int(_env("ETL_PG_PORT", "5432"))
PG_USER = _env("ETL_PG_USER", "postgres")
MYSQL_HOST = _env("ETL_MYSQL_HOST", LOOPBACK)
MYSQL_PORT = int(_env("ETL_MYSQL_PORT", "3306"))
MYSQL_USER = _env("ETL_MYSQL_USER", "root")

# Well-known dummy credentials of the local servers (not secrets: they guard nothing real). The FTP
# password and the API token can be overridden so docker-compose.yaml can start the servers with its
# `.env` values (the same ones its connections use); the defaults are what everything local assumes.
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "eu-west-2"
FTP_USER = "etl"
FTP_PASSWORD = _env("ETL_FTP_PASSWORD", "etl-local")
API_TOKEN = _env("ETL_API_TOKEN", "local-rates-token")

# A suffix for every local database and bucket name: the test suite sets ``_test`` so it never
# touches the databases and buckets a developer's demo uses (same servers, other names).
SUFFIX = os.environ.get("ETL_SUFFIX", "")

WAREHOUSE_SCHEMAS = ("landing", "core", "mart", "etl")


def database(name: str) -> str:
    return f"{name}{SUFFIX}"


def bucket(name: str) -> str:
    return f"{name}{SUFFIX.replace('_', '-')}"


BUCKETS = {"ingestion_bucket": bucket("etl-ingestion"), "processed_bucket": bucket("etl-processed")}


def s3_endpoint() -> str:
    return f"http://{LOOPBACK}:{S3_PORT}"


def api_base_url() -> str:
    return f"http://{LOOPBACK}:{API_PORT}"


def _postgres_uri(name: str) -> str:
    return f"postgres://{quote(PG_USER)}@{PG_HOST}:{PG_PORT}/{database(name)}?connect_timeout=10"


def default_connections() -> dict[str, str]:
    """Airflow connection URIs (or JSON) of the local servers, keyed by connection id."""
    aws_extra = {"endpoint_url": s3_endpoint(), "region_name": S3_REGION}
    return {
        "totesys": _postgres_uri("totesys"),
        "warehouse": _postgres_uri("warehouse"),
        "etl_control": _postgres_uri("warehouse"),
        "retail_mysql": f"mysql://{quote(MYSQL_USER)}@{MYSQL_HOST}:{MYSQL_PORT}/{database('retail')}",
        "aws_default": json.dumps(
            {
                "conn_type": "aws",
                "login": S3_ACCESS_KEY,
                "password": S3_SECRET_KEY,
                "extra": aws_extra,
            }
        ),
        "ftp_drop": json.dumps(
            {
                "conn_type": "ftp",
                "host": LOOPBACK,
                "port": FTP_PORT,
                "login": FTP_USER,
                "password": FTP_PASSWORD,
                "extra": {"passive": True},
            }
        ),
        "smtp_default": json.dumps(
            {
                "conn_type": "smtp",
                "host": LOOPBACK,
                "port": SMTP_PORT,
                # A plain local sink: no SSL, no STARTTLS, no login.
                "extra": {
                    "disable_ssl": True,
                    "disable_tls": True,
                    "from_email": "airflow@localhost",
                    "timeout": 10,
                },
            }
        ),
        "rates_api": json.dumps(
            {
                "conn_type": "http",
                "host": LOOPBACK,
                "port": API_PORT,
                "schema": "http",
                "password": API_TOKEN,
                "extra": {"auth_type": "bearer"},
            }
        ),
    }


def default_variables() -> dict[str, str]:
    return {
        **BUCKETS,
        "warehouse_conn_id": "warehouse",
        "alert_emails": "data-team@example.com",
        # Empty: failure alerts go by email only, unless a topic is set (AIRFLOW_VAR_ALERT_SNS_TOPIC_ARN).
        "alert_sns_topic_arn": "",
        # The FTP directory the retail sales files arrive in (include/config/retail.yaml); per
        # suffix, so the test suite's deliveries never mix with the demo's on the shared server.
        "retail_sales_dir": f"/sales{SUFFIX}",
    }


def airflow_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Airflow runs with locally: ``base`` (default ``os.environ``) plus defaults.

    Values already in ``base`` win, so ``AIRFLOW_CONN_WAREHOUSE=... make airflow ...`` points the
    project elsewhere without editing anything.
    """
    env = dict(os.environ if base is None else base)
    defaults = {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__API__PORT": str(UI_PORT),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        # pyarrow's default allocator (mimalloc) keeps what each decoding thread freed: a load's peak
        # RSS was ~200 MB above what Arrow held. The system allocator gives it back (bench/README.md).
        "ARROW_DEFAULT_MEMORY_POOL": "system",
    }
    defaults |= {f"AIRFLOW_CONN_{cid.upper()}": uri for cid, uri in default_connections().items()}
    defaults |= {f"AIRFLOW_VAR_{name.upper()}": value for name, value in default_variables().items()}
    for key, value in defaults.items():
        env.setdefault(key, value)
    # The framework is imported as ``include.etlkit``: the project root must be importable.
    paths = [str(PROJECT_ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env

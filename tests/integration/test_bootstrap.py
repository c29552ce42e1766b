"""The local set-up: idempotent, and clear about a database server that is not running."""

from __future__ import annotations

import pytest

from infra.local import settings
from infra.local.bootstrap import ServiceDown, ensure_mysql_database, ensure_postgres_database

pytestmark = pytest.mark.integration


def test_creating_the_databases_twice_is_harmless(control_plane):
    totesys, retail = f"totesys{settings.SUFFIX}", f"retail{settings.SUFFIX}"
    assert ensure_postgres_database("totesys") == ensure_postgres_database("totesys") == totesys
    assert ensure_mysql_database("retail_mysql") == ensure_mysql_database("retail_mysql") == retail


def test_a_postgres_server_that_is_down_gets_an_error_saying_how_to_start_it(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TOTESYS", "postgres://postgres@127.0.0.1:1/totesys_test")
    with pytest.raises(ServiceDown, match=r"(?s)127\.0\.0\.1:1.*'totesys'.*pg_ctlcluster"):
        ensure_postgres_database("totesys")


def test_a_mysql_server_that_is_down_gets_an_error_saying_how_to_start_it(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RETAIL_MYSQL", "mysql://root@127.0.0.1:1/retail_test")
    with pytest.raises(ServiceDown, match=r"(?s)127\.0\.0\.1:1.*'retail_mysql'.*mariadbd"):
        ensure_mysql_database("retail_mysql")

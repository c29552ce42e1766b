"""Modules imported on first use, so a DAG file parses without loading what only tasks need.

The DAG processor executes every DAG file again and again, and each file builds its tasks from the
framework's operators. Those operators use pyarrow, polars, psycopg, boto3 and HTTP clients when they
*run*; importing them while a file is *parsed* cost about a second per DAG file (issue 11 asks for
parse times within 50 ms of an empty DAG). Python 3.12 has no lazy ``import`` statement, so a module
that needs one of them at run time binds its usual name to :func:`lazy_module` instead, under an
``if TYPE_CHECKING`` import that keeps type checkers and editors seeing the real module::

    if TYPE_CHECKING:
        import pyarrow as pa
    else:
        pa = lazy_module("pyarrow")

The proxy is ``lazy_object_proxy`` (an Airflow dependency, pinned by MWAA's constraints): the module
is imported on the first attribute read (``pa.table(...)``), once, and behaves as itself after that.
``tests/dags/test_dag_parse_imports.py`` keeps the DAG files free of these imports.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import lazy_object_proxy


def lazy_module(name: str) -> ModuleType:
    """``importlib.import_module(name)``, deferred to the first use of the returned module."""
    return lazy_object_proxy.Proxy(lambda: importlib.import_module(name))  # type: ignore[return-value]

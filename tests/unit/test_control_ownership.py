"""The ``etl.*`` control tables have one owner: the ``include.etlkit.control`` package.

Every other deployed module (the rest of the framework, the DAGs, the plugins, the local and MWAA
tooling, the bench) goes through the owner's public interface: none writes SQL naming an ``etl.*``
table, and none reaches into :class:`ControlStore`'s private members. Tests may query the tables to
check what was recorded; they are not deployed code.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from include.etlkit.control.file_status import PARTIALLY_QUARANTINED, REJECTED, VALIDATED
from include.etlkit.control.store import ControlStore
from include.etlkit.files import validate

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "include" / "etlkit" / "control"
CHECKED = ("include", "dags", "plugins", "infra", "bench")

# An SQL keyword (as the project writes them: upper case) followed, in the same string, by a control
# table (or ``etl.`` ending an f-string's text before ``{table}``). Log messages and docstrings name
# tables too, but never after an upper-case SQL keyword.
CONTROL_SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|INTO|JOIN|TRUNCATE|ALTER|COPY)\b[\s\S]*?\betl\.([a-z_]+|$)"
)
PRIVATE = frozenset(n for n in vars(ControlStore) if n.startswith("_") and not n.startswith("__"))


def violations(source: str) -> list[str]:
    """What in ``source`` (Python code) writes control-table SQL or uses ControlStore's privates."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            match = CONTROL_SQL.search(node.value)
            if match:
                found.append(f"line {node.lineno}: SQL on a control table: {match.group(0)[:80]!r}")
        elif isinstance(node, ast.Attribute) and node.attr in PRIVATE:
            found.append(f"line {node.lineno}: ControlStore's private {node.attr}")
    return found


def deployed_modules() -> list[Path]:
    paths = [p for top in CHECKED for p in (ROOT / top).rglob("*.py")]
    return sorted(p for p in paths if OWNER not in p.parents and ".venv" not in p.parts)


def test_the_check_finds_control_sql_and_private_access():
    # Canary: the check must be able to fail, or the test below proves nothing.
    assert violations('store.query("SELECT count(*) FROM etl.landed_object WHERE source = %s", (s,))')
    assert violations('rows = f"UPDATE etl.{table} SET x = 1"')
    assert violations("ControlStore()._hook()")
    assert not violations('"""Records in ``etl.landed_object``, FROM the extract."""')
    assert not violations('log.info("recorded in etl.schema_change")')


@pytest.mark.parametrize("path", deployed_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_outside_the_control_package_writes_control_sql(path):
    assert violations(path.read_text()) == []


def test_the_file_status_owner_and_the_validation_name_the_same_statuses():
    assert (VALIDATED, PARTIALLY_QUARANTINED, REJECTED) == (
        validate.VALIDATED,
        validate.PARTIALLY_QUARANTINED,
        validate.REJECTED,
    )

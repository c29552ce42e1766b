"""Where the framework's files are, the same way locally and on MWAA.

Locally ``include/`` and ``sql/`` sit at the project root; in the MWAA bundle both sit inside the
``dags/`` folder. Either way ``sql/`` is the sibling of the ``include`` package.
"""

from __future__ import annotations

from pathlib import Path

import include

SQL_DIR = Path(include.__file__).resolve().parent.parent / "sql"


def sql_file(*parts: str) -> Path:
    path = SQL_DIR.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} is missing from the deployment")
    return path

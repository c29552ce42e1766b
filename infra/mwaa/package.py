"""Build the bundle MWAA deploys: ``python -m infra.mwaa.package [--out dist]`` (``make package``).

MWAA syncs four things from its S3 bucket, and the bundle is laid out the same way:

- ``dags/``: the DAG files, the framework (``include/``), the SQL (``sql/``), the constraints file
  MWAA installs against, and an ``.airflowignore`` so the DAG processor parses only DAG files;
- ``plugins.zip``: the real Airflow plugins only (the task-log listener with the control-plane UI
  page, and the cluster policy);
- ``requirements.txt``: the project's, with its ``--constraint`` pointing inside the dags folder;
- ``startup.sh``: the environment's start-up script.

Archives are built deterministically (sorted entries, fixed timestamps), so an unchanged project
gives a byte-identical ``plugins.zip`` and MWAA sees no new plugins version.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = "constraints-3.12.txt"
MWAA_DAGS = "/usr/local/airflow/dags"  # where MWAA puts the dags/ prefix on every component
FIXED_TIME = (2024, 1, 1, 0, 0, 0)
SKIP = {"__pycache__", ".pytest_cache", ".ruff_cache"}

AIRFLOWIGNORE = """\
# Not DAG files: the framework, its SQL and the constraints MWAA installs against.
include/
sql/
constraints-3.12.txt
"""

STARTUP = """\
#!/bin/sh
# MWAA start-up script: runs on every scheduler, worker and web server before Airflow starts.
# Nothing is installed here (requirements.txt does that, against the constraints); it only records
# which bundle a component started with, so the logs answer "what code ran".
echo "etlkit bundle: $(ls /usr/local/airflow/dags/*.py 2>/dev/null | wc -l) DAG files"
"""


def _copy_tree(source: Path, target: Path) -> None:
    for path in sorted(source.rglob("*")):
        if any(part in SKIP for part in path.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _zip(files: list[tuple[Path, str]], archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for path, name in sorted(files, key=lambda item: item[1]):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            bundle.writestr(info, path.read_bytes())


# Top-level packages that exist only in the repository: code importing them is test or tooling code
# (the labelled dedup set imports ``infra.local``), which MWAA would fail to import.
REPOSITORY_ONLY = frozenset({"tests", "infra", "bench", "pytest"})


def repository_only_imports(folder: Path) -> list[str]:
    """``file: module`` for every Python file under ``folder`` importing a repository-only package."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(folder)}: {m}" for m in modules if m.split(".")[0] in REPOSITORY_ONLY
            ]
    return found


def _requirements() -> str:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    if not lines or not lines[0].startswith("--constraint"):
        raise SystemExit("requirements.txt must start with its --constraint line")
    return "\n".join([f"--constraint {MWAA_DAGS}/{CONSTRAINTS}", *lines[1:]]) + "\n"


def build(out: Path) -> Path:
    """Write the bundle into ``out`` (replacing an earlier one) and return it."""
    if out.exists():
        shutil.rmtree(out)
    dags = out / "dags"
    dags.mkdir(parents=True)
    for dag_file in sorted((ROOT / "dags").glob("*.py")):
        shutil.copy2(dag_file, dags / dag_file.name)
    _copy_tree(ROOT / "include", dags / "include")
    _copy_tree(ROOT / "sql", dags / "sql")
    test_only = repository_only_imports(dags)
    if test_only:
        raise SystemExit(
            "test or tooling code would be deployed (move it under tests/): " + "; ".join(test_only)
        )
    shutil.copy2(ROOT / "infra" / "mwaa" / CONSTRAINTS, dags / CONSTRAINTS)
    (dags / ".airflowignore").write_text(AIRFLOWIGNORE)
    plugins = [(path, path.name) for path in sorted((ROOT / "plugins").glob("*.py"))]
    _zip(plugins, out / "plugins.zip")
    (out / "requirements.txt").write_text(_requirements())
    startup = out / "startup.sh"
    startup.write_text(STARTUP)
    startup.chmod(0o755)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    args = parser.parse_args(argv)
    out = build(args.out)
    print(f"MWAA bundle in {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}{'/' if path.is_dir() else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the bundle MWAA deploys: ``python -m infra.mwaa.package [--out dist]`` (``make package``).

MWAA syncs four things from its S3 bucket, and the bundle is laid out the same way:

- ``dags/``: the DAG files, the framework (``include/``), the SQL (``sql/``), the constraints file
  MWAA installs against, and an ``.airflowignore`` so the DAG processor parses only DAG files;
- ``plugins.zip``: the real Airflow plugins only (the task-log listener with the control-plane UI
  page, and the cluster policy);
- ``requirements.txt``: the project's, with its ``--constraint`` pointing inside the dags folder;
- ``startup.sh``: the environment's start-up script.

For an environment with no route to PyPI (private network, no NAT), ``--wheels`` also downloads every
distribution the requirements need, for MWAA's platform (Amazon Linux 2023, x86_64, CPython 3.12), into
``plugins.zip`` (MWAA unpacks it to ``/usr/local/airflow/plugins``), and writes a
``requirements.txt`` that installs from there alone: ``--find-links /usr/local/airflow/plugins``
and ``--no-index``, as AWS's guide for private networks has it. pip does the resolving
(``pip download`` against the same constraints), so the bundle holds exactly what an online install
would fetch.

Archives are built deterministically (sorted entries, fixed timestamps), so an unchanged project
gives a byte-identical ``plugins.zip`` and MWAA sees no new plugins version.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTRAINTS = "constraints-3.12.txt"
MWAA_DAGS = "/usr/local/airflow/dags"  # where MWAA puts the dags/ prefix on every component
MWAA_PLUGINS = "/usr/local/airflow/plugins"  # where MWAA unpacks plugins.zip
# MWAA's workers: Amazon Linux 2023 (glibc 2.34) on x86_64, CPython 3.12. Every manylinux tag up to
# glibc 2.34 runs there; pip picks the best wheel among them.
MWAA_PLATFORMS = (
    "manylinux_2_34_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "linux_x86_64",
)
MWAA_PYTHON = "3.12"
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
# Nothing is installed here (requirements.txt does that, against the constraints); it records which
# bundle a component started with, so the logs answer "what code ran", and sets the environment.
echo "etlkit bundle: $(ls /usr/local/airflow/dags/*.py 2>/dev/null | wc -l) DAG files"
# pyarrow's system allocator returns freed memory, which bounds a task's peak RSS (bench/README.md);
# the same setting as infra/local/settings.py and docker-compose.yaml.
export ARROW_DEFAULT_MEMORY_POOL=system
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


def _requirement_lines() -> list[str]:
    """requirements.txt without its ``--constraint`` line (the bundle's points inside ``dags/``)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    if not lines or not lines[0].startswith("--constraint"):
        raise SystemExit("requirements.txt must start with its --constraint line")
    return lines[1:]


def _requirements(lines: Sequence[str], offline: bool = False) -> str:
    head = [f"--find-links {MWAA_PLUGINS}", "--no-index"] if offline else []
    return "\n".join([*head, f"--constraint {MWAA_DAGS}/{CONSTRAINTS}", *lines]) + "\n"


def _pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"], capture_output=True, text=True
    )


def pinned_distributions(lines: Sequence[str], constraints: Path) -> list[str]:
    """``name==version`` of every distribution an install of ``lines`` would take (pip's resolver)."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n")
        report = Path(tmp) / "report.json"
        result = _pip(
            "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            "--constraint", str(constraints), "--requirement", str(requirements),
        )  # fmt: skip
        if result.returncode:
            raise SystemExit(f"pip could not resolve the requirements:\n{result.stderr[-3000:]}")
        installs = json.loads(report.read_text())["install"]
    return sorted(f"{item['metadata']['name']}=={item['metadata']['version']}" for item in installs)


def _build_requirements(sdist: Path) -> list[str]:
    """What an sdist's ``pyproject.toml`` says building it needs (setuptools when it says nothing)."""
    with tarfile.open(sdist) as archive:
        member = next((m for m in archive.getmembers() if m.name.count("/") == 1 and
                       m.name.endswith("/pyproject.toml")), None)  # fmt: skip
        if member is None:
            return ["setuptools", "wheel"]
        data = tomllib.loads(archive.extractfile(member).read().decode())  # type: ignore[union-attr]
    return list(data.get("build-system", {}).get("requires", ["setuptools", "wheel"]))


def download_wheels(
    lines: Sequence[str],
    constraints: Path,
    dest: Path,
    *,
    platforms: Sequence[str] | None = MWAA_PLATFORMS,
    python_version: str | None = MWAA_PYTHON,
) -> list[Path]:
    """Every distribution ``lines`` need (dependencies included), pinned by ``constraints``, into ``dest``.

    pip resolves the set once; each distribution is then fetched as a wheel for ``platforms`` (MWAA's
    by default; ``None``: this interpreter's, so that tests can install the result here). A package
    that publishes no such wheel (mysqlclient ships only its source for Linux) is fetched as its
    source archive, with the wheels its build needs, and is compiled by pip on the worker at install
    time, from the bundle alone. Returns the files fetched.
    """
    dest.mkdir(parents=True, exist_ok=True)
    pins = pinned_distributions(lines, constraints)
    target: list[str] = []
    if platforms:
        target += [arg for platform in platforms for arg in ("--platform", platform)]
        target += ["--implementation", "cp", "--python-version", python_version or MWAA_PYTHON]
    sources: list[str] = []
    while True:
        wheels = [pin for pin in pins if pin not in sources]
        result = _pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
                      *target, *wheels)  # fmt: skip
        if not result.returncode:
            break
        missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
        if not missing or missing.group(1) in sources:
            raise SystemExit(f"pip download failed:\n{result.stderr[-3000:]}")
        sources.append(missing.group(1))
    if sources:
        result = _pip("download", "--quiet", "--no-deps", "--no-binary=:all:", "--dest", str(dest), *sources)
        if result.returncode:
            raise SystemExit(f"pip download (sources) failed:\n{result.stderr[-3000:]}")
        needs = sorted({r for sdist in dest.glob("*.tar.gz") for r in _build_requirements(sdist)})
        result = _pip("download", "--quiet", "--only-binary=:all:", "--dest", str(dest), *target, *needs)
        if result.returncode:
            raise SystemExit(f"pip download (build requirements) failed:\n{result.stderr[-3000:]}")
    return sorted(p for p in dest.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz"))


def build(
    out: Path,
    *,
    wheels: bool = False,
    requirement_lines: Sequence[str] | None = None,
    platforms: Sequence[str] | None = MWAA_PLATFORMS,
) -> Path:
    """Write the bundle into ``out`` (replacing an earlier one) and return it.

    ``wheels``: bundle every wheel into ``plugins.zip`` and write an offline ``requirements.txt``.
    ``requirement_lines`` (default: the project's) and ``platforms`` exist for the tests.
    """
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
    lines = list(requirement_lines) if requirement_lines is not None else _requirement_lines()
    with tempfile.TemporaryDirectory() as tmp:
        if wheels:
            found = download_wheels(lines, dags / CONSTRAINTS, Path(tmp), platforms=platforms)
            plugins += [(path, path.name) for path in found]
        _zip(plugins, out / "plugins.zip")
    (out / "requirements.txt").write_text(_requirements(lines, offline=wheels))
    startup = out / "startup.sh"
    startup.write_text(STARTUP)
    startup.chmod(0o755)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument(
        "--wheels",
        action="store_true",
        help="bundle every wheel into plugins.zip and install offline (MWAA without internet access)",
    )
    args = parser.parse_args(argv)
    out = build(args.out, wheels=args.wheels)
    print(f"MWAA bundle in {out}:")
    for path in sorted(out.iterdir()):
        print(f"  {path.name}{'/' if path.is_dir() else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The MWAA bundle (``make package``) runs on its own: every DAG imports from it, nothing from the repo.

The bundle is unpacked into a fresh directory laid out like an MWAA worker (``dags/`` as synced,
``plugins.zip`` extracted into ``plugins/``), and a separate Python process, whose working directory
and ``sys.path`` hold nothing of the repository, parses the DAG folder the way Airflow's DAG
processor does (a bundle DagBag, cluster policies applied).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra.mwaa.package import CONSTRAINTS, MWAA_DAGS, build, download_wheels, repository_only_imports

ROOT = Path(__file__).resolve().parents[2]

PARSE = r"""
import json, sys
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag

dags = Path(sys.argv[1])
bag = BundleDagBag(dag_folder=str(dags), bundle_path=dags, bundle_name="dags-folder")
import include.etlkit.paths as paths
from include.etlkit.control.gate import is_gated
print(json.dumps({
    "errors": {k: str(v)[-400:] for k, v in bag.import_errors.items()},
    "dags": sorted(bag.dag_ids),
    "include_from": str(Path(paths.__file__).resolve()),
    "sql_dir": str(paths.SQL_DIR),
    "control_ddl": paths.sql_file("postgres", "control", "etl.sql").is_file(),
    "ungated": sorted(
        f"{d.dag_id}.{t.task_id}" for d in bag.dags.values() for t in d.tasks if not is_gated(t)
    ),
    "files_parsed": sorted(Path(f).name for f in bag.file_last_changed),
}))
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory) -> Path:
    """``/usr/local/airflow`` of an MWAA worker, built from the bundle alone."""
    bundle = build(tmp_path_factory.mktemp("dist") / "dist")
    home = tmp_path_factory.mktemp("mwaa") / "usr-local-airflow"
    (home / "dags").parent.mkdir(parents=True, exist_ok=True)
    os.rename(bundle / "dags", home / "dags")
    with zipfile.ZipFile(bundle / "plugins.zip") as plugins:
        plugins.extractall(home / "plugins")
    for name in ("requirements.txt", "startup.sh"):
        os.rename(bundle / name, home / name)
    return home


@pytest.fixture(scope="module")
def parsed(worker, tmp_path_factory) -> dict:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(worker),
        "AIRFLOW_HOME": str(tmp_path_factory.mktemp("airflow-home")),
        "AIRFLOW__CORE__DAGS_FOLDER": str(worker / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(worker / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(worker / "plugins"),  # as MWAA: the plugins folder, never the repository
    }
    result = subprocess.run(
        [sys.executable, "-c", PARSE, str(worker / "dags")],
        env=env,
        cwd=worker,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_dag_imports_from_the_bundle_with_zero_import_errors(parsed):
    assert parsed["errors"] == {}
    repo_dags = sorted(p.stem for p in (ROOT / "dags").glob("*.py"))
    assert parsed["dags"] == repo_dags  # each DAG file defines the DAG of the same name


def test_the_framework_and_its_sql_come_from_the_bundle_not_the_repository(parsed, worker):
    assert parsed["include_from"].startswith(str(worker / "dags" / "include"))
    assert parsed["sql_dir"] == str(worker / "dags" / "sql")
    assert parsed["control_ddl"] is True


def test_the_cluster_policy_from_plugins_zip_gates_every_task(parsed):
    assert parsed["ungated"] == []


def test_only_dag_files_are_parsed_and_plugins_zip_holds_only_plugins(parsed, tmp_path):
    assert set(parsed["files_parsed"]) == {p.name for p in (ROOT / "dags").glob("*.py")}
    with zipfile.ZipFile(build(tmp_path / "dist") / "plugins.zip") as plugins:
        assert sorted(plugins.namelist()) == sorted(p.name for p in (ROOT / "plugins").glob("*.py"))


def test_requirements_point_at_the_constraints_inside_the_dags_folder(worker):
    first, *rest = (worker / "requirements.txt").read_text().splitlines()
    assert first == f"--constraint {MWAA_DAGS}/{CONSTRAINTS}"
    assert (worker / "dags" / CONSTRAINTS).read_text() == (ROOT / "infra" / "mwaa" / CONSTRAINTS).read_text()
    assert rest == (ROOT / "requirements.txt").read_text().splitlines()[1:]
    assert os.access(worker / "startup.sh", os.X_OK)


def test_an_unchanged_project_packages_to_an_identical_plugins_zip(tmp_path):
    first = build(tmp_path / "a") / "plugins.zip"
    second = build(tmp_path / "b") / "plugins.zip"
    assert first.read_bytes() == second.read_bytes()


def test_no_test_only_code_is_bundled(worker):
    dags = worker / "dags"
    assert repository_only_imports(dags) == []
    assert not (dags / "include" / "etlkit" / "dedup" / "labelled.py").exists()
    assert not list(dags.rglob("test_*.py")) and not (dags / "tests").exists()
    assert repository_only_imports(worker / "plugins") == []


def test_the_check_finds_framework_code_that_imports_test_or_tooling_code(tmp_path):
    # The labelled dedup set, back under include/, would make MWAA fail to import it: build() refuses
    # a bundle for which this check finds anything.
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "labelled.py").write_text(
        "import pandas\nfrom infra.local import seed_retail\nimport tests.support.labelled\n"
    )
    assert repository_only_imports(tmp_path) == [
        "include/labelled.py: infra.local",
        "include/labelled.py: tests.support.labelled",
    ]


# -- MWAA in a private network: every wheel in plugins.zip, requirements installed offline -----------


def _pin(name: str) -> str:
    """The version requirements.txt or else the constraints pin ``name`` to."""
    for path in (ROOT / "requirements.txt", ROOT / "infra" / "mwaa" / CONSTRAINTS):
        for line in path.read_text().splitlines():
            if line.lower().startswith(f"{name}=="):
                return line.split("==", 1)[1].strip()
    raise AssertionError(f"{name} is pinned nowhere")


# Three of the project's requirements: a binary wheel, a pure one with a dependency, and mysqlclient
# (the MySQL provider's driver), which publishes no Linux wheel: its source is bundled with what its
# build needs, and pip compiles it from the bundle.
OFFLINE_REQUIREMENTS = ["rapidfuzz==3.14.6", "openpyxl", "mysqlclient"]


@pytest.mark.slow
def test_a_wheels_bundle_installs_with_no_index_from_plugins_alone(tmp_path):
    """``make package PACKAGE_ARGS=--wheels``, shrunk to two requirements and this interpreter's
    platform so that it can be installed here: pip, cut off from every index, installs them from the
    unpacked plugins.zip alone."""
    bundle = build(tmp_path / "dist", wheels=True, requirement_lines=OFFLINE_REQUIREMENTS, platforms=None)
    first, second, third, *rest = (bundle / "requirements.txt").read_text().splitlines()
    assert (first, second, third) == (
        "--find-links /usr/local/airflow/plugins",
        "--no-index",
        f"--constraint {MWAA_DAGS}/{CONSTRAINTS}",
    )
    assert rest == OFFLINE_REQUIREMENTS
    plugins = tmp_path / "plugins"
    with zipfile.ZipFile(bundle / "plugins.zip") as archive:
        archive.extractall(plugins)
    wheels = sorted(p.name for p in plugins.glob("*.whl"))
    assert any(w.startswith("rapidfuzz-") for w in wheels) and any(
        w.startswith("et_xmlfile-") for w in wheels
    )
    assert [p.name for p in plugins.glob("mysqlclient-*")] == [f"mysqlclient-{_pin('mysqlclient')}.tar.gz"]
    assert any(w.startswith("setuptools-") for w in wheels)  # to build it with no index
    assert (plugins / "etl_control_plugin.py").is_file()  # the plugins stay beside the wheels

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        (bundle / "requirements.txt")
        .read_text()
        .replace("/usr/local/airflow/plugins", str(plugins))
        .replace(MWAA_DAGS, str(bundle / "dags"))
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    offline = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PIP_CONFIG_FILE": os.devnull,
        # Belt and braces beside --no-index: any index or proxy pip might still try is a closed port.
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", "-r", str(requirements)],
        env=offline,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    versions = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import rapidfuzz, openpyxl, MySQLdb; from importlib.metadata import version; "
            "print(*(version(n) for n in ('rapidfuzz', 'openpyxl', 'mysqlclient')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert versions == [_pin("rapidfuzz"), _pin("openpyxl"), _pin("mysqlclient")]  # the pins, from the bundle


@pytest.mark.slow
def test_wheels_are_downloaded_for_mwaas_platform_not_this_machines(tmp_path):
    wheels = download_wheels(["rapidfuzz"], ROOT / "infra" / "mwaa" / CONSTRAINTS, tmp_path)
    (wheel,) = [w.name for w in wheels]
    assert (
        f"rapidfuzz-{_pin('rapidfuzz')}-cp312-cp312-" in wheel and "manylinux" in wheel and "x86_64" in wheel
    )

"""``make deploy`` for real: ``python -m infra.mwaa.deploy`` run as a command against the local S3
server (moto) and a local MWAA API (``mwaa_api.py``: moto has no MWAA), with a bundle built by
``make package``'s own code.

What it proves: the bucket ends holding exactly the bundle under ``dags/`` (stale DAG files
removed), the environment is pointed at the S3 versions of the new plugins.zip, requirements.txt
and startup.sh, and a second deploy of the same bundle uploads nothing and leaves the environment
alone. Order: when one of those three changed, no ``dags/`` object changes until the update has
finished and the environment is AVAILABLE again (the local API records the ``dags/`` objects at the
moment each update ends); a failed or unfinished update leaves ``dags/`` as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from infra.local import settings
from infra.mwaa import package
from tests.integration.mwaa_api import MwaaApiServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VERSIONED = {
    "plugins.zip": "PluginsS3ObjectVersion",
    "requirements.txt": "RequirementsS3ObjectVersion",
    "startup.sh": "StartupScriptS3ObjectVersion",
}
# Every update of the local API stays UPDATING this long, and the deploy polls it this often.
UPDATE_SECONDS = 1.0
WAIT_INTERVAL = "0.1"


def _client(service: str, endpoint: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=settings.S3_REGION,
        aws_access_key_id=settings.S3_ACCESS_KEY,
        aws_secret_access_key=settings.S3_SECRET_KEY,
    )


@pytest.fixture(scope="module")
def s3(local_services):
    return _client("s3", settings.s3_endpoint())


@pytest.fixture(scope="module")
def built_bundle(tmp_path_factory) -> Path:
    return package.build(tmp_path_factory.mktemp("bundle") / "dist")


@pytest.fixture
def dist(built_bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle each test may change."""
    copy = tmp_path / "dist"
    subprocess.run(["cp", "-a", str(built_bundle), str(copy)], check=True)
    return copy


@pytest.fixture
def dag_bucket(s3) -> Iterator[str]:
    """A versioned bucket, like the one Terraform creates for MWAA; emptied and removed after."""
    name = settings.bucket(f"airflow-deploy-{uuid.uuid4().hex[:10]}")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
        for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            s3.delete_object(Bucket=name, Key=item["Key"], VersionId=item["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def mwaa_server(s3) -> Iterator[MwaaApiServer]:
    with MwaaApiServer(s3, settings.S3_REGION, update_seconds=UPDATE_SECONDS) as server:
        yield server


@pytest.fixture
def mwaa(mwaa_server: MwaaApiServer):
    """A boto3 MWAA client on the local API (the host prefix "api." is MWAA's; not for 127.0.0.1)."""
    return boto3.client(
        "mwaa",
        endpoint_url=mwaa_server.url,
        region_name=settings.S3_REGION,
        aws_access_key_id=settings.S3_ACCESS_KEY,
        aws_secret_access_key=settings.S3_SECRET_KEY,
        config=Config(inject_host_prefix=False),
    )


@pytest.fixture
def environment(mwaa, dag_bucket: str) -> str:
    """An environment reading the bucket, as Terraform declares it (no object versions yet)."""
    name = f"etlkit-{uuid.uuid4().hex[:8]}"
    mwaa.create_environment(
        Name=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/etlkit-mwaa-execution",
        SourceBucketArn=f"arn:aws:s3:::{dag_bucket}",
        DagS3Path="dags",
        NetworkConfiguration={"SubnetIds": ["subnet-a", "subnet-b"], "SecurityGroupIds": ["sg-a"]},
        AirflowVersion="3.3.1",
    )
    return name


def run_deploy(
    mwaa_server: MwaaApiServer, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m infra.mwaa.deploy ARGS`` as ``make deploy`` runs it, on the local endpoints."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "MWAA_"))}
    environ |= {
        "AWS_ENDPOINT_URL_S3": settings.s3_endpoint(),
        "AWS_ENDPOINT_URL_MWAA": mwaa_server.url,
        "AWS_ACCESS_KEY_ID": settings.S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": settings.S3_SECRET_KEY,
        "AWS_DEFAULT_REGION": settings.S3_REGION,
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "infra.mwaa.deploy", "--wait-interval", WAIT_INTERVAL, *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
    )


def bucket_files(s3, bucket: str) -> dict[str, bytes]:
    """The current object of every key in the bucket, with its bytes."""
    files = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            files[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return files


def bundle_contents(dist: Path) -> dict[str, bytes]:
    """What the bucket must hold after a deploy of ``dist``, key by key."""
    dags = dist / "dags"
    files = {f"dags/{p.relative_to(dags).as_posix()}": p.read_bytes() for p in dags.rglob("*") if p.is_file()}
    return files | {name: (dist / name).read_bytes() for name in VERSIONED}


def version_count(s3, bucket: str) -> int:
    pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
    return sum(len(page.get("Versions", [])) + len(page.get("DeleteMarkers", [])) for page in pages)


def current_version(s3, bucket: str, key: str) -> str:
    return s3.head_object(Bucket=bucket, Key=key)["VersionId"]


def target(bucket: str, environment: str) -> dict[str, str]:
    return {"MWAA_BUCKET": bucket, "MWAA_ENV": environment}


def in_order(text: str, *parts: str) -> bool:
    """Whether ``parts`` all occur in ``text``, each after the one before."""
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def test_deploy_syncs_the_bundle_and_points_the_environment_at_the_new_versions(
    s3, mwaa, mwaa_server, dist: Path, dag_bucket: str, environment: str, tmp_path: Path
) -> None:
    # The target comes from a `terraform output -json` file, as after `terraform apply`.
    outputs = tmp_path / "outputs.json"
    outputs.write_text(
        json.dumps(
            {
                "mwaa_environment_name": {"sensitive": False, "type": "string", "value": environment},
                "mwaa_source_bucket": {"sensitive": False, "type": "string", "value": dag_bucket},
            }
        )
    )

    first = run_deploy(mwaa_server, "--dist", str(dist), "--terraform-outputs", str(outputs))

    assert first.returncode == 0, first.stderr
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)
    assert "dags/include/etlkit/storage.py" in bucket_files(s3, dag_bucket)
    deployed = mwaa.get_environment(Name=environment)["Environment"]
    for key, argument in VERSIONED.items():
        assert deployed[argument] == current_version(s3, dag_bucket, key), key
    assert deployed["PluginsS3Path"] == "plugins.zip"
    assert deployed["RequirementsS3Path"] == "requirements.txt"
    assert deployed["StartupScriptS3Path"] == "startup.sh"
    assert mwaa_server.api.updates[environment] == 1
    assert "updating to plugins.zip" in first.stdout

    # The same bundle again: nothing uploaded, nothing deleted, no environment update.
    versions_before = version_count(s3, dag_bucket)
    second = run_deploy(mwaa_server, "--dist", str(dist), "--terraform-outputs", str(outputs))

    assert second.returncode == 0, second.stderr
    assert " upload " not in second.stdout and " delete " not in second.stdout, second.stdout
    assert f"{len(bundle_contents(dist))} files unchanged" in second.stdout
    assert "no update" in second.stdout
    assert version_count(s3, dag_bucket) == versions_before
    assert mwaa_server.api.updates[environment] == 1
    assert mwaa.get_environment(Name=environment)["Environment"] == deployed


def test_deploy_replaces_changed_files_removes_stale_ones_and_updates_only_what_changed(
    s3, mwaa, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    assert run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment)).returncode == 0
    before = mwaa.get_environment(Name=environment)["Environment"]
    # A DAG retired from the project, a changed DAG file, a new pin in requirements.txt.
    s3.put_object(Bucket=dag_bucket, Key="dags/retired_pipeline.py", Body=b"# retired\n")
    dag_file = next((dist / "dags").glob("*.py"))
    dag_file.write_text(dag_file.read_text() + "\n# changed\n")
    (dist / "requirements.txt").write_text((dist / "requirements.txt").read_text() + "tenacity\n")
    dags_before = mwaa_server.api.dags(dag_bucket)

    result = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert result.returncode == 0, result.stderr
    assert f"upload dags/{dag_file.name} (changed)" in result.stdout
    assert "upload requirements.txt (changed)" in result.stdout
    assert "delete dags/retired_pipeline.py" in result.stdout
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)
    # The environment first, dags/ only once it was AVAILABLE again: when the update ended, not one
    # dags/ object had been written or deleted yet (the deploy waited through UPDATING).
    (finished,) = mwaa_server.api.finished[environment][1:]
    assert finished["status"] == "AVAILABLE"
    assert finished["dags"] == dags_before
    assert mwaa_server.api.dags(dag_bucket) != dags_before
    assert in_order(
        result.stdout,
        "upload requirements.txt (changed)",
        f"update environment {environment} for requirements.txt",
        "then dags/:",
        f"upload dags/{dag_file.name} (changed)",
        f"environment {environment} UPDATING, waiting",
        f"environment {environment} AVAILABLE after",
        "dags/ synced: 1 uploaded, 1 deleted",
    ), result.stdout
    after = mwaa.get_environment(Name=environment)["Environment"]
    assert after["RequirementsS3ObjectVersion"] == current_version(s3, dag_bucket, "requirements.txt")
    assert after["RequirementsS3ObjectVersion"] != before["RequirementsS3ObjectVersion"]
    assert after["PluginsS3ObjectVersion"] == before["PluginsS3ObjectVersion"]
    assert after["StartupScriptS3ObjectVersion"] == before["StartupScriptS3ObjectVersion"]
    assert mwaa_server.api.updates[environment] == 2


def test_dry_run_prints_the_plan_and_changes_nothing(
    s3, mwaa, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    result = run_deploy(mwaa_server, "--dist", str(dist), "--dry-run", env=target(dag_bucket, environment))

    assert result.returncode == 0, result.stderr
    assert "would upload plugins.zip (new)" in result.stdout
    assert "would upload dags/.airflowignore (new)" in result.stdout
    assert in_order(
        result.stdout,
        "first the environment",
        "would upload plugins.zip (new)",
        f"would update environment {environment} for plugins.zip, requirements.txt, startup.sh and wait "
        "until it is AVAILABLE again (every 0.1s, at most 3600s)",
        "then dags/:",
        "would upload dags/.airflowignore (new)",
    ), result.stdout
    assert version_count(s3, dag_bucket) == 0
    assert mwaa_server.api.updates[environment] == 0
    assert "PluginsS3ObjectVersion" not in mwaa.get_environment(Name=environment)["Environment"]


def test_first_deploy_before_the_environment_exists_uploads_and_says_what_next(
    s3, mwaa_server, dist: Path, dag_bucket: str
) -> None:
    result = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, "not-created-yet"))

    assert result.returncode == 0, result.stderr
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)
    assert "does not exist yet" in result.stdout and "terraform apply" in result.stdout


def test_deploy_to_a_busy_environment_uploads_its_files_but_not_dags_and_fails_clearly(
    s3, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    mwaa_server.api.environments[environment]["Status"] = "UPDATING"

    result = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert result.returncode == 1
    assert f"MWAA environment {environment} is UPDATING" in result.stderr
    assert "run the deploy again when it is AVAILABLE" in result.stderr
    assert "dags/ is not synced" in result.stderr
    expected = {key: body for key, body in bundle_contents(dist).items() if key in VERSIONED}
    assert bucket_files(s3, dag_bucket) == expected
    assert mwaa_server.api.updates[environment] == 0


def test_deploy_without_a_target_says_how_to_give_one(mwaa_server, dist: Path) -> None:
    result = run_deploy(mwaa_server, "--dist", str(dist))

    assert result.returncode == 1
    assert "MWAA_BUCKET" in result.stderr and "--terraform-outputs" in result.stderr


def test_a_failed_update_leaves_dags_untouched_and_says_where_to_look(
    s3, mwaa, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    assert run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment)).returncode == 0
    before = mwaa.get_environment(Name=environment)["Environment"]
    dags_before = mwaa_server.api.dags(dag_bucket)
    (dist / "requirements.txt").write_text((dist / "requirements.txt").read_text() + "tenacity==99.0\n")
    dag_file = next((dist / "dags").glob("*.py"))
    dag_file.write_text(dag_file.read_text() + "\nimport tenacity  # needs the new requirement\n")
    mwaa_server.api.fail_updates = "No matching distribution found for tenacity==99.0"

    failed = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert failed.returncode == 1, failed.stdout
    assert (
        f"the update of MWAA environment {environment} failed (UPDATE_FAILED: UpdateFailed: " in failed.stderr
    )
    assert "No matching distribution found for tenacity==99.0" in failed.stderr
    assert "dags/ was not synced" in failed.stderr
    assert f"airflow-{environment}-Scheduler" in failed.stderr and "requirements_install_" in failed.stderr
    assert "dags/ synced" not in failed.stdout
    assert mwaa_server.api.dags(dag_bucket) == dags_before  # not one DAG file written or deleted
    assert mwaa_server.api.finished[environment][-1]["status"] == "UPDATE_FAILED"
    after = mwaa.get_environment(Name=environment)["Environment"]
    assert after["RequirementsS3ObjectVersion"] == before["RequirementsS3ObjectVersion"]  # rolled back

    # Fixed (here: the service recovers), the same bundle again: update first, then dags/.
    mwaa_server.api.fail_updates = None
    retried = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert retried.returncode == 0, retried.stderr
    # UPDATE_FAILED: all three are pinned again, whatever the environment reports running.
    assert f"update environment {environment} for plugins.zip, requirements.txt, startup.sh" in retried.stdout
    assert mwaa_server.api.finished[environment][-1] | {"at": None} == {
        "status": "AVAILABLE",
        "at": None,
        "dags": dags_before,
    }
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)
    assert mwaa_server.api.updates[environment] == 3


def test_unchanged_environment_files_sync_dags_at_once_without_an_update(
    s3, mwaa, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    assert run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment)).returncode == 0
    before = mwaa.get_environment(Name=environment)["Environment"]
    dag_file = next((dist / "dags").glob("*.py"))
    dag_file.write_text(dag_file.read_text() + "\n# changed\n")

    result = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert result.returncode == 0, result.stderr
    assert "no update" in result.stdout and "dags/ at once:" in result.stdout
    assert f"upload dags/{dag_file.name} (changed)" in result.stdout
    assert "waiting" not in result.stdout and "update environment" not in result.stdout
    assert "dags/ synced: 1 uploaded, 0 deleted; no environment update" in result.stdout
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)
    assert mwaa_server.api.updates[environment] == 1
    assert mwaa.get_environment(Name=environment)["Environment"] == before


def test_an_update_that_outlasts_the_timeout_stops_before_dags_and_the_next_deploy_waits_for_it(
    s3, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    mwaa_server.api.update_seconds = 4.0

    timed_out = run_deploy(
        mwaa_server, "--dist", str(dist), "--wait-timeout", "0.5", env=target(dag_bucket, environment)
    )

    assert timed_out.returncode == 1, timed_out.stdout
    assert f"MWAA environment {environment} is still UPDATING after 0s (--wait-timeout)" in timed_out.stderr
    assert "dags/ was not synced" in timed_out.stderr
    assert not [key for key in bucket_files(s3, dag_bucket) if key.startswith("dags/")]

    # Run again while that update is still going: nothing to update, but dags/ waits for it.
    again = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert again.returncode == 0, again.stderr
    assert "dags/ once its update in progress is done:" in again.stdout
    assert in_order(again.stdout, "UPDATING, waiting", "AVAILABLE after", "dags/ synced")
    assert mwaa_server.api.updates[environment] == 1
    (finished,) = mwaa_server.api.finished[environment]
    assert finished["status"] == "AVAILABLE" and finished["dags"] == {}
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)


def test_an_environment_whose_last_update_failed_is_updated_again_before_dags(
    s3, mwaa_server, dist: Path, dag_bucket: str, environment: str
) -> None:
    # MWAA may show the new versions after a failed update: "runs this bundle" cannot be trusted.
    assert run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment)).returncode == 0
    mwaa_server.api.environments[environment]["Status"] = "UPDATE_FAILED"
    s3.put_object(Bucket=dag_bucket, Key="dags/retired_pipeline.py", Body=b"# retired\n")
    dags_before = mwaa_server.api.dags(dag_bucket)

    result = run_deploy(mwaa_server, "--dist", str(dist), env=target(dag_bucket, environment))

    assert result.returncode == 0, result.stderr
    assert f"update environment {environment} for plugins.zip, requirements.txt, startup.sh" in result.stdout
    assert mwaa_server.api.updates[environment] == 2
    assert mwaa_server.api.finished[environment][-1]["dags"] == dags_before
    assert bucket_files(s3, dag_bucket) == bundle_contents(dist)

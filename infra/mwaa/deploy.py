"""Deploy the bundle to MWAA: ``python -m infra.mwaa.deploy [--dry-run]`` (``make deploy``).

Takes what ``make package`` built in ``dist/`` to the environment's S3 bucket, the way MWAA reads it:

- ``plugins.zip``, ``requirements.txt`` and ``startup.sh`` go first. MWAA only uses them once told
  their new S3 object versions, so when one changed the environment is updated
  (``UpdateEnvironment``, which installs them and restarts its components: many minutes) and the
  deploy polls ``GetEnvironment`` (``--wait-interval``, ``--wait-timeout``) until it is
  ``AVAILABLE`` again. An update that fails or does not finish in time stops the deploy there.
- Only then is ``dist/dags/`` synced to ``s3://<bucket>/dags/``: new and changed files are uploaded
  (compared by SHA-256, kept in each object's ``sha256`` metadata, because S3 ETags are not content
  hashes under SSE-KMS), and objects under ``dags/`` that are no longer in the bundle are deleted
  (the bucket is versioned, so a delete leaves a recoverable version). MWAA picks DAG changes up
  within seconds, so a DAG synced before the update finished would import packages or plugins the
  environment does not have yet and show an import error for the whole update.
- None of the three changed: no update, ``dags/`` is synced at once.

The bucket and environment come from ``--bucket`` / ``--environment``, else ``MWAA_BUCKET`` /
``MWAA_ENV``, else the ``terraform output -json`` file given with ``--terraform-outputs``
(outputs ``mwaa_source_bucket`` and ``mwaa_environment_name``, see ``infra/terraform/``).
AWS credentials and region come from the usual boto3 chain (``AWS_PROFILE``, ``AWS_REGION``...);
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL_MWAA`` point it at other endpoints (VPC endpoints, the
local test servers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = Path(__file__).resolve().parents[2]
DAGS_PREFIX = "dags/"
# The three objects MWAA pins by version, and the UpdateEnvironment arguments naming them.
VERSIONED_FILES = {
    "plugins.zip": ("PluginsS3Path", "PluginsS3ObjectVersion"),
    "requirements.txt": ("RequirementsS3Path", "RequirementsS3ObjectVersion"),
    "startup.sh": ("StartupScriptS3Path", "StartupScriptS3ObjectVersion"),
}
# Environments in these states accept an update; any other is busy or broken and must be looked at.
UPDATABLE = {"AVAILABLE", "UPDATE_FAILED"}
# While waiting for an update: states that mean it failed (ROLLING_BACK ends in UPDATE_FAILED), so
# waiting longer cannot end with the new files installed.
FAILED = {"UPDATE_FAILED", "ROLLING_BACK", "CREATE_FAILED", "UNAVAILABLE", "DELETING", "DELETED"}
# MWAA updates take 20-30 minutes, longer with many requirements; polling every 30 s costs nothing.
WAIT_INTERVAL = 30.0
WAIT_TIMEOUT = 3600.0


class DeployError(Exception):
    """Something the operator must fix before the deploy can go on (message says what)."""


@dataclass(frozen=True)
class Target:
    bucket: str
    environment: str


@dataclass
class Plan:
    """What a deploy changes in the bucket: keys to upload (with why) and keys to delete."""

    uploads: dict[str, str] = field(default_factory=dict)  # key -> "new" | "changed"
    deletions: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # key -> SHA-256 of the bundle's file


@dataclass
class Result:
    plan: Plan
    versions: dict[str, str]  # plugins.zip / requirements.txt / startup.sh -> S3 version id
    environment_updated: bool
    environment_exists: bool
    waited: float = 0.0  # seconds spent waiting for the environment before syncing dags/


def bundle_files(dist: Path) -> dict[str, Path]:
    """The bundle's files keyed by their S3 key."""
    dags = dist / "dags"
    missing = [name for name in ("dags", *VERSIONED_FILES) if not (dist / name).exists()]
    if missing:
        raise DeployError(f"{dist} is not a bundle (missing {', '.join(missing)}): run `make package`")
    files = {
        DAGS_PREFIX + path.relative_to(dags).as_posix(): path
        for path in sorted(dags.rglob("*"))
        if path.is_file()
    }
    files |= {name: dist / name for name in VERSIONED_FILES}
    return files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _remote_keys(s3, bucket: str) -> set[str]:
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=DAGS_PREFIX):
        keys.update(item["Key"] for item in page.get("Contents", []))
    return keys


def _remote_sha256(s3, bucket: str, key: str) -> str | None:
    """The ``sha256`` metadata of the current version of ``key``, or None if absent."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error.response["Error"]["Code"] in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise
    # Objects put by other tools have no sha256 metadata: "" never matches, so they are replaced.
    return head.get("Metadata", {}).get("sha256", "")


def plan(s3, bucket: str, files: dict[str, Path]) -> Plan:
    """Compare the bundle with the bucket: what to upload, what to delete, what is already there."""
    result = Plan()
    remote = _remote_keys(s3, bucket)
    for key, path in files.items():
        result.digests[key] = sha256_of(path)
        listed = key in remote or not key.startswith(DAGS_PREFIX)  # the three files are not listed
        current = _remote_sha256(s3, bucket, key) if listed else None
        if current is None:
            result.uploads[key] = "new"
        elif current != result.digests[key]:
            result.uploads[key] = "changed"
        else:
            result.unchanged.append(key)
    result.deletions = sorted(remote - files.keys())
    return result


def _upload_order(key: str) -> tuple[int, str]:
    # The versioned files first (the update waits for them); then framework, SQL and constraints
    # before the DAG files that import them, so a DAG processor syncing mid-deploy never sees a new
    # DAG with old code.
    if not key.startswith(DAGS_PREFIX):
        return (0, key)
    return (2, key) if "/" not in key.removeprefix(DAGS_PREFIX) else (1, key)


def apply(s3, bucket: str, files: dict[str, Path], changes: Plan) -> None:
    """Upload and delete as planned (in this order; the caller splits the plan when order matters)."""
    for key in sorted(changes.uploads, key=_upload_order):
        with files[key].open("rb") as body:
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                Metadata={"sha256": changes.digests[key]},
                ChecksumAlgorithm="SHA256",  # S3 verifies the bytes it received
            )
    for start in range(0, len(changes.deletions), 1000):  # DeleteObjects takes 1000 keys at most
        batch = changes.deletions[start : start + 1000]
        response = s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
        )
        if response.get("Errors"):
            raise DeployError(f"could not delete from s3://{bucket}: {response['Errors']}")


def split(changes: Plan) -> tuple[Plan, Plan]:
    """The plan's environment part (the three versioned files) and its ``dags/`` part."""
    environment, dags = Plan(digests=changes.digests), Plan(digests=changes.digests)
    for key, why in changes.uploads.items():
        (environment if key in VERSIONED_FILES else dags).uploads[key] = why
    dags.deletions = list(changes.deletions)
    return environment, dags


def _version(s3, bucket: str, key: str) -> str:
    version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
    if not version or version == "null":
        raise DeployError(f"s3://{bucket} is not versioned: MWAA needs object versions")
    return version


def current_versions(s3, bucket: str) -> dict[str, str]:
    """The S3 version id of the current plugins.zip, requirements.txt and startup.sh."""
    return {key: _version(s3, bucket, key) for key in VERSIONED_FILES}


def _environment(mwaa, name: str) -> dict[str, Any] | None:
    try:
        return mwaa.get_environment(Name=name)["Environment"]
    except mwaa.exceptions.ResourceNotFoundException:
        return None


def _stale(environment: dict[str, Any], versions: dict[str, str]) -> list[str]:
    """The versioned files whose version the environment does not run yet."""
    return [key for key, (_, arg) in VERSIONED_FILES.items() if environment.get(arg) != versions.get(key)]


def pending_update(s3, bucket: str, environment: dict[str, Any] | None, changes: Plan) -> list[str]:
    """The versioned files the environment must be updated for before ``dags/`` may change.

    Those this deploy uploads, those already in the bucket but not what the environment runs (a
    deploy stopped before its update), and all three when the environment's last update failed: it
    may show the new versions without having installed them.
    """
    if environment is None:
        return []
    if environment.get("Status") == "UPDATE_FAILED":
        return list(VERSIONED_FILES)
    kept = {key: _version(s3, bucket, key) for key in VERSIONED_FILES if key not in changes.uploads}
    stale = _stale(environment, kept)
    return [key for key in VERSIONED_FILES if key in changes.uploads or key in stale]


def update_environment(mwaa, name: str, versions: dict[str, str]) -> bool:
    """Point the environment at ``versions``; False when it already runs them (and is not failed)."""
    environment = _environment(mwaa, name)
    if environment is None:
        raise DeployError(f"MWAA environment {name} does not exist")
    status = environment.get("Status")
    if not _stale(environment, versions) and status != "UPDATE_FAILED":
        return False
    if status not in UPDATABLE:
        raise DeployError(
            f"MWAA environment {name} is {status}; run the deploy again when it is AVAILABLE "
            f"({', '.join(VERSIONED_FILES)} are uploaded; dags/ is not synced until the environment "
            "runs them, so the environment keeps the DAGs it had)"
        )
    arguments: dict[str, str] = {"Name": name}
    for key, (path_arg, version_arg) in VERSIONED_FILES.items():
        arguments[path_arg] = key
        arguments[version_arg] = versions[key]
    try:
        mwaa.update_environment(**arguments)
    except ClientError as error:
        raise DeployError(
            f"MWAA refused to update environment {name}: {error.response['Error'].get('Message', error)}; "
            "dags/ was not synced"
        ) from None
    return True


def _failed(name: str, environment: dict[str, Any]) -> str:
    """Why the update failed and where to look, for the operator."""
    error = (environment.get("LastUpdate") or {}).get("Error") or {}
    reason = ": ".join(part for part in (error.get("ErrorCode"), error.get("ErrorMessage")) if part)
    return (
        f"the update of MWAA environment {name} failed ({environment.get('Status')}"
        f"{': ' + reason if reason else ''}). dags/ was not synced, so the environment keeps the "
        f"DAGs it had. Look at the requirements_install_* and startup_script_* log streams in the "
        f"CloudWatch log group airflow-{name}-Scheduler and at LastUpdate in "
        f"`aws mwaa get-environment --name {name}`, fix the bundle, and run `make deploy` again"
    )


def wait_until_available(
    mwaa,
    name: str,
    versions: dict[str, str],
    *,
    interval: float = WAIT_INTERVAL,
    timeout: float = WAIT_TIMEOUT,
    out=sys.stdout,
) -> float:
    """Poll ``GetEnvironment`` until the environment runs ``versions`` and is AVAILABLE; seconds waited.

    Right after ``UpdateEnvironment`` the API may still report the old state, so AVAILABLE only
    counts together with the new versions and a last update that is no longer PENDING.
    """
    start = time.monotonic()
    while True:
        environment = _environment(mwaa, name)
        elapsed = time.monotonic() - start
        if environment is None:
            raise DeployError(f"MWAA environment {name} disappeared during its update; dags/ was not synced")
        status = environment.get("Status")
        last = (environment.get("LastUpdate") or {}).get("Status")
        if status == "AVAILABLE" and not _stale(environment, versions) and last != "PENDING":
            print(f"  environment {name} AVAILABLE after {elapsed:.0f}s", file=out, flush=True)
            return elapsed
        if status in FAILED:
            raise DeployError(_failed(name, environment))
        if elapsed >= timeout:
            raise DeployError(
                f"MWAA environment {name} is still {status} after {timeout:.0f}s (--wait-timeout); "
                f"dags/ was not synced. Follow the update in the MWAA console or with "
                f"`aws mwaa get-environment --name {name}`, and run `make deploy` again: it waits for "
                "an update in progress and syncs dags/ once the environment is AVAILABLE"
            )
        print(
            f"  environment {name} {status}, waiting ({elapsed:.0f}s of at most {timeout:.0f}s)",
            file=out,
            flush=True,
        )
        time.sleep(max(0.0, min(interval, timeout - elapsed)))


def _print_changes(changes: Plan, verb: str, out) -> None:
    for key in sorted(changes.uploads, key=_upload_order):
        print(f"    {verb}upload {key} ({changes.uploads[key]})", file=out)
    for key in changes.deletions:
        print(f"    {verb}delete {key}", file=out)
    if not changes.uploads and not changes.deletions:
        print("    nothing to change", file=out)


def deploy(
    s3,
    mwaa,
    dist: Path,
    target: Target,
    *,
    dry_run: bool = False,
    wait_interval: float = WAIT_INTERVAL,
    wait_timeout: float = WAIT_TIMEOUT,
    out=sys.stdout,
) -> Result:
    """Sync ``dist`` to the target bucket, updating the environment before ``dags/``; print what happens."""
    files = bundle_files(dist)
    changes = plan(s3, target.bucket, files)
    environment = _environment(mwaa, target.environment)
    pending = pending_update(s3, target.bucket, environment, changes)
    env_part, dags_part = split(changes)
    name = target.environment
    state = "does not exist" if environment is None else environment.get("Status")
    verb = "would " if dry_run else ""

    print(f"MWAA deploy of {dist} to s3://{target.bucket} (environment {name}, {state})", file=out)
    print(f"  {len(changes.unchanged)} files unchanged", file=out)
    if environment is None:
        print(f"  environment {name} does not exist yet: the whole bundle at once", file=out)
        _print_changes(changes, verb, out)
    elif pending:
        print("  first the environment (DAGs may need what it installs):", file=out)
        _print_changes(env_part, verb, out)
        print(
            f"    {verb}update environment {name} for {', '.join(pending)} and wait until it is "
            f"AVAILABLE again (every {wait_interval:g}s, at most {wait_timeout:g}s)",
            file=out,
        )
        print("  then dags/:", file=out)
        _print_changes(dags_part, verb, out)
    else:
        in_flight = " once its update in progress is done" if state == "UPDATING" else " at once"
        print(f"  environment {name} runs this bundle's {', '.join(VERSIONED_FILES)}: no update", file=out)
        print(f"  dags/{in_flight}:", file=out)
        _print_changes(changes, verb, out)
    if dry_run:
        return Result(changes, {}, environment_updated=False, environment_exists=environment is not None)

    if environment is None:
        apply(s3, target.bucket, files, changes)
        print(
            f"  environment {name} does not exist yet: the bundle is in place; create it "
            "with `terraform apply` (create_environment = true), which reads these files",
            file=out,
        )
        return Result(
            changes, current_versions(s3, target.bucket), environment_updated=False, environment_exists=False
        )

    updated, waited = False, 0.0
    if pending:
        apply(s3, target.bucket, files, env_part)
    versions = current_versions(s3, target.bucket)
    if pending:
        updated = update_environment(mwaa, name, versions)
        if updated:
            pinned = ", ".join(f"{key} {version}" for key, version in versions.items())
            print(f"  environment {name} updating to {pinned}", file=out, flush=True)
        waited = wait_until_available(
            mwaa, name, versions, interval=wait_interval, timeout=wait_timeout, out=out
        )
    elif state == "UPDATING":
        # An update already installing these versions (a deploy that timed out waiting, say): the
        # DAGs must wait for it just the same.
        waited = wait_until_available(
            mwaa, name, versions, interval=wait_interval, timeout=wait_timeout, out=out
        )
    apply(s3, target.bucket, files, dags_part)
    print(
        f"  dags/ synced: {len(dags_part.uploads)} uploaded, {len(dags_part.deletions)} deleted"
        + ("" if updated else "; no environment update"),
        file=out,
    )
    return Result(changes, versions, environment_updated=updated, environment_exists=True, waited=waited)


def resolve_target(bucket: str | None, environment: str | None, outputs_file: Path | None) -> Target:
    """Arguments win over ``MWAA_BUCKET`` / ``MWAA_ENV``, which win over the Terraform outputs."""
    outputs: dict[str, Any] = {}
    if outputs_file is not None:
        raw = json.loads(outputs_file.read_text())
        outputs = {name: item.get("value") for name, item in raw.items()}
    bucket = bucket or os.environ.get("MWAA_BUCKET") or outputs.get("mwaa_source_bucket")
    environment = environment or os.environ.get("MWAA_ENV") or outputs.get("mwaa_environment_name")
    if not bucket or not environment:
        raise DeployError(
            "no target: give --bucket and --environment, set MWAA_BUCKET and MWAA_ENV, or pass "
            "--terraform-outputs with the file of `terraform -chdir=infra/terraform output -json`"
        )
    return Target(bucket=bucket, environment=environment)


def clients():
    """boto3 clients for S3 and MWAA from the standard credential and region chain."""
    # MWAA's API prefixes the host with "api."; an explicit endpoint (a VPC endpoint, a local
    # server) is an exact address and must be used as given.
    custom = os.environ.get("AWS_ENDPOINT_URL_MWAA") or os.environ.get("AWS_ENDPOINT_URL")
    mwaa = boto3.client("mwaa", config=Config(inject_host_prefix=not custom))
    return boto3.client("s3"), mwaa


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="the bundle (make package)")
    parser.add_argument("--bucket", help="the environment's S3 bucket (default: MWAA_BUCKET)")
    parser.add_argument("--environment", help="the MWAA environment name (default: MWAA_ENV)")
    parser.add_argument("--terraform-outputs", type=Path, help="a `terraform output -json` file")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument(
        "--wait-interval",
        type=float,
        default=WAIT_INTERVAL,
        help=f"seconds between GetEnvironment polls during an update (default {WAIT_INTERVAL:g})",
    )
    parser.add_argument(
        "--wait-timeout",
        type=float,
        default=WAIT_TIMEOUT,
        help=f"seconds to wait for the update before giving up, dags/ not synced (default {WAIT_TIMEOUT:g})",
    )
    args = parser.parse_args(argv)
    try:
        target = resolve_target(args.bucket, args.environment, args.terraform_outputs)
        s3, mwaa = clients()
        deploy(
            s3,
            mwaa,
            args.dist,
            target,
            dry_run=args.dry_run,
            wait_interval=args.wait_interval,
            wait_timeout=args.wait_timeout,
        )
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

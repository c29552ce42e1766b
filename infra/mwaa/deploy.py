"""Deploy the bundle to MWAA: ``python -m infra.mwaa.deploy [--dry-run]`` (``make deploy``).

Takes what ``make package`` built in ``dist/`` to the environment's S3 bucket, the way MWAA reads it:

- ``dist/dags/`` is synced to ``s3://<bucket>/dags/``: new and changed files are uploaded (compared by
  SHA-256, kept in each object's ``sha256`` metadata, because S3 ETags are not content hashes under
  SSE-KMS), and objects under ``dags/`` that are no longer in the bundle are deleted (the bucket is
  versioned, so a delete leaves a recoverable version). MWAA picks DAG changes up by itself.
- ``plugins.zip``, ``requirements.txt`` and ``startup.sh`` are uploaded when changed; MWAA only uses
  them once told their new S3 object versions, so the environment is then updated
  (``UpdateEnvironment``), which restarts its components. Nothing changed: no update.

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
    # Framework, SQL and constraints before the DAG files that import them, so a DAG processor
    # syncing mid-deploy never sees a new DAG with old code; the versioned files come last.
    if not key.startswith(DAGS_PREFIX):
        return (2, key)
    return (1, key) if "/" not in key.removeprefix(DAGS_PREFIX) else (0, key)


def apply(s3, bucket: str, files: dict[str, Path], changes: Plan) -> None:
    """Upload and delete as planned."""
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


def current_versions(s3, bucket: str) -> dict[str, str]:
    """The S3 version id of the current plugins.zip, requirements.txt and startup.sh."""
    versions = {}
    for key in VERSIONED_FILES:
        version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
        if not version or version == "null":
            raise DeployError(f"s3://{bucket} is not versioned: MWAA needs object versions")
        versions[key] = version
    return versions


def _environment(mwaa, name: str) -> dict[str, Any] | None:
    try:
        return mwaa.get_environment(Name=name)["Environment"]
    except mwaa.exceptions.ResourceNotFoundException:
        return None


def _stale(environment: dict[str, Any], versions: dict[str, str]) -> list[str]:
    """The versioned files whose version the environment does not run yet."""
    return [key for key, (_, arg) in VERSIONED_FILES.items() if environment.get(arg) != versions.get(key)]


def update_environment(mwaa, name: str, versions: dict[str, str]) -> bool:
    """Point the environment at ``versions``; False when it already runs them."""
    environment = _environment(mwaa, name)
    if environment is None:
        raise DeployError(f"MWAA environment {name} does not exist")
    if not _stale(environment, versions):
        return False
    status = environment.get("Status")
    if status not in UPDATABLE:
        raise DeployError(
            f"MWAA environment {name} is {status}; run the deploy again when it is AVAILABLE "
            "(the bundle is uploaded, only the environment update is pending)"
        )
    arguments: dict[str, str] = {"Name": name}
    for key, (path_arg, version_arg) in VERSIONED_FILES.items():
        arguments[path_arg] = key
        arguments[version_arg] = versions[key]
    mwaa.update_environment(**arguments)
    return True


def deploy(s3, mwaa, dist: Path, target: Target, *, dry_run: bool = False, out=sys.stdout) -> Result:
    """Sync ``dist`` to the target bucket and update the environment; print what happens."""
    files = bundle_files(dist)
    changes = plan(s3, target.bucket, files)
    verb = "would " if dry_run else ""
    print(f"MWAA deploy of {dist} to s3://{target.bucket} (environment {target.environment})", file=out)
    for key, why in sorted(changes.uploads.items()):
        print(f"  {verb}upload {key} ({why})", file=out)
    for key in changes.deletions:
        print(f"  {verb}delete {key}", file=out)
    print(f"  {len(changes.unchanged)} files unchanged", file=out)

    environment = _environment(mwaa, target.environment)
    if dry_run:
        pending = [key for key in VERSIONED_FILES if key in changes.uploads]
        if environment is not None and not pending:
            pending = _stale(environment, current_versions(s3, target.bucket))
        what = f"would update it for {', '.join(pending)}" if pending else "no update needed"
        state = "does not exist" if environment is None else environment.get("Status")
        print(f"  environment {target.environment} ({state}): {what}", file=out)
        return Result(changes, {}, environment_updated=False, environment_exists=environment is not None)

    apply(s3, target.bucket, files, changes)
    versions = current_versions(s3, target.bucket)
    if environment is None:
        print(
            f"  environment {target.environment} does not exist yet: the bundle is in place; create it "
            "with `terraform apply` (create_environment = true), which reads these files",
            file=out,
        )
        return Result(changes, versions, environment_updated=False, environment_exists=False)
    updated = update_environment(mwaa, target.environment, versions)
    if updated:
        pinned = ", ".join(f"{key} {version}" for key, version in versions.items())
        print(f"  environment {target.environment} updating to {pinned}", file=out)
    else:
        print(f"  environment {target.environment} already runs this bundle's files: no update", file=out)
    return Result(changes, versions, environment_updated=updated, environment_exists=True)


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
    args = parser.parse_args(argv)
    try:
        target = resolve_target(args.bucket, args.environment, args.terraform_outputs)
        s3, mwaa = clients()
        deploy(s3, mwaa, args.dist, target, dry_run=args.dry_run)
    except DeployError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

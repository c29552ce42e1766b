"""Immutable object storage: every landed or processed object is created once, never overwritten.

The only way the framework writes to a bucket. Objects are created with a conditional put
(``If-None-Match: *``), so S3 itself refuses an overwrite; in production the buckets add Object Lock.
Keys are derived from the content's SHA-256, so a retry that produces the same bytes finds its object
already there (a 412 answer) and, after checking the stored digest matches, treats it as landed.
A retry never needs to overwrite anything, and a different content always gets a different key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

DIGEST_METADATA = "sha256"


class ImmutableObjectConflict(RuntimeError):
    """An object exists under the key with other content: a bug upstream, never overwritten."""


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    sha256: str
    size: int
    created: bool  # False when an identical object was already there

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_key(prefix: str, name: str, sha256: str, suffix: str) -> str:
    """``<prefix>/<name>-<first 16 hex of sha256><suffix>``: same bytes, same key."""
    return f"{prefix.strip('/')}/{name}-{sha256[:16]}{suffix}"


class ImmutableStore:
    """Create-once writes to S3 through the ``aws_default`` (or another) Airflow connection."""

    def __init__(self, aws_conn_id: str = "aws_default") -> None:
        self.aws_conn_id = aws_conn_id
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            self._client = S3Hook(aws_conn_id=self.aws_conn_id).get_conn()
        return self._client

    def create_file(
        self, bucket: str, prefix: str, name: str, path: Path, suffix: str, *, sha256: str | None = None
    ) -> StoredObject:
        """Create ``path`` once under its content-addressed key (:func:`content_key`).

        ``sha256`` saves re-reading the file when the caller digested it while writing.
        """
        digest = sha256 or file_sha256(path)
        return self.put_file(bucket, content_key(prefix, name, digest, suffix), path, sha256=digest)

    def create_bytes(self, bucket: str, prefix: str, name: str, data: bytes, suffix: str) -> StoredObject:
        """Create ``data`` once under its content-addressed key (:func:`content_key`)."""
        key = content_key(prefix, name, hashlib.sha256(data).hexdigest(), suffix)
        return self.put_bytes(bucket, key, data)

    def put_file(self, bucket: str, key: str, path: Path, *, sha256: str | None = None) -> StoredObject:
        digest = sha256 or file_sha256(path)
        with path.open("rb") as body:
            return self._put(bucket, key, body, digest, path.stat().st_size)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> StoredObject:
        return self._put(bucket, key, data, hashlib.sha256(data).hexdigest(), len(data))

    def _put(self, bucket: str, key: str, body, digest: str, size: int) -> StoredObject:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={DIGEST_METADATA: digest}
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict") and status not in (409, 412):
                raise
            existing = self.client.head_object(Bucket=bucket, Key=key).get("Metadata", {})
            if existing.get(DIGEST_METADATA) != digest:
                raise ImmutableObjectConflict(
                    f"s3://{bucket}/{key} already exists with other content "
                    f"(sha256 {existing.get(DIGEST_METADATA)!r}, new {digest!r}); it is never overwritten"
                ) from exc
            return StoredObject(bucket, key, digest, size, created=False)
        return StoredObject(bucket, key, digest, size, created=True)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def download(self, bucket: str, key: str, path: Path) -> Path:
        self.client.download_file(bucket, key, str(path))
        return path

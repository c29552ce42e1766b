"""Immutable object storage: every landed or processed object is created once, never overwritten.

The only way the framework writes to a bucket. Objects are created with a conditional put
(``If-None-Match: *``), so S3 itself refuses an overwrite; in production the buckets add Object Lock
and the IAM policy refuses a put without that condition. Keys are derived from the content's
SHA-256, so a retry that produces the same bytes finds its object already there (a 412 answer).

Immutability is checked, not trusted. Every put carries S3's own SHA-256 checksum
(``ChecksumSHA256``), so S3 refuses bytes that changed on the way; on a 412 the existing object's
checksum, as S3 computed it, must equal the new content's (or, for an object stored without one, its
bytes are read and hashed), and only then is it treated as already landed. Every read
(:meth:`ImmutableStore.get_bytes`, :meth:`ImmutableStore.download`) hashes what it received and
compares it with the stored checksum, raising :class:`ObjectIntegrityError` on a mismatch.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIGEST_METADATA = "sha256"
CHUNK = 1 << 20


class ImmutableObjectConflict(RuntimeError):
    """An object exists under the key with other content: a bug upstream, never overwritten."""


class ObjectIntegrityError(RuntimeError):
    """What was read from a bucket is not what was stored (its SHA-256 differs)."""


def s3_checksum(hex_digest: str) -> str:
    """A SHA-256 hex digest in the form S3's ``ChecksumSHA256`` takes and returns (base64)."""
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def stored_digest(head: dict[str, Any]) -> str | None:
    """The object's SHA-256 (hex) from a HEAD/GET answer: S3's checksum, else our metadata.

    A multipart object's checksum is a checksum of its parts (``...-N``), not of its bytes: None.
    """
    checksum = head.get("ChecksumSHA256")
    if checksum and "-" not in checksum:
        return base64.b64decode(checksum).hex()
    return (head.get("Metadata") or {}).get(DIGEST_METADATA)


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


def s3_client(aws_conn_id: str) -> Any:
    """A boto3 S3 client for an Airflow AWS connection, as the amazon provider's ``S3Hook`` makes it:
    the hook's session (credentials, assumed role, region), endpoint, botocore config and ``verify``.

    Not ``S3Hook.get_conn()`` itself: to name the calling operator in the user agent it walks the
    whole call stack with ``inspect.stack()``, which reads every frame's source file, about 0.3 s
    per client, a third of a small incremental extract (bench/README.md). The one place the
    project's tasks and triggers get an S3 client.
    """
    return _client_maker(aws_conn_id)()


def _client_maker(aws_conn_id: str) -> Callable[[], Any]:
    """What :func:`s3_client` does in two parts: the connection's session now (Airflow's connection
    look-up, on the calling thread), the client when the returned function is called (botocore
    loading S3's service model and endpoint rules: ~0.1 s of CPU, no Airflow call)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=aws_conn_id)
    session = hook.get_session(region_name=hook.region_name)
    endpoint, config, verify = hook.conn_config.get_service_endpoint_url("s3"), hook.config, hook.verify
    return lambda: session.client("s3", endpoint_url=endpoint, config=config, verify=verify)


class ImmutableStore:
    """Create-once writes to S3 through the ``aws_default`` (or another) Airflow connection."""

    def __init__(self, aws_conn_id: str = "aws_default") -> None:
        self.aws_conn_id = aws_conn_id
        self._client = None
        self._pending: tuple[threading.Thread, dict[str, Any]] | None = None

    def prepare(self) -> None:
        """Start making the client on a background thread, to overlap it with other slow work.

        An extract calls this before reading its source: botocore's ~0.1 s of model loading then
        runs while the database sends rows (the driver releases the GIL while it waits), rather than
        after. The first use of :attr:`client` waits for it. Nothing fails here: a connection that
        cannot make a client fails at that first use, as without this call (a run that lands
        nothing never needs one).
        """
        if self._client is not None or self._pending is not None:
            return
        try:
            make = _client_maker(self.aws_conn_id)
        except Exception:  # raised again, where it matters, by the first use
            return
        outcome: dict[str, Any] = {}

        def run() -> None:
            try:
                outcome["client"] = make()
            except BaseException as exc:  # handed to the thread that uses the client
                outcome["error"] = exc

        thread = threading.Thread(target=run, name=f"s3-client-{self.aws_conn_id}", daemon=True)
        thread.start()
        self._pending = (thread, outcome)

    @property
    def client(self):
        if self._client is None and self._pending is not None:
            thread, outcome = self._pending
            self._pending = None
            thread.join()
            if "error" in outcome:
                raise outcome["error"]
            self._client = outcome["client"]
        if self._client is None:
            self._client = s3_client(self.aws_conn_id)
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
                Bucket=bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=s3_checksum(digest),
                Metadata={DIGEST_METADATA: digest},
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code not in ("PreconditionFailed", "ConditionalRequestConflict") and status not in (409, 412):
                raise
            existing = self.existing_digest(bucket, key)
            if existing != digest:
                raise ImmutableObjectConflict(
                    f"s3://{bucket}/{key} already exists with other content "
                    f"(sha256 {existing!r}, new {digest!r}); it is never overwritten"
                ) from exc
            return StoredObject(bucket, key, digest, size, created=False)
        return StoredObject(bucket, key, digest, size, created=True)

    def existing_digest(self, bucket: str, key: str) -> str:
        """The SHA-256 of the object's bytes: S3's checksum, or the bytes themselves hashed.

        Never the ``sha256`` metadata alone: metadata is written by the client and proves nothing.
        """
        head = self.client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum:
            return base64.b64decode(checksum).hex()
        body = self.client.get_object(Bucket=bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for block in iter(lambda: body.read(CHUNK), b""):
            digest.update(block)
        return digest.hexdigest()

    def get_bytes(self, bucket: str, key: str) -> bytes:
        """The object's bytes, checked against the digest it was stored with."""
        answer = self.client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        data = answer["Body"].read()
        _verify(bucket, key, stored_digest(answer), hashlib.sha256(data).hexdigest())
        return data

    def download(self, bucket: str, key: str, path: Path) -> Path:
        """Stream the object to ``path``, hashing as it comes, and check it against its stored digest."""
        answer = self.client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        digest = hashlib.sha256()
        with path.open("wb") as out:
            for block in iter(lambda: answer["Body"].read(CHUNK), b""):
                digest.update(block)
                out.write(block)
        try:
            _verify(bucket, key, stored_digest(answer), digest.hexdigest())
        except ObjectIntegrityError:
            path.unlink(missing_ok=True)
            raise
        return path


def _verify(bucket: str, key: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise ObjectIntegrityError(
            f"s3://{bucket}/{key}: read bytes with sha256 {actual}, stored as {expected}"
        )

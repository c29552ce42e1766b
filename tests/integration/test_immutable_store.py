"""ImmutableStore against the real local S3 (moto server): create once, never overwrite.

The module's throwaway bucket has versioning on, so "left unchanged" is proved by S3 itself: an
overwrite, even with identical bytes, would add a second version.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import pytest

from include.etlkit.storage import (
    DIGEST_METADATA,
    ImmutableObjectConflict,
    ImmutableStore,
    ObjectIntegrityError,
    content_key,
    file_sha256,
    s3_checksum,
)
from infra.local import settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3(local_services):
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id="aws_default").get_conn()


@pytest.fixture(scope="module")
def bucket(s3):
    name = f"immutable-store-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": settings.S3_REGION})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield name
    listing = s3.list_object_versions(Bucket=name)
    for entry in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]:
        s3.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def store() -> ImmutableStore:
    return ImmutableStore()


def _key(name: str) -> str:
    return f"tests/{name}-{uuid.uuid4().hex}"


def _versions(s3, bucket: str, key: str) -> list[dict]:
    listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listing.get("Versions", []) if v["Key"] == key]


def test_first_put_creates_the_object_with_its_sha256_metadata(s3, bucket, store):
    key = _key("first")
    data = b"id,name\n1,O'Keefe\n"

    stored = store.put_bytes(bucket, key, data)

    digest = hashlib.sha256(data).hexdigest()
    assert stored.created is True
    assert (stored.bucket, stored.key, stored.sha256, stored.size) == (bucket, key, digest, len(data))
    assert stored.uri == f"s3://{bucket}/{key}"
    head = s3.head_object(Bucket=bucket, Key=key)
    assert head["Metadata"] == {DIGEST_METADATA: digest}
    assert store.get_bytes(bucket, key) == data


def test_same_bytes_under_same_key_is_not_created_again_and_leaves_the_object_unchanged(s3, bucket, store):
    key = _key("same")
    data = b"the same bytes"
    first = store.put_bytes(bucket, key, data)
    before = s3.head_object(Bucket=bucket, Key=key)
    time.sleep(1.1)  # LastModified has a one-second resolution: an overwrite would show

    again = store.put_bytes(bucket, key, data)

    assert first.created is True
    assert again.created is False
    assert again.sha256 == first.sha256
    after = s3.head_object(Bucket=bucket, Key=key)
    assert (after["ETag"], after["LastModified"], after.get("VersionId")) == (
        before["ETag"],
        before["LastModified"],
        before.get("VersionId"),
    )
    assert len(_versions(s3, bucket, key)) == 1


def test_different_bytes_under_an_existing_key_raise_a_conflict_and_keep_the_original(s3, bucket, store):
    key = _key("conflict")
    original = b"original content"
    store.put_bytes(bucket, key, original)

    with pytest.raises(ImmutableObjectConflict, match="never overwritten") as raised:
        store.put_bytes(bucket, key, b"other content")

    assert hashlib.sha256(original).hexdigest() in str(raised.value)
    assert store.get_bytes(bucket, key) == original
    assert s3.head_object(Bucket=bucket, Key=key)["Metadata"][DIGEST_METADATA] == (
        hashlib.sha256(original).hexdigest()
    )
    assert len(_versions(s3, bucket, key)) == 1


def test_content_key_is_the_same_for_the_same_bytes_and_differs_for_different_bytes():
    one = hashlib.sha256(b"rows of version one").hexdigest()
    one_again = hashlib.sha256(b"rows of version one").hexdigest()
    two = hashlib.sha256(b"rows of version two").hexdigest()

    key = content_key("/totesys/staff/2024/11/15/", "staff", one, ".parquet")

    assert key == f"totesys/staff/2024/11/15/staff-{one[:16]}.parquet"
    assert content_key("totesys/staff/2024/11/15", "staff", one_again, ".parquet") == key
    assert content_key("totesys/staff/2024/11/15", "staff", two, ".parquet") != key


def test_put_file_and_put_bytes_agree_on_the_digest(s3, bucket, store, tmp_path: Path):
    # Larger than file_sha256's 1 MiB read block, so the streamed digest crosses block boundaries.
    data = bytes(range(256)) * 9000 + b"tail"
    path = tmp_path / "payload.bin"
    path.write_bytes(data)

    from_file = store.put_file(bucket, _key("from-file"), path)
    from_bytes = store.put_bytes(bucket, _key("from-bytes"), data)

    digest = hashlib.sha256(data).hexdigest()
    assert file_sha256(path) == digest
    assert from_file.sha256 == from_bytes.sha256 == digest
    assert from_file.size == from_bytes.size == len(data)
    assert s3.head_object(Bucket=bucket, Key=from_file.key)["Metadata"][DIGEST_METADATA] == digest
    assert store.get_bytes(bucket, from_file.key) == data
    # The same content put the other way under the file's key is recognised as already landed.
    assert store.put_bytes(bucket, from_file.key, data).created is False
    assert len(_versions(s3, bucket, from_file.key)) == 1


def test_every_put_carries_s3s_own_sha256_checksum(s3, bucket, store):
    data = b"checked by S3"
    stored = store.put_bytes(bucket, _key("checksum"), data)
    head = s3.head_object(Bucket=bucket, Key=stored.key, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == s3_checksum(hashlib.sha256(data).hexdigest())


def test_a_412_is_judged_by_the_stored_bytes_not_by_metadata(s3, bucket, store):
    """An object put by someone else, with a lying ``sha256`` metadata and no checksum, is not
    mistaken for the new content: the retry sees a conflict, and the object is left as it was."""
    new = b"what the retry would land"
    key = _key("liar")
    lie = {DIGEST_METADATA: hashlib.sha256(new).hexdigest()}
    s3.put_object(Bucket=bucket, Key=key, Body=b"something else", Metadata=lie)
    with pytest.raises(ImmutableObjectConflict, match="never overwritten"):
        store.put_bytes(bucket, key, new)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"something else"
    # The same object without a checksum but with the right bytes is recognised by hashing them.
    honest = _key("honest")
    s3.put_object(Bucket=bucket, Key=honest, Body=new)
    assert store.put_bytes(bucket, honest, new).created is False


def test_reads_check_the_bytes_against_the_stored_digest(s3, bucket, store, tmp_path: Path):
    key = _key("tampered")
    # Stored with a checksum of other bytes (as if the object changed under us): every read refuses it.
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=b"tampered bytes",
        Metadata={DIGEST_METADATA: hashlib.sha256(b"original bytes").hexdigest()},
    )
    with pytest.raises(ObjectIntegrityError, match="stored as"):
        store.get_bytes(bucket, key)
    target = tmp_path / "object"
    with pytest.raises(ObjectIntegrityError):
        store.download(bucket, key, target)
    assert not target.exists()
    good = store.put_bytes(bucket, _key("good"), b"original bytes")
    assert store.download(bucket, good.key, tmp_path / "good").read_bytes() == b"original bytes"


def test_a_prepared_store_makes_its_client_in_the_background_and_uses_it(bucket, store):
    store.prepare()
    store.prepare()  # idempotent: one client
    stored = store.put_bytes(bucket, _key("prepared"), b"made while the source was read")
    assert stored.created is True
    assert store.client.meta.endpoint_url == settings.s3_endpoint()


def test_a_store_that_cannot_make_a_client_fails_where_it_is_used_not_in_prepare(monkeypatch, bucket):
    store = ImmutableStore()
    monkeypatch.setattr(
        "botocore.session.Session.create_client",
        lambda *a, **k: (_ for _ in ()).throw(ValueError("no client")),
    )
    store.prepare()  # the failure stays on the background thread...
    with pytest.raises(ValueError, match="no client"):
        store.put_bytes(bucket, _key("never"), b"x")  # ...and is raised where the client is used

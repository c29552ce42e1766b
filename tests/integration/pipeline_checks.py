"""What "a rerun changed nothing" means, measured through the connections in force.

Shared by the end-to-end and backfill tests: bucket contents with their creation digests, the row
versions the ledger says were landed, and a fingerprint of every core table.
"""

from __future__ import annotations

import os


def bucket_digests() -> dict[str, str]:
    """Every object of the ingestion and processed buckets with the SHA-256 it was created with."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    client = S3Hook(aws_conn_id="aws_default").get_conn()
    digests = {}
    for variable in ("AIRFLOW_VAR_INGESTION_BUCKET", "AIRFLOW_VAR_PROCESSED_BUCKET"):
        bucket = os.environ[variable]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                head = client.head_object(Bucket=bucket, Key=obj["Key"])
                # Objects a partner dropped carry no sha256 of ours: their ETag says as much.
                digests[f"{bucket}/{obj['Key']}"] = head["Metadata"].get("sha256") or head["ETag"]
    return digests


def landed_versions(source: str = "totesys") -> set[tuple]:
    """Every table's latest landed row versions (the baseline object overlaid with later versions)."""
    from include.etlkit.control.ledger import Ledger
    from include.etlkit.control.store import ControlStore

    ledger = Ledger()
    tables = ControlStore().query(
        "SELECT DISTINCT table_name FROM etl.row_version_base WHERE source = %s "
        "UNION SELECT DISTINCT table_name FROM etl.row_version WHERE source = %s "
        "UNION SELECT DISTINCT table_name FROM etl.row_version_object WHERE source = %s",
        (source, source, source),
    )
    return {
        (table, row_key, row_hash)
        for (table,) in tables
        for row_key, row_hash in ledger.row_hashes(source, table).items()
    }


def warehouse_fingerprint() -> dict[str, tuple]:
    """Row count and an order-independent checksum of every core table."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id="warehouse")
    tables = [
        t
        for (t,) in hook.get_records(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'core' ORDER BY 1"
        )
    ]
    return {
        table: tuple(
            hook.get_first(
                f"SELECT count(*), md5(coalesce(string_agg(md5(t::text), '' ORDER BY md5(t::text)), '')) "
                f"FROM core.{table} AS t"
            )
        )
        for table in tables
    }


def snapshot() -> tuple[dict, set, dict]:
    return bucket_digests(), landed_versions(), warehouse_fingerprint()


def assert_nothing_changed_since(before: tuple[dict, set, dict]) -> None:
    objects, versions, warehouse = before
    after = bucket_digests()
    overwritten = sorted(key for key, digest in objects.items() if after.get(key) != digest)
    assert not overwritten, f"objects overwritten or deleted: {overwritten[:3]}"
    assert landed_versions() == versions, "a row version was landed that had not been landed before"
    assert warehouse_fingerprint() == warehouse, "the warehouse changed"

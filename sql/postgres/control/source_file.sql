-- File-drop sources (FTP, S3 prefixes): one row per version of a remote file the extract has seen.
-- A version is (source, remote_path, size, modified_at, etag): the UNIQUE constraint is what makes
-- "each file version lands once" hold even if two runs race, and a file re-uploaded with other content
-- (a new size, modification time or ETag) is a new version, landed again under its own content key.
--   FTP: remote_path is the path on the server, modified_at its MDTM time, etag NULL.
--   S3:  remote_path is s3://bucket/key, modified_at its LastModified, etag its ETag (unquoted).
-- etag is part of the identity because S3's LastModified has one-second resolution: two uploads of the
-- same key and size in one second would otherwise be one version, the second never landed. NULLS NOT
-- DISTINCT keeps FTP rows (etag NULL) unique exactly as before. version_id (S3 VersionId when the drop
-- bucket is versioned) is lineage, not identity: the listing does not carry it, and two uploads with
-- the same key, size, time and ETag carry the same bytes, so landing one of them loses nothing.
-- Rows that were skipped (still being written) or failed are retried by later runs and move to
-- 'landed'; a 'landed' row is never changed back. Applied idempotently after etl.sql.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS etl.source_file (
    source        text        NOT NULL,
    remote_path   text        NOT NULL,
    size          bigint      NOT NULL,
    -- The server's modification time (FTP MDTM, S3 LastModified), naive UTC like every source clock.
    modified_at   timestamp   NOT NULL,
    etag          text,
    version_id    text,
    sha256        text,
    status        text        NOT NULL
        CHECK (status IN ('landed', 'skipped_in_progress', 'failed')),
    landed_bucket text,
    landed_key    text,
    reason        text,
    run_id        text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    landed_at     timestamptz,
    CONSTRAINT source_file_version_key
        UNIQUE NULLS NOT DISTINCT (source, remote_path, size, modified_at, etag),
    CHECK (status <> 'landed' OR (sha256 IS NOT NULL AND landed_bucket IS NOT NULL AND landed_key IS NOT NULL))
);

-- Tables created before S3 drops: add the columns, and widen the identity to include etag.
ALTER TABLE etl.source_file ADD COLUMN IF NOT EXISTS etag text;
ALTER TABLE etl.source_file ADD COLUMN IF NOT EXISTS version_id text;
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'etl.source_file'::regclass AND conname = 'source_file_version_key'
    ) THEN
        ALTER TABLE etl.source_file
            DROP CONSTRAINT IF EXISTS source_file_source_remote_path_size_modified_at_key,
            ADD CONSTRAINT source_file_version_key
                UNIQUE NULLS NOT DISTINCT (source, remote_path, size, modified_at, etag);
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS source_file_not_landed_idx
    ON etl.source_file (source, updated_at) WHERE status <> 'landed';

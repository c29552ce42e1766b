-- File-drop sources (FTP and the like): one row per version of a remote file the extract has seen.
-- A version is (source, remote_path, size, modified_at): the UNIQUE constraint is what makes "each
-- file version lands once" hold even if two runs race, and a file re-uploaded with other content
-- (a new size or modification time) is a new version, landed again under its own content key.
-- Rows that were skipped (still being written) or failed are retried by later runs and move to
-- 'landed'; a 'landed' row is never changed back. Applied idempotently after etl.sql.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS etl.source_file (
    source        text        NOT NULL,
    remote_path   text        NOT NULL,
    size          bigint      NOT NULL,
    -- The server's modification time (FTP MDTM), naive UTC like every source clock in etl.*.
    modified_at   timestamp   NOT NULL,
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
    UNIQUE (source, remote_path, size, modified_at),
    CHECK (status <> 'landed' OR (sha256 IS NOT NULL AND landed_bucket IS NOT NULL AND landed_key IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS source_file_not_landed_idx
    ON etl.source_file (source, updated_at) WHERE status <> 'landed';

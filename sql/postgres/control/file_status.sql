-- Landed files validated against their dataset's schema: one row per landed object (bucket, key),
-- written by ValidateLandedFilesOperator (include/etlkit/files/operators.py) and moved to 'loaded'
-- by the load step once the valid rows' object is in the warehouse.
--   validated              every row valid; processed_key holds them
--   partially_quarantined  some or all rows quarantined (quarantine_key), the others in processed_key
--   rejected               the file as a whole: unreadable, or a required column missing; a copy of
--                          its bytes is under error_key (the original stays where it landed)
--   loaded                 the processed object was loaded into the warehouse
-- rows_loaded counts the valid rows (those the load takes), rows_rejected the quarantined rows or,
-- for a rejected file, all of them. A rerun of the validation rewrites its own row with the same
-- values (objects are content-addressed), and never touches a 'loaded' row.
-- Applied idempotently after etl.sql.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS etl.file_status (
    bucket           text        NOT NULL,
    key              text        NOT NULL,
    source           text        NOT NULL,
    dataset          text        NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('validated', 'partially_quarantined', 'rejected', 'loaded')),
    rows_read        bigint      NOT NULL CHECK (rows_read >= 0),
    rows_loaded      bigint      NOT NULL CHECK (rows_loaded >= 0),
    rows_rejected    bigint      NOT NULL CHECK (rows_rejected >= 0),
    reason           text,
    processed_bucket text,
    processed_key    text,
    quarantine_key   text,
    error_key        text,
    run_id           text        NOT NULL,
    received_at      timestamptz,
    validated_at     timestamptz NOT NULL DEFAULT now(),
    loaded_at        timestamptz,
    load_run_id      text,
    PRIMARY KEY (bucket, key),
    CHECK (rows_loaded + rows_rejected = rows_read),
    CHECK (status <> 'rejected' OR (rows_loaded = 0 AND reason IS NOT NULL)),
    CHECK (status <> 'partially_quarantined' OR (rows_rejected > 0 AND quarantine_key IS NOT NULL)),
    CHECK ((rows_loaded > 0) = (processed_key IS NOT NULL)),
    CHECK (status <> 'loaded' OR loaded_at IS NOT NULL)
);

CREATE INDEX IF NOT EXISTS file_status_dataset_idx ON etl.file_status (source, dataset, validated_at);
CREATE INDEX IF NOT EXISTS file_status_processed_idx ON etl.file_status (processed_key)
    WHERE processed_key IS NOT NULL;

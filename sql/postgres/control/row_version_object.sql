-- Later landings of a table extract (increments, reconciliations) whose row versions are not yet in
-- etl.row_version: one row per landed object, which carries every row's key, identity and cursor in
-- the named columns, as a baseline does (etl.row_version_base). Recording one row here instead of
-- upserting each landed row keeps an incremental run's ledger work constant. Ledger.fold_versions
-- folds them into etl.row_version oldest first (seq), one object per transaction, deleting its row
-- here in the same transaction, under a per-table advisory lock; Ledger.row_hashes (the
-- reconciliations) folds first, and so does an extract once more than a few objects wait.
CREATE TABLE IF NOT EXISTS etl.row_version_object (
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    source        text NOT NULL,
    table_name    text NOT NULL,
    bucket        text NOT NULL,
    key           text NOT NULL,
    key_column    text NOT NULL,
    hash_column   text NOT NULL,
    cursor_column text NOT NULL,
    landed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, key)
);
CREATE INDEX IF NOT EXISTS row_version_object_table_idx
    ON etl.row_version_object (source, table_name, seq);

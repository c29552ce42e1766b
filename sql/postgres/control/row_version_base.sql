-- A table's first landing (a full snapshot) is its row-version baseline: the landed Parquet object
-- already carries every row's key, identity and cursor, so they are read back from it
-- (Ledger.row_hashes) instead of being written again into etl.row_version one row at a time, which
-- cost more than the whole extract. Later landings (increments, reconciliations) wait as one row each
-- in etl.row_version_object until Ledger.fold_versions upserts their versions into etl.row_version;
-- Ledger.row_hashes folds them, then overlays etl.row_version on the baseline by the same rule.
CREATE TABLE IF NOT EXISTS etl.row_version_base (
    source        text NOT NULL,
    table_name    text NOT NULL,
    bucket        text NOT NULL,
    key           text NOT NULL,
    key_column    text NOT NULL,
    hash_column   text NOT NULL,
    cursor_column text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, table_name)
);

-- The current state of each source table a joined model reads (rows: current in the pipeline's
-- models): an immutable Parquet snapshot of the latest version of every key, a new object for every
-- change. The transform reads it instead of every object ever landed, and moves the pointer in the
-- transaction that marks the landed objects it merged as transformed. Applied after etl.sql.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS etl.current_state (
    source     text        NOT NULL,
    table_name text        NOT NULL,
    bucket     text        NOT NULL,
    key        text        NOT NULL,
    rows       bigint      NOT NULL,
    sha256     text        NOT NULL,
    run_id     text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, table_name)
);

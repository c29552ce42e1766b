-- Schema drift of extracted sources: the columns each table had when it was last extracted, and
-- every change seen since. Applied idempotently with the other control DDL (after etl.sql).
CREATE SCHEMA IF NOT EXISTS etl;

-- One row per source table: its columns ([{"name": ..., "type": ...}, ...] in source order) as
-- recorded by the last extract run that completed. The next run compares the live catalogue with it.
CREATE TABLE IF NOT EXISTS etl.source_schema (
    source      text        NOT NULL,
    table_name  text        NOT NULL,
    columns     jsonb       NOT NULL,
    run_id      text,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, table_name)
);

-- One row per change detected: a column added, dropped or retyped (types as the source spells them).
-- Written together with the new etl.source_schema row, so each change is reported once.
CREATE TABLE IF NOT EXISTS etl.schema_change (
    change_id   bigserial   PRIMARY KEY,
    source      text        NOT NULL,
    table_name  text        NOT NULL,
    change_kind text        NOT NULL CHECK (change_kind IN ('added', 'dropped', 'retyped')),
    column_name text        NOT NULL,
    old_type    text,
    new_type    text,
    run_id      text        NOT NULL,
    detected_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, table_name, run_id, change_kind, column_name)
);

CREATE INDEX IF NOT EXISTS schema_change_table ON etl.schema_change (source, table_name, detected_at);

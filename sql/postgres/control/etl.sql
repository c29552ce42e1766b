-- The control plane: which tasks may run (etl.audit) and what every task try did (etl.task_log).
-- Applied idempotently by `python -m include.etlkit.control init` (and by the local set-up).
CREATE SCHEMA IF NOT EXISTS etl;

-- One row per (dag_id, task_id). A task whose row is disabled does no work: it ends skipped and its
-- task_log row says why. New tasks are registered (enabled) by `control sync`, or by the audit gate
-- at their first run (updated_by 'etl gate: registered at first run'), so a deployed task is never
-- skipped for want of a row.
CREATE TABLE IF NOT EXISTS etl.audit (
    dag_id        text        NOT NULL,
    task_id       text        NOT NULL,
    enabled       boolean     NOT NULL DEFAULT true,
    reason        text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    updated_by    text        NOT NULL DEFAULT current_user,
    PRIMARY KEY (dag_id, task_id)
);

-- One row per try of every task of every DAG, written by the etl_control listener plugin:
-- inserted when the try starts running, completed when it ends (success, failed, up_for_retry,
-- skipped). A deferred task resumed in the same try updates the same row.
CREATE TABLE IF NOT EXISTS etl.task_log (
    log_id              bigserial   PRIMARY KEY,
    dag_id              text        NOT NULL,
    task_id             text        NOT NULL,
    run_id              text        NOT NULL,
    map_index           integer     NOT NULL DEFAULT -1,
    try_number          integer     NOT NULL,
    status              text        NOT NULL
        CHECK (status IN ('running', 'success', 'failed', 'up_for_retry', 'skipped')),
    operator            text,
    rows_in             bigint,
    rows_out            bigint,
    rows_rejected       bigint,
    started_at          timestamptz NOT NULL,
    ended_at            timestamptz,
    duration_seconds    numeric(12, 3),
    error               text,
    hostname            text,
    logical_date        timestamptz,
    data_interval_start timestamptz,
    data_interval_end   timestamptz,
    UNIQUE (dag_id, task_id, run_id, map_index, try_number)
);

CREATE INDEX IF NOT EXISTS task_log_started_at_idx ON etl.task_log (started_at DESC);
CREATE INDEX IF NOT EXISTS task_log_status_idx ON etl.task_log (status) WHERE status <> 'success';

-- ---------------------------------------------------------------------------------------------
-- The pipeline ledger: what was landed and processed, and how far each incremental extract got.
-- Downstream DAGs do "everything landed and not yet processed", so a manual run, a retry or a
-- rerun does the right thing whatever Asset event woke it.
-- ---------------------------------------------------------------------------------------------

-- Where an incremental extract of one table got to, on the source's clock (timestamp without time
-- zone). Moved forward only, and only in the transaction that records the objects landed for it.
CREATE TABLE IF NOT EXISTS etl.extract_state (
    source       text        NOT NULL,
    table_name   text        NOT NULL,
    landed_until timestamp   NOT NULL,
    last_run_id  text        NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, table_name)
);

-- Every object in the ingestion bucket, and when a transform took it.
CREATE TABLE IF NOT EXISTS etl.landed_object (
    bucket           text        NOT NULL,
    key              text        NOT NULL,
    source           text        NOT NULL,
    table_name       text        NOT NULL,
    mode             text        NOT NULL
        CHECK (mode IN ('full', 'incremental', 'reconcile', 'file', 'delete')),
    rows             bigint      NOT NULL,
    sha256           text        NOT NULL,
    window_start     timestamp,
    window_end       timestamp,
    run_id           text        NOT NULL,
    landed_at        timestamptz NOT NULL DEFAULT now(),
    transformed_at   timestamptz,
    transform_run_id text,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX IF NOT EXISTS landed_object_pending_idx
    ON etl.landed_object (source, table_name, landed_at) WHERE transformed_at IS NULL;

-- Every object in the processed bucket, and when a load took it.
CREATE TABLE IF NOT EXISTS etl.processed_object (
    bucket      text        NOT NULL,
    key         text        NOT NULL,
    source      text        NOT NULL,
    table_name  text        NOT NULL,
    rows        bigint      NOT NULL,
    sha256      text        NOT NULL,
    run_id      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    loaded_at   timestamptz,
    load_run_id text,
    PRIMARY KEY (bucket, key)
);
CREATE INDEX IF NOT EXISTS processed_object_pending_idx
    ON etl.processed_object (source, table_name, created_at) WHERE loaded_at IS NULL;
-- An object whose data the warehouse refused (a value a column cannot hold, a constraint) is set
-- aside with the reason instead of failing every later load: it would fail the same way each time.
ALTER TABLE etl.processed_object ADD COLUMN IF NOT EXISTS rejected_at timestamptz;
ALTER TABLE etl.processed_object ADD COLUMN IF NOT EXISTS reject_reason text;

-- The latest landed version of every source row (its hash as the source computes it): the daily
-- reconciliation compares the source's current hashes with these to find rows that changed
-- without moving last_updated.
CREATE TABLE IF NOT EXISTS etl.row_version (
    source       text      NOT NULL,
    table_name   text      NOT NULL,
    row_key      text      NOT NULL,
    row_hash     text      NOT NULL,
    last_updated timestamp,
    landed_key   text      NOT NULL,
    PRIMARY KEY (source, table_name, row_key)
);

-- Rows deleted in the source are landed as tombstones (mode 'delete', table '<table>.deleted'): the
-- reconciliation finds keys landed before and gone from the source now.
ALTER TABLE etl.landed_object DROP CONSTRAINT IF EXISTS landed_object_mode_check;
ALTER TABLE etl.landed_object ADD CONSTRAINT landed_object_mode_check
    CHECK (mode IN ('full', 'incremental', 'reconcile', 'file', 'delete'));

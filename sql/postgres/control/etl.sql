-- The control plane: which tasks may run (etl.audit) and what every task try did (etl.task_log).
-- Applied idempotently by `python -m include.etlkit.control init` (and by the local set-up).
CREATE SCHEMA IF NOT EXISTS etl;

-- One row per (dag_id, task_id). A task whose row is missing or disabled does no work: it ends
-- skipped and its task_log row says why. New tasks are registered (enabled) by `control sync`.
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

-- Customer de-duplication in `core`, Snowflake dialect of sql/postgres/retail/dedup.sql: which
-- customer each partner record is, and the records a person has to decide. Idempotent.
--
-- What differs from PostgreSQL, and why:
-- - Types: text -> VARCHAR, numeric(5, 2) -> NUMBER(5,2), timestamptz -> TIMESTAMP_LTZ,
--   jsonb -> VARIANT, GENERATED ALWAYS AS IDENTITY -> IDENTITY.
-- - No CHECK constraints (Snowflake has none): decision, resolution and the score range are what
--   include/etlkit/retail/customers.py writes, and a reviewer's edits are validated there (a
--   resolution that cannot be right is logged and skipped).
-- - No partial unique index: "at most one open review per partner record" is kept by the insert
--   itself (INSERT ... SELECT ... WHERE NOT EXISTS an open review), the same statement on both
--   warehouses.
CREATE SCHEMA IF NOT EXISTS core;

CREATE TABLE IF NOT EXISTS core.customer_xref (
    source              VARCHAR       NOT NULL,  -- the partner's name, or 'retail'
    source_customer_ref VARCHAR       NOT NULL,  -- the record's id in that source
    customer_id         NUMBER(19,0)  NOT NULL,
    decision            VARCHAR       NOT NULL,  -- 'match', 'new' or 'review'
    score               NUMBER(5,2),             -- the matcher's, 0-100
    matched_at          TIMESTAMP_LTZ NOT NULL DEFAULT CURRENT_TIMESTAMP(),
    PRIMARY KEY (source, source_customer_ref)
);

CREATE TABLE IF NOT EXISTS core.customer_match_review (
    review_id             NUMBER(19,0)  IDENTITY PRIMARY KEY,
    partner               VARCHAR       NOT NULL,
    partner_customer_ref  VARCHAR       NOT NULL,
    candidate_customer_id NUMBER(19,0),
    score                 NUMBER(5,2)   NOT NULL,
    explanation           VARCHAR       NOT NULL,
    record                VARIANT       NOT NULL,
    created_at            TIMESTAMP_LTZ NOT NULL DEFAULT CURRENT_TIMESTAMP(),
    resolved_at           TIMESTAMP_LTZ,
    resolution            VARCHAR,                -- 'match', 'new' or 'reject'
    resolved_customer_id  NUMBER(19,0)
);

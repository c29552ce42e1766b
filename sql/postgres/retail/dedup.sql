-- Customer de-duplication in `core` (database `warehouse`): which customer each partner record is,
-- and the records a person has to decide. Written from the decisions of
-- include.etlkit.dedup.CustomerMatcher (match / new / review). Idempotent: safe to re-apply.
CREATE SCHEMA IF NOT EXISTS core;

-- One row per record of a source (a partner, or the retail system itself) that has a customer id:
-- matched to a known customer, given a new one, or settled by a reviewer. Re-matching the same
-- record updates its row (upsert on the primary key), so a record always has exactly one customer.
CREATE TABLE IF NOT EXISTS core.customer_xref (
    source              text          NOT NULL,  -- the partner's name, or 'retail'
    source_customer_ref text          NOT NULL,  -- the record's id in that source
    customer_id         bigint        NOT NULL,
    -- 'match': found among known customers; 'new': a new customer; 'review': settled by a person.
    decision            text          NOT NULL CHECK (decision IN ('match', 'new', 'review')),
    score               numeric(5, 2) CHECK (score BETWEEN 0 AND 100),  -- the matcher's, 0-100
    matched_at          timestamptz   NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_customer_ref)
);
CREATE INDEX IF NOT EXISTS customer_xref_customer_idx ON core.customer_xref (customer_id);

-- Partner records the matcher could not settle: a best score between the review and match
-- thresholds, or two known customers nearly tied. A person resolves each one by setting
-- resolved_at and resolution (and resolved_customer_id when it is a known or newly given customer);
-- the pipeline then writes the outcome to core.customer_xref with decision 'review'.
CREATE TABLE IF NOT EXISTS core.customer_match_review (
    review_id             bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner               text          NOT NULL,
    partner_customer_ref  text          NOT NULL,
    candidate_customer_id bigint,                   -- the best-scoring known customer, if any
    score                 numeric(5, 2) NOT NULL CHECK (score BETWEEN 0 AND 100),
    explanation           text          NOT NULL,   -- per-field evidence, as the matcher wrote it
    record                jsonb         NOT NULL,   -- the partner record as received
    created_at            timestamptz   NOT NULL DEFAULT now(),
    resolved_at           timestamptz,
    -- 'match': it is candidate_customer_id or another known customer (resolved_customer_id);
    -- 'new': a new customer (resolved_customer_id once given); 'reject': not a usable record.
    resolution            text          CHECK (resolution IN ('match', 'new', 'reject')),
    resolved_customer_id  bigint,
    CHECK ((resolved_at IS NULL) = (resolution IS NULL)),
    CHECK (resolution IS DISTINCT FROM 'match' OR resolved_customer_id IS NOT NULL)
);
-- At most one open review per partner record, so re-running a load adds no second copy
-- (INSERT ... ON CONFLICT (partner, partner_customer_ref) WHERE resolved_at IS NULL DO NOTHING).
CREATE UNIQUE INDEX IF NOT EXISTS customer_match_review_open_idx
    ON core.customer_match_review (partner, partner_customer_ref) WHERE resolved_at IS NULL;

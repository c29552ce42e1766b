-- Freshness alerts: one row per feed that is stale now (nothing landed within its declared
-- freshness_hours) and was alerted about. A feed alerts once per staleness: the row stops the next
-- checks from alerting again, and goes when the feed lands again (so a later staleness alerts anew).
-- Applied idempotently after etl.sql.
CREATE SCHEMA IF NOT EXISTS etl;

CREATE TABLE IF NOT EXISTS etl.freshness_alert (
    source        text        NOT NULL,
    feed          text        NOT NULL,
    last_landed   timestamptz,             -- NULL: the feed never landed anything
    max_age_hours numeric     NOT NULL,
    alerted_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, feed)
);

-- The retail star schema in `core` (database `warehouse`): one sales fact and its dimensions.
-- Applied idempotently by retail_load's first task. Each table is the target of one feed of
-- include/config/retail.yaml, merged by key (landing -> core, see include/etlkit/load/postgres.py),
-- so rerunning a day adds nothing: a sale is one row per sale_id, a dimension one row per key.
-- Column names are the feeds' (as validated), plus `additional_column`: the JSON object of any
-- columns a file carried beyond its declared schema (kept, never dropped).
--
-- No foreign-key constraints: feeds arrive independently (a sales file may name a customer whose
-- row lands an hour later), so retail_load checks references after each load instead
-- (quality_checks), where a failure names the table and column.
CREATE SCHEMA IF NOT EXISTS core;

-- The conformed date dimension, shared with the totesys star schemas (same DDL as
-- sql/postgres/totesys/core.sql; whichever pipeline loads first creates it).
CREATE TABLE IF NOT EXISTS core.dim_date (
    date_id     date    PRIMARY KEY,
    year        int     NOT NULL,
    month       int     NOT NULL,
    day         int     NOT NULL,
    day_of_week int     NOT NULL,  -- ISO: Monday = 1 ... Sunday = 7
    day_name    varchar NOT NULL,
    month_name  varchar NOT NULL,
    quarter     int     NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_store (
    store_id          int          PRIMARY KEY,
    name              text         NOT NULL,
    address           text,
    city              text         NOT NULL,
    postcode          text,
    phone_number      text,
    opened_on         date,
    updated_at        timestamp    NOT NULL,
    additional_column text
);

-- Customers of the retail system (ids from MySQL) and customers first seen in partner files
-- (ids from core.partner_customer_id_seq, far above the retail range), told apart by
-- customer_source. A partner record matched to a known customer adds no row here: it is linked
-- in core.customer_xref instead.
CREATE TABLE IF NOT EXISTS core.dim_customer (
    customer_id       bigint       PRIMARY KEY,
    first_name        text         NOT NULL,
    last_name         text         NOT NULL,
    address           text,
    city              text,
    postcode          text,
    phone_number      text,
    email             text,
    updated_at        timestamp    NOT NULL,
    additional_column text,
    customer_source   text         NOT NULL DEFAULT 'retail'
);

CREATE TABLE IF NOT EXISTS core.dim_product (
    product_id        int           PRIMARY KEY,
    name              text          NOT NULL,
    category          text          NOT NULL,
    unit_price        numeric(10,2) NOT NULL,
    is_active         boolean       NOT NULL,
    updated_at        timestamp     NOT NULL,
    additional_column text
);

CREATE TABLE IF NOT EXISTS core.dim_sales_person (
    sales_person_id   int          PRIMARY KEY,
    store_id          int          NOT NULL,
    first_name        text         NOT NULL,
    last_name         text         NOT NULL,
    email             text,
    hired_on          date         NOT NULL,
    updated_at        timestamp    NOT NULL,
    additional_column text
);

-- Daily rates from the rates API: units of `currency` per 1 `base` (GBP).
CREATE TABLE IF NOT EXISTS core.exchange_rate (
    date              date          NOT NULL,
    base              text          NOT NULL,
    currency          text          NOT NULL,
    rate              numeric(18,8) NOT NULL CHECK (rate > 0),
    additional_column text,
    PRIMARY KEY (date, currency)
);

-- One row per sale line, in the currency it was paid in.
CREATE TABLE IF NOT EXISTS core.fact_sale (
    sale_id           bigint        PRIMARY KEY,
    sold_at           timestamp     NOT NULL,
    store_id          int           NOT NULL,
    sales_person_id   int,
    customer_id       bigint,
    product_id        int           NOT NULL,
    quantity          int           NOT NULL CHECK (quantity > 0),
    unit_price        numeric(10,2) NOT NULL CHECK (unit_price >= 0),
    currency          text          NOT NULL,
    additional_column text
);
CREATE INDEX IF NOT EXISTS fact_sale_sold_at_idx ON core.fact_sale (sold_at);

-- Customer records as partners sent them (latest per partner and reference).
CREATE TABLE IF NOT EXISTS core.partner_customer (
    partner              text      NOT NULL,
    partner_customer_ref text      NOT NULL,
    full_name            text      NOT NULL,
    address              text,
    postcode             text,
    phone_number         text,
    email                text,
    signed_up_on         date,
    additional_column    text,
    PRIMARY KEY (partner, partner_customer_ref)
);

-- New customers first seen in partner files get ids from here, well clear of the retail system's.
CREATE SEQUENCE IF NOT EXISTS core.partner_customer_id_seq START WITH 100000000;

-- ---------------------------------------------------------------------------------------------
-- Rows deleted in the MySQL source: `deleted_at` is when the daily retail_reconcile found them
-- gone (a tombstone, `<feed>.deleted`). The dimension row is kept and marked, as in totesys
-- (sql/postgres/totesys/core.sql); sales that name it keep their history. Added after the
-- columns above, only where missing: ALTER TABLE takes an exclusive lock even when the column
-- exists, and this script runs before every load.
-- ---------------------------------------------------------------------------------------------
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dim_store', 'dim_customer', 'dim_product', 'dim_sales_person'] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = 'core' AND table_name = t AND column_name = 'deleted_at') THEN
            EXECUTE format('ALTER TABLE core.%I ADD COLUMN deleted_at timestamp', t);
        END IF;
    END LOOP;
END
$$;

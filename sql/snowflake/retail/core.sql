-- The retail star schema in `core`, Snowflake dialect of sql/postgres/retail/core.sql: the same
-- tables, columns and keys. Idempotent. Each table is the target of one feed of
-- include/config/retail.yaml, merged by key (landing -> core, see include/etlkit/load/snowflake.py).
--
-- What differs from PostgreSQL, and why:
-- - Types: text -> VARCHAR, numeric(p,s) -> NUMBER(p,s), int -> NUMBER(10,0), bigint ->
--   NUMBER(19,0), timestamp -> TIMESTAMP_NTZ (wall-clock times, as the feeds send them).
-- - Snowflake declares PRIMARY KEY but does not enforce it (NOT NULL is enforced). Keys stay unique
--   because every load merges by key; retail_load's quality_checks verify it after each load.
-- - No CHECK constraints (Snowflake has none): quantity > 0, unit_price >= 0 and rate > 0 are
--   quality checks. No secondary indexes either: Snowflake prunes by micro-partition instead.
-- Unquoted names, so they resolve to the upper-case identifiers the loader quotes ("DIM_STORE").
CREATE SCHEMA IF NOT EXISTS core;

-- The conformed date dimension, shared with the totesys star schemas.
CREATE TABLE IF NOT EXISTS core.dim_date (
    date_id     DATE         PRIMARY KEY,
    year        NUMBER(10,0) NOT NULL,
    month       NUMBER(10,0) NOT NULL,
    day         NUMBER(10,0) NOT NULL,
    day_of_week NUMBER(10,0) NOT NULL,  -- ISO: Monday = 1 ... Sunday = 7
    day_name    VARCHAR      NOT NULL,
    month_name  VARCHAR      NOT NULL,
    quarter     NUMBER(10,0) NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_store (
    store_id          NUMBER(10,0)  PRIMARY KEY,
    name              VARCHAR       NOT NULL,
    address           VARCHAR,
    city              VARCHAR       NOT NULL,
    postcode          VARCHAR,
    phone_number      VARCHAR,
    opened_on         DATE,
    updated_at        TIMESTAMP_NTZ NOT NULL,
    additional_column VARCHAR
);

-- Customers of the retail system (ids from MySQL) and customers first seen in partner files
-- (ids from core.partner_customer_id_seq, far above the retail range), told apart by
-- customer_source.
CREATE TABLE IF NOT EXISTS core.dim_customer (
    customer_id       NUMBER(19,0)  PRIMARY KEY,
    first_name        VARCHAR       NOT NULL,
    last_name         VARCHAR       NOT NULL,
    address           VARCHAR,
    city              VARCHAR,
    postcode          VARCHAR,
    phone_number      VARCHAR,
    email             VARCHAR,
    updated_at        TIMESTAMP_NTZ NOT NULL,
    additional_column VARCHAR,
    customer_source   VARCHAR       NOT NULL DEFAULT 'retail'
);

CREATE TABLE IF NOT EXISTS core.dim_product (
    product_id        NUMBER(10,0)  PRIMARY KEY,
    name              VARCHAR       NOT NULL,
    category          VARCHAR       NOT NULL,
    unit_price        NUMBER(10,2)  NOT NULL,
    is_active         BOOLEAN       NOT NULL,
    updated_at        TIMESTAMP_NTZ NOT NULL,
    additional_column VARCHAR
);

CREATE TABLE IF NOT EXISTS core.dim_sales_person (
    sales_person_id   NUMBER(10,0)  PRIMARY KEY,
    store_id          NUMBER(10,0)  NOT NULL,
    first_name        VARCHAR       NOT NULL,
    last_name         VARCHAR       NOT NULL,
    email             VARCHAR,
    hired_on          DATE          NOT NULL,
    updated_at        TIMESTAMP_NTZ NOT NULL,
    additional_column VARCHAR
);

-- Daily rates from the rates API: units of `currency` per 1 `base` (GBP).
CREATE TABLE IF NOT EXISTS core.exchange_rate (
    date              DATE          NOT NULL,
    base              VARCHAR       NOT NULL,
    currency          VARCHAR       NOT NULL,
    rate              NUMBER(18,8)  NOT NULL,  -- > 0: a quality check, not a constraint
    additional_column VARCHAR,
    PRIMARY KEY (date, currency)
);

-- One row per sale line, in the currency it was paid in.
CREATE TABLE IF NOT EXISTS core.fact_sale (
    sale_id           NUMBER(19,0)  PRIMARY KEY,
    sold_at           TIMESTAMP_NTZ NOT NULL,
    store_id          NUMBER(10,0)  NOT NULL,
    sales_person_id   NUMBER(10,0),
    customer_id       NUMBER(19,0),
    product_id        NUMBER(10,0)  NOT NULL,
    quantity          NUMBER(10,0)  NOT NULL,  -- > 0: a quality check
    unit_price        NUMBER(10,2)  NOT NULL,  -- >= 0: a quality check
    currency          VARCHAR       NOT NULL,
    additional_column VARCHAR
);

-- Customer records as partners sent them (latest per partner and reference).
CREATE TABLE IF NOT EXISTS core.partner_customer (
    partner              VARCHAR NOT NULL,
    partner_customer_ref VARCHAR NOT NULL,
    full_name            VARCHAR NOT NULL,
    address              VARCHAR,
    postcode             VARCHAR,
    phone_number         VARCHAR,
    email                VARCHAR,
    signed_up_on         DATE,
    additional_column    VARCHAR,
    PRIMARY KEY (partner, partner_customer_ref)
);

-- New customers first seen in partner files get ids from here, well clear of the retail system's.
CREATE SEQUENCE IF NOT EXISTS core.partner_customer_id_seq START WITH 100000000;

-- Rows deleted in the MySQL source: `deleted_at` is when the daily retail_reconcile found them
-- gone; the dimension row is kept and marked (see sql/postgres/retail/core.sql). Added after the
-- columns above, so a new and an existing table end the same.
ALTER TABLE core.dim_store ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMP_NTZ;
ALTER TABLE core.dim_customer ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMP_NTZ;
ALTER TABLE core.dim_product ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMP_NTZ;
ALTER TABLE core.dim_sales_person ADD COLUMN IF NOT EXISTS deleted_at TIMESTAMP_NTZ;

-- The totesys warehouse in `core`, Snowflake dialect of sql/postgres/totesys/core.sql: the same
-- 11 tables of the three star schemas, the same columns, in the same order. Idempotent.
--
-- Dimensions hold the current state of each source entity (one row per source id, merged by key).
-- Facts keep history: each distinct version of a source row is one fact row, appended (MERGE ...
-- WHEN NOT MATCHED on (source id, row_hash), see include/etlkit/load/snowflake.py).
--
-- What differs from PostgreSQL, and why:
-- - Types: int -> NUMBER(10,0), varchar -> VARCHAR, numeric(10, 2) -> NUMBER(10,2). PostgreSQL's
--   unbounded numeric (item_unit_price, payment_amount) keeps the scale it is given, which the
--   model fixes at 2 (decimal128(p, 2)); Snowflake's NUMBER without precision is NUMBER(38,0) and
--   would round to units, so those are NUMBER(38,2). char(32) -> CHAR(32) (Snowflake's CHAR is a
--   VARCHAR: no padding, and an MD5 is 32 characters anyway).
-- - SERIAL -> NUMBER(10,0) IDENTITY: the record ids come from the table's own sequence, in the
--   order the MERGE inserts (so the ids themselves differ between warehouses; which version is
--   current never depends on them, except on a tie of last_updated, and versions of a row are
--   loaded in order, object by object, so the later version gets the higher id on both).
-- - Snowflake declares PRIMARY KEY and UNIQUE but does not enforce them, and has no enforced
--   foreign keys: the merges keep keys unique, and totesys_load's quality_checks verify keys and
--   foreign keys after every load. The REFERENCES of the PostgreSQL DDL are therefore left out.
-- Unquoted names, so they resolve to the upper-case identifiers the loader quotes ("DIM_STAFF").
CREATE SCHEMA IF NOT EXISTS core;

-- ---------------------------------------------------------------------------------------------
-- Dimensions
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS core.dim_date (
    date_id     DATE         PRIMARY KEY,
    year        NUMBER(10,0) NOT NULL,
    month       NUMBER(10,0) NOT NULL,
    day         NUMBER(10,0) NOT NULL,
    day_of_week NUMBER(10,0) NOT NULL,  -- ISO: Monday = 1 ... Sunday = 7
    day_name    VARCHAR      NOT NULL,
    month_name  VARCHAR      NOT NULL,
    quarter     NUMBER(10,0) NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_staff (
    staff_id        NUMBER(10,0) PRIMARY KEY,
    first_name      VARCHAR      NOT NULL,
    last_name       VARCHAR      NOT NULL,
    department_name VARCHAR      NOT NULL,
    location        VARCHAR      NOT NULL,
    email_address   VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_location (
    location_id    NUMBER(10,0) PRIMARY KEY,
    address_line_1 VARCHAR      NOT NULL,
    address_line_2 VARCHAR,
    district       VARCHAR,
    city           VARCHAR      NOT NULL,
    postal_code    VARCHAR      NOT NULL,
    country        VARCHAR      NOT NULL,
    phone          VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_design (
    design_id     NUMBER(10,0) PRIMARY KEY,
    design_name   VARCHAR      NOT NULL,
    file_location VARCHAR      NOT NULL,
    file_name     VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_currency (
    currency_id   NUMBER(10,0) PRIMARY KEY,
    currency_code VARCHAR      NOT NULL,
    currency_name VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_counterparty (
    counterparty_id                   NUMBER(10,0) PRIMARY KEY,
    counterparty_legal_name           VARCHAR      NOT NULL,
    counterparty_legal_address_line_1 VARCHAR      NOT NULL,
    counterparty_legal_address_line_2 VARCHAR,
    counterparty_legal_district       VARCHAR,
    counterparty_legal_city           VARCHAR      NOT NULL,
    counterparty_legal_postal_code    VARCHAR      NOT NULL,
    counterparty_legal_country        VARCHAR      NOT NULL,
    counterparty_legal_phone_number   VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_transaction (
    transaction_id    NUMBER(10,0) PRIMARY KEY,
    transaction_type  VARCHAR      NOT NULL,
    sales_order_id    NUMBER(10,0),
    purchase_order_id NUMBER(10,0),
    deleted_at TIMESTAMP_NTZ
);

CREATE TABLE IF NOT EXISTS core.dim_payment_type (
    payment_type_id   NUMBER(10,0) PRIMARY KEY,
    payment_type_name VARCHAR      NOT NULL,
    deleted_at TIMESTAMP_NTZ
);

-- ---------------------------------------------------------------------------------------------
-- Facts (why (source id, row_hash) is the version key, and deleted_at: see the PostgreSQL file)
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS core.fact_sales_order (
    sales_record_id             NUMBER(10,0) IDENTITY PRIMARY KEY,
    sales_order_id              NUMBER(10,0) NOT NULL,
    created_date                DATE         NOT NULL,
    created_time                TIME         NOT NULL,
    last_updated_date           DATE         NOT NULL,
    last_updated_time           TIME         NOT NULL,
    sales_staff_id              NUMBER(10,0) NOT NULL,
    counterparty_id             NUMBER(10,0) NOT NULL,
    units_sold                  NUMBER(10,0) NOT NULL,
    unit_price                  NUMBER(10,2) NOT NULL,
    currency_id                 NUMBER(10,0) NOT NULL,
    design_id                   NUMBER(10,0) NOT NULL,
    agreed_payment_date         DATE         NOT NULL,
    agreed_delivery_date        DATE         NOT NULL,
    agreed_delivery_location_id NUMBER(10,0) NOT NULL,
    row_hash                    CHAR(32)     NOT NULL,
    deleted_at                  TIMESTAMP_NTZ,
    CONSTRAINT fact_sales_order_version_key UNIQUE (sales_order_id, row_hash)
);

CREATE TABLE IF NOT EXISTS core.fact_purchase_order (
    purchase_record_id          NUMBER(10,0) IDENTITY PRIMARY KEY,
    purchase_order_id           NUMBER(10,0) NOT NULL,
    created_date                DATE         NOT NULL,
    created_time                TIME         NOT NULL,
    last_updated_date           DATE         NOT NULL,
    last_updated_time           TIME         NOT NULL,
    staff_id                    NUMBER(10,0) NOT NULL,
    counterparty_id             NUMBER(10,0) NOT NULL,
    item_code                   VARCHAR      NOT NULL,
    item_quantity               NUMBER(10,0) NOT NULL,
    item_unit_price             NUMBER(38,2) NOT NULL,
    currency_id                 NUMBER(10,0) NOT NULL,
    agreed_delivery_date        DATE         NOT NULL,
    agreed_payment_date         DATE         NOT NULL,
    agreed_delivery_location_id NUMBER(10,0) NOT NULL,
    row_hash                    CHAR(32)     NOT NULL,
    deleted_at                  TIMESTAMP_NTZ,
    CONSTRAINT fact_purchase_order_version_key UNIQUE (purchase_order_id, row_hash)
);

CREATE TABLE IF NOT EXISTS core.fact_payment (
    payment_record_id NUMBER(10,0) IDENTITY PRIMARY KEY,
    payment_id        NUMBER(10,0) NOT NULL,
    created_date      DATE         NOT NULL,
    created_time      TIME         NOT NULL,
    last_updated_date DATE         NOT NULL,
    last_updated_time TIME         NOT NULL,
    transaction_id    NUMBER(10,0) NOT NULL,
    counterparty_id   NUMBER(10,0) NOT NULL,
    payment_amount    NUMBER(38,2) NOT NULL,
    currency_id       NUMBER(10,0) NOT NULL,
    payment_type_id   NUMBER(10,0) NOT NULL,
    paid              BOOLEAN      NOT NULL,
    payment_date      DATE         NOT NULL,
    row_hash          CHAR(32)     NOT NULL,
    deleted_at                  TIMESTAMP_NTZ,
    CONSTRAINT fact_payment_version_key UNIQUE (payment_id, row_hash)
);

-- The totesys warehouse: three star schemas (sales, purchases, payments) sharing their dimensions,
-- in schema `core` of the `warehouse` database. Names and types as docs/erd/RevisedDW.png shows
-- them; column mapping from the source in docs/warehouse-model.md. Idempotent: safe to re-apply.
--
-- Dimensions hold the current state of each source entity (one row per source id, upserted).
-- Facts keep history: each distinct version of a source row is one fact row, appended.
CREATE SCHEMA IF NOT EXISTS core;

-- ---------------------------------------------------------------------------------------------
-- Dimensions
-- ---------------------------------------------------------------------------------------------

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

-- email_address: the ERD's type "email_address" is a diagram artefact; it is text, like the source.
-- location is NOT NULL here although department.location may be NULL in the source (none is).
CREATE TABLE IF NOT EXISTS core.dim_staff (
    staff_id        int     PRIMARY KEY,
    first_name      varchar NOT NULL,
    last_name       varchar NOT NULL,
    department_name varchar NOT NULL,
    location        varchar NOT NULL,
    email_address   varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_location (
    location_id    int     PRIMARY KEY,
    address_line_1 varchar NOT NULL,
    address_line_2 varchar,
    district       varchar,
    city           varchar NOT NULL,
    postal_code    varchar NOT NULL,
    country        varchar NOT NULL,
    phone          varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_design (
    design_id     int     PRIMARY KEY,
    design_name   varchar NOT NULL,
    file_location varchar NOT NULL,
    file_name     varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_currency (
    currency_id   int     PRIMARY KEY,
    currency_code varchar NOT NULL,
    currency_name varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_counterparty (
    counterparty_id                   int     PRIMARY KEY,
    counterparty_legal_name           varchar NOT NULL,
    counterparty_legal_address_line_1 varchar NOT NULL,
    counterparty_legal_address_line_2 varchar,
    counterparty_legal_district       varchar,
    counterparty_legal_city           varchar NOT NULL,
    counterparty_legal_postal_code    varchar NOT NULL,
    counterparty_legal_country        varchar NOT NULL,
    counterparty_legal_phone_number   varchar NOT NULL
);

CREATE TABLE IF NOT EXISTS core.dim_transaction (
    transaction_id    int     PRIMARY KEY,
    transaction_type  varchar NOT NULL,
    sales_order_id    int,
    purchase_order_id int
);

CREATE TABLE IF NOT EXISTS core.dim_payment_type (
    payment_type_id   int     PRIMARY KEY,
    payment_type_name varchar NOT NULL
);

-- ---------------------------------------------------------------------------------------------
-- Facts
--
-- Why UNIQUE (source id, row_hash) and not (source id, last_updated): the source changes some rows
-- without moving last_updated (21 sales orders, 20 purchase orders between the two shipped dumps),
-- so two different versions can share a last_updated. row_hash is the MD5 of the fact row's
-- business columns (computed by include.etlkit.totesys.model, last_updated included): a new
-- version of a row always gets a new fact row, and re-loading a version already loaded is a no-op
-- (INSERT ... ON CONFLICT DO NOTHING). The current version of a source row is its fact row with the
-- latest last_updated (date, time), then the largest record id: see the mart.current_* views.
-- ---------------------------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS core.fact_sales_order (
    sales_record_id             SERIAL         PRIMARY KEY,
    sales_order_id              int            NOT NULL,
    created_date                date           NOT NULL REFERENCES core.dim_date (date_id),
    created_time                time           NOT NULL,
    last_updated_date           date           NOT NULL REFERENCES core.dim_date (date_id),
    last_updated_time           time           NOT NULL,
    sales_staff_id              int            NOT NULL REFERENCES core.dim_staff (staff_id),
    counterparty_id             int            NOT NULL REFERENCES core.dim_counterparty (counterparty_id),
    units_sold                  int            NOT NULL,
    unit_price                  numeric(10, 2) NOT NULL,
    currency_id                 int            NOT NULL REFERENCES core.dim_currency (currency_id),
    design_id                   int            NOT NULL REFERENCES core.dim_design (design_id),
    agreed_payment_date         date           NOT NULL REFERENCES core.dim_date (date_id),
    agreed_delivery_date        date           NOT NULL REFERENCES core.dim_date (date_id),
    agreed_delivery_location_id int            NOT NULL REFERENCES core.dim_location (location_id),
    row_hash                    char(32)       NOT NULL,
    CONSTRAINT fact_sales_order_version_key UNIQUE (sales_order_id, row_hash)
);

CREATE TABLE IF NOT EXISTS core.fact_purchase_order (
    purchase_record_id          SERIAL   PRIMARY KEY,
    purchase_order_id           int      NOT NULL,
    created_date                date     NOT NULL REFERENCES core.dim_date (date_id),
    created_time                time     NOT NULL,
    last_updated_date           date     NOT NULL REFERENCES core.dim_date (date_id),
    last_updated_time           time     NOT NULL,
    staff_id                    int      NOT NULL REFERENCES core.dim_staff (staff_id),
    counterparty_id             int      NOT NULL REFERENCES core.dim_counterparty (counterparty_id),
    item_code                   varchar  NOT NULL,
    item_quantity               int      NOT NULL,
    item_unit_price             numeric  NOT NULL,
    currency_id                 int      NOT NULL REFERENCES core.dim_currency (currency_id),
    agreed_delivery_date        date     NOT NULL REFERENCES core.dim_date (date_id),
    agreed_payment_date         date     NOT NULL REFERENCES core.dim_date (date_id),
    agreed_delivery_location_id int      NOT NULL REFERENCES core.dim_location (location_id),
    row_hash                    char(32) NOT NULL,
    CONSTRAINT fact_purchase_order_version_key UNIQUE (purchase_order_id, row_hash)
);

CREATE TABLE IF NOT EXISTS core.fact_payment (
    payment_record_id SERIAL   PRIMARY KEY,
    payment_id        int      NOT NULL,
    created_date      date     NOT NULL REFERENCES core.dim_date (date_id),
    created_time      time     NOT NULL,
    last_updated_date date     NOT NULL REFERENCES core.dim_date (date_id),
    last_updated_time time     NOT NULL,
    transaction_id    int      NOT NULL REFERENCES core.dim_transaction (transaction_id),
    counterparty_id   int      NOT NULL REFERENCES core.dim_counterparty (counterparty_id),
    payment_amount    numeric  NOT NULL,
    currency_id       int      NOT NULL REFERENCES core.dim_currency (currency_id),
    payment_type_id   int      NOT NULL REFERENCES core.dim_payment_type (payment_type_id),
    paid              boolean  NOT NULL,
    payment_date      date     NOT NULL REFERENCES core.dim_date (date_id),
    row_hash          char(32) NOT NULL,
    CONSTRAINT fact_payment_version_key UNIQUE (payment_id, row_hash)
);

-- ---------------------------------------------------------------------------------------------
-- Rows deleted in the source: `deleted_at` is when the daily reconciliation found them gone. A
-- dimension row is kept and marked; a fact gets a deletion version (a copy of its current version
-- with deleted_at set). Marts leave deleted facts out. Added after the ERD's columns, to every table.
-- ---------------------------------------------------------------------------------------------
-- Added only where missing: ALTER TABLE takes an exclusive lock even when the column exists, and
-- this script runs before every load (readers of core would queue behind it, and it behind them).
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['dim_date', 'dim_staff', 'dim_location', 'dim_design', 'dim_currency',
                             'dim_counterparty', 'dim_transaction', 'dim_payment_type',
                             'fact_sales_order', 'fact_purchase_order', 'fact_payment'] LOOP
        IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_schema = 'core' AND table_name = t AND column_name = 'deleted_at') THEN
            EXECUTE format('ALTER TABLE core.%I ADD COLUMN deleted_at timestamp', t);
        END IF;
    END LOOP;
END
$$;

-- The totesys operational database (the "Terrific Totes" source), as the ERD docs/erd/TotesSysERD.png
-- and the Parquet dumps under infra/local/data/totesys/ show it. Applied idempotently by
-- `python -m infra.local.seed_totesys`, which then loads a snapshot.
--
-- Types follow the source, quirks included, because the pipeline must cope with them:
-- - created_at / last_updated are timestamp WITHOUT time zone (millisecond values in the dumps);
-- - agreed_delivery_date, agreed_payment_date and payment_date are TEXT dates 'YYYY-MM-DD'
--   (varchar in the ERD): the warehouse parses them, the source does not;
-- - amounts are numeric with 2 decimals (no value in the dumps has more): unit prices fit
--   numeric(10, 2) like the warehouse's unit_price, payments get more integer digits (max 981451.44).
-- NULL is allowed exactly where the source allows it (see the data README); NOT NULL elsewhere.
-- Tables are created in foreign-key order.

CREATE TABLE IF NOT EXISTS currency (
    currency_id   serial       PRIMARY KEY,
    currency_code varchar(3)   NOT NULL,
    created_at    timestamp    NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated  timestamp    NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS payment_type (
    payment_type_id   serial    PRIMARY KEY,
    payment_type_name varchar   NOT NULL,
    created_at        timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated      timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS department (
    department_id   serial    PRIMARY KEY,
    department_name varchar   NOT NULL,
    location        varchar,
    manager         varchar,
    created_at      timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated    timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS address (
    address_id     serial    PRIMARY KEY,
    address_line_1 varchar   NOT NULL,
    address_line_2 varchar,
    district       varchar,
    city           varchar   NOT NULL,
    -- Text, not a number: postcodes such as '08841' and '99305-7380' occur.
    postal_code    varchar   NOT NULL,
    country        varchar   NOT NULL,
    phone          varchar   NOT NULL,
    created_at     timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated   timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS design (
    design_id     serial    PRIMARY KEY,
    created_at    timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    design_name   varchar   NOT NULL,
    file_location varchar   NOT NULL,
    file_name     varchar   NOT NULL,
    last_updated  timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS staff (
    staff_id      serial    PRIMARY KEY,
    first_name    varchar   NOT NULL,
    last_name     varchar   NOT NULL,
    department_id int       NOT NULL REFERENCES department (department_id),
    email_address varchar   NOT NULL,
    created_at    timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated  timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS counterparty (
    counterparty_id         serial    PRIMARY KEY,
    counterparty_legal_name varchar   NOT NULL,
    legal_address_id        int       NOT NULL REFERENCES address (address_id),
    commercial_contact      varchar,
    delivery_contact        varchar,
    created_at              timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated            timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS sales_order (
    sales_order_id              serial         PRIMARY KEY,
    created_at                  timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated                timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    design_id                   int            NOT NULL REFERENCES design (design_id),
    staff_id                    int            NOT NULL REFERENCES staff (staff_id),
    counterparty_id             int            NOT NULL REFERENCES counterparty (counterparty_id),
    units_sold                  int            NOT NULL,
    unit_price                  numeric(10, 2) NOT NULL,
    currency_id                 int            NOT NULL REFERENCES currency (currency_id),
    agreed_delivery_date        varchar        NOT NULL,
    agreed_payment_date         varchar        NOT NULL,
    agreed_delivery_location_id int            NOT NULL REFERENCES address (address_id)
);

CREATE TABLE IF NOT EXISTS purchase_order (
    purchase_order_id           serial         PRIMARY KEY,
    created_at                  timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated                timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    staff_id                    int            NOT NULL REFERENCES staff (staff_id),
    counterparty_id             int            NOT NULL REFERENCES counterparty (counterparty_id),
    item_code                   varchar        NOT NULL,
    item_quantity               int            NOT NULL,
    item_unit_price             numeric(10, 2) NOT NULL,
    currency_id                 int            NOT NULL REFERENCES currency (currency_id),
    agreed_delivery_date        varchar        NOT NULL,
    agreed_payment_date         varchar        NOT NULL,
    agreed_delivery_location_id int            NOT NULL REFERENCES address (address_id)
);

-- "transaction" is a reserved word: always quoted. Exactly one of sales_order_id and
-- purchase_order_id is set (by transaction_type), hence both nullable.
CREATE TABLE IF NOT EXISTS "transaction" (
    transaction_id    serial    PRIMARY KEY,
    transaction_type  varchar   NOT NULL,
    sales_order_id    int       REFERENCES sales_order (sales_order_id),
    purchase_order_id int       REFERENCES purchase_order (purchase_order_id),
    created_at        timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated      timestamp NOT NULL DEFAULT LOCALTIMESTAMP(3)
);

CREATE TABLE IF NOT EXISTS payment (
    payment_id             serial         PRIMARY KEY,
    created_at             timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    last_updated           timestamp      NOT NULL DEFAULT LOCALTIMESTAMP(3),
    transaction_id         int            NOT NULL REFERENCES "transaction" (transaction_id),
    counterparty_id        int            NOT NULL REFERENCES counterparty (counterparty_id),
    payment_amount         numeric(14, 2) NOT NULL,
    currency_id            int            NOT NULL REFERENCES currency (currency_id),
    payment_type_id        int            NOT NULL REFERENCES payment_type (payment_type_id),
    paid                   boolean        NOT NULL,
    payment_date           varchar        NOT NULL,
    company_ac_number      int            NOT NULL,
    counterparty_ac_number int            NOT NULL
);

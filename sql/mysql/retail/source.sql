-- The retail source (MariaDB / MySQL): the reference tables of a retail business.
-- Applied idempotently by `python -m infra.local.seed_retail`. Every table carries `updated_at`,
-- the cursor column the extract windows on: millisecond precision, kept in UTC (the seeder and the
-- extract both set the session time zone to +00:00), moved by the server on every update.

CREATE TABLE IF NOT EXISTS store (
    store_id     int          NOT NULL,
    name         varchar(80)  NOT NULL,
    address      varchar(200) NULL,
    city         varchar(60)  NOT NULL,
    postcode     varchar(10)  NULL,
    phone_number varchar(20)  NULL,
    opened_on    date         NULL,
    updated_at   timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (store_id),
    KEY store_updated_at (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS customer (
    customer_id  int          NOT NULL,
    first_name   varchar(50)  NOT NULL,
    last_name    varchar(50)  NOT NULL,
    address      varchar(200) NULL,
    city         varchar(60)  NULL,
    postcode     varchar(10)  NULL,
    phone_number varchar(20)  NULL,
    email        varchar(120) NULL,
    updated_at   timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (customer_id),
    KEY customer_updated_at (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS product (
    product_id  int           NOT NULL,
    name        varchar(120)  NOT NULL,
    category    varchar(40)   NOT NULL,
    unit_price  decimal(10,2) NOT NULL,
    is_active   tinyint(1)    NOT NULL DEFAULT 1,
    updated_at  timestamp(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (product_id),
    KEY product_updated_at (updated_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS sales_team (
    sales_person_id int          NOT NULL,
    store_id        int          NOT NULL,
    first_name      varchar(50)  NOT NULL,
    last_name       varchar(50)  NOT NULL,
    email           varchar(120) NULL,
    hired_on        date         NOT NULL,
    updated_at      timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (sales_person_id),
    KEY sales_team_store (store_id),
    KEY sales_team_updated_at (updated_at),
    CONSTRAINT sales_team_store_fk FOREIGN KEY (store_id) REFERENCES store (store_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

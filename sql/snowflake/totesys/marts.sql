-- The totesys marts (schema `mart`), Snowflake dialect of sql/postgres/totesys/marts.sql: the same
-- views, columns and semantics, built on sql/snowflake/totesys/core.sql. Idempotent. Read the
-- PostgreSQL file for why each view is what it is; only what differs is explained here.
--
-- What differs from PostgreSQL, and why:
-- - Current versions: PostgreSQL's DISTINCT ON is Snowflake's QUALIFY ROW_NUMBER() OVER (...) = 1,
--   with the same order (latest last_updated, then the highest record id).
-- - Casts: numeric(18, 2) -> NUMBER(18,2); date_trunc(...)::date is the same.
-- - Days overdue: DATEDIFF('day', payment_date, CURRENT_DATE) for PostgreSQL's date subtraction.
-- - Ageing sums: SUM(IFF(bucket, amount, NULL)) for PostgreSQL's FILTER (WHERE ...).
-- - Comments: the PostgreSQL file's COMMENT ON VIEW texts are the views' documentation; Snowflake
--   would take them as COMMENT = '...' on each view, left out to keep one place that says it.
CREATE SCHEMA IF NOT EXISTS mart;

-- ---------------------------------------------------------------------------------------------
-- Current versions of the facts
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.current_sales_order AS
SELECT
    f.sales_record_id,
    f.sales_order_id,
    f.created_date,
    f.created_time,
    f.last_updated_date,
    f.last_updated_time,
    f.sales_staff_id,
    f.counterparty_id,
    f.units_sold,
    f.unit_price,
    f.currency_id,
    f.design_id,
    f.agreed_payment_date,
    f.agreed_delivery_date,
    f.agreed_delivery_location_id,
    f.row_hash,
    DATE_TRUNC('MONTH', f.created_date)::DATE AS sales_month,
    (f.units_sold * f.unit_price)::NUMBER(18, 2) AS order_value,
    COUNT(*) OVER (PARTITION BY f.sales_order_id) AS version_count
FROM core.fact_sales_order AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_sales_order AS d WHERE d.sales_order_id = f.sales_order_id AND d.deleted_at IS NOT NULL)
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY f.sales_order_id
    ORDER BY f.last_updated_date DESC, f.last_updated_time DESC, f.sales_record_id DESC
) = 1;

CREATE OR REPLACE VIEW mart.current_purchase_order AS
SELECT
    f.purchase_record_id,
    f.purchase_order_id,
    f.created_date,
    f.created_time,
    f.last_updated_date,
    f.last_updated_time,
    f.staff_id,
    f.counterparty_id,
    f.item_code,
    f.item_quantity,
    f.item_unit_price,
    f.currency_id,
    f.agreed_delivery_date,
    f.agreed_payment_date,
    f.agreed_delivery_location_id,
    f.row_hash,
    DATE_TRUNC('MONTH', f.created_date)::DATE AS purchase_month,
    (f.item_quantity * f.item_unit_price)::NUMBER(18, 2) AS order_value,
    COUNT(*) OVER (PARTITION BY f.purchase_order_id) AS version_count
FROM core.fact_purchase_order AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_purchase_order AS d WHERE d.purchase_order_id = f.purchase_order_id AND d.deleted_at IS NOT NULL)
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY f.purchase_order_id
    ORDER BY f.last_updated_date DESC, f.last_updated_time DESC, f.purchase_record_id DESC
) = 1;

CREATE OR REPLACE VIEW mart.current_payment AS
SELECT
    f.payment_record_id,
    f.payment_id,
    f.created_date,
    f.created_time,
    f.last_updated_date,
    f.last_updated_time,
    f.transaction_id,
    f.counterparty_id,
    f.payment_amount,
    f.currency_id,
    f.payment_type_id,
    f.paid,
    f.payment_date,
    f.row_hash,
    COUNT(*) OVER (PARTITION BY f.payment_id) AS version_count
FROM core.fact_payment AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_payment AS d WHERE d.payment_id = f.payment_id AND d.deleted_at IS NOT NULL)
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY f.payment_id
    ORDER BY f.last_updated_date DESC, f.last_updated_time DESC, f.payment_record_id DESC
) = 1;

-- ---------------------------------------------------------------------------------------------
-- Monthly sales: one row per (sales_month, dimension member, currency); never sum total_value
-- across currencies.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.sales_monthly_by_design AS
SELECT
    s.sales_month,
    s.design_id,
    d.design_name,
    s.currency_id,
    c.currency_code,
    SUM(s.units_sold) AS units_sold,
    SUM(s.order_value)::NUMBER(18, 2) AS total_value,
    COUNT(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_design AS d ON d.design_id = s.design_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY s.sales_month, s.design_id, d.design_name, s.currency_id, c.currency_code;

CREATE OR REPLACE VIEW mart.sales_monthly_by_counterparty AS
SELECT
    s.sales_month,
    s.counterparty_id,
    cp.counterparty_legal_name,
    cp.counterparty_legal_country,
    s.currency_id,
    c.currency_code,
    SUM(s.units_sold) AS units_sold,
    SUM(s.order_value)::NUMBER(18, 2) AS total_value,
    COUNT(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_counterparty AS cp ON cp.counterparty_id = s.counterparty_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY
    s.sales_month, s.counterparty_id, cp.counterparty_legal_name, cp.counterparty_legal_country,
    s.currency_id, c.currency_code;

CREATE OR REPLACE VIEW mart.sales_monthly_by_currency AS
SELECT
    s.sales_month,
    s.currency_id,
    c.currency_code,
    c.currency_name,
    SUM(s.units_sold) AS units_sold,
    SUM(s.order_value)::NUMBER(18, 2) AS total_value,
    COUNT(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY s.sales_month, s.currency_id, c.currency_code, c.currency_name;

CREATE OR REPLACE VIEW mart.sales_monthly_by_staff AS
SELECT
    s.sales_month,
    s.sales_staff_id AS staff_id,
    st.first_name,
    st.last_name,
    st.department_name,
    st.location,
    s.currency_id,
    c.currency_code,
    SUM(s.units_sold) AS units_sold,
    SUM(s.order_value)::NUMBER(18, 2) AS total_value,
    COUNT(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_staff AS st ON st.staff_id = s.sales_staff_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY
    s.sales_month, s.sales_staff_id, st.first_name, st.last_name, st.department_name, st.location,
    s.currency_id, c.currency_code;

-- ---------------------------------------------------------------------------------------------
-- Outstanding payments (the same buckets: 'not yet due', '0-30', '31-60', '61-90', '90+')
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.outstanding_payments AS
WITH outstanding AS (
    SELECT p.*, DATEDIFF('day', p.payment_date, CURRENT_DATE) AS days_overdue
    FROM mart.current_payment AS p
    WHERE NOT p.paid
)
SELECT
    o.payment_id,
    o.payment_record_id,
    o.transaction_id,
    t.transaction_type,
    pt.payment_type_name,
    o.counterparty_id,
    cp.counterparty_legal_name,
    o.currency_id,
    c.currency_code,
    o.payment_amount,
    o.payment_date,
    CURRENT_DATE AS as_of_date,
    o.days_overdue,
    CASE
        WHEN o.days_overdue < 0 THEN 'not yet due'
        WHEN o.days_overdue <= 30 THEN '0-30'
        WHEN o.days_overdue <= 60 THEN '31-60'
        WHEN o.days_overdue <= 90 THEN '61-90'
        ELSE '90+'
    END AS ageing_bucket,
    CASE
        WHEN o.days_overdue < 0 THEN 0
        WHEN o.days_overdue <= 30 THEN 1
        WHEN o.days_overdue <= 60 THEN 2
        WHEN o.days_overdue <= 90 THEN 3
        ELSE 4
    END AS ageing_bucket_order
FROM outstanding AS o
JOIN core.dim_transaction AS t ON t.transaction_id = o.transaction_id
JOIN core.dim_payment_type AS pt ON pt.payment_type_id = o.payment_type_id
JOIN core.dim_counterparty AS cp ON cp.counterparty_id = o.counterparty_id
JOIN core.dim_currency AS c ON c.currency_id = o.currency_id;

CREATE OR REPLACE VIEW mart.outstanding_payments_by_counterparty AS
SELECT
    o.counterparty_id,
    o.counterparty_legal_name,
    o.currency_id,
    o.currency_code,
    COUNT(*) AS payment_count,
    SUM(o.payment_amount) AS outstanding_amount,
    COALESCE(SUM(IFF(o.ageing_bucket_order = 0, o.payment_amount, NULL)), 0) AS amount_not_yet_due,
    COALESCE(SUM(IFF(o.ageing_bucket_order = 1, o.payment_amount, NULL)), 0) AS amount_0_30,
    COALESCE(SUM(IFF(o.ageing_bucket_order = 2, o.payment_amount, NULL)), 0) AS amount_31_60,
    COALESCE(SUM(IFF(o.ageing_bucket_order = 3, o.payment_amount, NULL)), 0) AS amount_61_90,
    COALESCE(SUM(IFF(o.ageing_bucket_order = 4, o.payment_amount, NULL)), 0) AS amount_90_plus,
    MIN(o.payment_date) AS oldest_payment_date,
    MAX(o.days_overdue) AS max_days_overdue,
    MIN(o.as_of_date) AS as_of_date
FROM mart.outstanding_payments AS o
GROUP BY o.counterparty_id, o.counterparty_legal_name, o.currency_id, o.currency_code;

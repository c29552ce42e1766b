-- The totesys marts: what BI tools read (schema `mart` of the `warehouse` database), built on the
-- star schemas of core.sql. Apply after core.sql. Idempotent: safe to re-apply after every deploy.
--
-- Plain views, not materialized views, because:
--   * they are always as fresh as `core`: no REFRESH step that every load DAG must remember to run
--     (and that would block readers, or need a unique index for CONCURRENTLY);
--   * the data is small (about 12k sales orders, 16k payments per snapshot): every mart below is a
--     sort plus a group-by that PostgreSQL answers in milliseconds;
--   * BI tools cache anyway (QuickSight SPICE, extracts), so the database is queried on refresh only.
-- If a mart ever gets slow, turn that one into a MATERIALIZED VIEW with a unique index and have the
-- load DAG run `REFRESH MATERIALIZED VIEW CONCURRENTLY` after it writes `core`; readers keep the
-- same name and columns.
--
-- CREATE OR REPLACE VIEW can only add columns at the end of a view. Renaming, retyping or removing
-- a column needs `DROP VIEW ... CASCADE` (then re-apply this file), which also drops any grants on
-- the views: re-grant afterwards (see sql/dashboard/README.md).
--
-- Money: amounts are in the currency of the order or payment. There is no exchange-rate table in
-- `core` yet, so no mart converts, and every mart that sums money keeps currency in its grain:
-- never add up total_value across currencies.
CREATE SCHEMA IF NOT EXISTS mart;

-- ---------------------------------------------------------------------------------------------
-- Current versions of the facts
--
-- The facts keep history: each distinct version of a source row is one fact row. Counting or
-- summing the fact tables directly would count an order once per version. These three views are
-- the one place that decides which version is current; every other mart reads them.
--
-- The current version is the latest by the source's own clock (last_updated_date, then
-- last_updated_time), and on a tie the one loaded last (highest record id). The source's clock comes
-- first so that an older version loaded late (a replayed or back-filled file) never hides a newer
-- one; the record id only breaks ties, which happen because the source changes some rows without
-- moving last_updated (see the comment on the facts in core.sql).
--
-- DISTINCT ON keeps the first row per id in the ORDER BY, i.e. the current version; PostgreSQL
-- plans it as one sort. (Snowflake's equivalent: QUALIFY row_number() OVER (...) = 1.) The window
-- count is evaluated before DISTINCT ON, so version_count is the number of versions of that id.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.current_sales_order AS
SELECT DISTINCT ON (f.sales_order_id)
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
    -- The month a sale belongs to: when the order was created, not when it is to be paid or
    -- delivered (agreed dates move when an order is amended; the creation date never does).
    date_trunc('month', f.created_date)::date AS sales_month,
    -- units_sold (int) * unit_price (numeric(10, 2)): exact, 2 decimals; 18 digits leave room for
    -- any realistic order.
    (f.units_sold * f.unit_price)::numeric(18, 2) AS order_value,
    count(*) OVER (PARTITION BY f.sales_order_id) AS version_count
FROM core.fact_sales_order AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_sales_order AS d WHERE d.sales_order_id = f.sales_order_id AND d.deleted_at IS NOT NULL)
ORDER BY f.sales_order_id, f.last_updated_date DESC, f.last_updated_time DESC, f.sales_record_id DESC;

COMMENT ON VIEW mart.current_sales_order IS
    'The current version of each sales order (latest last_updated, then highest sales_record_id), '
    'with its month (of created_date) and value (units_sold * unit_price).';

CREATE OR REPLACE VIEW mart.current_purchase_order AS
SELECT DISTINCT ON (f.purchase_order_id)
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
    date_trunc('month', f.created_date)::date AS purchase_month,
    (f.item_quantity * f.item_unit_price)::numeric(18, 2) AS order_value,
    count(*) OVER (PARTITION BY f.purchase_order_id) AS version_count
FROM core.fact_purchase_order AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_purchase_order AS d WHERE d.purchase_order_id = f.purchase_order_id AND d.deleted_at IS NOT NULL)
ORDER BY f.purchase_order_id, f.last_updated_date DESC, f.last_updated_time DESC, f.purchase_record_id DESC;

COMMENT ON VIEW mart.current_purchase_order IS
    'The current version of each purchase order (latest last_updated, then highest purchase_record_id), '
    'with its month (of created_date) and value (item_quantity * item_unit_price).';

CREATE OR REPLACE VIEW mart.current_payment AS
SELECT DISTINCT ON (f.payment_id)
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
    count(*) OVER (PARTITION BY f.payment_id) AS version_count
FROM core.fact_payment AS f
-- A row deleted in the source (it has a deletion version) is no longer current.
WHERE NOT EXISTS (SELECT 1 FROM core.fact_payment AS d WHERE d.payment_id = f.payment_id AND d.deleted_at IS NOT NULL)
ORDER BY f.payment_id, f.last_updated_date DESC, f.last_updated_time DESC, f.payment_record_id DESC;

COMMENT ON VIEW mart.current_payment IS
    'The current version of each payment (latest last_updated, then highest payment_record_id).';

-- ---------------------------------------------------------------------------------------------
-- Monthly sales
--
-- One row per (sales_month, dimension member, currency): each current sales order counts once, in
-- the month of its created_date. units_sold and order_count may be summed across currencies;
-- total_value may not (see the note on money at the top).
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.sales_monthly_by_design AS
SELECT
    s.sales_month,
    s.design_id,
    d.design_name,
    s.currency_id,
    c.currency_code,
    sum(s.units_sold) AS units_sold,
    sum(s.order_value)::numeric(18, 2) AS total_value,
    count(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_design AS d ON d.design_id = s.design_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY s.sales_month, s.design_id, d.design_name, s.currency_id, c.currency_code;

COMMENT ON VIEW mart.sales_monthly_by_design IS
    'Sales per month (of created_date), design and currency; each order once, at its current version.';

CREATE OR REPLACE VIEW mart.sales_monthly_by_counterparty AS
SELECT
    s.sales_month,
    s.counterparty_id,
    cp.counterparty_legal_name,
    cp.counterparty_legal_country,
    s.currency_id,
    c.currency_code,
    sum(s.units_sold) AS units_sold,
    sum(s.order_value)::numeric(18, 2) AS total_value,
    count(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_counterparty AS cp ON cp.counterparty_id = s.counterparty_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY
    s.sales_month, s.counterparty_id, cp.counterparty_legal_name, cp.counterparty_legal_country,
    s.currency_id, c.currency_code;

COMMENT ON VIEW mart.sales_monthly_by_counterparty IS
    'Sales per month (of created_date), counterparty and currency; each order once, at its current version.';

CREATE OR REPLACE VIEW mart.sales_monthly_by_currency AS
SELECT
    s.sales_month,
    s.currency_id,
    c.currency_code,
    c.currency_name,
    sum(s.units_sold) AS units_sold,
    sum(s.order_value)::numeric(18, 2) AS total_value,
    count(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY s.sales_month, s.currency_id, c.currency_code, c.currency_name;

COMMENT ON VIEW mart.sales_monthly_by_currency IS
    'Sales per month (of created_date) and currency; each order once, at its current version.';

-- Sales staff and their team (department). dim_staff holds the staff member's current department,
-- so a transfer moves their past sales too: acceptable for "who sells what", not for team targets.
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
    sum(s.units_sold) AS units_sold,
    sum(s.order_value)::numeric(18, 2) AS total_value,
    count(*) AS order_count
FROM mart.current_sales_order AS s
JOIN core.dim_staff AS st ON st.staff_id = s.sales_staff_id
JOIN core.dim_currency AS c ON c.currency_id = s.currency_id
GROUP BY
    s.sales_month, s.sales_staff_id, st.first_name, st.last_name, st.department_name, st.location,
    s.currency_id, c.currency_code;

COMMENT ON VIEW mart.sales_monthly_by_staff IS
    'Sales per month (of created_date), sales staff member (with current department) and currency.';

-- ---------------------------------------------------------------------------------------------
-- Outstanding payments
--
-- A payment is outstanding when its current version is not paid; a later version with paid = true
-- settles it. Both directions are here (what counterparties owe us and what we owe them):
-- payment_type_name and transaction_type tell which.
--
-- days_overdue = CURRENT_DATE - payment_date, in the database session's time zone, evaluated when
-- the view is queried (so a cached BI extract ages from its refresh date, shown as as_of_date).
-- Negative means not due yet (due in that many days). The ageing bucket is decided here, once:
-- 'not yet due' (< 0), '0-30', '31-60', '61-90', '90+' (91 days and over); ageing_bucket_order sorts
-- them in that order.
-- ---------------------------------------------------------------------------------------------

CREATE OR REPLACE VIEW mart.outstanding_payments AS
WITH outstanding AS (
    SELECT p.*, CURRENT_DATE - p.payment_date AS days_overdue
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

COMMENT ON VIEW mart.outstanding_payments IS
    'Payments whose current version is not paid, with days_overdue (CURRENT_DATE - payment_date, '
    'negative = not yet due) and ageing bucket.';
COMMENT ON COLUMN mart.outstanding_payments.days_overdue IS
    'CURRENT_DATE - payment_date at query time; negative = not yet due.';

CREATE OR REPLACE VIEW mart.outstanding_payments_by_counterparty AS
SELECT
    o.counterparty_id,
    o.counterparty_legal_name,
    o.currency_id,
    o.currency_code,
    count(*) AS payment_count,
    sum(o.payment_amount) AS outstanding_amount,
    coalesce(sum(o.payment_amount) FILTER (WHERE o.ageing_bucket_order = 0), 0) AS amount_not_yet_due,
    coalesce(sum(o.payment_amount) FILTER (WHERE o.ageing_bucket_order = 1), 0) AS amount_0_30,
    coalesce(sum(o.payment_amount) FILTER (WHERE o.ageing_bucket_order = 2), 0) AS amount_31_60,
    coalesce(sum(o.payment_amount) FILTER (WHERE o.ageing_bucket_order = 3), 0) AS amount_61_90,
    coalesce(sum(o.payment_amount) FILTER (WHERE o.ageing_bucket_order = 4), 0) AS amount_90_plus,
    min(o.payment_date) AS oldest_payment_date,
    max(o.days_overdue) AS max_days_overdue,
    min(o.as_of_date) AS as_of_date
FROM mart.outstanding_payments AS o
GROUP BY o.counterparty_id, o.counterparty_legal_name, o.currency_id, o.currency_code;

COMMENT ON VIEW mart.outstanding_payments_by_counterparty IS
    'Outstanding payments per counterparty and currency: count, amount, and amount per ageing bucket.';

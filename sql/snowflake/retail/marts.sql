-- The retail marts (schema `mart`), Snowflake dialect of sql/postgres/retail/marts.sql: the same
-- views, columns and semantics, built on sql/snowflake/retail/core.sql. Idempotent.
--
-- Plain views, as in PostgreSQL: always as fresh as `core`, no refresh step to forget.
--
-- Money. A sale is paid in one currency; amounts are never added across currencies. Every total
-- comes twice: in the currency of the sales (`currency` is part of each mart's grain) and in GBP,
-- converted with the rate of the sale date from the rates API (units of currency per 1 GBP). When
-- the API has no rate for that very day (a gap in its series), the latest earlier rate is used and
-- the sale's `rate_date` says which; a sale with no earlier rate at all has a NULL GBP amount, and
-- quality_checks in retail_load fails on it rather than hiding it.
--
-- What differs from PostgreSQL, and why:
-- - The rate lookup. PostgreSQL takes it from a LATERAL subquery (ORDER BY date DESC LIMIT 1);
--   Snowflake does not run correlated subqueries with LIMIT. Each rate instead gets the span of
--   sale dates it serves, [date, next rate's date), and a sale joins the one span holding its
--   date: exactly one rate per sale, with no fan-out over the rate history. (Snowflake's ASOF JOIN
--   would say the same; fakesnow, which the tests run on, cannot parse MATCH_CONDITION.)
-- - Names. PostgreSQL's concat_ws skips NULLs and Snowflake's returns NULL; first and last names
--   are NOT NULL, so only a sale whose sales person is unknown differs, and COALESCE gives it the
--   '' PostgreSQL gives.
CREATE SCHEMA IF NOT EXISTS mart;

-- Every sale line with its amount, in its currency and in GBP.
CREATE OR REPLACE VIEW mart.retail_sale AS
WITH rate_span AS (
    SELECT
        x.currency,
        x.date                                                          AS rate_date,
        LEAD(x.date) OVER (PARTITION BY x.currency ORDER BY x.date)     AS next_rate_date,
        x.rate
    FROM core.exchange_rate AS x
    WHERE x.currency <> 'GBP'
)
SELECT
    s.sale_id,
    s.sold_at,
    s.sold_at::DATE                                                     AS sale_date,
    s.store_id,
    s.sales_person_id,
    s.customer_id,
    s.product_id,
    s.quantity,
    s.unit_price,
    s.currency,
    (s.quantity * s.unit_price)::NUMBER(14, 2)                          AS amount,
    IFF(s.currency = 'GBP', s.sold_at::DATE, r.rate_date)               AS rate_date,
    IFF(s.currency = 'GBP', 1::NUMBER(18, 8), r.rate)                   AS gbp_rate,
    ROUND(s.quantity * s.unit_price / IFF(s.currency = 'GBP', 1::NUMBER(18, 8), r.rate), 2) AS amount_gbp
FROM core.fact_sale AS s
LEFT JOIN rate_span AS r
    ON  s.currency <> 'GBP'
    AND r.currency = s.currency
    AND r.rate_date <= s.sold_at::DATE
    AND (r.next_rate_date IS NULL OR s.sold_at::DATE < r.next_rate_date);

-- What each customer bought per month.
CREATE OR REPLACE VIEW mart.customer_monthly AS
SELECT
    c.customer_id,
    CONCAT_WS(' ', c.first_name, c.last_name)  AS full_name,
    c.address,
    c.phone_number,
    DATE_TRUNC('MONTH', s.sold_at)::DATE       AS sales_month,
    s.currency,
    SUM(s.amount)                              AS total_sales,
    SUM(s.amount_gbp)                          AS total_sales_gbp
FROM mart.retail_sale AS s
JOIN core.dim_customer AS c ON c.customer_id = s.customer_id
GROUP BY c.customer_id, c.first_name, c.last_name, c.address, c.phone_number,
         DATE_TRUNC('MONTH', s.sold_at), s.currency;

-- What each sales person sold per store and month, and their incentive: 1% of total_sales
-- (rounded to 2 places, in the sales' currency and in GBP) for the top seller of each store and
-- month, 0 for the others. "Top" compares GBP totals, so stores taking several currencies rank
-- fairly; sellers tied at the top all get it.
CREATE OR REPLACE VIEW mart.sales_team_monthly AS
WITH totals AS (
    SELECT
        s.store_id,
        s.sales_person_id,
        DATE_TRUNC('MONTH', s.sold_at)::DATE AS sales_month,
        s.currency,
        SUM(s.amount)                        AS total_sales,
        SUM(s.amount_gbp)                    AS total_sales_gbp
    FROM mart.retail_sale AS s
    WHERE s.sales_person_id IS NOT NULL
    GROUP BY s.store_id, s.sales_person_id, DATE_TRUNC('MONTH', s.sold_at), s.currency
),
seller AS (
    SELECT
        t.*,
        SUM(t.total_sales_gbp) OVER (PARTITION BY t.store_id, t.sales_month, t.sales_person_id) AS seller_gbp
    FROM totals AS t
),
ranked AS (
    SELECT
        s.*,
        RANK() OVER (PARTITION BY s.store_id, s.sales_month ORDER BY s.seller_gbp DESC NULLS LAST) AS seller_rank
    FROM seller AS s
)
SELECT
    r.store_id,
    r.sales_person_id,
    COALESCE(CONCAT_WS(' ', p.first_name, p.last_name), '')                      AS full_name,
    r.sales_month,
    r.currency,
    r.total_sales,
    r.total_sales_gbp,
    IFF(r.seller_rank = 1, ROUND(r.total_sales * 0.01, 2), 0)                     AS incentive,
    IFF(r.seller_rank = 1, ROUND(r.total_sales_gbp * 0.01, 2), 0)                 AS incentive_gbp
FROM ranked AS r
LEFT JOIN core.dim_sales_person AS p ON p.sales_person_id = r.sales_person_id;

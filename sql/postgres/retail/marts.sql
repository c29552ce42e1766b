-- The retail marts (schema `mart`), built on sql/postgres/retail/core.sql. Idempotent; applied by
-- retail_load after every load (and the dates every sale needs are added to core.dim_date first).
--
-- Plain views, for the reasons given at the top of sql/postgres/totesys/marts.sql: always as fresh
-- as `core`, no refresh step to forget, and small enough to aggregate on read.
--
-- Money. A sale is paid in one currency; amounts are never added across currencies. Every total
-- comes twice: in the currency of the sales (`currency` is part of each mart's grain) and in GBP,
-- converted with the rate of the sale date from the rates API (units of currency per 1 GBP). When
-- the API has no rate for that very day (a gap in its series), the latest earlier rate is used and
-- the sale's `rate_date` says which; a sale with no earlier rate at all has a NULL GBP amount, and
-- quality_checks in retail_load fails on it rather than hiding it.
CREATE SCHEMA IF NOT EXISTS mart;

-- Every sale line with its amount, in its currency and in GBP.
CREATE OR REPLACE VIEW mart.retail_sale AS
SELECT
    s.sale_id,
    s.sold_at,
    s.sold_at::date                              AS sale_date,
    s.store_id,
    s.sales_person_id,
    s.customer_id,
    s.product_id,
    s.quantity,
    s.unit_price,
    s.currency,
    (s.quantity * s.unit_price)::numeric(14, 2)  AS amount,
    r.rate_date,
    r.rate                                       AS gbp_rate,
    round(s.quantity * s.unit_price / r.rate, 2) AS amount_gbp
FROM core.fact_sale AS s
LEFT JOIN LATERAL (
    SELECT s.sold_at::date AS rate_date, 1::numeric AS rate
    WHERE s.currency = 'GBP'
    UNION ALL
    (
        SELECT x.date, x.rate
        FROM core.exchange_rate AS x
        WHERE s.currency <> 'GBP' AND x.currency = s.currency AND x.date <= s.sold_at::date
        ORDER BY x.date DESC
        LIMIT 1
    )
) AS r ON true;

-- What each customer bought per month.
CREATE OR REPLACE VIEW mart.customer_monthly AS
SELECT
    c.customer_id,
    concat_ws(' ', c.first_name, c.last_name)  AS full_name,
    c.address,
    c.phone_number,
    date_trunc('month', s.sold_at)::date       AS sales_month,
    s.currency,
    sum(s.amount)                              AS total_sales,
    sum(s.amount_gbp)                          AS total_sales_gbp
FROM mart.retail_sale AS s
JOIN core.dim_customer AS c ON c.customer_id = s.customer_id
GROUP BY c.customer_id, c.first_name, c.last_name, c.address, c.phone_number,
         date_trunc('month', s.sold_at), s.currency;

-- What each sales person sold per store and month, and their incentive: 1% of total_sales
-- (rounded to 2 places, in the sales' currency and in GBP) for the top seller of each store and
-- month, 0 for the others. "Top" compares GBP totals, so stores taking several currencies rank
-- fairly; sellers tied at the top all get it.
CREATE OR REPLACE VIEW mart.sales_team_monthly AS
WITH totals AS (
    SELECT
        s.store_id,
        s.sales_person_id,
        date_trunc('month', s.sold_at)::date AS sales_month,
        s.currency,
        sum(s.amount)                        AS total_sales,
        sum(s.amount_gbp)                    AS total_sales_gbp
    FROM mart.retail_sale AS s
    WHERE s.sales_person_id IS NOT NULL
    GROUP BY s.store_id, s.sales_person_id, date_trunc('month', s.sold_at), s.currency
),
seller AS (
    SELECT
        t.*,
        sum(t.total_sales_gbp) OVER (PARTITION BY t.store_id, t.sales_month, t.sales_person_id) AS seller_gbp
    FROM totals AS t
),
ranked AS (
    SELECT s.*, rank() OVER (PARTITION BY s.store_id, s.sales_month ORDER BY s.seller_gbp DESC NULLS LAST) AS seller_rank
    FROM seller AS s
)
SELECT
    r.store_id,
    r.sales_person_id,
    concat_ws(' ', p.first_name, p.last_name)                                   AS full_name,
    r.sales_month,
    r.currency,
    r.total_sales,
    r.total_sales_gbp,
    CASE WHEN r.seller_rank = 1 THEN round(r.total_sales * 0.01, 2) ELSE 0 END     AS incentive,
    CASE WHEN r.seller_rank = 1 THEN round(r.total_sales_gbp * 0.01, 2) ELSE 0 END AS incentive_gbp
FROM ranked AS r
LEFT JOIN core.dim_sales_person AS p ON p.sales_person_id = r.sales_person_id;

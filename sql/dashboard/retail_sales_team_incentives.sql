-- Retail sales-team incentives: per sales person and store, over all months, the sales in GBP, the
-- incentive earned (1% of a month's sales for the store's top seller of that month, in GBP) and
-- the number of months they were the store's top seller; the 10 largest incentives first.
-- GBP because a store takes several currencies and the mart converts each sale at its day's rate.
-- Chart: horizontal bars, bars = full_name (store), length = incentive_gbp.
SELECT
    store_id,
    sales_person_id,
    full_name,
    sum(total_sales_gbp) AS total_sales_gbp,
    sum(incentive_gbp) AS incentive_gbp,
    count(DISTINCT CASE WHEN incentive_gbp > 0 THEN sales_month END) AS months_top_seller
FROM mart.sales_team_monthly
GROUP BY store_id, sales_person_id, full_name
ORDER BY incentive_gbp DESC NULLS LAST, total_sales_gbp DESC NULLS LAST, sales_person_id
LIMIT 10

-- Revenue by currency and year: orders, units and revenue (in the currency itself) per calendar
-- year of the orders' created_date, with each currency's share of that year's orders (a share of
-- revenue would need exchange rates, which the warehouse does not have yet).
-- Chart: table or clustered bars, x = sales_year, group = currency_code.
SELECT
    extract(year FROM sales_month)::int AS sales_year,
    currency_code,
    currency_name,
    sum(order_count)::bigint AS order_count,
    sum(units_sold)::bigint AS units_sold,
    sum(total_value) AS total_value,
    round(
        100.0 * sum(order_count)
        / sum(sum(order_count)) OVER (PARTITION BY extract(year FROM sales_month)),
        1
    ) AS share_of_orders_pct
FROM mart.sales_monthly_by_currency
GROUP BY extract(year FROM sales_month), currency_code, currency_name
ORDER BY sales_year, currency_code

-- Monthly revenue trend: per month (of the sales orders' created_date) and currency, the number of
-- orders, units sold and revenue (total_value, in that currency), with the change in revenue from
-- the previous month that had sales in that currency. Each order counts once, at its latest version.
-- Chart: line chart, x = sales_month, y = total_value, colour = currency_code.
SELECT
    sales_month,
    currency_code,
    order_count,
    units_sold,
    total_value,
    total_value - lag(total_value) OVER (PARTITION BY currency_code ORDER BY sales_month)
        AS change_from_previous_month
FROM mart.sales_monthly_by_currency
ORDER BY sales_month, currency_code

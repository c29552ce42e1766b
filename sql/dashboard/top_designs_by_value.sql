-- Top 10 designs by sales value, in each currency, over all months: revenue is never added across
-- currencies (no exchange rates in the warehouse), so each currency has its own top 10.
-- To restrict the period, filter sales_month in the first CTE (or in the BI tool on a dataset
-- built from mart.sales_monthly_by_design).
-- Chart: horizontal bar chart per currency, bars = design_name, length = total_value.
WITH design_totals AS (
    SELECT
        currency_code,
        design_id,
        design_name,
        sum(order_count)::bigint AS order_count,
        sum(units_sold)::bigint AS units_sold,
        sum(total_value) AS total_value
    FROM mart.sales_monthly_by_design
    GROUP BY currency_code, design_id, design_name
),
ranked AS (
    SELECT
        design_totals.*,
        row_number() OVER (PARTITION BY currency_code ORDER BY total_value DESC, design_id) AS value_rank
    FROM design_totals
)
SELECT currency_code, value_rank, design_id, design_name, order_count, units_sold, total_value
FROM ranked
WHERE value_rank <= 10
ORDER BY currency_code, value_rank

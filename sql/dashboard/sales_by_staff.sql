-- Sales by staff member and team (department): orders, units and revenue per sales person over all
-- months, per currency, ranked within each currency by revenue. The team is the staff member's
-- current department (dim_staff keeps current values only).
-- Chart: table, or bars of total_value by staff_name coloured by department_name.
SELECT
    currency_code,
    rank() OVER (PARTITION BY currency_code ORDER BY sum(total_value) DESC) AS value_rank,
    staff_id,
    first_name || ' ' || last_name AS staff_name,
    department_name,
    location,
    sum(order_count)::bigint AS order_count,
    sum(units_sold)::bigint AS units_sold,
    sum(total_value) AS total_value
FROM mart.sales_monthly_by_staff
GROUP BY currency_code, staff_id, first_name, last_name, department_name, location
ORDER BY currency_code, value_rank, staff_id

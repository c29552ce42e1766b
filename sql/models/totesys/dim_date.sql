-- Every date the facts of this run refer to (each *_date column), once. Built from the facts rather
-- than a fixed calendar, so every fact date has its row and the dimension grows with the data.
-- Weekdays are ISO (Monday = 1); STRFTIME's names are English whatever the process locale.
WITH fact_dates AS (
    SELECT created_date AS date_id FROM fact_sales_order
    UNION SELECT last_updated_date FROM fact_sales_order
    UNION SELECT agreed_payment_date FROM fact_sales_order
    UNION SELECT agreed_delivery_date FROM fact_sales_order
    UNION SELECT created_date FROM fact_purchase_order
    UNION SELECT last_updated_date FROM fact_purchase_order
    UNION SELECT agreed_delivery_date FROM fact_purchase_order
    UNION SELECT agreed_payment_date FROM fact_purchase_order
    UNION SELECT created_date FROM fact_payment
    UNION SELECT last_updated_date FROM fact_payment
    UNION SELECT payment_date FROM fact_payment
)
SELECT DISTINCT
    date_id,
    EXTRACT(year FROM date_id) AS year,
    EXTRACT(month FROM date_id) AS month,
    EXTRACT(day FROM date_id) AS day,
    EXTRACT(isodow FROM date_id) AS day_of_week,
    STRFTIME(date_id, '%A') AS day_name,
    STRFTIME(date_id, '%B') AS month_name,
    EXTRACT(quarter FROM date_id) AS quarter
FROM fact_dates
WHERE date_id IS NOT NULL
ORDER BY date_id

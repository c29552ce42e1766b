-- Every date a retail sale falls on, in the conformed core.dim_date (the same columns and values
-- as the totesys model's dim_date: ISO weekdays, English names). Idempotent: existing dates stay.
INSERT INTO core.dim_date (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
SELECT
    d,
    extract(year FROM d)::int,
    extract(month FROM d)::int,
    extract(day FROM d)::int,
    extract(isodow FROM d)::int,
    (ARRAY['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'])[extract(isodow FROM d)::int],
    (ARRAY['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September',
           'October', 'November', 'December'])[extract(month FROM d)::int],
    extract(quarter FROM d)::int
FROM (SELECT DISTINCT sold_at::date AS d FROM core.fact_sale) AS sale_dates
ON CONFLICT (date_id) DO NOTHING;

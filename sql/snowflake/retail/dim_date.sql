-- Every date a retail sale falls on, in the conformed core.dim_date: Snowflake dialect of
-- sql/postgres/retail/dim_date.sql (the same columns and values as the totesys model's dim_date:
-- ISO weekdays, English names). Idempotent: existing dates stay.
--
-- What differs from PostgreSQL: DAYOFWEEKISO for extract(isodow), DECODE for the name arrays, and
-- MERGE ... WHEN NOT MATCHED for ON CONFLICT DO NOTHING (Snowflake enforces no primary key).
MERGE INTO core.dim_date AS t
USING (
    SELECT
        d                                    AS date_id,
        YEAR(d)                              AS year,
        MONTH(d)                             AS month,
        DAY(d)                               AS day,
        DAYOFWEEKISO(d)                      AS day_of_week,
        DECODE(DAYOFWEEKISO(d), 1, 'Monday', 2, 'Tuesday', 3, 'Wednesday', 4, 'Thursday',
               5, 'Friday', 6, 'Saturday', 7, 'Sunday') AS day_name,
        DECODE(MONTH(d), 1, 'January', 2, 'February', 3, 'March', 4, 'April', 5, 'May',
               6, 'June', 7, 'July', 8, 'August', 9, 'September', 10, 'October',
               11, 'November', 12, 'December') AS month_name,
        QUARTER(d)                           AS quarter
    FROM (SELECT DISTINCT sold_at::DATE AS d FROM core.fact_sale) AS sale_dates
) AS s
ON t.date_id = s.date_id
WHEN NOT MATCHED THEN INSERT (date_id, year, month, day, day_of_week, day_name, month_name, quarter)
    VALUES (s.date_id, s.year, s.month, s.day, s.day_of_week, s.day_name, s.month_name, s.quarter);

-- Sales orders. Each target column takes the type core.sql gives it: a timestamp becomes its date
-- or its time of day, a text date 'YYYY-MM-DD' a date, a price an exact decimal.
SELECT
    sales_order_id,
    created_at AS created_date,
    created_at AS created_time,
    last_updated AS last_updated_date,
    last_updated AS last_updated_time,
    staff_id AS sales_staff_id,
    counterparty_id,
    units_sold,
    unit_price,
    currency_id,
    design_id,
    agreed_payment_date,
    agreed_delivery_date,
    agreed_delivery_location_id,
    additional_column
FROM sales_order

-- Purchase orders: timestamps split into date + time, text dates parsed, price exact.
SELECT
    purchase_order_id,
    created_at AS created_date,
    created_at AS created_time,
    last_updated AS last_updated_date,
    last_updated AS last_updated_time,
    staff_id,
    counterparty_id,
    item_code,
    item_quantity,
    item_unit_price,
    currency_id,
    agreed_delivery_date,
    agreed_payment_date,
    agreed_delivery_location_id,
    additional_column
FROM purchase_order

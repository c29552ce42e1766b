-- Payments: timestamps split into date + time, payment_date parsed, amount exact. The account
-- numbers stay in the source: the warehouse model has no place for them.
SELECT
    payment_id,
    created_at AS created_date,
    created_at AS created_time,
    last_updated AS last_updated_date,
    last_updated AS last_updated_time,
    transaction_id,
    counterparty_id,
    payment_amount,
    currency_id,
    payment_type_id,
    paid,
    payment_date,
    additional_column
FROM payment

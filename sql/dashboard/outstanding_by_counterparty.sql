-- Who owes what: the 10 counterparties with the largest outstanding amount in each currency, with
-- the amount per ageing bucket (as of today) and the oldest unpaid payment date. Outstanding means
-- the payment's latest version is not paid; both directions (receipts and payments) are included.
-- Chart: table, conditional formatting on amount_90_plus.
WITH ranked AS (
    SELECT
        o.*,
        row_number() OVER (PARTITION BY currency_code ORDER BY outstanding_amount DESC, counterparty_id)
            AS amount_rank
    FROM mart.outstanding_payments_by_counterparty AS o
)
SELECT
    currency_code,
    amount_rank,
    counterparty_id,
    counterparty_legal_name,
    payment_count,
    outstanding_amount,
    amount_not_yet_due,
    amount_0_30,
    amount_31_60,
    amount_61_90,
    amount_90_plus,
    oldest_payment_date,
    max_days_overdue,
    as_of_date
FROM ranked
WHERE amount_rank <= 10
ORDER BY currency_code, amount_rank

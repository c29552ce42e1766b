-- Outstanding payments ageing: payments not yet paid (at their latest version), grouped into the
-- buckets 'not yet due', '0-30', '31-60', '61-90', '90+' days past payment_date as of today
-- (as_of_date), per payment type (receipts owed to us vs payments we owe) and currency.
-- Chart: stacked bars, x = ageing_bucket (sorted by ageing_bucket_order), y = outstanding_amount.
SELECT
    ageing_bucket_order,
    ageing_bucket,
    payment_type_name,
    currency_code,
    count(*) AS payment_count,
    sum(payment_amount) AS outstanding_amount,
    min(as_of_date) AS as_of_date
FROM mart.outstanding_payments
GROUP BY ageing_bucket_order, ageing_bucket, payment_type_name, currency_code
ORDER BY ageing_bucket_order, payment_type_name, currency_code

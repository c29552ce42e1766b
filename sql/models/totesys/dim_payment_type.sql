-- Payment types (SALES_RECEIPT, SALES_REFUND, PURCHASE_PAYMENT, PURCHASE_REFUND).
SELECT
    payment_type_id,
    payment_type_name,
    additional_column
FROM payment_type

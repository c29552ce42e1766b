-- Transactions: a SALE points to a sales order, a PURCHASE to a purchase order (the other is NULL).
SELECT
    transaction_id,
    transaction_type,
    sales_order_id,
    purchase_order_id,
    additional_column
FROM "transaction"

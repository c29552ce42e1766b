-- Counterparties with their legal address (counterparty.legal_address_id) spelt out.
SELECT
    counterparty.counterparty_id,
    counterparty.counterparty_legal_name,
    address.address_line_1 AS counterparty_legal_address_line_1,
    address.address_line_2 AS counterparty_legal_address_line_2,
    address.district AS counterparty_legal_district,
    address.city AS counterparty_legal_city,
    address.postal_code AS counterparty_legal_postal_code,
    address.country AS counterparty_legal_country,
    address.phone AS counterparty_legal_phone_number,
    counterparty.additional_column
FROM counterparty
LEFT JOIN address ON address.address_id = counterparty.legal_address_id
ORDER BY counterparty.counterparty_id

-- Addresses as delivery locations: location_id is address_id.
SELECT
    address_id AS location_id,
    address_line_1,
    address_line_2,
    district,
    city,
    postal_code,
    country,
    phone,
    additional_column
FROM address

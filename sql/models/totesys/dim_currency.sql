-- Currencies with their ISO 4217 name (the seed table iso_currency); a code it does not name fails
-- the model (UnknownCurrencyError): the name is never guessed.
SELECT
    currency.currency_id,
    currency.currency_code,
    iso_currency.currency_name,
    currency.additional_column
FROM currency
LEFT JOIN iso_currency ON iso_currency.currency_code = currency.currency_code
ORDER BY currency.currency_id

-- Designs, without their timestamps.
SELECT
    design_id,
    design_name,
    file_location,
    file_name,
    additional_column
FROM design

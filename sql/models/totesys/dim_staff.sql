-- Staff with their department's name and location (staff.department_id).
SELECT
    staff.staff_id,
    staff.first_name,
    staff.last_name,
    department.department_name,
    department.location,
    staff.email_address,
    staff.additional_column
FROM staff
LEFT JOIN department ON department.department_id = staff.department_id
ORDER BY staff.staff_id

-- auth.users.email leaves the raw lake only as its HMAC-SHA256 pseudonym: 64 lowercase hex digits.
-- Written for DuckDB, carried to the warehouse's dialect by sqlglot; {batch} is the table GX checks.
select email from {batch} where not regexp_matches(email, '^[0-9a-f]{64}$')

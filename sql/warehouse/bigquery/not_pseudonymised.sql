-- Values of a pseudonymised column that are not a keyed HMAC-SHA256 (64 lowercase hex digits).
SELECT COUNT(*) FROM {target} WHERE {column} IS NOT NULL AND NOT REGEXP_CONTAINS({column}, r'^[0-9a-f]{{64}}$');

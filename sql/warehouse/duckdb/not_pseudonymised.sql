-- Values of a pseudonymised column that are not a keyed HMAC-SHA256 (64 lowercase hex digits).
SELECT count(*) FROM {target} WHERE {column} IS NOT NULL AND NOT regexp_full_match({column}, '[0-9a-f]{{64}}');

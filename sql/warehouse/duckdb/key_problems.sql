-- Primary-key check: keys held by more than one row, and rows with a null key column.
SELECT
    (SELECT count(*) FROM (SELECT {key_columns} FROM {target} GROUP BY ALL HAVING count(*) > 1)) AS duplicate_keys,
    (SELECT count(*) FROM {target} WHERE {any_key_null}) AS null_keys,
    (SELECT list(k) FROM (SELECT CAST(({key_columns}) AS VARCHAR) AS k FROM {target}
                          GROUP BY ALL HAVING count(*) > 1 LIMIT 5)) AS duplicate_samples;

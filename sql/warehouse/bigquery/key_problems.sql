-- Primary-key check: keys held by more than one row, and rows with a null key column.
SELECT
    (SELECT COUNT(*) FROM (SELECT {key_columns} FROM {target} GROUP BY {key_columns} HAVING COUNT(*) > 1))
        AS duplicate_keys,
    (SELECT COUNT(*) FROM {target} WHERE {any_key_null}) AS null_keys,
    ARRAY(SELECT FORMAT('%T', ({key_columns})) FROM {target} GROUP BY {key_columns} HAVING COUNT(*) > 1
          LIMIT 5) AS duplicate_samples;

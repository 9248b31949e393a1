SELECT state_version, fingerprint, bq_schema, mode, row_count, loaded_at
FROM {loads}
WHERE table_name = @table_name;

-- One row per table: the load just done replaces the previous record.
MERGE {loads} AS l
USING (SELECT @table_name AS table_name) AS s
ON l.table_name = s.table_name
WHEN MATCHED THEN UPDATE SET
    state_version = @state_version, fingerprint = @fingerprint, bq_schema = @bq_schema, mode = @mode,
    row_count = @row_count, loaded_at = CURRENT_TIMESTAMP()
WHEN NOT MATCHED THEN INSERT (table_name, state_version, fingerprint, bq_schema, mode, row_count, loaded_at)
    VALUES (@table_name, @state_version, @fingerprint, @bq_schema, @mode, @row_count, CURRENT_TIMESTAMP());

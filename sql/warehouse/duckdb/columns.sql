SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = $schema_name AND table_name = $table_name
ORDER BY ordinal_position;

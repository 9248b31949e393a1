SELECT state_version, fingerprint, mode, row_count, loaded_at
FROM _lakehouse.loads
WHERE table_name = $table_name;

INSERT OR REPLACE INTO _lakehouse.loads
SELECT $table_name, $state_version, $fingerprint, $mode, (SELECT count(*) FROM {target}), now();

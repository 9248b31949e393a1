-- Incremental load: the staged rows of the changed clusters (upserts) and the changed keys that are
-- gone (deletes, _cdc_deleted) go into the target in one statement. Guards:
--   * a staged batch applies only if its state version is newer than the one the target holds (a
--     replayed or older staging table is empty here, so it cannot resurrect or overwrite rows);
--   * per row, the source position (_cdc_lsn) never goes back;
--   * the partition range of the changed rows (then and now) keeps the MERGE in those partitions.
MERGE {target} AS t
USING (
    SELECT * FROM {staging}
    WHERE @state_version > (SELECT COALESCE(MAX(state_version), -1) FROM {loads} WHERE table_name = @table_name)
) AS s
ON {key_match}{partition_filter}
WHEN MATCHED AND s._cdc_deleted
     AND COALESCE(s._cdc_lsn, -1) >= COALESCE(t._cdc_lsn, -1) THEN
    DELETE
WHEN MATCHED AND NOT s._cdc_deleted
     AND COALESCE(s._cdc_lsn, -1) >= COALESCE(t._cdc_lsn, -1) THEN
    UPDATE SET {update_set}
WHEN NOT MATCHED BY TARGET AND NOT s._cdc_deleted THEN
    INSERT ({columns}) VALUES ({source_columns});

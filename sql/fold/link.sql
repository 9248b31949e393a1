-- The c half of a primary-key change (its segment's first row) takes, for columns with no value
-- in its segment yet, the old key's value before the d with the same (lsn, txId). Repeated until
-- nothing changes: chains of key changes resolve one link per round.
UPDATE fold_rows SET {take}
FROM (SELECT __lsn AS d_lsn, coalesce(__tx_id, -1) AS d_tx, {offer}
      FROM fold_rows
      WHERE __op = 'd' AND __lsn IS NOT NULL
      QUALIFY row_number() OVER (PARTITION BY __lsn, coalesce(__tx_id, -1) ORDER BY __kind, __kafka_partition DESC,
                                 __file_start_offset DESC, __row_index DESC) = 1) AS d
WHERE fold_rows.__seg_link_lsn = d.d_lsn AND fold_rows.__seg_link_tx = d.d_tx AND ({gains});

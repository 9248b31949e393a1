-- how many rows a round of sql/fold/link.sql would still give a value (0: stop)
SELECT count(*) AS pending
FROM fold_rows
JOIN (SELECT __lsn AS d_lsn, coalesce(__tx_id, -1) AS d_tx, {offer}
      FROM fold_rows
      WHERE __op = 'd' AND __lsn IS NOT NULL
      QUALIFY row_number() OVER (PARTITION BY __lsn, coalesce(__tx_id, -1) ORDER BY __kind, __kafka_partition DESC,
                                 __file_start_offset DESC, __row_index DESC) = 1) AS d
  ON fold_rows.__seg_link_lsn = d.d_lsn AND fold_rows.__seg_link_tx = d.d_tx
WHERE {gains};

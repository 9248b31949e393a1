-- Each key's newest row (and, with keep_images, the pre-delete image of every delete a later
-- event superseded: the c half of a key change in a lagging partition may still need it).
-- Placeholders still unresolved where the segment starts with a possible c half stay pending.
CREATE OR REPLACE TEMP VIEW fold_result AS
SELECT __op, __op = 'd' AS __deleted, NOT __last AS __image, __kafka_partition, __file_start_offset,
       __row_index, __lsn, __tx_id, __snapshot, __commit_ts, __source_object,
       __running AS __stream_lsn, __pending AS __toast_pending,
       CASE WHEN __pending IS NOT NULL THEN __seg_link_lsn END AS __pair_lsn,
       CASE WHEN __pending IS NOT NULL THEN __seg_link_tx END AS __pair_tx,
       __unresolved, {resolved}
FROM (SELECT *,
             CASE WHEN __op <> 'd' AND __seg_link_lsn IS NOT NULL THEN nullif(list_filter([{pending}], lambda x: x IS NOT NULL), []) END AS __pending,
             CASE WHEN __op <> 'd' AND __seg_link_lsn IS NULL THEN {unresolved} ELSE 0 END AS __unresolved
      FROM fold_rows)
WHERE __kind <> 2 AND (__last OR ({keep_images} AND __op = 'd'));

-- Each key's newest row (and, with keep_images, the pre-delete image of every delete a later
-- event superseded: the c half of a key change in a lagging partition may still need it).
-- Placeholders still unresolved where the segment starts with a possible c half stay pending
-- (a flag per column; the driver lists them in __toast_pending), with the link's coordinates.
CREATE OR REPLACE TEMP VIEW fold_result AS
SELECT __rid, {key}, __op = 'd' AS __deleted, NOT __last AS __image, __running AS __stream_lsn,
       __seg_link_lsn AS __pair_lsn, __seg_link_tx AS __pair_tx,
       CASE WHEN __op <> 'd' AND __seg_link_lsn IS NULL THEN {unresolved} ELSE 0 END AS __unresolved,
       {pending}, {sources}
FROM fold_rows
WHERE __kind <> 2 AND (__last OR ({keep_images} AND __op = 'd'));

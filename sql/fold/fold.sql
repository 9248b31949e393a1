-- The fold as set-based SQL (docs/fold-sql.md): change events on top of the state rows of the
-- keys they touch give each key's state after them. Same rules as lakehouse.state.fold (the
-- reference model the property tests compare this with); written in DuckDB's dialect, carried
-- to BigQuery by sqlglot (lakehouse.state.sqlfold).
--
-- Input: fold_skeleton, the narrow columns of every row taking part (events, kind 0; the state
-- rows of the keys they touch, kind 1; state tombstones and images of other keys that may be the
-- d half of a key change in the events, kind 2): key, Kafka position, change coordinates, __rid
-- (the row's place in the wide table lakehouse.state.sqlfold gathers values from), __toast (the
-- columns holding Debezium's unchanged-TOAST placeholder; a state row's still pending ones),
-- __image_hash (identity of lsn-less snapshot reads), __link_lsn/__link_tx (the d half a row can
-- pair with: a c event's own coordinates, a pending state row's recorded ones). And
-- fold_truncates: every truncate known. Values never enter the SQL: each column's result is the
-- __rid of the row whose value it takes. __toast holds column numbers (the n of __src_n).

-- snapshot reads, truncates and lsn-less events repeat with one identity: the first copy is the
-- original (streamed changes are left to the LSN rule below, which also sees earlier batches)
CREATE OR REPLACE TEMP VIEW fold_identified AS
SELECT *,
       __kind = 0 AND (__op IN ('r', 't') OR __lsn IS NULL)
       AND row_number() OVER (
           PARTITION BY __kind, {key}, __op, __lsn, __tx_id, __snapshot, __image_hash
           ORDER BY __kafka_partition, __file_start_offset, __row_index) > 1 AS __dup
FROM fold_skeleton;

-- truncates first seen here (one re-emitted carries the LSN of one already known)
CREATE OR REPLACE TEMP VIEW fold_new_truncates AS
SELECT __kafka_partition AS kafka_partition, __file_start_offset AS file_start_offset,
       __row_index AS row_index, __lsn AS lsn, __commit_us AS commit_us
FROM fold_identified
WHERE __op = 't' AND __kind = 0 AND NOT __dup
  AND (__lsn IS NULL OR __lsn NOT IN (SELECT lsn FROM fold_truncates WHERE lsn IS NOT NULL));

-- TRUNCATE holds an ACCESS EXCLUSIVE lock: every change is below its LSN or after its commit.
-- Rows without an LSN compare by position in the truncate's partition, else by commit time.
CREATE OR REPLACE TEMP VIEW fold_alive AS
SELECT *
FROM fold_identified AS e
WHERE NOT __dup AND __op <> 't'
  AND NOT EXISTS (
      SELECT 1
      FROM (SELECT * FROM fold_truncates UNION ALL SELECT * FROM fold_new_truncates) AS t
      WHERE (t.lsn IS NOT NULL AND e.__lsn IS NOT NULL AND e.__lsn < t.lsn)
         OR ((t.lsn IS NULL OR e.__lsn IS NULL)
             AND ((e.__kafka_partition = t.kafka_partition
                   AND (e.__file_start_offset < t.file_start_offset
                        OR (e.__file_start_offset = t.file_start_offset AND e.__row_index < t.row_index)))
                  OR (e.__kafka_partition <> t.kafka_partition AND e.__commit_us < t.commit_us))));

-- per key in Kafka order (a state row first at an equal position: the same object applied
-- again). PostgreSQL serializes one row's changes, so a streamed change whose LSN is not above
-- every earlier streamed change of its key (the state's __stream_lsn included) is a replay.
CREATE OR REPLACE TEMP VIEW fold_ordered AS
SELECT *,
       row_number() OVER by_key AS __rank,
       max(__v) OVER (by_key ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS __before,
       max(__v) OVER (by_key ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS __running
FROM (SELECT *,
             CASE WHEN __kind = 0 AND __lsn IS NOT NULL AND __op IN ('c', 'u', 'd') THEN __lsn
                  WHEN __kind = 1 THEN __stream_lsn END AS __v
      FROM fold_alive)
WINDOW by_key AS (PARTITION BY __kind = 2, {key}
                  ORDER BY __kafka_partition, __file_start_offset, __row_index, __kind DESC);

-- a delete closes its key's segment; a placeholder takes the newest real value of its segment
CREATE OR REPLACE TEMP VIEW fold_segmented AS
SELECT *,
       coalesce(sum(CASE WHEN __op = 'd' THEN 1 ELSE 0 END) OVER (
           by_key ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS __seg,
       row_number() OVER (PARTITION BY __kind = 2, {key}
                          ORDER BY __kafka_partition DESC, __file_start_offset DESC, __row_index DESC,
                                   __kind ASC) = 1 AS __last
FROM fold_ordered
WHERE NOT (__kind = 0 AND __v IS NOT NULL AND __before IS NOT NULL AND __lsn <= __before)
WINDOW by_key AS (PARTITION BY __kind = 2, {key}
                  ORDER BY __kafka_partition, __file_start_offset, __row_index, __kind DESC);

-- each column's source: the row with the newest real value in the segment up to the row (a
-- delete's: before it); the link: the (lsn, txId) of the segment's first row when it can be a key
-- change's c half
CREATE OR REPLACE TEMP TABLE fold_rows AS
SELECT *,
       first_value(__link_lsn) OVER by_segment AS __seg_link_lsn,
       first_value(__link_tx) OVER by_segment AS __seg_link_tx,
       {resolve}
FROM fold_segmented
WINDOW by_segment AS (PARTITION BY __kind = 2, {key}, __seg
                      ORDER BY __kafka_partition, __file_start_offset, __row_index, __kind DESC);

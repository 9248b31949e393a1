-- net effect per key: inserted (absent -> live), updated (live -> live, with events), deleted;
-- and the events dropped as copies (re-emitted reads and truncates, replayed streamed changes)
SELECT count(*) FILTER (WHERE NOT had_live AND coalesce(live_after, false)) AS inserts,
       count(*) FILTER (WHERE coalesce(touched, false) AND had_live AND coalesce(live_after, false)) AS updates,
       count(*) FILTER (WHERE had_live AND NOT coalesce(live_after, false)) AS deletes,
       (SELECT count(*) FROM fold_identified
        WHERE __dup OR (__kind = 0 AND __op = 't' AND __lsn IN (SELECT lsn FROM fold_truncates)))
       + (SELECT count(*) FROM fold_ordered
          WHERE __kind = 0 AND __v IS NOT NULL AND __before IS NOT NULL AND __lsn <= __before) AS duplicates
FROM (SELECT {key}, bool_or(__kind = 1 AND __op <> 'd') AS had_live FROM fold_unioned GROUP BY {key}) AS u
LEFT JOIN (SELECT DISTINCT {key}, true AS touched FROM fold_segmented WHERE __kind = 0) AS e USING ({key})
LEFT JOIN (SELECT {key}, NOT __deleted AS live_after FROM fold_result) AS r USING ({key});

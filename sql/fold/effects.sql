-- net effect per key: inserted (absent -> live), updated (live -> live, with events that are not
-- copies), deleted; and the events dropped as copies (re-emitted reads and truncates, replays)
SELECT count(*) FILTER (WHERE NOT had_live AND coalesce(live_after, false)) AS inserts,
       count(*) FILTER (WHERE touched AND had_live AND coalesce(live_after, false)) AS updates,
       count(*) FILTER (WHERE had_live AND NOT coalesce(live_after, false)) AS deletes,
       (SELECT count(*) FROM fold_identified
        WHERE __dup OR (__kind = 0 AND __op = 't' AND __lsn IN (SELECT lsn FROM fold_truncates)))
       + (SELECT count(*) FROM fold_alive WHERE __kind = 0)
       - (SELECT count(*) FROM fold_rows WHERE __kind = 0) AS duplicates
FROM (SELECT {key}, bool_or(touched) AS touched, bool_or(had_live) AS had_live
      FROM (SELECT {key}, true AS touched, false AS had_live FROM fold_rows WHERE __kind = 0
            UNION ALL
            SELECT {key}, false AS touched, __op <> 'd' AS had_live FROM fold_skeleton WHERE __kind = 1) AS k
      GROUP BY {key}) AS u
LEFT JOIN (SELECT {key}, NOT __deleted AS live_after FROM fold_result WHERE NOT __image) AS r USING ({key});

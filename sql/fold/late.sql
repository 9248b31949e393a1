-- state rows that are not first of their key: an event is older than what the state holds
WITH late AS (SELECT {key}, __rank FROM fold_rows WHERE __kind = 1 AND __rank > 1)
SELECT (SELECT count(*) FROM late) AS late,
       (SELECT min(o.__rid)
        FROM fold_rows AS o JOIN late AS l USING ({key})
        WHERE o.__kind = 0 AND o.__rank < l.__rank) AS first_in;

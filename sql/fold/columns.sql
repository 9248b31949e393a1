-- Per-column pieces of sql/fold/*.sql, one per non-key source column: {n} its number (its place
-- in the row fields, as listed in __toast), {r} the column holding the __rid of the row whose
-- value it takes, {pending} its pending flag.

-- name: resolve
last_value(CASE WHEN (__op <> 'd' OR __kind <> 0) AND NOT coalesce(list_contains(__toast, {n}), false)
                THEN __rid END IGNORE NULLS)
    OVER (by_segment ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {r}

-- name: take
{r} = coalesce(fold_rows.{r}, d.{r})

-- name: offer
{r}

-- name: gains
(fold_rows.{r} IS NULL AND d.{r} IS NOT NULL)

-- name: pending
__op <> 'd' AND __seg_link_lsn IS NOT NULL AND {r} IS NULL
    AND coalesce(list_contains(__toast, {n}), false) AS {pending}

-- name: unresolved
CASE WHEN {r} IS NULL AND coalesce(list_contains(__toast, {n}), false) THEN 1 ELSE 0 END

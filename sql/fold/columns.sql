-- Per-column pieces of sql/fold/*.sql, one per non-key source column: {column} the quoted
-- column, {label} its name as a string literal, {r} the column holding its resolved value.

-- name: resolve
last_value(CASE WHEN (__op <> 'd' OR __kind <> 0) AND NOT coalesce(list_contains(__toast, {label}), false)
                THEN struct_pack(v := {column}) END IGNORE NULLS) OVER by_segment AS {r}

-- name: resolved
{r}.v AS {column}

-- name: take
{r} = coalesce(fold_rows.{r}, d.{r})

-- name: offer
{r}

-- name: gains
(fold_rows.{r} IS NULL AND d.{r} IS NOT NULL)

-- name: pending
CASE WHEN {r} IS NULL AND coalesce(list_contains(__toast, {label}), false) THEN {label} END

-- name: unresolved
CASE WHEN {r} IS NULL AND coalesce(list_contains(__toast, {label}), false) THEN 1 ELSE 0 END
